"""The protocol's seeds and one episode of a policy: what the evaluation harness and the selections that
choose baselines on validation (``agents.common.selection``) share, below both.

This module is also the body of an evaluation episode on a Ray worker (:func:`episode_in_worker_env` on
:func:`on_threads`), so it imports only what an episode needs: Gymnasium, NumPy, torch and the
environments, never the training harness, scikit-learn, plotting or Ray Tune (a worker imports what its
task's function and arguments name, and pays for it in every command)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

import kd_envs  # noqa: F401  (registers the environments a worker makes)

# Seeds kept apart: agents train on TRAINING_SEEDS, every entry is scored on EVALUATION_SEEDS.
TRAINING_SEEDS: tuple[int, ...] = tuple(range(10))
EVALUATION_SEEDS: tuple[int, ...] = tuple(range(1000, 1010))
assert not set(TRAINING_SEEDS) & set(EVALUATION_SEEDS)


def info_numbers(info: dict[str, Any]) -> dict[str, float]:
    """The plain numbers of an env's ``info`` (flags and arrays left out), as floats."""
    return {k: float(v) for k, v in info.items() if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` torch threads, then give the caller's count back. An episode's numbers
    can depend on the count (a 6-epoch TemperatureKD-v0 episode: 0.4065 on one thread, 0.4060 on two), so
    every evaluation sets it, entries record it (``torch_threads``) and verification replays with it."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads={threads!r}: expected an int >= 1")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def on_threads(function: Callable[..., Any], threads: int, **kwargs: Any) -> Any:
    """``function(**kwargs)`` on ``threads`` torch threads: a Ray task's body (its worker starts on one)."""
    with torch_threads(threads):
        return function(**kwargs)


class Policy(Protocol):
    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: bool = True): ...


def _start_episode(env: gym.Env, policy: Policy, seed: int, instance: int | None = None) -> np.ndarray:
    """Reset ``env`` with ``seed`` (and, on a task set, ``options={"instance": instance}``) and prepare a
    fixed policy for the episode: ``attach`` gives it the unwrapped env (a schedule reads the episode's
    length; CTKD the batch logits) and ``seed`` seeds its draws (an SB3 model's ``seed`` is its training
    seed, an int, not a method)."""
    if callable(getattr(policy, "attach", None)):
        policy.attach(env.unwrapped)
    if callable(getattr(policy, "seed", None)):
        policy.seed(seed)
    obs, _ = env.reset(seed=seed, options=None if instance is None else {"instance": instance})
    return obs


def run_episode(env: gym.Env, policy: Policy, seed: int, instance: int | None = None) -> dict[str, Any]:
    """One deterministic episode from ``seed`` (on a task set's ``instance``, given by its position in the
    split): its return, length and the numbers in the last info."""
    obs = _start_episode(env, policy, seed, instance)
    total, steps = 0.0, 0
    while True:
        action, _ = policy.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        steps += 1
        if terminated or truncated:
            break
    return {"seed": seed, "return": total, "steps": steps, **info_numbers(info)}


# A worker process's envs, one per (env id, kwargs): the tasks of a command that land on one worker
# reuse it, as the serial loop reuses its one env (an episode depends on its seed and instance alone).
_WORKER_ENVS: dict[str, gym.Env] = {}


def episode_in_worker_env(policy: Policy, env_id: str, env_kwargs: dict[str, Any], seed: int,
                          instance: int | None = None) -> dict[str, Any]:  # fmt: skip
    """:func:`run_episode` in this process's env for ``env_id`` and ``env_kwargs``, made at its first
    episode and kept for the next ones (a Ray task of :func:`agents.common.evaluation.evaluate`: a worker
    makes an env, and loads its task, once per command rather than once per episode)."""
    key = json.dumps([env_id, env_kwargs], sort_keys=True, default=repr)
    if key not in _WORKER_ENVS:
        _WORKER_ENVS[key] = gym.make(env_id, **env_kwargs)
    return run_episode(_WORKER_ENVS[key], policy, seed, instance)


def episode_in_new_env(policy: Policy, env_id: str, env_kwargs: dict[str, Any], seed: int,
                       instance: int | None = None) -> dict[str, Any]:  # fmt: skip
    """:func:`run_episode` in an env made for it: an episode depends on its seed (and instance) alone, so
    it gives the same numbers as in an env that ran other episodes before (one Ray task of
    :func:`agents.common.evaluation.evaluate`)."""
    env = gym.make(env_id, **env_kwargs)
    try:
        return run_episode(env, policy, seed, instance)
    finally:
        env.close()
