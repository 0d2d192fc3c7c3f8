"""An SB3 actor-critic policy for per-instance actions: one small network shared by every instance.

TemperatureKD-v0 observes a batch as a (B, F) array and takes one action per instance, shape (B,).
SB3's ``MlpPolicy`` flattens the batch and learns B separate output units; each then sees only its
own 1/B share of the reward's dependence on the action, and the same network cannot serve another
batch size. ``InstancePolicy`` applies one MLP to every instance's row instead (the shape of the
instance-temperature paper's agent): the actor maps each row to that instance's action mean, the
critic averages the per-instance features over the batch before its value head, and one shared
log-std sets the exploration noise. Use it with PPO or A2C (``policy: InstancePolicy``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class InstanceFeaturesExtractor(BaseFeaturesExtractor):
    """Keeps the (B, F) layout of the observation: the features of one instance are its row."""

    def __init__(self, observation_space: spaces.Box):
        if len(observation_space.shape) != 2:
            raise ValueError(
                f"InstancePolicy: observation shape {observation_space.shape}; expected (instances, features)"
            )
        super().__init__(observation_space, features_dim=observation_space.shape[1])

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return observations


def _instance_mlp(in_dim: int, sizes: list[int], activation_fn: type[nn.Module]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_dim, size), activation_fn()]
        in_dim = size
    return nn.Sequential(*layers), in_dim


class InstanceMlpExtractor(nn.Module):
    """Per-instance actor and critic trunks (``nn.Linear`` acts on the last dim, so on each row). The
    critic's features are averaged over the batch (one value per batch) unless ``pool_critic=False``
    (one value per instance, as RLKD's critic)."""

    def __init__(
        self,
        feature_dim: int,
        net_arch: list[int] | dict[str, list[int]],
        activation_fn: type[nn.Module],
        pool_critic: bool = True,
    ):
        super().__init__()
        self.pool_critic = pool_critic
        if isinstance(net_arch, dict):
            pi, vf = net_arch.get("pi", []), net_arch.get("vf", [])
        else:
            pi, vf = net_arch, net_arch
        self.policy_net, self.latent_dim_pi = _instance_mlp(feature_dim, list(pi), activation_fn)
        self.value_net, self.latent_dim_vf = _instance_mlp(feature_dim, list(vf), activation_fn)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy_net(features)  # (N, B, latent_dim_pi)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        latent = self.value_net(features)  # (N, B, latent_dim_vf)
        return latent.mean(dim=1) if self.pool_critic else latent


class InstanceActionHead(nn.Module):
    """(N, B, latent) -> (N, B·k): the same linear map gives every instance its k action means (k = 1: one
    temperature; k = 2: a temperature and a distillation weight), flattened instance by instance as SB3
    flattens a (B, k) Box action."""

    def __init__(self, latent_dim: int, per_instance: int = 1):
        super().__init__()
        self.linear = nn.Linear(latent_dim, per_instance)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.linear(latent).flatten(start_dim=-2)


class InstancePolicy(ActorCriticPolicy):
    """:class:`~stable_baselines3.common.policies.ActorCriticPolicy` whose actor and critic share their
    weights across the instances of the observed batch. Same arguments as ``MlpPolicy`` (``net_arch``
    sizes the per-instance trunks); gSDE is not supported. Needs a (B, F) Box observation and a (B,) or
    (B, k) Box action (k actions per instance, each with its own shared log-std)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule, **kwargs: Any):
        if kwargs.get("use_sde"):
            raise ValueError("InstancePolicy: use_sde=True is not supported")
        if not (
            isinstance(observation_space, spaces.Box)
            and isinstance(action_space, spaces.Box)
            and len(observation_space.shape) == 2
            and action_space.shape[:1] == observation_space.shape[:1]
            and len(action_space.shape) in (1, 2)
        ):
            raise ValueError(
                f"InstancePolicy: observation {observation_space} and action {action_space}; expected a Box of "
                "shape (B, F) and a Box of shape (B,) or (B, k)"
            )
        kwargs.setdefault("features_extractor_class", InstanceFeaturesExtractor)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = InstanceMlpExtractor(self.features_dim, self.net_arch, self.activation_fn)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        # Replace the B-output head and B log-stds made by the parent with shared ones, then give the
        # optimizer the final parameters.
        per_instance = self.action_space.shape[1] if len(self.action_space.shape) == 2 else 1
        self.action_net = InstanceActionHead(self.mlp_extractor.latent_dim_pi, per_instance)
        self.log_std = nn.Parameter(torch.full((per_instance,), float(self.log_std_init)))
        if self.ortho_init:
            self.action_net.apply(partial(self.init_weights, gain=0.01))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)


# -- networks -------------------------------------------------------------------------------------
    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor):
        # The k shared log-stds, repeated for every instance in the flattened (B·k) order of the means.
        mean_actions = self.action_net(latent_pi)
        log_std = self.log_std.repeat(mean_actions.shape[-1] // self.log_std.shape[0])
        return self.action_dist.proba_distribution(mean_actions, log_std)


class RewardCorrector(nn.Module):
    """C: an instance's predicted reward from its state and (clipped) action, (N, B, F) + (N, B) -> (N, B)."""

    def __init__(self, n_features: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features + 1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))  # fmt: skip

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([states, actions[..., None]], dim=-1)).squeeze(-1)


