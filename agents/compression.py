"""Architecture search on N2NCompress-v0: what every searching agent shares.

* :class:`RandomSearch`, the reference searcher: uniform over the actions valid at each step.
* :class:`AgingEvolution`, regularized evolution (Real et al., 2019), the architecture-search field's
  strongest simple baseline: tournament selection, one mutation per child, the oldest dies.
* :func:`two_stage_search`, the paper's protocol: a removal search, then a shrink search on its best.
* :class:`SearchRecordCallback`, an SB3 callback that keeps every finished episode's student and the
  best one (by the env's reward), whichever agent searches (N2N, MaskablePPO, random search).
* :func:`final_evaluation`, the report of a search: its best student retrained with the full budget on
  the evaluation seeds and scored on the *test* split, which no search reward ever saw.
"""

from __future__ import annotations

import copy
import json
import shutil
import zipfile
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ProgressBarCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from tqdm.auto import tqdm

import kd_envs  # noqa: F401  (registers the environments)
from kd_envs.envs.n2n_compress import compression_reward
from kd_envs.tasks import atomic_write
from kd_envs.tasks.architecture import Architecture

SEARCH_ENVS = ("N2NCompress-v0",)
# The report's budget: each best student is retrained for this many epochs (the search proxy is 10).
FULL_EPOCHS = 30


class SearchRecordCallback(BaseCallback):
    """Keeps each finished episode's student (reward, C, A, architecture) and the best one so far;
    logs ``search/best_reward`` and ``search/unique_students`` to SB3's logger."""

    def __init__(self, verbose: int = 0):
        super().__init__(verbose)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._seen: set[str] = set()

    def _on_step(self) -> bool:
        for done, info, reward in zip(self.locals["dones"], self.locals["infos"], self.locals["rewards"]):
            if done and "architecture" in info:
                self.record(float(reward), info)
        return True

    def record(self, reward: float, info: dict[str, Any]) -> None:
        """Add one finished episode (its reward and last info); usable without an SB3 model too."""
        attached = getattr(self, "model", None) is not None  # SB3 sets it in init_callback
        episode = {
            "episode": len(self.history),
            "timesteps": int(self.num_timesteps) if attached else None,
            "reward": reward,
            **{k: info[k] for k in ("compression", "accuracy", "student_parameters", "architecture_summary",
                                    "degenerate", "cached", "train_seconds")},
            "removed_layers": info.get("removed_layers"),
        }  # fmt: skip
        self.history.append(episode)
        if info["architecture"] is not None:
            self._seen.add(json.dumps(info["architecture"], sort_keys=True))
        if info["architecture"] is not None and not info["degenerate"] and (
            self.best is None or reward > self.best["reward"]
        ):
            self.best = {**episode, "architecture": info["architecture"]}
        if attached:
            self.logger.record("search/best_reward", self.best["reward"] if self.best else -1.0)
            self.logger.record("search/unique_students", len(self._seen))

    def summary(self) -> dict[str, Any]:
        return {"episodes": len(self.history), "unique_students": len(self._seen), "best": self.best,
                "history": self.history}  # fmt: skip


