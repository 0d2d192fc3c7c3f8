"""Fixed reference policies for TemperatureKD-v0, with SB3's ``predict`` signature.

A fixed policy is not trained across episodes: a constant temperature, a global schedule over the run,
a fixed map from the observation to a temperature, or (``agents.temperature.ctkd``) a temperature learned inside
the episode. A policy may also change the env's kwargs (``env_overrides``): "no distillation" is the
same training run with cross-entropy alone, which no temperature can express.

Evaluation calls ``attach(env)`` (the unwrapped env) and ``seed(evaluation_seed)`` before each
episode where a policy has them: a schedule reads the episode's length there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kd_envs.envs.temperature_kd import MAX_TEMPERATURE

SCHEDULE_SHAPES = ("linear", "cosine")


def temperatures_to_actions(temperature: np.ndarray, action_scale: float) -> np.ndarray:
    """The env's raw actions for ``temperature`` (vectorised :func:`temperature_to_action`), float32,
    clipped to the action space."""
    p = np.asarray(temperature, dtype=np.float64) / MAX_TEMPERATURE
    action = np.log(p / (1.0 - p)) / action_scale
    return np.clip(action, -1.0, 1.0).astype(np.float32)


@dataclass
class FixedTemperaturePolicy:
    """Sets every instance's temperature to ``temperature``; or, with ``temperature=None``, draws
    each instance's temperature uniformly from [``low``, ``high``] with a generator seeded by
    :meth:`seed` (the evaluation seed), so a run can be repeated exactly."""

    name: str
    temperature: float | None
    action_scale: float = 6.0
    env_overrides: dict[str, Any] = field(default_factory=dict)
    low: float = 0.5
    high: float = 9.5

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(0)

    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: bool = True):
        if self.temperature is None:
            temperature = self._rng.uniform(self.low, self.high, size=observation.shape[:-1])
        else:
            temperature = np.full(observation.shape[:-1], self.temperature)
        return temperatures_to_actions(temperature, self.action_scale), state


@dataclass
class ScheduledTemperaturePolicy:
    """One temperature for every instance, moving from ``start`` at the episode's first step to ``end``
    at its last: linearly, or along half a cosine (slow at both ends), T = start + (end − start)·f(p)
    with p = step / (steps − 1), f(p) = p or (1 − cos πp) / 2. The global annealing baselines of the
    field (high → low, and low → high as a curriculum)."""

    name: str
    start: float
    end: float
    shape: str = "linear"
    action_scale: float = 6.0
    env_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.shape not in SCHEDULE_SHAPES:
            raise ValueError(f"shape={self.shape!r}: expected one of {SCHEDULE_SHAPES}")
        for name in ("start", "end"):
            if not 0.0 < getattr(self, name) < MAX_TEMPERATURE:
                raise ValueError(f"{name}={getattr(self, name)}: expected a temperature in (0, {MAX_TEMPERATURE})")
        self._steps: int | None = None
        self._step = 0

    def attach(self, env) -> None:
        self._steps = int(env.max_steps)

    def seed(self, seed: int) -> None:
        self._step = 0

    def temperature_at(self, step: int, steps: int) -> float:
        p = min(step / max(steps - 1, 1), 1.0)
        f = p if self.shape == "linear" else (1.0 - math.cos(math.pi * p)) / 2.0
        return self.start + (self.end - self.start) * f

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: bool = True):
        if self._steps is None:
            raise RuntimeError(f"{self.name}: attach(env) first; a schedule needs the episode's length")
        temperature = np.full(observation.shape[:-1], self.temperature_at(self._step, self._steps))
        self._step += 1
        return temperatures_to_actions(temperature, self.action_scale), state


@dataclass
class LinearMapPolicy:
    """A fixed per-instance map T = clip(w₀ + w₁·teacher confidence + w₂·student confidence +
    w₃·student uncertainty, ``low``, ``high``): the black-box baseline whose four weights are searched
    on validation accuracy (``agents.temperature.search``)."""

    name: str
    weights: Sequence[float]
    low: float = 0.5
    high: float = 9.5
    action_scale: float = 6.0
    env_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.weights = [float(w) for w in self.weights]
        if len(self.weights) != 4 or not all(math.isfinite(w) for w in self.weights):
            raise ValueError(f"weights={self.weights}: expected 4 finite numbers (bias, then one per feature)")
        if not 0.0 < self.low <= self.high < MAX_TEMPERATURE:
            raise ValueError(f"low={self.low}, high={self.high}: expected 0 < low <= high < {MAX_TEMPERATURE}")

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: bool = True):
        w = np.asarray(self.weights)
        temperature = np.clip(w[0] + observation.astype(np.float64) @ w[1:], self.low, self.high)
        return temperatures_to_actions(temperature, self.action_scale), state
