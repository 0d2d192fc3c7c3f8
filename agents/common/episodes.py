"""The protocol's seeds and one episode of a policy: what the evaluation harness and the selections that
choose baselines on validation (``agents.common.selection``) share, below both."""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from agents.common.training import info_numbers

# Seeds kept apart: agents train on TRAINING_SEEDS, every entry is scored on EVALUATION_SEEDS.
TRAINING_SEEDS: tuple[int, ...] = tuple(range(10))
EVALUATION_SEEDS: tuple[int, ...] = tuple(range(1000, 1010))
assert not set(TRAINING_SEEDS) & set(EVALUATION_SEEDS)


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
