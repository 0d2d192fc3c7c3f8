"""IQ: interference-aware deep Q-learning, from *Catastrophic Interference in Reinforcement Learning: A
Solution Based on Context Division and Knowledge Distillation* (Zhang et al.), on SB3's DQN.

Catastrophic interference in DQN: a gradient step on the states of one part of the task changes the
Q-values of states elsewhere. IQ splits the visited state space into k **contexts** and gives each its
own Q head on a shared encoder:

* **context division** (:class:`OnlineKMeans`): the states of a warm-up are buffered, normalised and
  clustered by batch k-means at its end; afterwards each new state joins its nearest centre c, which
  moves by sequential k-means, n_c += 1 and μ_c += (x − μ_c)/n_c. IQ clusters the observation itself;
  IQ-RE (:class:`IQRE`, for pixels) clusters the output of a fixed random Nature-DQN trunk
  (:class:`RandomNatureEncoder`, 50 units, never trained);
* **multi-head Q-network** (:class:`MultiHeadQNetwork`): features → shared MLP → one linear head per
  context. Each state's context is assigned once, when the state is observed (the sequential k-means
  moves then), and a transition is stored with both: {s_t, ω(s_t), a_t, r_t, s_{t+1}, ω(s_{t+1})}
  (:class:`ContextReplayBuffer`, the authors' ``state_labels`` and ``next_state_labels``). The agent
  acts with the head of the current state's context;
* **the loss** (:meth:`IQ.train`): L = L_TD + λ_t·L_KD. L_TD is DQN's Huber loss on the head
  c = ω(s_t) of each sample, with the target r + γ(1 − d)·max_a' Q_target^{c'}(s', a') bootstrapped
  from the head of the *next* state's context c' = ω(s_{t+1}), as the method specifies (a head is only
  fit on its own context's states, so another head's value at s' is not an estimate). L_KD keeps the
  *other* heads where the distillation **anchor** has them on the same (s, a)
  (:func:`head_distillation_loss`), so training one context does not overwrite the others.

What the authors' released code does, and where ours differs (repository
Sweety-dm/Interference-aware-Deep-Q-learning, ``IQ-RE/IQ_dqn_agent.py`` and ``replay_buffer.py``):

* TD target: as theirs, bootstrapped from the head of ``next_state_labels``; their labels are fixed
  when a transition is stored (and all 0 before the k-means), ours are relabelled at the fit;
* the anchor is their target network, copied every 8,000 steps with a gradient step every 4: a lag
  of 2,000 gradient steps. With rl-zoo3's CartPole settings (target copied every 10 env steps, 128
  gradient steps every 256) the target is the online net of the previous training call, which
  anchors nothing across a 10k-step phase. ``anchor_update_interval`` gives the anchor its own lag (a
  third copy of the Q-network, refreshed every N env steps); ``None`` uses the target network;
* their KD term is the Huber loss between the online and target networks' other heads at (s_t, a_t),
  averaged with the TD loss by one ``reduce_mean`` (IQ-Rainbow sums a cross-entropy over the other
  heads); ours sums the Huber terms over the other heads (:func:`head_distillation_loss`);
* their λ is written as 1 − ε but computed once, as a Python float, when the graph is built, where
  ε = 1: λ = 0 and their released agent trains without distillation. ``distillation_weight="1-eps"``
  is the schedule as the paper describes it, a number is a constant λ;
* their heads all call the same layers (k identical heads); ours are k separate heads (one fused
  linear layer, rows per head) stacked on ``dim=1``;
* they cluster the first 20,000 states (their ``min_replay_history``) with k = 4 on the raw 50 random
  features; we standardise each dimension by the warm-up's mean and std first. The warm-up may be
  longer than ``learning_starts`` (theirs is not: they start training when they cluster): until the
  batch k-means every transition is context 0, so head 0 learns alone (L_TD only, λ = 0: the other
  heads have no states of their own yet and are overwritten at the fit), and at the fit every head of
  the online, target and anchor networks starts as a copy of head 0, with the optimizer's state
  (Adam's moments) of the overwritten heads reset to zero.

The context model (encoder and k-means) lives in the policy, beside the two Q-networks and outside
the optimizer, so ``model.predict`` after save/load acts with the same contexts and needs no
algorithm state. Contexts are computed on the observation as the policy sees it (``_last_obs``: the
same array as ``_last_original_obs`` unless a ``VecNormalize`` wrapper is used), so the head that acts
in a state is the head trained on it.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import MaybeCallback
from torch.nn import functional as F

from agents.iq.buffers import ContextReplayBuffer, ContextReplayBufferSamples
from agents.iq.policies import CONTEXT_ENCODERS, NORMALIZATIONS, IQCnnPolicy, IQPolicy, MultiHeadQNetwork

SelfIQ = TypeVar("SelfIQ", bound="IQ")


def taken_action_values(q: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """Every head's Q-value of the taken action: ``q`` (B, k, A) at ``actions`` (B, 1) gives (B, k)."""
    return q.gather(2, actions.long()[:, None, :].expand(-1, q.shape[1], 1)).squeeze(2)


