"""Fixed reference policies for TemperatureKD-v0, with SB3's ``predict`` signature.

A fixed policy is not trained across episodes: a constant temperature, a global schedule over the run,
a fixed map from the observation to a temperature, or (``agents.temperature.ctkd``) a temperature learned inside
the episode. A policy may also change the env's kwargs (``env_overrides``): "no distillation" is the
same training run with cross-entropy alone, which no temperature can express.

Evaluation calls ``attach(env)`` (the unwrapped env) and ``seed(evaluation_seed)`` before each
episode where a policy has them: a schedule reads the episode's length from the env at each step (an
episode of a task set has its instance's length), the static oracle reads the episode's instance.

Every policy gives the env's raw actions for its ``action`` kwarg: ``"temperature"`` (one value per
instance) or ``"temperature_weight"`` (a temperature and a distillation weight per instance, the
weight 1 unless ``mask="teacher_agrees"``: then 1 where the teacher's top-1 class is the instance's
label and 0 elsewhere, read from the ``observation="extended"`` column that says so, so that the KD term
is switched off where the teacher is wrong).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kd_envs.envs.temperature_kd import MAX_TEMPERATURE

SCHEDULE_SHAPES = ("linear", "cosine")
ACTION_MODES = ("temperature", "temperature_weight")
MASKS = ("teacher_agrees",)
# The extended observation's column "the teacher's top-1 class is the label" (kd_envs.envs.temperature_kd).
TEACHER_AGREES_COLUMN = 5


def temperatures_to_actions(temperature: np.ndarray, action_scale: float) -> np.ndarray:
    """The env's raw actions for ``temperature`` (vectorised :func:`temperature_to_action`), float32,
    clipped to the action space."""
    p = np.asarray(temperature, dtype=np.float64) / MAX_TEMPERATURE
    action = np.log(p / (1.0 - p)) / action_scale
    return np.clip(action, -1.0, 1.0).astype(np.float32)


def env_actions(temperature: np.ndarray, weight: np.ndarray | None, action_scale: float, action: str) -> np.ndarray:
    """The env's raw actions for per-instance ``temperature`` and ``weight`` in [0, 1] (None: 1): shape (B,)
    for ``action="temperature"`` (where a weight other than 1 cannot be expressed), (B, 2) for
    ``"temperature_weight"`` (the weight's raw action is 2w − 1)."""
    t = temperatures_to_actions(temperature, action_scale)
    if action == "temperature":
        return t
    w = np.ones_like(t) if weight is None else np.asarray(weight, dtype=np.float32)
    return np.stack([t, np.clip(2.0 * w - 1.0, -1.0, 1.0)], axis=-1).astype(np.float32)


def mask_weights(mask: str | None, observation: np.ndarray, name: str) -> np.ndarray | None:
    """The per-instance weights of ``mask`` for this observation (None: no mask, every weight 1)."""
    if mask is None:
        return None
    if observation.shape[-1] <= TEACHER_AGREES_COLUMN:
        raise ValueError(f"{name}: mask={mask!r} reads the teacher-agrees column of TemperatureKD-v0's "
                         f"observation='extended'; this observation has {observation.shape[-1]} columns")  # fmt: skip
    return observation[..., TEACHER_AGREES_COLUMN].astype(np.float32)


def _check_action_mode(name: str, action: str, mask: str | None) -> None:
    if action not in ACTION_MODES:
        raise ValueError(f"{name}: action={action!r}; expected one of {ACTION_MODES}")
    if mask is not None and mask not in MASKS:
        raise ValueError(f"{name}: mask={mask!r}; expected None or one of {MASKS}")
    if mask is not None and action != "temperature_weight":
        raise ValueError(f"{name}: mask={mask!r} sets distillation weights, which need action='temperature_weight'")


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
    action: str = "temperature"
    mask: str | None = None

    def __post_init__(self) -> None:
        _check_action_mode(self.name, self.action, self.mask)
        self._rng = np.random.default_rng(0)

    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: bool = True):
        if self.temperature is None:
            temperature = self._rng.uniform(self.low, self.high, size=observation.shape[:-1])
        else:
            temperature = np.full(observation.shape[:-1], self.temperature)
        weight = mask_weights(self.mask, observation, self.name)
        return env_actions(temperature, weight, self.action_scale, self.action), state


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
    action: str = "temperature"
    mask: str | None = None

    def __post_init__(self) -> None:
        _check_action_mode(self.name, self.action, self.mask)
        if self.shape not in SCHEDULE_SHAPES:
            raise ValueError(f"shape={self.shape!r}: expected one of {SCHEDULE_SHAPES}")
        for name in ("start", "end"):
            if not 0.0 < getattr(self, name) < MAX_TEMPERATURE:
                raise ValueError(f"{name}={getattr(self, name)}: expected a temperature in (0, {MAX_TEMPERATURE})")
        self._env = None
        self._step = 0

    def attach(self, env) -> None:
        """Bind to the unwrapped env, whose ``max_steps`` (the current episode's length) is read each step."""
        self._env = env

    def seed(self, seed: int) -> None:
        self._step = 0

    def temperature_at(self, step: int, steps: int) -> float:
        p = min(step / max(steps - 1, 1), 1.0)
        f = p if self.shape == "linear" else (1.0 - math.cos(math.pi * p)) / 2.0
        return self.start + (self.end - self.start) * f

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: bool = True):
        if self._env is None:
            raise RuntimeError(f"{self.name}: attach(env) first; a schedule needs the episode's length")
        temperature = np.full(observation.shape[:-1], self.temperature_at(self._step, int(self._env.max_steps)))
        self._step += 1
        weight = mask_weights(self.mask, observation, self.name)
        return env_actions(temperature, weight, self.action_scale, self.action), state


