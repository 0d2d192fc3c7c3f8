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

import importlib
import io
import json
import time
import zipfile
from collections import deque
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback, ProgressBarCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.utils import configure_logger, safe_mean
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from torch import nn

from agents.n2n.policies import ARCHITECTURE_FIELDS, OBSERVATION_KEYS, N2NPolicy, obs_as_tensor

# Finished episodes averaged into rollout/ep_rew_mean (SB3's stats_window_size).
STATS_WINDOW = 100
_FORMAT = "n2n-agent/1"



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


def _as_vec_env(env: gym.Env | VecEnv) -> VecEnv:
    if isinstance(env, VecEnv):
        vec_env = env
    elif isinstance(env, gym.Env):
        vec_env = DummyVecEnv([lambda: env])
    else:
        raise TypeError(f"N2N: env of type {type(env).__name__}; expected a gymnasium.Env or an SB3 VecEnv")
    # One episode at a time keeps every update on-policy: with several envs, the episodes running at an
    # update would finish under the new policy.
    if vec_env.num_envs != 1:
        raise ValueError(f"N2N: a VecEnv with {vec_env.num_envs} envs; N2NAgent needs n_envs=1")
    return vec_env


@dataclass
class _Episode:
    observations: list[dict[str, np.ndarray]]
    actions: list[int]
    reward: float = 0.0


