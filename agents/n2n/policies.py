"""N2N's policy: the two recurrent networks that act on N2NCompress-v0 observations."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch.distributions import Categorical

# The observation keys of N2NCompress-v0 (see the env's docstring).
OBSERVATION_KEYS: tuple[str, ...] = ("layers", "stage", "position", "kept", "shrink", "action_mask")
# Stands in for -inf on invalid actions: a true -inf makes Categorical.entropy() 0 * -inf = NaN (SB3's
# MaskableCategorical uses the same value).
MASKED_LOGIT = -1e8
# The observation reports a chosen shrink factor by its value, stored as float32; a value within this
# distance of a factor counts as that factor.
FACTOR_TOLERANCE = 1e-4
# The constructor arguments that size the networks: a saved policy cannot be loaded with others.
ARCHITECTURE_FIELDS = ("hidden_size", "num_layers", "shrink_num_layers")


class N2NPolicy(BasePolicy):
    """The two N2N policy networks, acting on N2NCompress-v0 observations.

    Removal (stage 1): a bidirectional LSTM over the descriptors of all teacher layers; its output at the
    current layer goes through a linear head to 2 logits (keep, remove). Shrinkage (stage 2): an LSTM over
    the kept layers in teacher order, whose input per layer is its descriptor and the one-hot shrink
    factor index chosen for the previous kept layer (zeros for the first); its output at the current layer
    goes through a linear head to K logits. The logits are padded to the action space's size
    ``max(2, K)`` and masked with the observation's ``action_mask``. No parameter depends on the number
    of teacher layers, so the weights drive any teacher with the same D and K.

    Non-deterministic actions are drawn with ``action_generator`` (the algorithm gives its policy its
    own seeded ``torch.Generator``, so that a seeded agent samples the same episodes on every run and
    leaves torch's global RNG alone); None draws them from torch's global RNG.

    :param observation_space: N2NCompress-v0's Dict observation space (``layers`` of shape (layers, D)).
    :param action_space: ``Discrete(max(2, K))``.
    :param lr_schedule: the learning rate schedule; its value at progress 1 is the optimizer's step size.
    :param shrink_factors: the env's K shrink factors, used to read chosen factor indices back from the
        observation's ``shrink`` values (not saved with the weights: a transfer env supplies its own).
    :param hidden_size: units per LSTM direction.
    :param num_layers: layers of the removal biLSTM.
    :param shrink_num_layers: layers of the shrink LSTM.
    :param optimizer_class: the optimizer (Adam, as in the paper).
    :param optimizer_kwargs: extra arguments of the optimizer.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        shrink_factors: tuple[float, ...],
        hidden_size: int = 30,
        num_layers: int = 2,
        shrink_num_layers: int = 1,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__(observation_space, action_space, optimizer_class=optimizer_class,
                         optimizer_kwargs=optimizer_kwargs)  # fmt: skip
        descriptor_size = observation_space["layers"].shape[-1]
        self.descriptor_size = int(descriptor_size)
        self.shrink_factor_values = tuple(float(f) for f in shrink_factors)
        self.num_factors = len(shrink_factors)
        self.action_dim = max(2, self.num_factors)
        self.hidden_size, self.num_layers, self.shrink_num_layers = hidden_size, num_layers, shrink_num_layers
        self.action_generator: torch.Generator | None = None
        self.removal_lstm = nn.LSTM(descriptor_size, hidden_size, num_layers, batch_first=True, bidirectional=True)
        self.removal_head = nn.Linear(2 * hidden_size, 2)
        self.shrink_lstm = nn.LSTM(descriptor_size + self.num_factors, hidden_size, shrink_num_layers, batch_first=True)
        self.shrink_head = nn.Linear(hidden_size, self.num_factors)
        self.register_buffer("shrink_factors", torch.tensor(shrink_factors, dtype=torch.float32), persistent=False)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return dict(
            observation_space=self.observation_space,
            action_space=self.action_space,
            lr_schedule=self._dummy_schedule,
            shrink_factors=self.shrink_factor_values,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            shrink_num_layers=self.shrink_num_layers,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
        )

    def removal_logits(self, layers: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """(B, n, D) descriptors, (B,) current layer -> (B, 2) keep/remove logits."""
        out, _ = self.removal_lstm(layers)
        return self.removal_head(out[torch.arange(len(out), device=out.device), position])

    def shrink_logits(
        self, layers: torch.Tensor, kept: torch.Tensor, shrink: torch.Tensor, position: torch.Tensor
    ) -> torch.Tensor:
        """(B, n, D) descriptors, (B, n) kept flags and shrink values, (B,) current layer -> (B, K) logits."""
        batch, n, _ = layers.shape
        is_kept = kept > 0.5
        # The index of each chosen factor; undecided layers (-1) and removed ones (0) match none.
        distance = (shrink.unsqueeze(-1) - self.shrink_factors).abs()
        chosen = (distance.min(-1).values < FACTOR_TOLERANCE) & is_kept
        factor_one_hot = nn.functional.one_hot(distance.argmin(-1), self.num_factors).float() * chosen.unsqueeze(-1)
        # Kept layers first, in teacher order (a stable sort); the removed ones after them are padding
        # that a forward LSTM never lets reach the earlier outputs.
        order = torch.argsort((~is_kept).to(torch.int8), dim=1, stable=True)
        sequence = torch.gather(layers, 1, order.unsqueeze(-1).expand_as(layers))
        factors = torch.gather(factor_one_hot, 1, order.unsqueeze(-1).expand_as(factor_one_hot))
        previous = torch.cat([factors.new_zeros(batch, 1, self.num_factors), factors[:, :-1]], dim=1)
        out, _ = self.shrink_lstm(torch.cat([sequence, previous], dim=-1))
        # The current layer's place among the kept layers.
        before = torch.arange(n, device=layers.device) < position.unsqueeze(1)
        step = (is_kept & before).sum(1)
        return self.shrink_head(out[torch.arange(batch, device=out.device), step])

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Batched observations (every value with a leading batch dim) -> (B, max(2, K)) masked logits."""
        layers = obs["layers"]
        if layers.dim() != 3 or layers.shape[-1] != self.descriptor_size:
            raise ValueError(
                f"N2NPolicy: layers of shape {tuple(layers.shape)}; expected (batch, layers, {self.descriptor_size})"
            )
        if obs["action_mask"].shape[-1] != self.action_dim:
            raise ValueError(
                f"N2NPolicy: action_mask of size {obs['action_mask'].shape[-1]}; expected {self.action_dim}"
            )
        position = obs["position"].argmax(-1)
        removal = obs["stage"][:, 0] > 0.5
        logits = layers.new_full((len(layers), self.action_dim), MASKED_LOGIT)
        if removal.any():
            logits[removal, :2] = self.removal_logits(layers[removal], position[removal])
        if (~removal).any():
            shrink = ~removal
            logits[shrink, : self.num_factors] = self.shrink_logits(
                layers[shrink], obs["kept"][shrink], obs["shrink"][shrink], position[shrink]
            )
        valid = obs["action_mask"] > 0.5
        # A row that allows nothing (a terminal observation) is left unmasked rather than made NaN.
        valid = valid | ~valid.any(-1, keepdim=True)
        return logits.masked_fill(~valid, MASKED_LOGIT)

    def get_distribution(self, obs: dict[str, torch.Tensor]) -> Categorical:
        # The logits are finite by construction; skipping the argument check saves a tenth of a rollout step.
        return Categorical(logits=self(obs), validate_args=False)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        obs = {k: observation[k].float() for k in OBSERVATION_KEYS}
        probs = self.get_distribution(obs).probs
        if deterministic:
            return probs.argmax(-1)
        # torch.multinomial rather than Categorical.sample(), which cannot take a generator.
        return torch.multinomial(probs.cpu(), 1, generator=self.action_generator).squeeze(-1)


def obs_as_tensor(obs: dict[str, np.ndarray], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """An N2NCompress-v0 observation (or a batch of them) as float32 tensors on ``device``."""
    return {k: torch.as_tensor(np.asarray(obs[k], dtype=np.float32), device=device) for k in OBSERVATION_KEYS}
