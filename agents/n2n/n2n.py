"""N2N: network-to-network compression by a two-stage REINFORCE agent (Ashok et al., "N2N Learning:
Network to Network Compression via Policy Gradient Reinforcement Learning", ICLR 2018).

Stage 1, layer removal: a bidirectional LSTM reads the descriptors of all teacher layers and gives every
layer a keep/remove distribution. Stage 2, layer shrinkage: an LSTM walks over the kept layers in order,
each step seeing the layer's descriptor and the previous layer's shrink action, and picks a shrink factor.
Both are trained by REINFORCE with a moving-average reward baseline on the student's final reward.

On N2NCompress-v0 the two stages are the steps of one episode (a keep/remove decision per teacher layer,
then a shrink factor index per kept layer) and the observation carries everything the policy needs, so
the policy is a function of the observation alone. It has no parameter tied to the number of teacher
layers: a policy trained on one teacher drives another with the same descriptor size and number of
shrink factors (the paper's policy transfer, ``N2NAgent.load(path, env=other_env)``).
"""

from __future__ import annotations

import io
import pathlib
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback
from stable_baselines3.common.utils import safe_mean
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from agents.n2n.policies import ARCHITECTURE_FIELDS, OBSERVATION_KEYS, N2NPolicy, obs_as_tensor

SelfN2NAgent = TypeVar("SelfN2NAgent", bound="N2NAgent")


