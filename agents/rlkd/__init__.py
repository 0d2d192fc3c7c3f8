"""RLKD (Yuan et al.): PPO that picks a temperature per instance, with a reward corrector and a state
updater. ``rlkd.py`` holds the algorithm, ``policies.py`` the per-instance policies, ``buffers.py`` the
rollout buffer with per-instance rewards, ``calibration.py`` the reward calibration as pure functions."""

from agents.rlkd.buffers import InstanceRolloutBuffer
from agents.rlkd.policies import InstancePolicy, RLKDPolicy
from agents.rlkd.rlkd import RLKD

__all__ = ["RLKD", "RLKDPolicy", "InstancePolicy", "InstanceRolloutBuffer"]
