"""Measuring catastrophic interference while a value-based agent learns on a drifting task.

- :class:`InterferenceCallback`: the approximate expected interference (AEI) of every update, logged
  to TensorBoard with each context's training returns; works with DQN, QR-DQN, IQ and IQ-RE.
- :class:`ContextEvaluationCallback`: greedy evaluation episodes on every context, every
  ``eval_freq`` steps (return curves) and at the end of every drift phase (the context × phase
  matrix from which :func:`forgetting` is computed).
- :func:`td_errors`: the one-step TD error of a batch under an agent's online and target networks.
- :func:`context_interference_matrix` and :class:`ContextInterferenceCallback`: the IQ paper's own
  measurement of interference inside one task (below).

AEI (Liu et al., "Towards a practical measure of interference for reinforcement learning", 2023):
with the transitions the current policy produced most recently as a sample of its state distribution
d_π, and the target network fixed,

    AEI = E_{(s, a, r, s') ~ d_π} [ δ_θ'(s, a)² − δ_θ(s, a)² ],

where θ are the online weights before one call of ``train()`` (a block of gradient steps) and θ'
after it. A positive AEI means the update raised the TD error on the states the agent is visiting:
it interfered with what was already learned there.

The context-interference matrix (Zhang et al., the IQ paper's figure on CartPole): the states the
agent has experienced (its replay buffer) are divided into k contexts by k-means (k = 3, on the
standardised observations); then the agent takes a block of gradient steps on the transitions of one
context i only, and for every context j

    M[i, j] = (L_j(after) − L_j(before)) / L_j(before),

L_j the Huber TD loss on a fixed sample of context j's transitions. Off the diagonal, a positive
M[i, j] is interference: learning context i raised the TD loss on context j. After each block the
agent is restored exactly (weights, optimizer state, update count, global NumPy generator), so a run
that measures trains as one that does not.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from sb3_contrib import QRDQN
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from torch.nn import functional as F

from agents.common.evaluation import run_episode

# gym.make kwargs of the interference envs that belong to the drift schedule, not to one context.
DRIFT_KWARGS = ("drift", "phase_length", "phase_unit")
# Seeds of the evaluation episodes run during training; apart from the training (0-9) and the
# leaderboard's evaluation seeds (1000-1009).
CURVE_EVALUATION_SEEDS: tuple[int, ...] = tuple(range(2000, 2005))


def context_env_kwargs(env_kwargs: Mapping[str, Any], context: int) -> dict[str, Any]:
    """The gym.make kwargs of the same env held at one ``context`` (no drift); an env trained without
    drift kwargs (CartPole-v1, or a fixed context) keeps its kwargs."""
    if "drift" not in env_kwargs and int(context) == int(env_kwargs.get("context", 0)):
        return dict(env_kwargs)
    kwargs = {k: v for k, v in env_kwargs.items() if k not in DRIFT_KWARGS}
    return {**kwargs, "drift": "none", "context": int(context)}


def n_contexts(env_id: str, env_kwargs: Mapping[str, Any]) -> int:
    env = gym.make(env_id, **env_kwargs)
    try:
        return int(env.get_wrapper_attr("n_contexts"))
    finally:
        env.close()


def _greedy_q_values(model: BaseAlgorithm, observations: th.Tensor, target: bool) -> th.Tensor:
    """Q(s, ·) of a DQN or QR-DQN (the mean of its quantiles), online or target network."""
    if isinstance(model, QRDQN):
        net = model.quantile_net_target if target else model.quantile_net
        return net(observations).mean(dim=1)
    if isinstance(model, DQN):
        return (model.q_net_target if target else model.q_net)(observations)
    raise TypeError(f"td_errors: {type(model).__name__} is neither a DQN nor a QR-DQN and has no td_errors()")


def td_errors(model: BaseAlgorithm, samples) -> th.Tensor:
    """δ = r + (1 − done)·γ·max_a' Q_target(s', a') − Q(s, a) per transition of ``samples`` (a replay
    buffer sample), without gradients. An algorithm with its own ``td_errors(samples)`` (IQ: each
    transition's context head) is asked for it."""
    if callable(getattr(model, "td_errors", None)):
        return model.td_errors(samples)
    discounts = samples.discounts if samples.discounts is not None else model.gamma
    with th.no_grad():
        next_q = _greedy_q_values(model, samples.next_observations, target=True).max(dim=1).values.reshape(-1, 1)
        target = samples.rewards + (1 - samples.dones) * discounts * next_q
        q = th.gather(_greedy_q_values(model, samples.observations, target=False), 1, samples.actions.long())
    return (target - q).flatten()


def recent_samples(model: BaseAlgorithm, n: int):
    """The ``n`` transitions added to the replay buffer last (all envs), as a replay sample; ``None``
    while the buffer holds fewer. Leaves NumPy's global generator, which the replay sampling draws
    from, as it found it, so measuring does not change training."""
    buffer = model.replay_buffer
    stored = buffer.buffer_size if buffer.full else buffer.pos
    per_env = -(-n // buffer.n_envs)
    if stored < per_env:
        return None
    indices = (buffer.pos - 1 - np.arange(per_env)) % buffer.buffer_size
    state = np.random.get_state()
    try:
        # SB3's _get_samples draws one env per index (always env 0 with one env); with several envs,
        # repeat the indices per env and make the draw a fixed one.
        np.random.seed(0)
        return buffer._get_samples(np.repeat(indices, buffer.n_envs), env=model.get_vec_normalize_env())
    finally:
        np.random.set_state(state)


class _ContextSampler:
    """Stands in for a replay buffer while the agent trains on one context: ``sample`` draws, with its
    own generator, from the given rows of the real buffer (one env)."""

    def __init__(self, buffer, rows: np.ndarray, rng: np.random.Generator):
        self.buffer, self.rows, self.rng = buffer, rows, rng

    def sample(self, batch_size: int, env=None):
        return self.buffer._get_samples(self.rng.choice(self.rows, size=batch_size), env=env)


def _huber_td_loss(model: BaseAlgorithm, samples) -> float:
    """The mean Huber loss of the TD errors of ``samples``, as DQN trains on it."""
    errors = td_errors(model, samples)
    return float(F.smooth_l1_loss(errors, th.zeros_like(errors)))


def context_interference_matrix(
    model: BaseAlgorithm,
    n_contexts: int = 3,
    gradient_steps: int = 64,
    eval_size: int = 512,
    cluster_size: int = 20_000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """The context-interference matrix M (k × k) of an off-policy agent on its replay buffer, with the
    contexts' Huber TD losses before training and their sizes (see the module's docstring); ``None``
    while a context has fewer than ``eval_size`` transitions.

    :param n_contexts: k, the number of k-means contexts over the experienced states
    :param gradient_steps: gradient steps (the agent's batch size) taken on each context's transitions
    :param eval_size: transitions per context on which the TD loss is measured
    :param cluster_size: at most this many states (a seeded subsample) fit the k-means; all are labelled
    :param seed: seed of the k-means, the evaluation samples and the training minibatches
    """
    from sklearn.cluster import KMeans

    buffer = model.replay_buffer
    if buffer.n_envs != 1:
        raise ValueError(f"context_interference_matrix: a replay buffer of {buffer.n_envs} envs; expected 1")
    stored = buffer.buffer_size if buffer.full else buffer.pos
    states = buffer.observations[:stored, 0].reshape(stored, -1).astype(np.float64)
    rng = np.random.default_rng(seed)
    mean, std = states.mean(axis=0), states.std(axis=0) + 1e-8
    fit_rows = rng.choice(stored, size=min(stored, cluster_size), replace=False)
    kmeans = KMeans(n_clusters=n_contexts, n_init=10, random_state=seed).fit((states[fit_rows] - mean) / std)
    labels = kmeans.predict((states - mean) / std)
    rows = [np.flatnonzero(labels == c) for c in range(n_contexts)]
    if min(len(r) for r in rows) < eval_size:
        return None
    vec_env = model.get_vec_normalize_env()
    evaluation = [buffer._get_samples(rng.choice(r, size=eval_size, replace=False), env=vec_env) for r in rows]

    policy = model.policy
    saved_policy = {k: v.clone() for k, v in policy.state_dict().items()}
    saved_optimizer = copy.deepcopy(policy.optimizer.state_dict())
    # A model that never learned has no logger yet: it gets none back.
    saved_updates, saved_logger, saved_np = model._n_updates, model.__dict__.get("_logger"), np.random.get_state()
    before = [_huber_td_loss(model, samples) for samples in evaluation]
    matrix = np.zeros((n_contexts, n_contexts))
    try:
        model._logger = Logger(folder=None, output_formats=[])
        for i in range(n_contexts):
            model.replay_buffer = _ContextSampler(buffer, rows[i], np.random.default_rng([seed, i]))
            model.train(gradient_steps=gradient_steps, batch_size=model.batch_size)
            after = [_huber_td_loss(model, samples) for samples in evaluation]
            matrix[i] = (np.array(after) - before) / np.maximum(before, 1e-12)
            policy.load_state_dict(saved_policy)
            policy.optimizer.load_state_dict(copy.deepcopy(saved_optimizer))
    finally:
        model.replay_buffer, model._n_updates = buffer, saved_updates
        if saved_logger is None:
            del model._logger
        else:
            model._logger = saved_logger
        policy.load_state_dict(saved_policy)
        policy.optimizer.load_state_dict(saved_optimizer)
        np.random.set_state(saved_np)
    return {"matrix": matrix.tolist(), "td_loss_before": before, "sizes": [len(r) for r in rows]}


def interference_summary(matrices: Sequence[Sequence[Sequence[float]]]) -> dict[str, Any]:
    """Mean matrix over measurements; its mean off-diagonal entry (``interference``: how much training
    one context raises the TD loss of the others, relative) and mean diagonal entry (``self``)."""
    mean = np.mean(np.asarray(matrices, dtype=np.float64), axis=0)
    off = ~np.eye(len(mean), dtype=bool)
    return {"matrix": mean.tolist(), "interference": float(mean[off].mean()), "self": float(np.diag(mean).mean())}


class ContextInterferenceCallback(BaseCallback):
    """Measures :func:`context_interference_matrix` every ``every`` env steps once training has begun
    and keeps each measurement; the agent is left exactly as it was (no random numbers drawn).

    :param every: env steps between measurements
    (the other parameters are :func:`context_interference_matrix`'s)
    """

    def __init__(self, every: int, n_contexts: int = 3, gradient_steps: int = 64, eval_size: int = 512,
                 seed: int = 0, verbose: int = 0):  # fmt: skip
        super().__init__(verbose)
        if every < 1 or n_contexts < 2 or gradient_steps < 1 or eval_size < 1:
            raise ValueError(
                f"every={every}, n_contexts={n_contexts}, gradient_steps={gradient_steps}, eval_size={eval_size}: "
                "expected every, gradient_steps, eval_size >= 1 and n_contexts >= 2"
            )
        self.every, self.n_contexts, self.gradient_steps = every, n_contexts, gradient_steps
        self.eval_size, self.seed = eval_size, seed
        self.measurements: list[dict[str, Any]] = []

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every or self.num_timesteps <= self.model.learning_starts:
            return True
        result = context_interference_matrix(self.model, self.n_contexts, self.gradient_steps, self.eval_size,
                                             seed=self.seed)  # fmt: skip
        if result is not None:
            self.measurements.append({"timesteps": self.num_timesteps, **result})
            summary = interference_summary([result["matrix"]])
            self.logger.record("interference/context_matrix_off_diagonal", summary["interference"])
        return True

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"measurements": self.measurements}
        if self.measurements:
            out.update(interference_summary([m["matrix"] for m in self.measurements]))
        return out


class InterferenceCallback(BaseCallback):
    """Logs the AEI of every ``every``-th training call (``interference/aei``) and, per episode, the
    training return of the context it was played in (``context_<c>/return``, from the env's
    ``info["context"]``). Usable with DQN, QR-DQN, IQ and IQ-RE; it draws no random numbers, so a run
    with it trains exactly as one without.

    :param n_samples: how many of the latest transitions stand for the current policy's distribution
    :param every: measure one training call in ``every`` (each costs four forward passes on the sample)
    """

    def __init__(self, n_samples: int = 256, every: int = 1, verbose: int = 0):
        super().__init__(verbose)
        if n_samples < 1 or every < 1:
            raise ValueError(f"n_samples={n_samples}, every={every}: both must be >= 1")
        self.n_samples, self.every = n_samples, every
        self.aei: list[tuple[int, float]] = []  # (timesteps, AEI)
        self.episodes: list[tuple[int, int, float]] = []  # (timesteps, context, training return)
        self._rollouts = 0
        self._pending = None  # (samples, δ² before the update)

    def _on_rollout_end(self) -> None:
        self._rollouts += 1
        model = self.model
        # OffPolicyAlgorithm.learn trains right after this call once past learning_starts.
        if self._rollouts % self.every or model.num_timesteps <= model.learning_starts:
            return
        samples = recent_samples(model, self.n_samples)
        if samples is not None:
            self._pending = (samples, td_errors(model, samples).pow(2))

    def _measure(self) -> None:
        if self._pending is None:
            return
        samples, before = self._pending
        self._pending = None
        aei = float((td_errors(self.model, samples).pow(2) - before).mean())
        self.aei.append((self.num_timesteps, aei))
        self.logger.record("interference/aei", aei)

    def _on_rollout_start(self) -> None:
        self._measure()

    def _on_training_end(self) -> None:
        self._measure()

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if done and "episode" in info:
                context = int(info.get("context", 0))
                ret = float(info["episode"]["r"])
                self.episodes.append((self.num_timesteps, context, ret))
                self.logger.record_mean(f"context_{context}/return", ret)
        return True

    def record(self) -> dict[str, Any]:
        return {"aei": [list(x) for x in self.aei], "training_episodes": [list(x) for x in self.episodes]}


class ContextEvaluationCallback(BaseCallback):
    """Greedy evaluation on every context of ``env_id``: every ``eval_freq`` steps (the return curve,
    ``eval/context_<c>/return`` and ``eval/mean_return``) and whenever the training env's drift
    schedule ends a phase, plus once at the end of training (the rows of the context × phase matrix).
    Phases are read from the first training env's ``info["phase"]``.

    :param contexts: which contexts to evaluate (all of the env's by default)
    """

    def __init__(
        self,
        env_id: str,
        env_kwargs: Mapping[str, Any],
        eval_freq: int,
        seeds: Sequence[int] = CURVE_EVALUATION_SEEDS,
        contexts: Sequence[int] | None = None,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        if eval_freq < 1 or not seeds:
            raise ValueError(f"eval_freq={eval_freq} must be >= 1 and seeds={list(seeds)} non-empty")
        self.env_id, self.env_kwargs, self.eval_freq, self.seeds = env_id, dict(env_kwargs), eval_freq, list(seeds)
        self.contexts = list(range(n_contexts(env_id, env_kwargs))) if contexts is None else list(contexts)
        self.curve: list[dict[str, Any]] = []  # {"timesteps", "returns": per context}
        self.phases: list[dict[str, Any]] = []  # {"phase", "context", "timesteps", "returns": per context}
        self._envs: list[gym.Env] = []
        self._phase, self._phase_context = 0, None

    def _on_training_start(self) -> None:
        self._envs = [gym.make(self.env_id, **context_env_kwargs(self.env_kwargs, c)) for c in self.contexts]

    def evaluate(self) -> list[float]:
        """The mean greedy return on each context over ``seeds``."""
        returns = []
        for env in self._envs:
            returns.append(float(np.mean([run_episode(env, self.model, seed)["return"] for seed in self.seeds])))
        return returns

    def _end_phase(self) -> None:
        returns = self.evaluate()
        self.phases.append({"phase": self._phase, "context": self._phase_context, "timesteps": self.num_timesteps,
                            "returns": returns})  # fmt: skip

    def _on_step(self) -> bool:
        info = self.locals["infos"][0]
        phase = int(info.get("phase", 0))
        if self._phase_context is None:
            self._phase_context = int(info.get("context", 0))
        if phase != self._phase:
            # info of the step that reset into a new phase: the agent has not trained on it yet.
            self._end_phase()
            self._phase, self._phase_context = phase, int(info.get("context", 0))
        if self.n_calls % self.eval_freq == 0:
            returns = self.evaluate()
            self.curve.append({"timesteps": self.num_timesteps, "returns": returns})
            for context, ret in zip(self.contexts, returns):
                self.logger.record(f"eval/context_{context}/return", ret)
            self.logger.record("eval/mean_return", float(np.mean(returns)))
        return True

    def _on_training_end(self) -> None:
        self._end_phase()
        for env in self._envs:
            env.close()

    def record(self) -> dict[str, Any]:
        return {"contexts": self.contexts, "curve": self.curve, "phases": self.phases}


def forgetting(matrix: np.ndarray) -> np.ndarray:
    """F[p, c] = max_{p' ≤ p} R[p', c] − R[p, c] for a phase × context return matrix R (rows: the
    ends of the drift phases in order): how far each context has fallen from its best so far."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or not matrix.size:
        raise ValueError(f"forgetting: expected a non-empty phase x context matrix, got shape {matrix.shape}")
    return np.maximum.accumulate(matrix, axis=0) - matrix


# The interference study's settings: the paper's single-task problems (plain CartPole-v1 and
# Acrobot-v1), and a cyclic drift between InterferenceCartPole-v0's conflicting contexts (the push
# reversed), each phase at least 10k steps (60k steps: three cycles), with the context visible in the
# observation (a context-dividing agent can separate them) or hidden (nothing can). "plain" and
# "cyclic" are the first study's settings (the physics presets).
CONFLICTING_DRIFT = {"drift": "cyclic", "phase_length": 10_000, "phase_unit": "steps", "contexts": "conflicting"}
STUDY_SETTINGS: dict[str, dict[str, Any]] = {
    "cartpole": {"env_id": "CartPole-v1", "env_kwargs": {}},
    "acrobot": {"env_id": "Acrobot-v1", "env_kwargs": {}},
    "conflict_visible": {"env_id": "InterferenceCartPole-v0",
                         "env_kwargs": {**CONFLICTING_DRIFT, "visible_context": True}},
    "conflict_hidden": {"env_id": "InterferenceCartPole-v0", "env_kwargs": dict(CONFLICTING_DRIFT)},
    "plain": {"env_id": "InterferenceCartPole-v0", "env_kwargs": {}},
    "cyclic": {"env_id": "InterferenceCartPole-v0",
               "env_kwargs": {"drift": "cyclic", "phase_length": 10_000, "phase_unit": "steps"}},
}  # fmt: skip


def evaluation_contexts(env_id: str, env_kwargs: Mapping[str, Any]) -> list[int]:
    """The contexts a run is scored on: all of them under drift, the one it trains on without (an env
    without contexts, such as CartPole-v1, has the one)."""
    if env_kwargs.get("drift", "none") == "none":
        return [int(env_kwargs.get("context", 0))]
    return list(range(n_contexts(env_id, env_kwargs)))
