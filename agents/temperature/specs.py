"""The named TemperatureKD-v0 reference policies and their specs: ``{"name", "class", ...kwargs}``, as
entries store them, rebuilt with :func:`policy_from_spec`."""

from __future__ import annotations

import copy
from typing import Any

from agents.temperature.ctkd import CTKDPolicy
from agents.temperature.policies import (
    FixedTemperaturePolicy,
    InstanceConstantPolicy,
    LinearMapPolicy,
    ScheduledTemperaturePolicy,
)
from kd_envs.envs.temperature_kd import temperature_to_action

# The registry: name -> (class, kwargs). Entries of policies with chosen parameters (best_constant,
# blackbox_map) store those parameters and are rebuilt with :func:`policy_from_spec`.
FIXED_POLICIES: dict[str, dict[str, Any]] = {
    # Cross-entropy only: the student trained without distillation (the temperature is then unused).
    "no_kd": {"temperature": 1.0, "env_overrides": {"ce_weight": 1.0, "kd_weight": 0.0}},
    "constant_t1": {"temperature": 1.0},
    "constant_t2": {"temperature": 2.0},
    # Hinton et al.'s standard setting.
    "constant_t4": {"temperature": 4.0},
    "constant_t8": {"temperature": 8.0},
    "random_t": {"temperature": None},
    # Global schedules over the run, between T = 8 and T = 1.
    "anneal_linear": {"class": "schedule", "start": 8.0, "end": 1.0, "shape": "linear"},
    "anneal_cosine": {"class": "schedule", "start": 8.0, "end": 1.0, "shape": "cosine"},
    "ramp_linear": {"class": "schedule", "start": 1.0, "end": 8.0, "shape": "linear"},
    "ramp_cosine": {"class": "schedule", "start": 1.0, "end": 8.0, "shape": "cosine"},
    # CTKD (Li et al., AAAI 2023): a temperature learned adversarially inside the episode.
    "ctkd_global": {"class": "ctkd", "instance_wise": False},
    "ctkd_instance": {"class": "ctkd", "instance_wise": True},
    # Distillation only where the teacher's top-1 class is the label (needs observation="extended" and
    # action="temperature_weight"): the ramp with the KD term switched off where the teacher is wrong.
    "ramp_cosine_mask": {"class": "schedule", "start": 1.0, "end": 8.0, "shape": "cosine", "mask": "teacher_agrees"},
}


POLICY_CLASSES = ("constant", "schedule", "map", "ctkd", "per_instance")


def policy_from_spec(spec: dict[str, Any], action_scale: float = 6.0, action: str = "temperature"):
    """Build a policy from its spec: ``{"name", "class", ...kwargs}`` (the class one of
    :data:`POLICY_CLASSES`), for an env with ``action_scale`` and ``action`` (its kwargs)."""
    kwargs = copy.deepcopy({k: v for k, v in spec.items() if k != "class"})
    kwargs.update(action_scale=action_scale, action=action)
    kind = spec.get("class", "constant")
    if kind == "constant":
        if kwargs.get("temperature") is not None:
            temperature_to_action(kwargs["temperature"], action_scale)  # validated through the env's own map
        return FixedTemperaturePolicy(**kwargs)
    if kind == "schedule":
        return ScheduledTemperaturePolicy(**kwargs)
    if kind == "map":
        return LinearMapPolicy(**kwargs)
    if kind == "ctkd":
        return CTKDPolicy(**kwargs)
    if kind == "per_instance":
        return InstanceConstantPolicy(**kwargs)
    raise ValueError(f"policy class {kind!r}: expected one of {POLICY_CLASSES}")


def fixed_policy(name: str, action_scale: float = 6.0, action: str = "temperature"):
    """One of :data:`FIXED_POLICIES` by name."""
    if name not in FIXED_POLICIES:
        raise ValueError(f"fixed policy {name!r}: expected one of {sorted(FIXED_POLICIES)}")
    return policy_from_spec({"name": name, **FIXED_POLICIES[name]}, action_scale, action)
