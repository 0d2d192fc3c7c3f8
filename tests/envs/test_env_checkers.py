"""Gymnasium's and SB3's checkers and a determinism rollout over every registered id."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import kd_envs


@pytest.fixture(scope="module")
def small_kwargs(tiny_kwargs, tiny_n2n_kwargs):
    # Every registered id needs small kwargs here; a new env without them fails this test module.
    # N2N keeps student results in memory only, so that both rollouts below really train.
    return {"TemperatureKD-v0": tiny_kwargs, "N2NCompress-v0": dict(tiny_n2n_kwargs, cache_students=False),
            "InterferenceCartPole-v0": {"drift": "smooth", "phase_length": 50, "phase_unit": "steps"},
            "InterferenceAtari-v0": {"drift": "cyclic", "phase_length": 1}}


# Wall-clock measurements and cache bookkeeping may differ between two runs of the same episode.
TIMING_KEYS = {"train_seconds", "cached"}


def assert_same(u, v):
    if isinstance(u, dict):
        assert set(u) == set(v)
        for key in set(u) - TIMING_KEYS:
            assert_same(u[key], v[key])
    elif isinstance(u, np.ndarray):
        np.testing.assert_array_equal(u, v)
    else:
        assert u == v


@pytest.mark.parametrize("env_id", sorted(kd_envs.ENVIRONMENTS))
def test_checkers_pass(env_id, small_kwargs):
    assert env_id in small_kwargs, f"add small kwargs for {env_id} to this test"
    env = gym.make(env_id, **small_kwargs[env_id])
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)


@pytest.mark.parametrize("env_id", sorted(kd_envs.ENVIRONMENTS))
def test_determinism_rollout(env_id, small_kwargs):
    def run():
        env = gym.make(env_id, **small_kwargs[env_id])
        env.action_space.seed(0)
        obs, _ = env.reset(seed=42)
        out = [obs]
        for _ in range(10):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            out += [obs, reward, terminated, truncated, info]
            if terminated or truncated:
                break
        return out

    for u, v in zip(run(), run(), strict=True):
        assert_same(u, v)
