"""RLKD's rollout buffer: SB3's, with every instance's reward and advantage."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.buffers import RolloutBuffer

from agents.rlkd.calibration import instance_advantages


class InstanceRolloutBuffer(RolloutBuffer):
    """SB3's rollout buffer with one value, log-probability, reward share, advantage and return per
    instance: arrays of shape (n_steps, n_envs, B). ``rewards`` keep the env's batch rewards; SB3's
    sampling flattens the per-instance arrays to one PPO sample per instance."""

    def __init__(self, *args: Any, reward_scale: float = 1.0, **kwargs: Any):
        self.reward_scale = float(reward_scale)
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        super().reset()
        shape = (self.buffer_size, self.n_envs, self.action_dim)
        for name in ("values", "log_probs", "advantages", "returns", "instance_rewards"):
            setattr(self, name, np.zeros(shape, dtype=np.float32))
        self.last_values = self.last_dones = None

    def add(self, obs, action, reward, episode_start, value: torch.Tensor, log_prob: torch.Tensor) -> None:
        self.observations[self.pos] = np.array(obs)
        self.actions[self.pos] = np.array(action).reshape(self.n_envs, self.action_dim)
        self.rewards[self.pos] = np.array(reward)
        self.episode_starts[self.pos] = np.array(episode_start)
        self.values[self.pos] = value.cpu().numpy().reshape(self.n_envs, self.action_dim)
        self.log_probs[self.pos] = log_prob.cpu().numpy().reshape(self.n_envs, self.action_dim)
        self.pos += 1
        self.full = self.pos == self.buffer_size

    @property
    def batch_rewards(self) -> np.ndarray:
        """The env's rewards times ``reward_scale`` (T, E): what the advantages are computed on."""
        return self.rewards * self.reward_scale

    def compute_returns_and_advantage(self, last_values: torch.Tensor, dones: np.ndarray) -> None:
        self.last_values = last_values.cpu().numpy().reshape(self.n_envs, self.action_dim)
        self.last_dones = np.asarray(dones, dtype=np.float32)
        self.set_instance_rewards(None)

    def set_instance_rewards(self, instance_rewards: np.ndarray | None) -> None:
        """Use these per-instance rewards (T, E, B; they must sum to the scaled batch rewards), or the equal
        split R/B for ``None``, and recompute the advantages and returns."""
        rewards = self.batch_rewards
        if instance_rewards is None:
            instance_rewards = np.repeat(rewards[..., None] / self.action_dim, self.action_dim, axis=-1)
        elif not np.allclose(instance_rewards.sum(axis=-1), rewards, rtol=1e-4, atol=1e-5):
            raise ValueError("instance rewards must sum to each batch's reward")
        self.instance_rewards = instance_rewards.astype(np.float32)
        self.advantages, self.returns = instance_advantages(
            rewards, self.instance_rewards, self.values, self.episode_starts, self.last_values, self.last_dones,
            self.gamma, self.gae_lambda,
        )  # fmt: skip


