"""Random search on N2NCompress-v0, the reference searcher: uniform over the actions valid at each step."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ProgressBarCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

import kd_envs  # noqa: F401  (registers the environments)


class RandomSearch:
    """Random search over N2NCompress-v0's action space: at each step an action drawn uniformly from
    the valid ones (``action_mask``). It learns nothing; ``learn`` runs episodes for the budget so that
    a :class:`SearchRecordCallback` sees the students, as with the learning agents. The SB3-style
    signature lets :func:`agents.common.training.train_agent` treat it like any algorithm."""

    policy_name = "UniformPolicy"

    def __init__(self, policy: str, env: gym.Env | VecEnv, seed: int | None = None,
                 tensorboard_log: str | None = None, verbose: int = 0, device: str = "cpu"):  # fmt: skip
        if policy != self.policy_name:
            raise ValueError(f"{type(self).__name__}: policy={policy!r}; expected {self.policy_name!r}")
        self.env = env if isinstance(env, VecEnv) or env is None else DummyVecEnv([lambda: env])
        self.seed = seed
        self.tensorboard_log = tensorboard_log
        self.verbose = verbose
        self.num_timesteps = 0
        self._rng = np.random.default_rng(seed)
        self.logger = configure(None, [])
        if self.env is not None and self.env.num_envs != 1:
            raise ValueError(f"{type(self).__name__}: a VecEnv with {self.env.num_envs} envs; it needs n_envs=1")

    def get_env(self) -> VecEnv | None:
        return self.env

    def predict(self, observation: dict[str, np.ndarray], state=None, episode_start=None, deterministic: bool = True):
        mask = np.asarray(observation["action_mask"]) > 0.5
        batched = mask.ndim == 2
        masks = mask if batched else mask[None]
        actions = np.array([self._rng.choice(np.flatnonzero(m)) for m in masks], dtype=np.int64)
        return (actions if batched else actions[0]), state

    def learn(self, total_timesteps: int, callback=None, progress_bar: bool = False, tb_log_name: str = "random",
              reset_num_timesteps: bool = True, log_interval: int = 1):  # fmt: skip
        if self.tensorboard_log:
            self.logger = configure(str(Path(self.tensorboard_log) / f"{tb_log_name}_1"), ["tensorboard"])
        callbacks = [callback] if isinstance(callback, BaseCallback) else list(callback or [])
        if progress_bar:
            callbacks.append(ProgressBarCallback())
        callback = CallbackList(callbacks)
        callback.init_callback(self)
        if reset_num_timesteps:
            self.num_timesteps = 0
        self.env.seed(self.seed)
        obs = self.env.reset()
        callback.on_training_start(locals(), globals())
        callback.on_rollout_start()
        while self.num_timesteps < total_timesteps:
            actions = self._act(obs)
            new_obs, rewards, dones, infos = self.env.step(actions)
            self.num_timesteps += self.env.num_envs
            if dones[0]:
                self._episode_end(float(rewards[0]), infos[0])
            callback.update_locals(locals())
            if not callback.on_step():
                break
            obs = new_obs
            if dones.any():
                self.logger.dump(self.num_timesteps)
        callback.on_rollout_end()
        callback.on_training_end()
        return self

    def _act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The actions of a search step (batched observation in, batched actions out)."""
        return self.predict(obs)[0]

    def _episode_end(self, reward: float, info: dict[str, Any]) -> None:
        """Called after each finished episode with its reward and last info (random search keeps nothing)."""

    def _state(self) -> dict[str, Any]:
        return {}

    def save(self, path: str | Path) -> None:
        data = {"seed": self.seed, "num_timesteps": self.num_timesteps, **self._state()}
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("data.json", json.dumps(data))

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | VecEnv | None = None, device: str = "cpu", **kwargs):
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data.json"))
        model = cls(cls.policy_name, env, seed=kwargs.pop("seed", data["seed"]), **kwargs)
        model.num_timesteps = data["num_timesteps"]
        return model