# -- the distillation term as a pure function -----------------------------------------------------
def head_distillation_loss(online_q: th.Tensor, target_q: th.Tensor, contexts: th.Tensor) -> th.Tensor:
    """L_KD: the batch mean of Σ_{h≠c} Huber(Q_online^h(s, a) − Q_target^h(s, a)).

    :param online_q: (B, k) the online network's Q-value of each sample's action at every head
    :param target_q: (B, k) the same from the target network (the heads' earlier outputs)
    :param contexts: (B,) each sample's context c; its own head is left to the TD loss
    """
    per_head = F.smooth_l1_loss(online_q, target_q, reduction="none")
    other_heads = 1.0 - F.one_hot(contexts, online_q.shape[1]).to(per_head.dtype)
    return (per_head * other_heads).sum(dim=1).mean()


# -- the algorithm ---------------------------------------------------------------------------------
class IQ(DQN):
    """DQN with context division, one Q head per context and distillation onto the other heads.

    :param n_contexts: k, the number of contexts (the authors: 4); 1 with ``distillation_weight=0`` is DQN
    :param distillation_weight: λ of L = L_TD + λ·L_KD: ``"1-eps"`` for λ_t = 1 − ε_t (the paper's
        schedule), a constant >= 0, or 0 to train without distillation; λ is 0 until the contexts are fitted
    :param anchor_update_interval: how many env steps the distillation anchor lags: ``None`` for the
        target network (the authors' code), or N >= 1 for a separate copy of the online network
        refreshed every N env steps (as ``target_update_interval`` counts them)
    :param cluster_warmup: number of states buffered before batch k-means; it must fit in the buffer.
        Before the fit every transition is context 0 and λ = 0 (head 0 learns alone, by L_TD); at the
        fit every head starts as a copy of head 0, with the optimizer's state of the copies reset
    :param cluster_normalization: ``"standardize"`` (by the warm-up's mean and std) or ``"none"``
    :param context_encoder: ``"observation"`` (IQ: cluster the observations), ``"random_nature_cnn"``
        (IQ-RE: cluster a fixed random NatureCNN's 50 features, for 84×84 images) or
        ``"random_features"`` (a fixed random copy of the policy's own features extractor with 50
        outputs, e.g. for MinAtar's 10×10 grids)
    :param learning_starts: DQN's, defaulting to 1000 here
    :param kwargs: :class:`~stable_baselines3.DQN`'s arguments; ``n_steps`` > 1, ``optimize_memory_usage``
        and replay buffers other than :class:`ContextReplayBuffer` are not supported

    The k-means, the encoder and the anchor are saved with the policy; the warm-up's buffered states are
    not, so a model saved before its batch k-means starts a new warm-up when it resumes.
    """

    policy_aliases = {"MlpPolicy": IQPolicy, "CnnPolicy": IQCnnPolicy}
    policy: IQPolicy
    q_net: MultiHeadQNetwork
    q_net_target: MultiHeadQNetwork
    replay_buffer: ContextReplayBuffer

    def __init__(
        self,
        policy: str | type[IQPolicy] = "MlpPolicy",
        env=None,
        n_contexts: int = 4,
        distillation_weight: float | str = "1-eps",
        anchor_update_interval: int | None = None,
        cluster_warmup: int = 1000,
        cluster_normalization: str = "standardize",
        context_encoder: str = "observation",
        learning_starts: int = 1000,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ):
        self.n_contexts, self.distillation_weight = n_contexts, distillation_weight
        self.anchor_update_interval = anchor_update_interval
        self.cluster_warmup, self.cluster_normalization = cluster_warmup, cluster_normalization
        self.context_encoder = context_encoder
        owned = {"n_contexts", "context_encoder", "cluster_normalization", "context_seed", "separate_anchor"}
        clash = sorted(owned & set(kwargs.get("policy_kwargs") or {}))
        if clash:
            raise ValueError(
                f"{type(self).__name__}: policy_kwargs sets {clash}; set them as the algorithm's own arguments "
                "(context_seed is its seed, separate_anchor its anchor_update_interval)"
            )
        if kwargs.get("replay_buffer_class") is None:
            kwargs["replay_buffer_class"] = ContextReplayBuffer
        super().__init__(policy, env, learning_starts=learning_starts, _init_setup_model=False, **kwargs)
        if _init_setup_model:
            self._setup_model()

    def validate(self) -> None:
        """Check IQ's arguments and the DQN options it does not support; raise a ValueError naming the
        argument, its value and what is allowed."""

        def check(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"{type(self).__name__}: {name}={getattr(self, name)!r}; expected {allowed}")

        def is_int(x: Any) -> bool:
            return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

        check(is_int(self.n_contexts) and self.n_contexts >= 1, "n_contexts", "an int >= 1")
        weight = self.distillation_weight
        check(weight == "1-eps" or (isinstance(weight, (int, float, np.floating)) and not isinstance(weight, bool)
                                    and weight >= 0), "distillation_weight", "'1-eps' or a number >= 0")  # fmt: skip
        interval = self.anchor_update_interval
        check(interval is None or (is_int(interval) and interval >= 1), "anchor_update_interval",
              "None (the target network) or an int >= 1 (env steps)")  # fmt: skip
        check(self.cluster_normalization in NORMALIZATIONS, "cluster_normalization", f"one of {NORMALIZATIONS}")
        check(self.context_encoder in CONTEXT_ENCODERS, "context_encoder", f"one of {CONTEXT_ENCODERS}")
        check(is_int(self.cluster_warmup) and self.cluster_warmup >= self.n_contexts, "cluster_warmup",
              f"an int >= n_contexts ({self.n_contexts}): k-means needs a state per centre")  # fmt: skip
        n_envs = getattr(self, "n_envs", 1)
        check(-(-self.cluster_warmup // n_envs) <= max(self.buffer_size // n_envs, 1), "cluster_warmup",
              f"a warm-up that fits in the replay buffer (buffer_size={self.buffer_size}, n_envs={n_envs}), "
              "so its transitions are still there to relabel")  # fmt: skip
        check(not self.optimize_memory_usage, "optimize_memory_usage", "False (not supported)")
        check(self.n_steps == 1, "n_steps", "1 (n-step returns are not supported)")
        check(isinstance(self.replay_buffer_class, type) and issubclass(self.replay_buffer_class, ContextReplayBuffer),
              "replay_buffer_class", "ContextReplayBuffer or a subclass")  # fmt: skip
        check(isinstance(self.policy_class, type) and issubclass(self.policy_class, IQPolicy), "policy_class",
              "IQPolicy or a subclass ('MlpPolicy', 'CnnPolicy')")  # fmt: skip

    def _setup_model(self) -> None:
        self.validate()
        # The policy gets the context settings for its construction only: the stored policy_kwargs stay
        # the user's, which SB3's load compares with the ones it is given.
        user_policy_kwargs = self.policy_kwargs
        self.policy_kwargs = {**user_policy_kwargs, "n_contexts": self.n_contexts, "context_seed": self.seed,
                              "context_encoder": self.context_encoder,
                              "cluster_normalization": self.cluster_normalization,
                              "separate_anchor": self.anchor_update_interval is not None}  # fmt: skip
        try:
            super()._setup_model()
        finally:
            self.policy_kwargs = user_policy_kwargs
        # The warm-up: for each stored row, the encoded s_t and s_{t+1} and the buffer row, until batch k-means.
        self._warmup_states: list[th.Tensor] = []
        self._warmup_next_states: list[th.Tensor] = []
        self._warmup_positions: list[int] = []
        self._warmup_count = 0
        # (observation array, its contexts, its encoding): the states of _last_obs, assigned when observed.
        self._observed: tuple[np.ndarray, th.Tensor, th.Tensor] | None = None

    @property
    def current_distillation_weight(self) -> float:
        """λ_t: 0 until the contexts are fitted (the warm-up: every transition is context 0 and the other
        heads are overwritten at the fit, so head 0 learns alone), then 1 − ε_t with ``"1-eps"``, else the
        constant."""
        if not self.policy.context_model.kmeans.fitted:
            return 0.0
        if self.distillation_weight == "1-eps":
            return 1.0 - float(self.exploration_rate)
        return float(self.distillation_weight)

    # -- context division while collecting ---------------------------------------------------------
    def _observe(self, encoded: th.Tensor, fitted: bool | None = None) -> th.Tensor:
        """The contexts of newly observed (encoded) states: sequential k-means once fitted (the centres
        move), placeholders of 0 during the warm-up. ``fitted``: whether the contexts are fitted, if the
        caller already knows."""
        kmeans = self.policy.context_model.kmeans
        if fitted is None:
            fitted = bool(kmeans.fitted)
        if fitted:
            return kmeans.update(encoded)
        return th.zeros(len(encoded), dtype=th.long, device=encoded.device)

    def _last_obs_contexts(self) -> tuple[th.Tensor, th.Tensor]:
        """(contexts, encoding) of the states in ``_last_obs``, assigned once when they were observed."""
        if self._observed is None or self._observed[0] is not self._last_obs:
            # States observed by a reset outside _store_transition (the start of learn).
            encoded = self.policy.context_model.encode_observations(self._last_obs, self.device)
            self._observed = (self._last_obs, self._observe(encoded), encoded)
        return self._observed[1], self._observed[2]

    def _sample_action(self, learning_starts: int, action_noise=None, n_envs: int = 1):
        # The policy acts with the contexts assigned when the states were observed: no second encoding.
        self.policy.set_acting_contexts(self._last_obs_contexts()[0])
        try:
            return super()._sample_action(learning_starts, action_noise, n_envs)
        finally:
            self.policy.set_acting_contexts(None)

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        context_model = self.policy.context_model
        fitted = bool(context_model.kmeans.fitted)
        contexts, encoded = self._last_obs_contexts()
        # s_{t+1} as the policy sees it: the terminal observation where an episode ended (VecEnv reset
        # already), normalised by VecNormalize as the policy's input is.
        ended = [i for i, done in enumerate(dones) if done and infos[i].get("terminal_observation") is not None]
        next_view = np.array(new_obs, copy=True) if ended else new_obs
        for i in ended:
            next_view[i] = infos[i]["terminal_observation"]
        device = self.device
        next_encoded = context_model.encode_observations(next_view, device)
        next_contexts = self._observe(next_encoded, fitted)
        # The states of new_obs (the next step's s_t): s_{t+1}, except where a new episode began.
        new_contexts, new_encoded = next_contexts, next_encoded
        if ended:
            new_contexts, new_encoded = next_contexts.clone(), next_encoded.clone()
            first = context_model.encode_observations(np.asarray(new_obs)[ended], device)
            new_contexts[ended], new_encoded[ended] = self._observe(first, fitted), first
        if not fitted:
            self._warmup_states.append(encoded)
            self._warmup_next_states.append(next_encoded)
            self._warmup_positions.append(replay_buffer.pos)
            self._warmup_count += len(encoded)
        replay_buffer.set_pending_contexts(contexts.cpu().numpy(), next_contexts.cpu().numpy())
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        self._observed = (self._last_obs, new_contexts, new_encoded)
        if not fitted and self._warmup_count >= self.cluster_warmup:
            self._fit_contexts(replay_buffer)
            self._observed = (self._last_obs, self._observe(new_encoded), new_encoded)

    def _fit_contexts(self, replay_buffer: ContextReplayBuffer) -> None:
        """Batch k-means on the warm-up's states; its labels replace the warm-up transitions'
        placeholders (ω(s_{t+1}) by the nearest fitted centre), every head starts as head 0 and the
        optimizer's state of the heads it overwrites is reset."""
        kmeans = self.policy.context_model.kmeans
        labels = kmeans.fit(th.cat(self._warmup_states), seed=self.seed)
        next_labels = kmeans.assign(th.cat(self._warmup_next_states))
        rows, shape = np.asarray(self._warmup_positions), (len(self._warmup_positions), replay_buffer.n_envs)
        replay_buffer.contexts[rows] = labels.cpu().numpy().reshape(shape)
        replay_buffer.next_contexts[rows] = next_labels.cpu().numpy().reshape(shape)
        self._warmup_states, self._warmup_next_states, self._warmup_positions = [], [], []
        self._warmup_count = 0
        for net in (self.q_net, self.q_net_target, self.policy.q_net_anchor):
            if net is not None:
                net.copy_head_to_all(0)
        self._reset_optimizer_state_of_heads(range(1, self.n_contexts))
        if self.verbose >= 1:
            print(
                f"IQ: {self.n_contexts} contexts from {len(labels)} warm-up states, sizes {labels.bincount().tolist()}"
            )

    def _reset_optimizer_state_of_heads(self, heads: range) -> None:
        """Zero the optimizer's per-parameter state (Adam's moments, RMSprop's averages, momentum) of the
        rows of ``heads``, so that a head overwritten at the fit starts with no history of the gradients
        of the weights it replaced. The step count is shared by the whole layer and left as it is."""
        state = self.policy.optimizer.state
        for param in (self.q_net.heads.weight, self.q_net.heads.bias):
            for value in state.get(param, {}).values():
                if th.is_tensor(value) and value.shape == param.shape:
                    for h in heads:
                        value[self.q_net.head_rows(h)] = 0.0

    def _on_step(self) -> None:
        super()._on_step()
        interval = self.anchor_update_interval
        if interval is not None and self._n_calls % max(interval // self.n_envs, 1) == 0:
            self.policy.q_net_anchor.load_state_dict(self.q_net.state_dict())

    # -- training ----------------------------------------------------------------------------------
    @th.no_grad()
    def _targets(
        self, replay_data: ContextReplayBufferSamples, anchor_values: bool = True
    ) -> tuple[th.Tensor, th.Tensor | None]:
        """The TD target r + γ(1 − d)·max_a' Q_target^{c'}(s', a') with c' = ω(s') (B, 1), and the
        anchor's Q-values of every head at (s, a) (B, k); None without ``anchor_values`` when the anchor is
        a network of its own (its pass is skipped), while the target network as anchor keeps its one pass
        over s and s' together, so that the target is the same float for float either way."""
        discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
        batch = len(replay_data.observations)
        anchor = self.policy.distillation_anchor
        if anchor is self.q_net_target:
            # One pass of the target network over s and s' together.
            both = self.q_net_target(th.cat([replay_data.observations, replay_data.next_observations]))
            earlier, next_q = both[:batch], both[batch:]
        else:
            earlier = anchor(replay_data.observations) if anchor_values else None
            next_q = self.q_net_target(replay_data.next_observations)
        next_q = next_q[self.q_net.batch_rows(batch, next_q.device), replay_data.next_contexts]
        target = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q.max(dim=1).values.reshape(-1, 1)
        return target, None if earlier is None else taken_action_values(earlier, replay_data.actions)

    def losses(self, replay_data: ContextReplayBufferSamples, distillation_weight: float) -> dict[str, th.Tensor]:
        """The terms of one gradient step: ``td`` (Huber on each sample's own head, bootstrapped from
        the next state's head), ``distillation`` (L_KD on the other heads, against the anchor) and
        ``loss`` = td + λ·distillation. With λ = 0 (the warm-up, or training without distillation) the
        distillation term is not computed and ``loss`` is ``td``: the same loss and gradients to the last
        bit (λ·L_KD adds exact zeros), without the anchor's pass and L_KD's backward."""
        contexts = replay_data.contexts
        target_q, earlier_q = self._targets(replay_data, anchor_values=bool(distillation_weight))
        online_q = taken_action_values(self.q_net(replay_data.observations), replay_data.actions)
        td = F.smooth_l1_loss(online_q.gather(1, contexts[:, None]), target_q)
        if not distillation_weight:
            return {"td": td, "loss": td}
        distillation = head_distillation_loss(online_q, earlier_q, contexts)
        return {"td": td, "distillation": distillation, "loss": td + distillation_weight * distillation}

    @th.no_grad()
    def td_errors(self, samples: ContextReplayBufferSamples) -> th.Tensor:
        """Each sample's TD error on its own head, target − Q^c(s, a), (B,)."""
        current_q = self.q_net.q_values(samples.observations, samples.contexts).gather(1, samples.actions.long())
        return (self._targets(samples, anchor_values=False)[0] - current_q).flatten()

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        # DQN.train's structure with IQ's loss.
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        weight = self.current_distillation_weight

        terms: dict[str, list[th.Tensor]] = {"loss": [], "td": [], "distillation": []}
        # The optimizer's parameters (the online network's) are the ones with gradients: clipping them
        # as a list spares a walk over the policy's three networks at every step.
        trained = [param for group in self.policy.optimizer.param_groups for param in group["params"]]
        for _ in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            step = self.losses(replay_data, weight)
            for name, value in step.items():
                terms[name].append(value.detach())

            self.policy.optimizer.zero_grad()
            step["loss"].backward()
            th.nn.utils.clip_grad_norm_(trained, self.max_grad_norm)
            self.policy.optimizer.step()

        self._n_updates += gradient_steps

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        # One synchronisation per training call rather than three per gradient step. Where λ = 0 throughout
        # the call, L_KD was not computed and is not logged.
        means = {name: th.stack(values).mean().item() for name, values in terms.items() if values}
        self.logger.record("train/loss", means["loss"])
        self.logger.record("train/td_loss", means["td"])
        if "distillation" in means:
            self.logger.record("train/distillation_loss", means["distillation"])
        self.logger.record("train/distillation_weight", weight)
        for c, count in enumerate(self.policy.context_model.kmeans.counts.tolist()):
            self.logger.record(f"rollout/context_{c}_states", count)

    # -- SB3 plumbing ------------------------------------------------------------------------------
    def learn(
        self: SelfIQ,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfIQ:
        return super().learn(total_timesteps, callback, log_interval, tb_log_name or type(self).__name__,
                             reset_num_timesteps, progress_bar)  # fmt: skip

    def load_replay_buffer(self, path, truncate_last_traj: bool = True) -> None:
        super().load_replay_buffer(path, truncate_last_traj)
        if not isinstance(self.replay_buffer, ContextReplayBuffer):
            raise ValueError(f"{type(self).__name__}: a {type(self.replay_buffer).__name__} has no contexts; "
                             "expected a ContextReplayBuffer")  # fmt: skip

    def _excluded_save_params(self) -> list[str]:
        # The warm-up's states are not saved: a model saved mid-warm-up starts a new one when it resumes.
        return [*super()._excluded_save_params(), "_warmup_states", "_warmup_next_states", "_warmup_positions",
                "_warmup_count", "_observed"]  # fmt: skip


class IQRE(IQ):
    """IQ-RE: :class:`IQ` whose contexts cluster the 50 features of a fixed random NatureCNN
    (``context_encoder="random_nature_cnn"``), for image observations; its policy is ``"CnnPolicy"``.
    The encoder is initialised from the algorithm's ``seed`` and saved with the policy."""

    def __init__(
        self,
        policy: str | type[IQPolicy] = "CnnPolicy",
        env=None,
        context_encoder: str = "random_nature_cnn",
        _init_setup_model: bool = True,
        **kwargs: Any,
    ):
        super().__init__(policy, env, context_encoder=context_encoder, _init_setup_model=_init_setup_model, **kwargs)
