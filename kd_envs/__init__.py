"""KD-Gym environments: reinforcement-learning agents learn to run knowledge distillation.

Importing this package registers its environments with Gymnasium, so both of these work::

    import gymnasium as gym, kd_envs
    env = gym.make("TemperatureKD-v0", epochs=30)
    env = gym.make("kd_envs:TemperatureKD-v0")  # imports kd_envs first

Gymnasium 1.x has no plugin entry points, so a process that has not imported ``kd_envs`` does not know the
plain ids. Workers of SB3's ``SubprocVecEnv`` (started by forkserver or spawn) are such processes: give them
the ``kd_envs:`` form, e.g. ``make_vec_env("kd_envs:N2NCompress-v0", n_envs=4, vec_env_cls=SubprocVecEnv)``.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from gymnasium.envs.registration import register, registry

try:
    __version__ = version("kd-gym")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

# id -> entry point, or a dict of `register` kwargs for an id that needs more (``max_episode_steps``);
# the kwargs' defaults live in each env's signature and docstring.
ENVIRONMENTS: dict[str, str | dict[str, Any]] = {
    "TemperatureKD-v0": "kd_envs.envs.temperature_kd:TemperatureKDEnv",
    "N2NCompress-v0": "kd_envs.envs.n2n_compress:N2NCompressEnv",
    "InterferenceCartPole-v0": {
        "entry_point": "kd_envs.envs.interference_cartpole:make_interference_cartpole",
        "max_episode_steps": 500,
    },
    "InterferenceAtari-v0": {
        "entry_point": "kd_envs.envs.interference_atari:make_interference_atari",
        "max_episode_steps": 27_000,  # 108k frames at frame_skip=4
    },
}


# The interference study's CPU-scale Atari check; MinAtar is an optional extra, imported when made.
MINATAR_ENVIRONMENTS: dict[str, dict[str, Any]] = {
    f"MinAtar-{game}-v1": {
        "entry_point": "kd_envs.wrappers.minatar:make_minatar",
        "kwargs": {"game": game},
        "max_episode_steps": 10_000,  # a cap for greedy evaluation; MinAtar's own ids have none
    }
    for game in ("Breakout", "SpaceInvaders")
}


def _register_all() -> None:
    for env_id, entry in {**ENVIRONMENTS, **MINATAR_ENVIRONMENTS}.items():
        kwargs = {"entry_point": entry} if isinstance(entry, str) else entry
        if env_id not in registry:  # importing twice (e.g. a reload) must stay quiet
            register(id=env_id, disable_env_checker=False, **kwargs)


_register_all()
