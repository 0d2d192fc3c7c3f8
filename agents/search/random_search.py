"""Random search on N2NCompress-v0, the reference searcher: uniform over the actions valid at each step."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback

import kd_envs  # noqa: F401  (registers the environments)
from agents.search.policies import UniformPolicy

SelfRandomSearch = TypeVar("SelfRandomSearch", bound="RandomSearch")


class RandomSearch(BaseAlgorithm):
    """Random search over N2NCompress-v0's action space: at each step an action drawn uniformly from
    the valid ones (``action_mask``). It learns nothing; ``learn`` runs episodes for the budget so that
    a :class:`SearchRecordCallback` sees the students, as with the learning agents. An SB3
    ``BaseAlgorithm`` with an episode-based ``learn`` (as sb3-contrib's ARS): save/load, logging and
    callbacks come from SB3.

    :param policy: ``"UniformPolicy"`` (or :class:`UniformPolicy`).
    :param env: an N2NCompress-v0 env, a ``gymnasium.Env`` or an SB3 ``VecEnv`` with one env.
    :param seed: seeds the draws (a numpy generator of the algorithm's own) and, at every ``learn``, the
        env's resets; the global RNGs are left alone.
    :param tensorboard_log: the folder for TensorBoard logs (None: no TensorBoard).
    :param verbose: 0 silent, 1 prints the logged values after each episode.
    :param device: unused (no network); kept for SB3's signature.
    :param _init_setup_model: whether to build the policy now.
    """

    policy_aliases: ClassVar[dict[str, type[UniformPolicy]]] = {"UniformPolicy": UniformPolicy}
    policy: UniformPolicy

    def __init__(
        self,
        policy: str | type[UniformPolicy],
        env: GymEnv | None,
        seed: int | None = None,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        device: str | torch.device = "cpu",
        _init_setup_model: bool = True,
    ):
        super().__init__(policy, env, learning_rate=0.0, tensorboard_log=tensorboard_log, verbose=verbose,
                         device=device, seed=seed, supported_action_spaces=(spaces.Discrete,))  # fmt: skip
        if _init_setup_model:
            self._setup_model()

    def _get_policy_from_name(self, policy_name: str) -> type[UniformPolicy]:
        if policy_name not in self.policy_aliases:
            raise ValueError(
                f"{type(self).__name__}: policy={policy_name!r}; expected one of {sorted(self.policy_aliases)}"
            )
        return self.policy_aliases[policy_name]

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.rng = np.random.default_rng(self.seed)
        self.policy = self.policy_class(self.observation_space, self.action_space).to(self.device)
        self.policy.rng = self.rng

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "rng"]  # re-created from the seed on load

    def learn(
        self: SelfRandomSearch,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "random",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRandomSearch:
        """Run episodes for ``total_timesteps`` env steps (or until a callback stops it). Every call
        re-seeds the env with ``seed`` and resets it, except ``reset_num_timesteps=False`` with an episode
        boundary to continue from (a resumed checkpoint). Each proposed student is a rollout: callbacks'
        ``on_rollout_start`` comes before each episode."""
        if reset_num_timesteps or self._last_obs is None:
            self.env.seed(self.seed)
            self._last_obs = None  # _setup_learn resets the env
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        obs = self._last_obs
        callback.on_training_start(locals(), globals())
        callback.on_rollout_start()
        while self.num_timesteps < total_timesteps:
            actions = self._act(obs)
            new_obs, rewards, dones, infos = self.env.step(actions)
            self.num_timesteps += self.env.num_envs
            self._update_info_buffer(infos, dones)
            if dones[0]:
                self._episode_num += 1
                self._episode_end(float(rewards[0]), infos[0])
            callback.update_locals(locals())
            if not callback.on_step():
                break
            obs = self._last_obs = new_obs
            if dones.any() and log_interval > 0 and self._episode_num % log_interval == 0:
                self.dump_logs()
            if dones.any():
                callback.on_rollout_end()
                callback.on_rollout_start()
        callback.on_rollout_end()
        callback.on_training_end()
        return self

    def _act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The actions of a search step (batched observation in, batched actions out)."""
        return self.policy.predict(obs)[0]

    def _episode_end(self, reward: float, info: dict[str, Any]) -> None:
        """Called after each finished episode with its reward and last info (random search keeps nothing)."""

    def dump_logs(self) -> None:
        self.logger.record("time/episodes", self._episode_num)
        self.logger.dump(self.num_timesteps)