@dataclass
class InstanceConstantPolicy:
    """A constant temperature per task instance, read from the env's current instance at each step: the
    *static oracle* of a task set when each instance's temperature was chosen on that instance's own
    validation split (it knows which instance it is on, which no deployable policy does)."""

    name: str
    temperatures: dict[str, float]
    action_scale: float = 6.0
    env_overrides: dict[str, Any] = field(default_factory=dict)
    action: str = "temperature"
    mask: str | None = None

    def __post_init__(self) -> None:
        _check_action_mode(self.name, self.action, self.mask)
        for instance, t in self.temperatures.items():
            if not 0.0 < t < MAX_TEMPERATURE:
                raise ValueError(f"{self.name}: temperature {t} for {instance!r}; expected one in "
                                 f"(0, {MAX_TEMPERATURE})")  # fmt: skip
        self._env = None

    def attach(self, env) -> None:
        self._env = env

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: bool = True):
        if self._env is None:
            raise RuntimeError(f"{self.name}: attach(env) first; the policy reads the episode's task instance")
        instance = self._env.instance.name
        if instance not in self.temperatures:
            raise ValueError(f"{self.name}: no temperature for instance {instance!r}; it has "
                             f"{sorted(self.temperatures)}")  # fmt: skip
        temperature = np.full(observation.shape[:-1], self.temperatures[instance])
        weight = mask_weights(self.mask, observation, self.name)
        return env_actions(temperature, weight, self.action_scale, self.action), state


@dataclass
class LinearMapPolicy:
    """A fixed per-instance map from the observation's first k columns (k = len(weights) − 1: 3 for the
    paper's observation, up to 7 for ``observation="extended"``) to a temperature,
    T = clip(w₀ + Σ_j w_j·x_j, ``low``, ``high``), and, with ``weight_map`` (k + 1 numbers v, needs
    ``action="temperature_weight"``), to a distillation weight w = clip(v₀ + Σ_j v_j·x_j, 0, 1): the
    black-box baseline whose weights are searched on validation accuracy (``agents.common.selection``)."""

    name: str
    weights: Sequence[float]
    low: float = 0.5
    high: float = 9.5
    action_scale: float = 6.0
    env_overrides: dict[str, Any] = field(default_factory=dict)
    action: str = "temperature"
    weight_map: Sequence[float] | None = None

    def __post_init__(self) -> None:
        _check_action_mode(self.name, self.action, None)
        self.weights = [float(w) for w in self.weights]
        if not 2 <= len(self.weights) <= 8 or not all(math.isfinite(w) for w in self.weights):
            raise ValueError(f"weights={self.weights}: expected 2 to 8 finite numbers (bias, then one per feature)")
        if self.weight_map is not None:
            self.weight_map = [float(v) for v in self.weight_map]
            if len(self.weight_map) != len(self.weights) or not all(math.isfinite(v) for v in self.weight_map):
                raise ValueError(f"weight_map={self.weight_map}: expected {len(self.weights)} finite numbers, "
                                 "as many as weights")  # fmt: skip
            if self.action != "temperature_weight":
                raise ValueError(f"{self.name}: weight_map sets distillation weights, which need "
                                 "action='temperature_weight'")  # fmt: skip
        if not 0.0 < self.low <= self.high < MAX_TEMPERATURE:
            raise ValueError(f"low={self.low}, high={self.high}: expected 0 < low <= high < {MAX_TEMPERATURE}")

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: bool = True):
        w, k = np.asarray(self.weights), len(self.weights) - 1
        if observation.shape[-1] < k:
            raise ValueError(f"{self.name}: {k} feature weights; the observation has {observation.shape[-1]} columns")
        x = observation[..., :k].astype(np.float64)
        temperature = np.clip(w[0] + x @ w[1:], self.low, self.high)
        weight = None
        if self.weight_map is not None:
            v = np.asarray(self.weight_map)
            weight = np.clip(v[0] + x @ v[1:], 0.0, 1.0)
        return env_actions(temperature, weight, self.action_scale, self.action), state