class StateUpdater(nn.Module):
    """U: gates each state feature, s̃ = s ⊙ sigmoid(MLP(s)); a linear head on the batch's mean s̃
    predicts the batch's return (its training signal)."""

    def __init__(self, n_features: int, hidden: int = 32):
        super().__init__()
        self.gate_net = nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, n_features))
        # Start nearly open (gate ≈ 0.95), so an untrained U leaves the state as it is.
        nn.init.zeros_(self.gate_net[-1].weight)
        nn.init.constant_(self.gate_net[-1].bias, 3.0)
        self.return_head = nn.Linear(n_features, 1)

    def gates(self, states: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate_net(states))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return states * self.gates(states)

    def predict_return(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, B, F) -> the N batches' predicted returns and the gates."""
        gates = self.gates(states)
        return self.return_head((states * gates).mean(dim=-2)).squeeze(-1), gates


class RLKDPolicy(InstancePolicy):
    """:class:`InstancePolicy` with a per-instance critic, per-instance log-probabilities and entropies
    (one PPO sample per instance), the state updater U in front of both heads (``state_updater=True``)
    and the reward corrector C (``reward_corrector=True``). The critic learns at ``critic_lr_scale`` times
    the actor's rate (the authors: Adam 1e-4 actor, 1e-3 critic); U and C have optimizers of their own,
    held by :class:`RLKD`."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule,
        state_updater: bool = True,
        reward_corrector: bool = True,
        critic_lr_scale: float = 10.0,
        **kwargs: Any,
    ):
        self._use_state_updater, self._use_reward_corrector = state_updater, reward_corrector
        self.critic_lr_scale = float(critic_lr_scale)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(state_updater=self._use_state_updater, reward_corrector=self._use_reward_corrector,
                    critic_lr_scale=self.critic_lr_scale)  # fmt: skip
        return data

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = InstanceMlpExtractor(
            self.features_dim, self.net_arch, self.activation_fn, pool_critic=False
        )

    def _build(self, lr_schedule) -> None:
        n_features = self.observation_space.shape[-1]
        self.state_updater = StateUpdater(n_features) if self._use_state_updater else None
        self.reward_corrector = RewardCorrector(n_features) if self._use_reward_corrector else None
        super()._build(lr_schedule)
        critic = [*self.mlp_extractor.value_net.parameters(), *self.value_net.parameters()]
        own = {id(p) for m in (self.state_updater, self.reward_corrector) if m is not None for p in m.parameters()}
        own |= {id(p) for p in critic}
        actor = [p for p in self.parameters() if id(p) not in own]
        lr, scale = lr_schedule(1), self.critic_lr_scale
        self.optimizer = self.optimizer_class(
            [{"params": actor, "lr": lr, "lr_scale": 1.0}, {"params": critic, "lr": lr * scale, "lr_scale": scale}],
            **self.optimizer_kwargs,
        )

    def extract_features(self, obs, features_extractor=None) -> torch.Tensor:
        features = super().extract_features(obs, features_extractor)
        if self.state_updater is not None:
            with torch.no_grad():  # U is fitted by its own loss, never by PPO's
                features = self.state_updater(features)
        return features

    def _instance_outputs(self, obs: torch.Tensor):
        latent_pi, latent_vf = self.mlp_extractor(self.extract_features(obs))
        values = self.value_net(latent_vf).squeeze(-1)  # (N, B)
        return self._get_action_dist_from_latent(latent_pi), values

    def forward(self, obs: torch.Tensor, deterministic: bool = False):
        distribution, values = self._instance_outputs(obs)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, values, distribution.distribution.log_prob(actions)  # per instance: (N, B)

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor):
        distribution, values = self._instance_outputs(obs)
        normal = distribution.distribution
        return values.flatten(), normal.log_prob(actions).flatten(), normal.entropy().flatten()

    def predict_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self._instance_outputs(obs)[1]

    def get_distribution(self, obs: torch.Tensor):
        # SB3's version skips extract_features (and so U); predict() acts through this.
        return self._get_action_dist_from_latent(self.mlp_extractor.forward_actor(self.extract_features(obs)))


