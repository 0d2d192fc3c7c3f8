"""IQ and IQ-RE (Zhang et al.): DQN with context division, one Q head per context, and distillation
onto the other heads. ``iq.py`` holds the algorithms, ``policies.py`` the networks and the context
model, ``buffers.py`` the replay buffer with contexts."""

from agents.iq.buffers import ContextReplayBuffer, ContextReplayBufferSamples
from agents.iq.iq import IQ, IQRE, head_distillation_loss
from agents.iq.policies import IQCnnPolicy, IQPolicy, MultiHeadQNetwork, OnlineKMeans

__all__ = ["IQ", "IQRE", "IQPolicy", "IQCnnPolicy", "MultiHeadQNetwork", "OnlineKMeans", "ContextReplayBuffer",
           "ContextReplayBufferSamples", "head_distillation_loss"]  # fmt: skip
