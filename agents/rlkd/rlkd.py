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

from agents.rlkd.buffers import InstanceRolloutBuffer
from agents.rlkd.calibration import calibrate, reward_corrector_loss, state_updater_loss
from agents.rlkd.policies import RLKDPolicy


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
            raise ValueError(f"RLKD: observation {obs} and action {act}; expected a (B, F) Box and a (B,) Box (RLKD "
                             "sets one temperature per instance: TemperatureKD-v0's action='temperature')")  # fmt: skip
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
