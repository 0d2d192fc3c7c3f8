"""Gymnasium environments, one file each."""

from kd_envs.envs.n2n_compress import N2NCompressEnv, compression_reward
from kd_envs.envs.temperature_kd import TemperatureKDEnv, action_to_temperature, temperature_to_action

__all__ = ["N2NCompressEnv", "TemperatureKDEnv", "compression_reward", "action_to_temperature", "temperature_to_action"]
