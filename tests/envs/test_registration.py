"""What importing kd_envs registers with Gymnasium, and that each registration can be made and stored."""

import json
import subprocess
import sys

import gymnasium as gym
import pytest
from gymnasium.envs.registration import EnvSpec, load_env_creator

import kd_envs  # noqa: F401  (registers the environments)

# id -> (entry point, registered kwargs, max_episode_steps): written out here, not read from kd_envs, so
# that an id added, dropped or re-pointed there fails this test until the list (and the docs) follow.
EXPECTED_REGISTRATIONS = {
    "TemperatureKD-v0": ("kd_envs.envs.temperature_kd:TemperatureKDEnv", {}, None),
    "N2NCompress-v0": ("kd_envs.envs.n2n_compress:N2NCompressEnv", {}, None),
    "InterferenceCartPole-v0": ("kd_envs.envs.interference_cartpole:make_interference_cartpole", {}, 500),
    "InterferenceAtari-v0": ("kd_envs.envs.interference_atari:make_interference_atari", {}, 27_000),
    "MinAtar-Breakout-v1": ("kd_envs.wrappers.minatar:make_minatar", {"game": "Breakout"}, 10_000),
    "MinAtar-SpaceInvaders-v1": ("kd_envs.wrappers.minatar:make_minatar", {"game": "SpaceInvaders"}, 10_000),
}


def kd_gym_specs() -> list[EnvSpec]:
    """Every spec in Gymnasium's registry whose entry point lies in kd_envs."""
    return [s for s in gym.registry.values() if isinstance(s.entry_point, str) and s.entry_point.startswith("kd_envs.")]


def test_registered_ids_are_the_expected_ones():
    registered = {s.id: (s.entry_point, s.kwargs, s.max_episode_steps) for s in kd_gym_specs()}
    assert registered == EXPECTED_REGISTRATIONS


@pytest.mark.parametrize("env_id", sorted(EXPECTED_REGISTRATIONS))
def test_spec_entry_point_imports_and_kwargs_are_json(env_id):
    spec = gym.spec(env_id)
    assert callable(load_env_creator(spec.entry_point))
    assert json.loads(json.dumps(spec.kwargs)) == spec.kwargs
    assert spec.disable_env_checker is False  # gym.make wraps every KD-Gym env in the passive checker
    assert spec.namespace is None and spec.version == int(env_id.rsplit("-v", 1)[1])


@pytest.fixture(scope="module")
def small_json_kwargs(tiny_json_kwargs, tiny_n2n_kwargs):
    return {"TemperatureKD-v0": tiny_json_kwargs, "N2NCompress-v0": tiny_n2n_kwargs}


# Known failure, for a later issue: these entry points add wrappers (ContextDrift, whose DriftSchedule comes
# back from JSON as a dict, and Atari's preprocessing), which gym.make refuses from a restored spec. strict:
# the day it works, this fails and the marks come off.
SPEC_JSON_FAILS = pytest.mark.xfail(
    raises=ValueError, strict=True, reason="gym.make refuses the entry point's wrappers from a restored spec"
)


@pytest.mark.parametrize(
    "env_id",
    ["TemperatureKD-v0", "N2NCompress-v0", "MinAtar-Breakout-v1",
     pytest.param("InterferenceCartPole-v0", marks=SPEC_JSON_FAILS),
     pytest.param("InterferenceAtari-v0", marks=SPEC_JSON_FAILS)],
)  # fmt: skip
def test_made_env_spec_round_trips_through_json(env_id, small_json_kwargs):
    if env_id.startswith("MinAtar"):
        pytest.importorskip("minatar")
    env = gym.make(env_id, **small_json_kwargs.get(env_id, {}))
    restored = EnvSpec.from_json(env.spec.to_json())
    remade = gym.make(restored)
    assert restored == env.spec and remade.spec == env.spec


@pytest.mark.slow  # a fresh interpreter imports torch and Gymnasium: about 10 s on two cores
def test_make_with_module_prefix_imports_kd_envs(tiny_json_kwargs):
    """gym.make("kd_envs:TemperatureKD-v0") works with no import first (as rl-zoo3's --gym-packages)."""
    code = (
        "import sys, gymnasium as gym\n"
        "assert 'kd_envs' not in sys.modules and 'TemperatureKD-v0' not in gym.registry\n"
        f"kwargs = {tiny_json_kwargs!r}\n"
        "env = gym.make('kd_envs:TemperatureKD-v0', **kwargs)\n"
        "assert env.spec.id == 'TemperatureKD-v0', env.spec.id\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
