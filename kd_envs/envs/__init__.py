"""Gymnasium environments, one file each."""

from kd_envs.envs.temperature_kd import TemperatureKDEnv, action_to_temperature, temperature_to_action

__all__ = ["TemperatureKDEnv", "action_to_temperature", "temperature_to_action"]
