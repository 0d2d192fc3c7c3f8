"""What every search on N2NCompress-v0 shares, whichever agent searches.

* :class:`SearchRecordCallback`, an SB3 callback that keeps every finished episode's student and the
  best one (by the env's reward), whichever agent searches (N2N, MaskablePPO, random search).
* :func:`final_evaluation`, the report of a search: its best student retrained with the full budget on
  the evaluation seeds and scored on the *test* split, which no search reward ever saw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback
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

    def state(self) -> dict[str, Any]:
        """:meth:`summary` with the distinct students themselves: what :meth:`restore` needs."""
        return {**self.summary(), "seen": sorted(self._seen)}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state` (a resumed search keeps the students it recorded)."""
        self.history, self.best, self._seen = list(state["history"]), state["best"], set(state["seen"])


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
    ``use_cache=False`` retrains even where the student cache has the result (verification). On a tabular
    env (``tabular=...``) the results are the table's final trainings, which exist for its final seeds and
    epochs only (a KeyError or ValueError says which)."""
    env = gym.make(env_id, **env_kwargs)
    n2n = env.unwrapped
    arch = Architecture.from_dict(architecture)
    # The search's own training options (the env's defaults and kwargs), with the full budget.
    config = replace(n2n.distill_config, training=replace(n2n.distill_config.training, epochs=epochs))
    table = n2n.table
    if table is not None and epochs != table.final_epochs:
        raise ValueError(f"table {table.name} holds final trainings of {table.final_epochs} epochs, not {epochs}")
    teacher_test = n2n.task.teacher_test_accuracy if table is None else table.teacher["test_accuracy"]
    results = []
    for seed in tqdm(seeds, desc=f"final training ({epochs} epochs)", unit="student", disable=not progress):
        if table is None:
            result = n2n.evaluator.evaluate(arch, config, int(seed), use_cache=use_cache)
        else:
            result = table.final(table.code_of(arch), int(seed))
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
