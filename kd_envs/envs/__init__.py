"""Gymnasium environments, one file each."""

from kd_envs.envs.interference_atari import InterferenceAtariEnv, make_interference_atari
from kd_envs.envs.interference_cartpole import (
    CARTPOLE_CONFLICTING_CONTEXT_NAMES,
    CARTPOLE_CONFLICTING_CONTEXTS,
    CARTPOLE_CONTEXT_NAMES,
    CARTPOLE_CONTEXTS,
    InterferenceCartPoleEnv,
    make_interference_cartpole,
)
from kd_envs.envs.n2n_compress import N2NCompressEnv, compression_reward
from kd_envs.envs.temperature_kd import TemperatureKDEnv, action_to_temperature, temperature_to_action

__all__ = [
    "CARTPOLE_CONFLICTING_CONTEXTS",
    "CARTPOLE_CONFLICTING_CONTEXT_NAMES",
    "CARTPOLE_CONTEXTS",
    "CARTPOLE_CONTEXT_NAMES",
    "InterferenceAtariEnv",
    "InterferenceCartPoleEnv",
    "N2NCompressEnv",
    "TemperatureKDEnv",
    "action_to_temperature",
    "compression_reward",
    "make_interference_atari",
    "make_interference_cartpole",
    "temperature_to_action",
]