class N2NAgent:
    """N2N's two-stage policy-gradient agent (REINFORCE with a moving-average baseline), SB3-style.

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
        them at random. The agent keeps its own ``torch.Generator`` and leaves torch's global RNG alone.
    :param learning_rate, hidden_size, num_layers, shrink_num_layers, rollouts_per_update, baseline_decay,
        ent_coef, max_grad_norm: see :class:`N2NConfig`.
    :param tensorboard_log: the folder for TensorBoard logs (None: no TensorBoard).
    :param verbose: 0 silent, 1 prints the logged values after each update.
    :param device: where the networks run.
    :param _init_setup_model: whether to build the networks now.
    """

    policy_aliases: ClassVar[dict[str, type[N2NPolicy]]] = {"N2NPolicy": N2NPolicy}

    def __init__(
        self,
        policy: str | type[N2NPolicy],
        env: gym.Env | VecEnv | None,
        seed: int | None = None,
        learning_rate: float = 3e-3,
        hidden_size: int = 30,
        num_layers: int = 2,
        shrink_num_layers: int = 1,
        rollouts_per_update: int = 5,
        baseline_decay: float = 0.9,
        ent_coef: float = 0.0,
        max_grad_norm: float | None = None,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        device: str | torch.device = "cpu",
        _init_setup_model: bool = True,
    ):
        if isinstance(policy, str):
            if policy not in self.policy_aliases:
                raise ValueError(f"N2N: policy={policy!r}; expected one of {sorted(self.policy_aliases)}")
            policy = self.policy_aliases[policy]
        if not (isinstance(policy, type) and issubclass(policy, N2NPolicy)):
            raise ValueError(f"N2N: policy={policy!r}; expected 'N2NPolicy' or a subclass of N2NPolicy")
        self.policy_class = policy
        self.config = N2NConfig(
            learning_rate, hidden_size, num_layers, shrink_num_layers, rollouts_per_update, baseline_decay,
            ent_coef, max_grad_norm,
        )  # fmt: skip
        self.seed = seed
        self.tensorboard_log = tensorboard_log
        self.verbose = verbose
        self.device = torch.device(device)
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

        self.env: VecEnv | None = None
        self.descriptor_size: int | None = None
        self.shrink_factors: tuple[float, ...] | None = None
        if env is not None:
            self.env = _as_vec_env(env)
            self.descriptor_size, self.shrink_factors = _check_n2n_env(self.env)
            if seed is not None:
                self.env.seed(seed)  # applied at the next reset, as in SB3
                self.env.action_space.seed(seed)
        elif _init_setup_model:
            raise ValueError("N2N: env=None; the env sizes the networks (pass _init_setup_model=False to load)")

        self.policy: N2NPolicy | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.baseline: float | None = None
        self.num_timesteps = 0
        self._n_updates = 0
        self._episodes = 0
        self._logger: Logger | None = None
        self._custom_logger = False
        self._last_obs: dict[str, np.ndarray] | None = None
        self._episode: _Episode | None = None
        self.ep_info_buffer: deque[dict[str, float]] = deque(maxlen=STATS_WINDOW)
        if _init_setup_model:
            self._setup_model()

    # The SB3 names that callbacks and our scripts use.
    @property
    def n_envs(self) -> int:
        return 1

    @property
    def observation_space(self) -> spaces.Space | None:
        return None if self.env is None else self.env.observation_space

    @property
    def action_space(self) -> spaces.Space | None:
        return None if self.env is None else self.env.action_space

    @property
    def logger(self) -> Logger:
        if self._logger is None:
            self._logger = Logger(folder=None, output_formats=[])
        return self._logger

    def set_logger(self, logger: Logger) -> None:
        """Use ``logger`` instead of the one :meth:`learn` would configure."""
        self._logger = logger
        self._custom_logger = True

    def get_env(self) -> VecEnv | None:
        return self.env

    def _setup_model(self) -> None:
        # Initial weights from the agent's seed without touching torch's global RNG state.
        with torch.random.fork_rng(devices=[]):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            self.policy = self.policy_class(
                self.descriptor_size,
                self.shrink_factors,
                hidden_size=self.config.hidden_size,
                num_layers=self.config.num_layers,
                shrink_num_layers=self.config.shrink_num_layers,
            ).to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.config.learning_rate)

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """The action for one observation (as a gym.Env returns it; action shape ()) or a batch of them
        (as a VecEnv returns them; action shape (batch,)). ``state`` and ``episode_start`` are accepted
        for SB3's signature and ignored: the policy needs nothing beyond the observation."""
        missing = [k for k in OBSERVATION_KEYS if k not in observation]
        if missing:
            raise ValueError(f"N2N: observation lacks {missing}; expected the keys {list(OBSERVATION_KEYS)}")
        batched = np.ndim(observation["layers"]) == 3
        obs = obs_as_tensor(observation, self.device)
        if not batched:
            obs = {k: v.unsqueeze(0) for k, v in obs.items()}
        # The networks have no dropout or batch norm, so they need no train/eval switching.
        with torch.no_grad():
            actions = self._select(obs, deterministic)
        return (actions if batched else actions.reshape(())), None

    def _select(self, obs: dict[str, torch.Tensor], deterministic: bool) -> np.ndarray:
        distribution = self.policy.get_distribution(obs)
        if deterministic:
            actions = distribution.probs.argmax(-1)
        else:
            # The agent's own generator, so a seeded agent samples the same episodes on every run.
            actions = torch.multinomial(distribution.probs.cpu(), 1, generator=self.generator).squeeze(-1)
        return actions.cpu().numpy().astype(np.int64)

    def _setup_learn(self, total_timesteps: int, reset_num_timesteps: bool, tb_log_name: str) -> int:
        self.start_time = time.time_ns()
        if reset_num_timesteps:
            self.num_timesteps = 0
            self._episodes = 0
            self.ep_info_buffer.clear()
        else:
            total_timesteps += self.num_timesteps
        self._num_timesteps_at_start = self.num_timesteps
        if reset_num_timesteps or self._last_obs is None:
            self._last_obs = self.env.reset()
            self._episode = _Episode([], [])
        if not self._custom_logger:
            if self.tensorboard_log is None and self.verbose == 0:
                # SB3's configure_logger would make an empty temporary folder for a logger that writes nothing.
                self._logger = Logger(folder=None, output_formats=[])
            else:
                self._logger = configure_logger(self.verbose, self.tensorboard_log, tb_log_name, reset_num_timesteps)
        return total_timesteps

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool) -> BaseCallback:
        if isinstance(callback, list):
            callback = CallbackList(callback)
        if not isinstance(callback, BaseCallback):
            callback = ConvertCallback(callback)
        if progress_bar:
            callback = CallbackList([callback, ProgressBarCallback()])
        callback.init_callback(self)
        return callback

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "n2n",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> N2NAgent:
        """Run episodes for ``total_timesteps`` env steps, updating after every ``rollouts_per_update``
        finished episodes; the episodes finished when the budget runs out make one last, smaller update
        (an episode still running then is kept for a later ``learn(reset_num_timesteps=False)``). Logs
        after every ``log_interval`` updates. A callback's ``on_step`` returning False stops at once,
        without updating on the unfinished batch (as SB3 does)."""
        if self.env is None:
            raise ValueError("N2N: no env to learn from; pass env= to the constructor or to load()")
        total_timesteps = self._setup_learn(total_timesteps, reset_num_timesteps, tb_log_name)
        callback = self._init_callback(callback, progress_bar)
        callback.on_training_start(locals(), globals())
        batch: list[_Episode] = []
        continue_training = True
        while continue_training and self.num_timesteps < total_timesteps:
            callback.on_rollout_start()
            while len(batch) < self.config.rollouts_per_update and self.num_timesteps < total_timesteps:
                obs = obs_as_tensor(self._last_obs, self.device)
                with torch.no_grad():
                    actions = self._select(obs, deterministic=False)
                new_obs, rewards, dones, infos = self.env.step(actions)
                self.num_timesteps += 1
                self._episode.observations.append({k: v[0].copy() for k, v in self._last_obs.items()})
                self._episode.actions.append(int(actions[0]))
                self._episode.reward += float(rewards[0])
                if dones[0]:
                    batch.append(self._episode)
                    self.ep_info_buffer.append({"r": self._episode.reward, "l": len(self._episode.actions)})
                    self._episodes += 1
                    # The VecEnv has already reset: new_obs starts the next episode.
                    self._episode = _Episode([], [])
                self._last_obs = new_obs
                callback.update_locals(locals())
                if not callback.on_step():
                    continue_training = False
                    break
            callback.on_rollout_end()
            if continue_training and batch:
                self.train(batch)
                batch = []
                if log_interval > 0 and self._n_updates % log_interval == 0:
                    self._dump_logs()
        callback.on_training_end()
        return self

    def train(self, episodes: list[_Episode]) -> dict[str, float]:
        """One REINFORCE update on finished episodes; returns the logged terms."""
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
        loss = policy_loss - self.config.ent_coef * entropy
        self.optimizer.zero_grad()
        loss.backward()
        if self.config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
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
        self.baseline = self.config.baseline_decay * self.baseline + (1 - self.config.baseline_decay) * mean_reward
        return terms

    def _dump_logs(self) -> None:
        elapsed = max((time.time_ns() - self.start_time) / 1e9, 1e-9)
        self.logger.record("rollout/ep_rew_mean", safe_mean([info["r"] for info in self.ep_info_buffer]))
        self.logger.record("rollout/ep_len_mean", safe_mean([info["l"] for info in self.ep_info_buffer]))
        self.logger.record("time/episodes", self._episodes)
        self.logger.record("time/fps", int((self.num_timesteps - self._num_timesteps_at_start) / elapsed))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)

    def save(self, path: str | Path) -> None:
        """A zip with ``data.json`` (hyperparameters, descriptor size, shrink factors, baseline, step
        count) and the policy's and optimizer's state dicts; a path without a suffix gets ``.zip``."""
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(".zip")
        if self.policy_class in self.policy_aliases.values():
            policy_name = next(k for k, v in self.policy_aliases.items() if v is self.policy_class)
        else:
            policy_name = f"{self.policy_class.__module__}:{self.policy_class.__qualname__}"
        data = {
            "format": _FORMAT,
            "policy_class": policy_name,
            "hyperparams": asdict(self.config),
            "descriptor_size": self.descriptor_size,
            "shrink_factors": list(self.shrink_factors),
            "baseline": self.baseline,
            "num_timesteps": self.num_timesteps,
            "n_updates": self._n_updates,
            "seed": self.seed,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("data.json", json.dumps(data, indent=2))
            for name, state in (
                ("policy.pth", self.policy.state_dict()),
                ("optimizer.pth", self.optimizer.state_dict()),
            ):
                buffer = io.BytesIO()
                torch.save(state, buffer)
                archive.writestr(name, buffer.getvalue())

    @classmethod
    def load(
        cls, path: str | Path, env: gym.Env | VecEnv | None = None, device: str | torch.device = "cpu", **kwargs: Any
    ) -> N2NAgent:
        """An agent saved by :meth:`save`, on ``env`` if given (to train further or to transfer the policy
        to another teacher: it needs the same descriptor size and number of shrink factors, and matches
        the factors by index). ``kwargs`` override constructor arguments (``learning_rate``, ``seed``,
        ``tensorboard_log``, ...), except the network sizes."""
        path = Path(path)
        if not path.suffix and not path.exists():
            path = path.with_suffix(".zip")
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data.json"))
            policy_state = torch.load(io.BytesIO(archive.read("policy.pth")), map_location=device, weights_only=True)
            optimizer_state = torch.load(io.BytesIO(archive.read("optimizer.pth")), map_location=device,
                                         weights_only=True)  # fmt: skip
        if data.get("format") != _FORMAT:
            raise ValueError(f"N2N: {path} has format {data.get('format')!r}; expected {_FORMAT!r}")
        changed = [k for k in ARCHITECTURE_FIELDS if k in kwargs and kwargs[k] != data["hyperparams"][k]]
        if changed:
            raise ValueError(f"N2N: load cannot change the network sizes {changed} of the saved policy")
        policy = data["policy_class"]
        if policy not in cls.policy_aliases:
            module, _, name = policy.partition(":")
            policy = getattr(importlib.import_module(module), name)
        hyperparams = {**data["hyperparams"], **{k: v for k, v in kwargs.items() if k in _CONFIG_FIELDS}}
        others = {k: v for k, v in kwargs.items() if k not in _CONFIG_FIELDS}
        model = cls(policy, env, device=device, _init_setup_model=False, **{"seed": data["seed"], **others},
                    **hyperparams)  # fmt: skip
        saved_factors = tuple(data["shrink_factors"])
        if env is None:
            model.descriptor_size, model.shrink_factors = data["descriptor_size"], saved_factors
        elif model.descriptor_size != data["descriptor_size"] or len(model.shrink_factors) != len(saved_factors):
            raise ValueError(
                f"N2N: the env has descriptor size {model.descriptor_size} and {len(model.shrink_factors)} shrink "
                f"factors {model.shrink_factors}; the saved policy needs descriptor size {data['descriptor_size']} "
                f"and {len(saved_factors)} shrink factors ({saved_factors})"
            )
        model._setup_model()
        model.policy.load_state_dict(policy_state)
        model.optimizer.load_state_dict(optimizer_state)
        for group in model.optimizer.param_groups:  # the saved state carries the old learning rate
            group["lr"] = model.config.learning_rate
        model.baseline = data["baseline"]
        model.num_timesteps = data["num_timesteps"]
        model._n_updates = data["n_updates"]
        return model


_CONFIG_FIELDS = frozenset(f.name for f in fields(N2NConfig))
