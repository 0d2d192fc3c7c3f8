"""IQ's replay buffer: SB3's, with the context of each transition's two states."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize


# -- replay buffer with contexts -------------------------------------------------------------------
class ContextReplayBufferSamples(NamedTuple):
    """SB3's ReplayBufferSamples and each sample's context ω(s_t) and next context ω(s_{t+1}), (B,)."""

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor | None = None
    contexts: th.Tensor | None = None
    next_contexts: th.Tensor | None = None


class ContextReplayBuffer(ReplayBuffer):
    """SB3's replay buffer with the contexts of each transition's two states, ``contexts`` (ω(s_t)) and
    ``next_contexts`` (ω(s_{t+1})), each (buffer_size, n_envs) int64, stored when it is added: through
    ``add(..., contexts=..., next_contexts=...)`` or, for SB3's ``_store_transition`` (which calls
    ``add`` without them), set just before with :meth:`set_pending_contexts`. The memory-optimised
    variant is not supported."""

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
    ):
        if optimize_memory_usage:
            raise ValueError("ContextReplayBuffer: optimize_memory_usage=True; expected False (not supported)")
        super().__init__(
            buffer_size, observation_space, action_space, device, n_envs, False, handle_timeout_termination
        )
        self.contexts = np.zeros((self.buffer_size, self.n_envs), dtype=np.int64)
        self.next_contexts = np.zeros((self.buffer_size, self.n_envs), dtype=np.int64)
        self._pending_contexts: tuple[np.ndarray, np.ndarray] | None = None

    def set_pending_contexts(self, contexts: np.ndarray, next_contexts: np.ndarray) -> None:
        """The contexts ω(s_t) and ω(s_{t+1}), each (n_envs,), of the transitions of the next :meth:`add`."""
        self._pending_contexts = (np.asarray(contexts, dtype=np.int64).reshape(self.n_envs),
                                  np.asarray(next_contexts, dtype=np.int64).reshape(self.n_envs))  # fmt: skip

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
        contexts: np.ndarray | None = None,
        next_contexts: np.ndarray | None = None,
    ) -> None:
        pending, self._pending_contexts = self._pending_contexts, None
        if contexts is None and next_contexts is None and pending is not None:
            contexts, next_contexts = pending
        if contexts is None or next_contexts is None:
            raise ValueError(
                "ContextReplayBuffer.add: no contexts; pass contexts= and next_contexts= or call set_pending_contexts"
            )
        self.contexts[self.pos] = np.asarray(contexts, dtype=np.int64).reshape(self.n_envs)
        self.next_contexts[self.pos] = np.asarray(next_contexts, dtype=np.int64).reshape(self.n_envs)
        super().add(obs, next_obs, action, reward, done, infos)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ContextReplayBufferSamples:
        # ReplayBuffer's, with the contexts drawn at the same env indices.
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        data = (
            self._normalize_obs(self.observations[batch_inds, env_indices, :], env),
            self.actions[batch_inds, env_indices, :],
            self._normalize_obs(self.next_observations[batch_inds, env_indices, :], env),
            (self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])).reshape(-1, 1),
            self._normalize_reward(self.rewards[batch_inds, env_indices].reshape(-1, 1), env),
        )
        return ContextReplayBufferSamples(
            *map(self.to_torch, data),
            # Fancy indexing made new arrays: the tensors may share their memory (no second copy).
            contexts=self.to_torch(self.contexts[batch_inds, env_indices], copy=False),
            next_contexts=self.to_torch(self.next_contexts[batch_inds, env_indices], copy=False),
        )


