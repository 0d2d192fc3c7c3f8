"""Feature extractors for our agents' policies, in SB3's ``BaseFeaturesExtractor`` form."""

from __future__ import annotations

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class MinAtarCNN(BaseFeaturesExtractor):
    """The MinAtar paper's DQN trunk (Young & Tian, 2019): one 3×3 convolution of 16 channels, stride 1,
    then a fully connected layer of ``features_dim`` (128) units, both ReLU.

    :param observation_space: a channel-first ``(C, H, W)`` Box (MinAtar: ``(C, 10, 10)``)
    """

    def __init__(self, observation_space: spaces.Box, features_dim: int = 128):
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
            raise ValueError(f"MinAtarCNN: observation space {observation_space}; expected a (C, H, W) Box")
        super().__init__(observation_space, features_dim)
        channels, height, width = observation_space.shape
        self.cnn = nn.Sequential(nn.Conv2d(channels, 16, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(16 * (height - 2) * (width - 2), features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(self.cnn(observations.float()))


# By the name a hyperparameter file gives them.
FEATURES_EXTRACTORS: dict[str, type[BaseFeaturesExtractor]] = {"MinAtarCNN": MinAtarCNN}