class RandomSearch:
    """Random search over N2NCompress-v0's action space: at each step an action drawn uniformly from
    the valid ones (``action_mask``). It learns nothing; ``learn`` runs episodes for the budget so that
    a :class:`SearchRecordCallback` sees the students, as with the learning agents. The SB3-style
    signature lets :func:`agents.baselines.train_agent` treat it like any algorithm."""

    policy_name = "UniformPolicy"

    def __init__(self, policy: str, env: gym.Env | VecEnv, seed: int | None = None,
                 tensorboard_log: str | None = None, verbose: int = 0, device: str = "cpu"):  # fmt: skip
        if policy != self.policy_name:
            raise ValueError(f"{type(self).__name__}: policy={policy!r}; expected {self.policy_name!r}")
        self.env = env if isinstance(env, VecEnv) or env is None else DummyVecEnv([lambda: env])
        self.seed = seed
        self.tensorboard_log = tensorboard_log
        self.verbose = verbose
        self.num_timesteps = 0
        self._rng = np.random.default_rng(seed)
        self.logger = configure(None, [])
        if self.env is not None and self.env.num_envs != 1:
            raise ValueError(f"{type(self).__name__}: a VecEnv with {self.env.num_envs} envs; it needs n_envs=1")

    def get_env(self) -> VecEnv | None:
        return self.env

    def predict(self, observation: dict[str, np.ndarray], state=None, episode_start=None, deterministic: bool = True):
        mask = np.asarray(observation["action_mask"]) > 0.5
        batched = mask.ndim == 2
        masks = mask if batched else mask[None]
        actions = np.array([self._rng.choice(np.flatnonzero(m)) for m in masks], dtype=np.int64)
        return (actions if batched else actions[0]), state

    def learn(self, total_timesteps: int, callback=None, progress_bar: bool = False, tb_log_name: str = "random",
              reset_num_timesteps: bool = True, log_interval: int = 1):  # fmt: skip
        if self.tensorboard_log:
            self.logger = configure(str(Path(self.tensorboard_log) / f"{tb_log_name}_1"), ["tensorboard"])
        callbacks = [callback] if isinstance(callback, BaseCallback) else list(callback or [])
        if progress_bar:
            callbacks.append(ProgressBarCallback())
        callback = CallbackList(callbacks)
        callback.init_callback(self)
        if reset_num_timesteps:
            self.num_timesteps = 0
        self.env.seed(self.seed)
        obs = self.env.reset()
        callback.on_training_start(locals(), globals())
        callback.on_rollout_start()
        while self.num_timesteps < total_timesteps:
            actions = self._act(obs)
            new_obs, rewards, dones, infos = self.env.step(actions)
            self.num_timesteps += self.env.num_envs
            if dones[0]:
                self._episode_end(float(rewards[0]), infos[0])
            callback.update_locals(locals())
            if not callback.on_step():
                break
            obs = new_obs
            if dones.any():
                self.logger.dump(self.num_timesteps)
        callback.on_rollout_end()
        callback.on_training_end()
        return self

    def _act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The actions of a search step (batched observation in, batched actions out)."""
        return self.predict(obs)[0]

    def _episode_end(self, reward: float, info: dict[str, Any]) -> None:
        """Called after each finished episode with its reward and last info (random search keeps nothing)."""

    def _state(self) -> dict[str, Any]:
        return {}

    def save(self, path: str | Path) -> None:
        data = {"seed": self.seed, "num_timesteps": self.num_timesteps, **self._state()}
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("data.json", json.dumps(data))

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | VecEnv | None = None, device: str = "cpu", **kwargs):
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data.json"))
        model = cls(cls.policy_name, env, seed=kwargs.pop("seed", data["seed"]), **kwargs)
        model.num_timesteps = data["num_timesteps"]
        return model


class AgingEvolution(RandomSearch):
    """Regularized (aging) evolution (Real et al., "Regularized Evolution for Image Classifier
    Architecture Search", AAAI 2019, Algorithm 1) on N2NCompress-v0.

    A genotype is the env's decisions, keyed by (stage, teacher layer): keep/remove for every layer
    and a shrink factor index for every layer it kept. The first ``population_size`` students are
    random (uniform over the valid actions, as :class:`RandomSearch`). After that each episode
    samples ``sample_size`` members of the population uniformly, takes the best (by the episode's
    reward) as the parent and plays a child that differs from it by one mutation: one decision of the
    parent's episode changed to another valid action, which removes or restores a layer, or changes one
    kept layer's shrink factor. The child joins the population and the oldest member dies. A restored
    layer takes the shrink factor its genotype still holds from an ancestor, else a random one.
    Repeated students are re-evaluated (with a fixed ``training_seed`` the env's cache makes that free).

    Real et al. use P = 100, S = 25 for 20,000 models; the defaults (P = 20, S = 5) keep the same ratio
    for searches of a few hundred students.

    :param population_size: P, the number of living members.
    :param sample_size: S, the tournament size (1 <= S <= P).
    """

    policy_name = "EvolutionPolicy"

    def __init__(
        self,
        policy: str,
        env: gym.Env | VecEnv,
        seed: int | None = None,
        population_size: int = 20,
        sample_size: int = 5,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        device: str = "cpu",
    ):
        for name, value in (("population_size", population_size), ("sample_size", sample_size)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AgingEvolution: {name}={value!r}; expected an integer >= 1")
        if sample_size > population_size:
            raise ValueError(f"AgingEvolution: sample_size={sample_size} exceeds population_size={population_size}")
        super().__init__(policy, env, seed, tensorboard_log, verbose, device)
        self.population_size, self.sample_size = int(population_size), int(sample_size)
        # Members: {"genotype": {(stage, layer): action}, "decisions": [((stage, layer), valid actions)], "reward"}
        self.population: deque[dict[str, Any]] = deque(maxlen=self.population_size)
        self.evaluated = 0
        self._genotype: dict[tuple[int, int], int] | None = None  # the episode's genotype, once it started
        self._decisions: list[tuple[tuple[int, int], list[int]]] = []

    def learn(self, total_timesteps: int, *args, **kwargs):
        self._genotype, self._decisions = None, []  # learn() resets the env: no episode is running
        return super().learn(total_timesteps, *args, **kwargs)

    def _act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self._genotype is None:
            self._genotype = self.propose()
        stage = int(np.argmax(obs["stage"][0]))
        layer = int(np.argmax(obs["position"][0]))
        valid = [int(a) for a in np.flatnonzero(np.asarray(obs["action_mask"][0]) > 0.5)]
        key = (stage, layer)
        if self._genotype.get(key) not in valid:
            self._genotype[key] = int(self._rng.choice(valid))
        self._decisions.append((key, valid))
        return np.array([self._genotype[key]], dtype=np.int64)

    def propose(self) -> dict[tuple[int, int], int]:
        """The next episode's genotype: empty (all random) while the first P members are drawn, then a
        one-mutation child of the tournament's winner."""
        if self.evaluated < self.population_size:
            return {}  # a random member: every decision drawn when the env asks for it
        members = list(self.population)
        picks = self._rng.choice(len(members), size=self.sample_size, replace=False)
        parent = max((members[i] for i in picks), key=lambda m: m["reward"])
        child = dict(parent["genotype"])
        mutable = [(key, valid) for key, valid in parent["decisions"] if len(valid) > 1]
        if mutable:
            key, valid = mutable[int(self._rng.integers(len(mutable)))]
            child[key] = int(self._rng.choice([a for a in valid if a != child[key]]))
        return child

    def _episode_end(self, reward: float, info: dict[str, Any]) -> None:
        self.population.append({"genotype": self._genotype, "decisions": self._decisions, "reward": reward})
        self.evaluated += 1
        self._genotype, self._decisions = None, []

    def _state(self) -> dict[str, Any]:
        members = [{"genotype": [[*k, a] for k, a in m["genotype"].items()],
                    "decisions": [[*k, v] for k, v in m["decisions"]], "reward": m["reward"]}
                   for m in self.population]  # fmt: skip
        return {"population_size": self.population_size, "sample_size": self.sample_size,
                "evaluated": self.evaluated, "population": members}  # fmt: skip

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | VecEnv | None = None, device: str = "cpu", **kwargs):
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data.json"))
        kwargs = {"population_size": data["population_size"], "sample_size": data["sample_size"], **kwargs}
        model = cls(cls.policy_name, env, seed=kwargs.pop("seed", data["seed"]), **kwargs)
        model.num_timesteps, model.evaluated = data["num_timesteps"], data["evaluated"]
        for m in data["population"]:
            model.population.append({"genotype": {(s, layer): a for s, layer, a in m["genotype"]},
                                     "decisions": [((s, layer), v) for s, layer, v in m["decisions"]],
                                     "reward": m["reward"]})  # fmt: skip
        return model


def two_stage_search(
    algo: str,
    seed: int,
    out_dir: str | Path,
    n_students: int,
    env_kwargs: dict[str, Any] | None = None,
    hyperparams: dict[str, Any] | None = None,
    removal_share: float = 0.5,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """The paper's two-stage protocol as two searches on N2NCompress-v0 (the authors run ``run.py
    removal``, then ``run.py shrinkage`` on the stage-1 model): ``removal_share`` of the budget searches
    with ``stages="removal"``; its best student (by search reward) becomes the parent, whose layers a
    second search with ``stages="shrink"`` shrinks for the rest of the budget. Each stage starts a fresh
    agent (the authors train one controller per stage) seeded with ``seed``.

    Where the authors' code (anubhavashok/N2N: ``run.py``, ``rl.py``, ``architecture.py``) differs:
    they choose the stage-1 model by hand (no code ranks the saved students; here the best by validation
    search reward); stage 2 measures C against the stage-1 model, accuracy against its test accuracy,
    and distils from it (here: the task's teacher throughout, so that every stage and mode shares one
    scale); each stage runs 100 updates of 5 rollouts (here: the budget is split); they never remove
    the first layer, stride-2 convs or linear layers and shrink several attributes of a layer from an
    11-entry lookup (here: any layer, its width, the env's factors).

    Writes ``stage1/`` and ``stage2/`` (each a :func:`agents.baselines.train_agent` run) and, in
    ``out_dir``, ``search.json`` (both stages' students in order, the best of either) with ``model.zip``
    (stage 2's agent) and ``config.json``, so that the run reads like a single search. Returns the summary."""
    from agents.baselines import train_agent  # it imports this module

    if not 0 < removal_share < 1:
        raise ValueError(f"removal_share={removal_share}: expected a number in (0, 1)")
    out_dir = Path(out_dir)
    base = {k: v for k, v in (env_kwargs or {}).items() if k not in ("stages", "removed_layers")}
    first = max(1, round(n_students * removal_share))
    stage1 = train_agent(algo, "N2NCompress-v0", seed, out_dir / "stage1", env_kwargs={**base, "stages": "removal"},
                         hyperparams={**(hyperparams or {}), "n_students": first},
                         progress_bar=progress_bar)  # fmt: skip
    summary1 = json.loads((out_dir / "stage1" / "search.json").read_text())
    if summary1["best"] is None:
        raise ValueError(f"the removal search in {out_dir / 'stage1'} found no valid student")
    removed = summary1["best"]["removed_layers"]
    stage2 = train_agent(algo, "N2NCompress-v0", seed, out_dir / "stage2",
                         env_kwargs={**base, "stages": "shrink", "removed_layers": removed},
                         hyperparams={**(hyperparams or {}), "n_students": n_students - first},
                         progress_bar=progress_bar)  # fmt: skip
    summary2 = json.loads((out_dir / "stage2" / "search.json").read_text())
    history = [{**ep, "stage": "removal"} for ep in summary1["history"]]
    history += [{**ep, "episode": len(summary1["history"]) + ep["episode"], "stage": "shrink"}
                for ep in summary2["history"]]  # fmt: skip
    candidates = [b for b in (summary1["best"], summary2["best"]) if b is not None]
    best = max(candidates, key=lambda b: b["reward"])
    # The stages' students overlap only in the parent itself (stage 2 with every factor 1.0).
    summary = {"episodes": len(history), "unique_students": summary1["unique_students"] + summary2["unique_students"],
               "best": best, "history": history, "protocol": "two-stage", "parent_removed_layers": removed}  # fmt: skip
    atomic_write(out_dir / "search.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    shutil.copyfile(out_dir / "stage2" / "model.zip", out_dir / "model.zip")
    config = copy.deepcopy(stage2.config)
    config.update(env_kwargs=base, total_timesteps=stage1.config["total_timesteps"] + stage2.config["total_timesteps"],
                  protocol={"stages": "two-stage", "removal_students": first, "shrink_students": n_students - first,
                            "parent_removed_layers": removed})  # fmt: skip
    config["hyperparams"] = {**config["hyperparams"], "n_students": n_students}
    atomic_write(out_dir / "config.json", lambda f: f.write(json.dumps(config, indent=2, default=str).encode()))
    return summary


def final_evaluation(
    env_id: str,
    env_kwargs: dict[str, Any],
    architecture: dict[str, Any],
    seeds: Sequence[int],
    epochs: int = FULL_EPOCHS,
    use_cache: bool = True,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Retrain ``architecture`` with ``epochs`` epochs once per seed (weights and batch order from the
    seed) and score it on the test split: one result per seed with the compression C, the student's
    and the teacher's test accuracy, and ``final_reward`` = C(2 − C) · A_test / A_teacher_test.
    ``use_cache=False`` retrains even where the student cache has the result (verification)."""
    env = gym.make(env_id, **env_kwargs)
    n2n = env.unwrapped
    arch = Architecture.from_dict(architecture)
    # The search's own training options (the env's defaults and kwargs), with the full budget.
    config = replace(n2n.distill_config, training=replace(n2n.distill_config.training, epochs=epochs))
    teacher_test = n2n.task.teacher_test_accuracy
    results = []
    for seed in tqdm(seeds, desc=f"final training ({epochs} epochs)", unit="student", disable=not progress):
        result = n2n.evaluator.evaluate(arch, config, int(seed), use_cache=use_cache)
        compression = 1.0 - result["parameters"] / n2n.teacher_parameters
        results.append({
            "seed": int(seed),
            "compression": compression,
            "student_parameters": result["parameters"],
            "teacher_parameters": n2n.teacher_parameters,
            "student_test_accuracy": result["test_accuracy"],
            "student_val_accuracy": result["val_accuracy"],
            "teacher_test_accuracy": teacher_test,
            "final_reward": compression_reward(compression, result["test_accuracy"], teacher_test),
        })  # fmt: skip
    env.close()
    return results
