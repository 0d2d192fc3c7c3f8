"""Fixed reference policies for TemperatureKD-v0, with SB3's ``predict`` signature.

A fixed policy may also change the env's kwargs (``env_overrides``): "no distillation" is the same
training run with cross-entropy alone, which no temperature can express.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kd_envs.envs.temperature_kd import MAX_TEMPERATURE, temperature_to_action


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
        p = temperature / MAX_TEMPERATURE
        action = np.log(p / (1.0 - p)) / self.action_scale
        return np.clip(action, -1.0, 1.0).astype(np.float32), state


def fixed_policy(name: str, action_scale: float = 6.0) -> FixedTemperaturePolicy:
    """One of :data:`FIXED_POLICIES` by name."""
    if name not in FIXED_POLICIES:
        raise ValueError(f"fixed policy {name!r}: expected one of {sorted(FIXED_POLICIES)}")
    kwargs = FIXED_POLICIES[name]
    # Validate the constant temperature through the env's own map.
    if kwargs["temperature"] is not None:
        temperature_to_action(kwargs["temperature"], action_scale)
    # A deep copy: a policy's env_overrides must not alias the registry's dict.
    return FixedTemperaturePolicy(name=name, action_scale=action_scale, **copy.deepcopy(kwargs))


FIXED_POLICIES: dict[str, dict[str, Any]] = {
    # Cross-entropy only: the student trained without distillation (the temperature is then unused).
    "no_kd": {"temperature": 1.0, "env_overrides": {"ce_weight": 1.0, "kd_weight": 0.0}},
    "constant_t1": {"temperature": 1.0},
    # Hinton et al.'s standard setting.
    "constant_t4": {"temperature": 4.0},
    "random_t": {"temperature": None},
}