@dataclass
class N2NConfig:
    """The hyperparameters of :class:`N2NAgent`; defaults follow the paper where it gives them.

    :param learning_rate: Adam step size.
    :param hidden_size: units per direction of the removal biLSTM and of the shrink LSTM (paper: 30).
    :param num_layers: layers of the removal biLSTM (paper: 2).
    :param shrink_num_layers: layers of the shrink LSTM (paper: one LSTM of 30 units; 1 here).
    :param rollouts_per_update: episodes per REINFORCE update (paper: 5).
    :param baseline_decay: weight of the old value in the moving-average reward baseline.
    :param ent_coef: weight of an entropy bonus in the loss (the paper has none).
    :param max_grad_norm: clip the gradient to this global norm; None (the paper) does not clip. Adam's
        per-parameter scaling already bounds the step size, so clipping only matters for rare outliers.
    """

    learning_rate: float = 3e-3
    hidden_size: int = 30
    num_layers: int = 2
    shrink_num_layers: int = 1
    rollouts_per_update: int = 5
    baseline_decay: float = 0.9
    ent_coef: float = 0.0
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> ValueError:
            return ValueError(f"N2N: {name}={getattr(self, name)!r}; expected {allowed}")

        def is_number(value: Any) -> bool:
            return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)

        for name in ("hidden_size", "num_layers", "shrink_num_layers", "rollouts_per_update"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise bad(name, "an integer >= 1")
        if not is_number(self.learning_rate) or not self.learning_rate > 0:
            raise bad("learning_rate", "a number > 0")
        if not is_number(self.baseline_decay) or not 0 <= self.baseline_decay < 1:
            raise bad("baseline_decay", "a number in [0, 1)")
        if not is_number(self.ent_coef) or not self.ent_coef >= 0:
            raise bad("ent_coef", "a number >= 0")
        if self.max_grad_norm is not None and (not is_number(self.max_grad_norm) or not self.max_grad_norm > 0):
            raise bad("max_grad_norm", "None or a number > 0")


def _check_n2n_env(env: VecEnv) -> tuple[int, tuple[float, ...]]:
    """(descriptor size D, shrink factors) of an N2NCompress-v0-like env, or a ValueError saying what is off."""
    obs_space, action_space = env.observation_space, env.action_space
    if not isinstance(obs_space, spaces.Dict) or set(OBSERVATION_KEYS) - set(obs_space.spaces):
        raise ValueError(
            f"N2N: observation space {obs_space}; expected a Dict with keys {list(OBSERVATION_KEYS)} (N2NCompress-v0)"
        )
    layers_shape = obs_space["layers"].shape
    if len(layers_shape) != 2:
        raise ValueError(f"N2N: observation 'layers' of shape {layers_shape}; expected (layers, descriptor size)")
    try:
        shrink_factors = tuple(float(f) for f in env.get_attr("shrink_factors")[0])
    except AttributeError as error:
        raise ValueError("N2N: the env has no shrink_factors attribute (N2NCompress-v0 has)") from error
    if len(shrink_factors) < 1:
        raise ValueError("N2N: the env has no shrink factors")
    if not isinstance(action_space, spaces.Discrete) or action_space.n != max(2, len(shrink_factors)):
        raise ValueError(
            f"N2N: action space {action_space}; expected Discrete({max(2, len(shrink_factors))}) for "
            f"{len(shrink_factors)} shrink factors"
        )
    return int(layers_shape[1]), shrink_factors


@dataclass
class _Episode:
    observations: list[dict[str, np.ndarray]]
    actions: list[int]
    reward: float = 0.0


class N2NAgent(BaseAlgorithm):
    """N2N's two-stage policy-gradient agent (REINFORCE with a moving-average baseline), an SB3
    ``BaseAlgorithm`` with an episode-based ``learn`` (as sb3-contrib's ARS): save/load, logging and
    callbacks come from SB3.

    Paper: https://arxiv.org/abs/1709.06030. Each update takes ``rollouts_per_update`` finished episodes
    with returns R_i and minimises ``-mean_i (R_i - b) * sum_t log pi(a_t | s_t)`` (the paper's REINFORCE
    gradient over both stages' actions, with a moving-average reward baseline b), minus ``ent_coef``
    times the mean policy entropy; then
    ``b <- baseline_decay * b + (1 - baseline_decay) * mean_i R_i``. The first update starts the
    baseline at its own mean reward, so the raw reward level does not drive the first step.

    :param policy: ``"N2NPolicy"`` or :class:`N2NPolicy` (or a subclass).
    :param env: an N2NCompress-v0 env, a ``gymnasium.Env`` or an SB3 ``VecEnv`` with one env; None only
        with ``_init_setup_model=False`` (as :meth:`load` does).
    :param seed: seeds the policy's initial weights, its action sampling and the env's resets; None draws
        them at random. The agent keeps its own ``torch.Generator`` and leaves torch's global RNG alone
        (unlike SB3's ``set_random_seed``): the env trains students with torch too.
    :param learning_rate, hidden_size, num_layers, shrink_num_layers, rollouts_per_update, baseline_decay,
        ent_coef, max_grad_norm: see :class:`N2NConfig`.
    :param stats_window_size: finished episodes averaged into ``rollout/ep_rew_mean``.
    :param tensorboard_log: the folder for TensorBoard logs (None: no TensorBoard).
    :param verbose: 0 silent, 1 prints the logged values after each update.
    :param device: where the networks run.
    :param _init_setup_model: whether to build the networks now.
    """

    policy_aliases: ClassVar[dict[str, type[N2NPolicy]]] = {"N2NPolicy": N2NPolicy}
    policy: N2NPolicy

    def __init__(
        self,
        policy: str | type[N2NPolicy],
        env: GymEnv | None,
        seed: int | None = None,
        learning_rate: float = 3e-3,
        hidden_size: int = 30,
        num_layers: int = 2,
        shrink_num_layers: int = 1,
        rollouts_per_update: int = 5,
        baseline_decay: float = 0.9,
        ent_coef: float = 0.0,
        max_grad_norm: float | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        device: str | torch.device = "cpu",
        _init_setup_model: bool = True,
    ):
        if not isinstance(policy, str) and not (isinstance(policy, type) and issubclass(policy, N2NPolicy)):
            raise ValueError(f"N2N: policy={policy!r}; expected 'N2NPolicy' or a subclass of N2NPolicy")
        # One episode at a time keeps every update on-policy: with several envs, the episodes running at an
        # update would finish under the new policy.
        if isinstance(env, VecEnv) and env.num_envs != 1:
            raise ValueError(f"N2N: a VecEnv with {env.num_envs} envs; N2NAgent needs n_envs=1")
        config = N2NConfig(
            learning_rate, hidden_size, num_layers, shrink_num_layers, rollouts_per_update, baseline_decay,
            ent_coef, max_grad_norm,
        )  # fmt: skip
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            supported_action_spaces=(spaces.Discrete,),
        )
        # The hyperparameters are plain attributes, as in SB3, so that load(..., learning_rate=...) sets them.
        vars(self).update(asdict(config))
        self.descriptor_size: int | None = None
        self.shrink_factors: tuple[float, ...] | None = None
        if self.env is not None:
            self.descriptor_size, self.shrink_factors = _check_n2n_env(self.env)
        elif _init_setup_model:
            raise ValueError("N2N: env=None; the env sizes the networks (pass _init_setup_model=False to load)")
        self.baseline: float | None = None
        self._episode: _Episode | None = None
        if _init_setup_model:
            self._setup_model()

    @property
    def config(self) -> N2NConfig:
        """The hyperparameters, validated."""
        return N2NConfig(**{f.name: getattr(self, f.name) for f in fields(N2NConfig)})

    def _get_policy_from_name(self, policy_name: str) -> type[N2NPolicy]:
        if policy_name not in self.policy_aliases:
            raise ValueError(f"N2N: policy={policy_name!r}; expected one of {sorted(self.policy_aliases)}")
        return self.policy_aliases[policy_name]

    def _setup_model(self) -> None:
        config = self.config  # load may have changed the hyperparameters: validate them again
        if self.env is not None:
            # On load the saved sizes are in place; the env (possibly another teacher) must fit them.
            descriptor_size, shrink_factors = _check_n2n_env(self.env)
            if descriptor_size != self.descriptor_size or len(shrink_factors) != len(self.shrink_factors):
                raise ValueError(
                    f"N2N: the env has descriptor size {descriptor_size} and {len(shrink_factors)} shrink factors "
                    f"{shrink_factors}; the saved policy needs descriptor size {self.descriptor_size} and "
                    f"{len(self.shrink_factors)} shrink factors ({tuple(self.shrink_factors)})"
                )
            self.shrink_factors = shrink_factors
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        # Initial weights from the agent's seed without touching torch's global RNG state.
        with torch.random.fork_rng(devices=[]):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            self.policy = self.policy_class(
                self.observation_space,
                self.action_space,
                self.lr_schedule,
                tuple(self.shrink_factors),
                hidden_size=config.hidden_size,
                num_layers=config.num_layers,
                shrink_num_layers=config.shrink_num_layers,
            ).to(self.device)
        self.policy.action_generator = self.generator

    def set_random_seed(self, seed: int | None = None) -> None:
        """Seed the agent's action sampling, the action space and the env; unlike SB3's, leave the global
        RNGs alone. None draws a random seed for the sampling."""
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
            return
        self.generator.manual_seed(seed)
        self.action_space.seed(seed)
        if self.env is not None:
            self.env.seed(seed)  # applied at the next reset, as in SB3

    def _excluded_save_params(self) -> list[str]:
        # The generator is re-created from the seed on load; an unfinished episode is not resumed.
        return [*super()._excluded_save_params(), "generator", "_episode"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []

    @classmethod
    def load(
        cls: type[SelfN2NAgent],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: torch.device | str = "cpu",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfN2NAgent:
        """SB3's ``load``, on ``env`` if given, to train further or to transfer the policy to another
        teacher: it needs the same descriptor size and number of shrink factors (matched by index), not
        the same number of layers, so the env's spaces replace the saved ones. ``kwargs`` override
        hyperparameters (``learning_rate``, ``seed``, ``tensorboard_log``, ...), except the network sizes.
        A zip without optimizer state (see :func:`agents.common.training.save_acting_weights`) loads too."""
        sizes = {k: kwargs.pop(k) for k in ARCHITECTURE_FIELDS if k in kwargs}
        if env is not None:
            env = cls._wrap_env(env, kwargs.get("verbose", 0))
            spaces_of_env = {"observation_space": env.observation_space, "action_space": env.action_space}
            custom_objects = {**spaces_of_env, **(custom_objects or {})}
        model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        changed = [k for k, v in sizes.items() if v != getattr(model, k)]
        if changed:
            raise ValueError(f"N2N: load cannot change the network sizes {changed} of the saved policy")
        return model

    def learn(
        self: SelfN2NAgent,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "n2n",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfN2NAgent:
        """Run episodes for ``total_timesteps`` env steps, updating after every ``rollouts_per_update``
        finished episodes; the episodes finished when the budget runs out make one last, smaller update
        (an episode still running then is kept for a later ``learn(reset_num_timesteps=False)``). Logs
        after every ``log_interval`` updates. A callback's ``on_step`` returning False stops at once,
        without updating on the unfinished batch (as SB3 does)."""
        if self.env is None:
            raise ValueError("N2N: no env to learn from; pass env= to the constructor or to load()")
        if reset_num_timesteps or self._last_obs is None or self._episode is None:
            self._episode = _Episode([], [])
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        callback.on_training_start(locals(), globals())
        batch: list[_Episode] = []
        continue_training = True
        while continue_training and self.num_timesteps < total_timesteps:
            callback.on_rollout_start()
            while len(batch) < self.rollouts_per_update and self.num_timesteps < total_timesteps:
                actions, _ = self.policy.predict(self._last_obs, deterministic=False)
                new_obs, rewards, dones, infos = self.env.step(actions)
                self.num_timesteps += 1
                self._episode.observations.append({k: v[0].copy() for k, v in self._last_obs.items()})
                self._episode.actions.append(int(actions[0]))
                self._episode.reward += float(rewards[0])
                if dones[0]:
                    batch.append(self._episode)
                    self.ep_info_buffer.append({"r": self._episode.reward, "l": len(self._episode.actions)})
                    self._episode_num += 1
                    # The VecEnv has already reset: new_obs starts the next episode.
                    self._episode = _Episode([], [])
                self._last_obs = new_obs
                callback.update_locals(locals())
                if not callback.on_step():
                    continue_training = False
                    break
            callback.on_rollout_end()
            if continue_training and batch:
                self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
                self.train(batch)
                batch = []
                if log_interval > 0 and self._n_updates % log_interval == 0:
                    self.dump_logs()
        callback.on_training_end()
        return self

    def train(self, episodes: list[_Episode]) -> dict[str, float]:
        """One REINFORCE update on finished episodes; returns the logged terms."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        observations = [obs for episode in episodes for obs in episode.observations]
        obs = obs_as_tensor({k: np.stack([o[k] for o in observations]) for k in OBSERVATION_KEYS}, self.device)
        actions = torch.tensor([a for episode in episodes for a in episode.actions], device=self.device)
        episode_index = torch.repeat_interleave(
            torch.arange(len(episodes), device=self.device),
            torch.tensor([len(episode.actions) for episode in episodes], device=self.device),
        )
        rewards = torch.tensor([episode.reward for episode in episodes], dtype=torch.float32, device=self.device)
        mean_reward = float(rewards.mean())
        if self.baseline is None:
            self.baseline = mean_reward

        distribution = self.policy.get_distribution(obs)
        log_prob = distribution.log_prob(actions)
        # sum_t log pi(a_t | s_t) per episode
        episode_log_prob = torch.zeros(len(episodes), device=self.device).index_add(0, episode_index, log_prob)
        policy_loss = -((rewards - self.baseline) * episode_log_prob).mean()
        entropy = distribution.entropy().mean()
        loss = policy_loss - self.ent_coef * entropy
        self.policy.optimizer.zero_grad()
        loss.backward()
        if self.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self.policy.optimizer.step()
        self._n_updates += 1

        terms = {
            "mean_reward": mean_reward,
            "baseline": self.baseline,
            "loss": loss.item(),
            "policy_loss": policy_loss.item(),
            "entropy": entropy.item(),
        }
        for key, value in terms.items():
            self.logger.record(f"train/{key}", value)
        self.logger.record("train/n_updates", self._n_updates)
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * mean_reward
        return terms

    def dump_logs(self) -> None:
        elapsed = max((time.time_ns() - self.start_time) / 1e9, sys.float_info.epsilon)
        self.logger.record("rollout/ep_rew_mean", safe_mean([info["r"] for info in self.ep_info_buffer]))
        self.logger.record("rollout/ep_len_mean", safe_mean([info["l"] for info in self.ep_info_buffer]))
        self.logger.record("time/episodes", self._episode_num)
        self.logger.record("time/fps", int((self.num_timesteps - self._num_timesteps_at_start) / elapsed))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)
