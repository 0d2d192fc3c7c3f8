"""RLKD: the instance-temperature agent of Zhang et al., *Instance Temperature Knowledge Distillation*
(2024), on SB3's PPO.

One actor, shared by every instance of a batch, maps an instance's state (teacher confidence, student
confidence, student uncertainty) to a Gaussian over its raw temperature action; a critic, also shared,
values each instance. PPO-clip trains both, with one sample per *instance* rather than per batch.

The batch's reward (the student's gain after training on the whole batch) arrives once per batch. The
**instance reward calibration** gives each instance its own share:

* the reward corrector C maps an instance's state and action to its predicted reward r̂_i and is fitted
  on every rollout with the paper's loss, α·(Σ_i r̂_i − R)² + β/n·Σ_i (r̂_i − R/n)², per batch
  (:func:`reward_corrector_loss`). Our reading of the second term: the return an instance can claim
  without other information is the equal share R/n; the term keeps C near the equal split unless the
  states and actions explain how batch rewards vary;
* the calibrated rewards r_i = r̂_i + (R − Σ_j r̂_j)/n sum to R exactly (:func:`calibrate`: the residual
  is spread evenly, as RUDDER's reward redistribution does). The authors' code computes such rewards
  (a 4→16→1 "redistribution" net) but never uses them: it writes them to the buffer after the path was
  closed, so its advantages stay those of the uncalibrated batch reward. Ours uses them, as the paper
  describes;
* each instance's advantage is the batch's GAE plus its own deviation, A_i = Ā + (n·r_i − R) −
  (V_i − V̄) (:func:`instance_advantages`; without calibration r_i = R/n and only the per-instance
  baseline differs).

The state updater U gates the state the actor and critic see, s̃ = s ⊙ g(s) with g = sigmoid(MLP(s)),
and is fitted after each PPO update with its return-prediction loss: a linear head on the batch's
mean s̃ predicts the batch's λ-return, plus an L1 cost on the gates (the authors' critical-state
detector, :func:`state_updater_loss`). It changes only between PPO updates, so the old and new
log-probabilities of one update see the same states.

The **efficient exploration** is a property of the training env: ``TemperatureKD-v0``'s
``exploration`` option (``"entropy_mixup"``, the paper's, in the YAML; ``"entropy_mixup_authors"`` is the
authors' code's purification). The YAML's ``env_kwargs`` apply to the training env only; entries
evaluate on the plain env, like every other agent.

Where the authors' code (Zhengbo-Zhang/ITKD, ``utils/trainer.py``) does otherwise, and what we do:

* its RL starts after 19 warm-up epochs at T = 4 (of 240); the env's ``warmup_epochs`` does this
  (0 by default; the study measures 3 of 40);
* it samples every temperature from the Gaussian policy in every epoch, during the whole distillation;
  our entries act with the policy's mean (``deterministic=True``), as every agent on the leaderboard;
* it updates the policy only in every 20th epoch, from that epoch's batches; we update after every
  rollout;
* its reward is the macro accuracy of consecutive training batches, acc_k − acc_{k−1}, credited one
  batch late and scaled by a cosine of the epoch (×10 / ×5 / ×2 by stage); ours is the env's reward
  (held-out by default, sigmoid(epoch / n) as the paper writes);
* its actor and critic are 3→256→256 (actor mean through tanh, state-independent std); ours are 64×64
  (see the YAML); its log-probability is evaluated at the squashed temperature, not at the raw sample;
* its critical-state detector masks the observations of the PPO update only (old log-probabilities
  were computed unmasked); our U gates the state both before and during the update.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from torch import nn
from torch.nn import functional as F

from agents.instance_policy import InstanceMlpExtractor, InstancePolicy


# -- the calibration as pure functions -------------------------------------------------------------
def calibrate(predicted: torch.Tensor, batch_rewards: torch.Tensor) -> torch.Tensor:
    """Per-instance rewards (N, B) that sum to each batch's reward (N,): C's predictions plus an equal
    share of what they miss."""
    n = predicted.shape[-1]
    return predicted + (batch_rewards - predicted.sum(dim=-1))[..., None] / n


def reward_corrector_loss(
    predicted: torch.Tensor, batch_rewards: torch.Tensor, alpha: float = 1.0, beta: float = 0.5
) -> torch.Tensor:
    """α·(Σ_i r̂_i − R)² + β/n·Σ_i (r̂_i − R/n)², averaged over the N batches of (N, B) predictions."""
    n = predicted.shape[-1]
    sum_error = (predicted.sum(dim=-1) - batch_rewards).pow(2)
    share_error = (predicted - batch_rewards[..., None] / n).pow(2).sum(dim=-1) / n
    return (alpha * sum_error + beta * share_error).mean()


def state_updater_loss(
    predicted_returns: torch.Tensor, returns: torch.Tensor, gates: torch.Tensor, sparsity: float = 5e-3
) -> torch.Tensor:
    """Squared error of the batches' predicted λ-returns plus ``sparsity`` times the mean gate (L1: the
    gates are positive)."""
    return F.mse_loss(predicted_returns, returns) + sparsity * gates.mean()


def instance_advantages(
    batch_rewards: np.ndarray,
    instance_rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    last_dones: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE per instance. Shapes: rewards, episode starts (T, E); instance rewards, values (T, E, B);
    last values (E, B); last dones (E,). The batch's GAE Ā_t runs on its reward R_t and mean value V̄_t;
    instance i adds its calibrated deviation: A_ti = Ā_t + (B·r_ti − R_t) − (V_ti − V̄_t). Returns the
    advantages and the critic's targets A + V, both (T, E, B)."""
    n_steps, n = len(batch_rewards), values.shape[-1]
    mean_values = values.mean(axis=-1)
    batch_advantages = np.zeros_like(batch_rewards)
    last_gae = np.zeros_like(batch_rewards[0])
    for t in reversed(range(n_steps)):
        if t == n_steps - 1:
            not_done, next_value = 1.0 - last_dones, last_values.mean(axis=-1)
        else:
            not_done, next_value = 1.0 - episode_starts[t + 1], mean_values[t + 1]
        delta = batch_rewards[t] + gamma * next_value * not_done - mean_values[t]
        last_gae = delta + gamma * gae_lambda * not_done * last_gae
        batch_advantages[t] = last_gae
    advantages = (
        batch_advantages[..., None]
        + (n * instance_rewards - batch_rewards[..., None])
        - (values - mean_values[..., None])
    )
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)


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


