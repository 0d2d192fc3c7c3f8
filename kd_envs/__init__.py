"""KD-Gym environments: reinforcement-learning agents learn to run knowledge distillation.

Importing this package registers its environments with Gymnasium, so both of these work::

    import gymnasium as gym, kd_envs
    env = gym.make("TemperatureKD-v0", epochs=30)
    env = gym.make("kd_envs:TemperatureKD-v0")  # imports kd_envs first
"""

from importlib.metadata import PackageNotFoundError, version

from gymnasium.envs.registration import register, registry

try:
    __version__ = version("kd-gym")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

# id -> entry point; the kwargs' defaults live in each env's signature and docstring.
ENVIRONMENTS = {
    "TemperatureKD-v0": "kd_envs.envs.temperature_kd:TemperatureKDEnv",
    "N2NCompress-v0": "kd_envs.envs.n2n_compress:N2NCompressEnv",
}


def _register_all() -> None:
    for env_id, entry_point in ENVIRONMENTS.items():
        if env_id not in registry:  # importing twice (e.g. a reload) must stay quiet
            register(id=env_id, entry_point=entry_point, disable_env_checker=False)


_register_all()
