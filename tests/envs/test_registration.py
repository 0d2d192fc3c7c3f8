"""What importing kd_envs registers with Gymnasium, and that each registration can be made and stored."""

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec, load_env_creator
from gymnasium.utils.env_checker import data_equivalence

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


# Every drift schedule and kind of contexts of the interference envs: their ContextDrift records its schedule
# and contexts as plain JSON, so gym.make can rebuild the same stack from a restored spec.
DRIFT_CASES = [
    ("InterferenceCartPole-v0", {}),
    ("InterferenceCartPole-v0", {"drift": "abrupt", "phase_length": 2}),
    ("InterferenceCartPole-v0", {"drift": "cyclic", "phase_length": 1, "contexts": "conflicting"}),
    ("InterferenceCartPole-v0", {"drift": "smooth", "phase_unit": "steps", "phase_length": 5, "context": 1}),
    ("InterferenceCartPole-v0", {"drift": "cyclic", "phase_unit": "steps", "visible_context": True,
                                 "contexts": [{"gravity": 9.8}, {"gravity": 12, "length": 1}]}),
    ("InterferenceAtari-v0", {}),
    ("InterferenceAtari-v0", {"drift": "abrupt", "phase_length": 2}),
    ("InterferenceAtari-v0", {"drift": "cyclic", "phase_unit": "steps", "contexts": [{"mode": 0}, {"mode": 4}]}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [("TemperatureKD-v0", {}), ("N2NCompress-v0", {}), ("MinAtar-Breakout-v1", {}), *DRIFT_CASES],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()) or "defaults",
)
def test_made_env_spec_round_trips_through_json(env_id, kwargs, small_json_kwargs):
    if env_id.startswith("MinAtar"):
        pytest.importorskip("minatar")
    kwargs = {**small_json_kwargs.get(env_id, {}), **kwargs}
    env = gym.make(env_id, **kwargs)
    restored = EnvSpec.from_json(env.spec.to_json())
    remade = gym.make(restored)
    assert restored == env.spec and remade.spec == env.spec
    # The registered spec too, made with the same kwargs.
    registered = EnvSpec.from_json(gym.spec(env_id).to_json())
    assert registered == gym.spec(env_id) and gym.make(registered, **kwargs).spec == env.spec
    if env_id.startswith("Interference"):  # the rebuilt stack runs the same episode
        assert data_equivalence(short_episode(env), short_episode(remade), exact=True)


def short_episode(env: gym.Env, steps: int = 30) -> list:
    env.action_space.seed(0)
    out = [env.reset(seed=1)]
    for _ in range(steps):
        out.append(env.step(env.action_space.sample()))
        if out[-1][2] or out[-1][3]:
            break
    return out


@pytest.mark.parametrize("env_id", ["TemperatureKD-v0", "N2NCompress-v0"])
def test_a_task_config_is_stored_in_the_spec_as_its_dict(env_id, tiny_kwargs, tiny_n2n_kwargs):
    from kd_envs.tasks import TaskConfig

    kwargs = dict(tiny_kwargs) if env_id == "TemperatureKD-v0" else dict(tiny_n2n_kwargs)
    task = TaskConfig.from_dict(kwargs["task"]) if isinstance(kwargs["task"], dict) else kwargs["task"]
    env = gym.make(env_id, **dict(kwargs, task=task))
    assert env.unwrapped.task.config == task  # the env still takes a TaskConfig
    assert env.spec.kwargs["task"] == task.to_dict()
    assert json.loads(json.dumps(env.spec.kwargs)) == env.spec.kwargs
    remade = gym.make(EnvSpec.from_json(env.spec.to_json()))
    assert remade.unwrapped.task.config == task and remade.spec == env.spec


@pytest.mark.filterwarnings("ignore:.*render_mode")  # Gymnasium's own warning, before the env's error
@pytest.mark.parametrize("env_id", sorted(EXPECTED_REGISTRATIONS))
def test_render_mode_none_is_accepted_and_an_unsupported_one_named(env_id, small_json_kwargs):
    if env_id.startswith("MinAtar"):
        pytest.importorskip("minatar")
    kwargs = small_json_kwargs.get(env_id, {})
    env = gym.make(env_id, render_mode=None, **kwargs)
    assert env.render_mode is None
    supported = env.metadata["render_modes"]
    assert "rgb_array" in supported
    pattern = rf"{env_id}: render_mode='ascii'; expected None or one of \[.*'rgb_array'.*\]"
    with pytest.raises(ValueError, match=pattern):
        gym.make(env_id, render_mode="ascii", **kwargs)


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


@pytest.mark.slow  # two fresh worker processes import torch and Gymnasium: about 30 s on two cores
def test_subprocess_workers_make_the_module_form(tiny_json_kwargs):
    """SB3's SubprocVecEnv starts its workers with forkserver (spawn where there is none), which do not import
    kd_envs: the documented ``kd_envs:`` form imports it there, so the ids are registered."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = make_vec_env("kd_envs:TemperatureKD-v0", n_envs=2, seed=0, env_kwargs=tiny_json_kwargs,
                        vec_env_cls=SubprocVecEnv)  # fmt: skip
    try:
        assert venv.reset().shape == (2, 32, 3)
        venv.step(np.zeros((2, 32), np.float32))
        assert venv.get_attr("render_mode") == ["rgb_array"] * 2
    finally:
        venv.close()
