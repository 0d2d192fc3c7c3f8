"""The searchers' policy: no network, a uniform draw among the actions valid at each step."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs


class UniformPolicy(BasePolicy):
    """Draws each action uniformly from the valid ones (N2NCompress-v0's ``action_mask``). It has no
    parameters; ``rng`` is the numpy generator it draws with (its algorithm gives it its own seeded one,
    which the algorithm's search shares; None draws from a fresh unseeded one).

    :param observation_space: a Dict observation space with an ``action_mask`` key.
    :param action_space: a Discrete action space.
    """

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Discrete, **kwargs: Any):
        super().__init__(observation_space, action_space, **kwargs)
        self.rng: np.random.Generator = np.random.default_rng()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return dict(observation_space=self.observation_space, action_space=self.action_space)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        return self._predict(obs, deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        masks = observation["action_mask"].cpu().numpy() > 0.5
        return torch.as_tensor([self.rng.choice(np.flatnonzero(m)) for m in masks], dtype=torch.int64)
