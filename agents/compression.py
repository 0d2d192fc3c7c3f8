"""Architecture search on N2NCompress-v0: what every searching agent shares.

* :class:`RandomSearch`, the reference searcher: uniform over the actions valid at each step.
* :class:`SearchRecordCallback`, an SB3 callback that keeps every finished episode's student and the
  best one (by the env's reward), whichever agent searches (N2N, MaskablePPO, random search).
* :func:`final_evaluation`, the report of a search: its best student retrained with the full budget on
  the evaluation seeds and scored on the *test* split, which no search reward ever saw.
"""

from __future__ import annotations

import json
import zipfile
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

    def __init__(self, policy: str, env: gym.Env | VecEnv, seed: int | None = None,
                 tensorboard_log: str | None = None, verbose: int = 0, device: str = "cpu"):  # fmt: skip
        if policy != "UniformPolicy":
            raise ValueError(f"RandomSearch: policy={policy!r}; expected 'UniformPolicy'")
        self.env = env if isinstance(env, VecEnv) or env is None else DummyVecEnv([lambda: env])
        self.seed = seed
        self.tensorboard_log = tensorboard_log
        self.verbose = verbose
        self.num_timesteps = 0
        self._rng = np.random.default_rng(seed)
        self.logger = configure(None, [])

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
            actions, _ = self.predict(obs)
            new_obs, rewards, dones, infos = self.env.step(actions)
            self.num_timesteps += self.env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                break
            obs = new_obs
            if dones.any():
                self.logger.dump(self.num_timesteps)
        callback.on_rollout_end()
        callback.on_training_end()
        return self

    def save(self, path: str | Path) -> None:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("data.json", json.dumps({"seed": self.seed, "num_timesteps": self.num_timesteps}))

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | VecEnv | None = None, device: str = "cpu", **kwargs):
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data.json"))
        model = cls("UniformPolicy", env, seed=data["seed"], **kwargs)
        model.num_timesteps = data["num_timesteps"]
        return model


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