# -- networks -------------------------------------------------------------------------------------
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


# -- the algorithm --------------------------------------------------------------------------------
class RLKD(PPO):
    """PPO with RLKD's per-instance samples, instance reward calibration and state updater.

    :param reward_calibration: fit the reward corrector C and train on calibrated instance rewards
        (False: every instance gets the equal share R/B)
    :param state_updater: put the state updater U in front of the actor and critic
    :param reward_scale: factor on the env's rewards before GAE (100: gains in accuracy points)
    :param calibration_alpha: α, weight of C's sum term
    :param calibration_beta: β, weight of C's per-instance term
    :param corrector_learning_rate: Adam's rate for C
    :param updater_learning_rate: Adam's rate for U
    :param calibration_epochs: passes over each rollout when fitting C and U
    :param updater_sparsity: weight of U's L1 cost on its gates
    :param kwargs: :class:`~stable_baselines3.PPO`'s arguments (``policy`` defaults to ``"RLKDPolicy"``)
    """

    policy_aliases = {"RLKDPolicy": RLKDPolicy}

    def __init__(
        self,
        policy: str | type[RLKDPolicy] = "RLKDPolicy",
        env=None,
        learning_rate: float = 1e-4,
        reward_calibration: bool = True,
        state_updater: bool = True,
        reward_scale: float = 100.0,
        calibration_alpha: float = 1.0,
        calibration_beta: float = 0.5,
        corrector_learning_rate: float = 1e-3,
        updater_learning_rate: float = 1e-3,
        calibration_epochs: int = 5,
        updater_sparsity: float = 5e-3,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ):
        self.reward_calibration, self.use_state_updater = bool(reward_calibration), bool(state_updater)
        self.reward_scale = float(reward_scale)
        self.calibration_alpha, self.calibration_beta = float(calibration_alpha), float(calibration_beta)
        self.corrector_learning_rate, self.updater_learning_rate = corrector_learning_rate, updater_learning_rate
        self.calibration_epochs, self.updater_sparsity = int(calibration_epochs), float(updater_sparsity)
        if (
            self.reward_scale <= 0
            or self.calibration_epochs < 1
            or min(self.calibration_alpha, self.calibration_beta) < 0
        ):
            raise ValueError(
                f"RLKD: reward_scale={reward_scale}, calibration_epochs={calibration_epochs}, "
                f"calibration_alpha={calibration_alpha}, calibration_beta={calibration_beta}; expected "
                "reward_scale > 0, calibration_epochs >= 1 and weights >= 0"
            )
        kwargs["rollout_buffer_class"] = InstanceRolloutBuffer
        kwargs["rollout_buffer_kwargs"] = {**(kwargs.get("rollout_buffer_kwargs") or {}), "reward_scale": reward_scale}
        super().__init__(policy, env, learning_rate=learning_rate, _init_setup_model=False, **kwargs)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        obs, act = self.observation_space, self.action_space
        if not (isinstance(obs, spaces.Box) and isinstance(act, spaces.Box) and len(obs.shape) == 2
                and act.shape == obs.shape[:1]):  # fmt: skip
            raise ValueError(f"RLKD: observation {obs} and action {act}; expected a (B, F) Box and a (B,) Box")
        self.policy_kwargs = {**self.policy_kwargs, "state_updater": self.use_state_updater,
                              "reward_corrector": self.reward_calibration}  # fmt: skip
        super()._setup_model()
        corrector, updater = self.policy.reward_corrector, self.policy.state_updater
        self.corrector_optimizer = self.updater_optimizer = None
        if corrector is not None:
            self.corrector_optimizer = torch.optim.Adam(corrector.parameters(), lr=self.corrector_learning_rate)
        if updater is not None:
            self.updater_optimizer = torch.optim.Adam(updater.parameters(), lr=self.updater_learning_rate)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, tensors = super()._get_torch_save_params()
        extra = [name for name, on in (("corrector_optimizer", self.reward_calibration),
                                       ("updater_optimizer", self.use_state_updater)) if on]  # fmt: skip
        return state_dicts + extra, tensors

    def _update_learning_rate(self, optimizers) -> None:
        super()._update_learning_rate(optimizers)
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for group in optimizer.param_groups:
                group["lr"] *= group.get("lr_scale", 1.0)

    def _fit(self, optimizer: torch.optim.Optimizer, n: int, loss_of) -> float:
        """``calibration_epochs`` passes of minibatch steps on ``loss_of(indices)`` over ``n`` rollout steps;
        returns the mean loss."""
        losses, size = [], min(self.batch_size, n)
        for _ in range(self.calibration_epochs):
            # SB3 seeds NumPy's global generator (set_random_seed); its rollout buffer samples from it too.
            order = np.random.permutation(n)
            for i in range(0, n, size):
                loss = loss_of(order[i : i + size])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
        return float(np.mean(losses))

    def _rollout_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        buffer, n = self.rollout_buffer, self.action_space.shape[0]
        states = torch.as_tensor(buffer.observations.reshape(-1, n, self.observation_space.shape[-1]))
        low, high = self.action_space.low, self.action_space.high
        actions = torch.as_tensor(np.clip(buffer.actions.reshape(-1, n), low, high))  # what the env applied
        return states, actions, torch.as_tensor(buffer.batch_rewards.reshape(-1))

    def _fit_reward_corrector(self, states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> None:
        corrector = self.policy.reward_corrector

        def loss_of(idx: np.ndarray) -> torch.Tensor:
            predicted = corrector(states[idx], actions[idx])
            return reward_corrector_loss(predicted, rewards[idx], self.calibration_alpha, self.calibration_beta)

        loss = self._fit(self.corrector_optimizer, len(rewards), loss_of)
        with torch.no_grad():
            calibrated = calibrate(corrector(states, actions), rewards)
        buffer = self.rollout_buffer
        buffer.set_instance_rewards(calibrated.numpy().reshape(buffer.buffer_size, buffer.n_envs, -1))
        deviation = calibrated.shape[-1] * calibrated - rewards[:, None]
        self.logger.record("rlkd/corrector_loss", loss)
        self.logger.record("rlkd/instance_reward_deviation", deviation.std().item())

    def _fit_state_updater(self, states: torch.Tensor, returns: torch.Tensor) -> None:
        updater = self.policy.state_updater

        def loss_of(idx: np.ndarray) -> torch.Tensor:
            predicted, gates = updater.predict_return(states[idx])
            return state_updater_loss(predicted, returns[idx], gates, self.updater_sparsity)

        loss = self._fit(self.updater_optimizer, len(returns), loss_of)
        with torch.no_grad():
            gates = updater.gates(states).mean(dim=(0, 1))
        self.logger.record("rlkd/updater_loss", loss)
        for name, gate in zip(("teacher_confidence", "student_confidence", "student_uncertainty"), gates.tolist()):
            self.logger.record(f"rlkd/gate_{name}", gate)

    def train(self) -> None:
        # The rollout in its own order, before PPO's sampling flattens the buffer.
        states, actions, rewards = self._rollout_tensors()
        if self.reward_calibration:
            self._fit_reward_corrector(states, actions, rewards)
        returns = torch.as_tensor(self.rollout_buffer.returns.mean(axis=-1).reshape(-1))
        self.logger.record("rlkd/action_mean", actions.mean().item())
        super().train()
        if self.use_state_updater:
            self._fit_state_updater(states, returns)
