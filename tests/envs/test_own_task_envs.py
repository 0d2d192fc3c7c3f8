"""TemperatureKD-v0 and N2NCompress-v0 on a task of your own (``Task.from_tensors``, given itself or as its
factory ``"module:function"``), and the ``device`` kwarg of both: the checkers pass, a seed repeats its
episode, the spec stores as JSON and makes the same env again, and what the envs refuse they name."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from torch import nn

import kd_envs  # noqa: F401  (registers the environments)
from kd_envs.tasks import Task, task_from_factory

ALLOWED_SB3 = (
    "Your observation  has an unconventional shape (neither an image, nor a 1D vector). We recommend you to flatten "
    "the observation to have only a 1D vector or use a custom policy to properly process the data.",
    "Your observation layers has an unconventional shape (neither an image, nor a 1D vector). We recommend you to "
    "flatten the observation to have only a 1D vector or use a custom policy to properly process the data.",
)


@pytest.fixture(scope="module")
def factory(own_tasks):
    return own_tasks


def kwargs_for(task, **extra):
    return {"task": task, "reward_set_size": 32, **extra}


def warnings_of(run) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message).replace("\x1b[33mWARN: ", "").replace("\x1b[0m", "") for w in caught]


def rollout(env, seed, steps=None):
    env.action_space.seed(11)
    obs, _ = env.reset(seed=seed)
    trace = [obs.copy() if isinstance(obs, np.ndarray) else obs]
    while True:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        trace.append((obs.copy() if isinstance(obs, np.ndarray) else obs, reward, terminated, info))
        if terminated or truncated or (steps is not None and len(trace) > steps):
            return trace


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a if k != "train_seconds")
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


@pytest.mark.parametrize("form", ["task", "factory"])
def test_temperature_kd_on_your_task_passes_the_checkers(factory, form):
    task = task_from_factory(f"{factory}:digits") if form == "task" else f"{factory}:digits"
    env = gym.make("TemperatureKD-v0", disable_env_checker=True, **kwargs_for(task))
    assert warnings_of(lambda: gym_check_env(env.unwrapped)) == []
    env = gym.make("TemperatureKD-v0", **kwargs_for(task))
    assert set(warnings_of(lambda: sb3_check_env(env, warn=True))) <= set(ALLOWED_SB3)
    base = env.unwrapped
    assert base.max_steps == 2 * (256 // 32)  # the task's schedule: 2 epochs of 32
    assert env.spec.kwargs["task"] == f"{factory}:digits"  # either form: the factory, which makes it again


def test_a_seed_repeats_its_episode_in_every_form_of_the_task(factory):
    task = task_from_factory(f"{factory}:digits")
    given = gym.make("TemperatureKD-v0", **kwargs_for(task))
    assert given.unwrapped.task is task  # on the CPU the env uses your task as it is: no copy
    first = rollout(given, seed=5)
    assert same(first, rollout(gym.make("TemperatureKD-v0", **kwargs_for(f"{factory}:digits")), seed=5))
    spec = EnvSpec.from_json(given.spec.to_json())
    assert same(first, rollout(gym.make(spec), seed=5))
    assert same(first, rollout(gym.make("TemperatureKD-v0", **kwargs_for(task), device="cpu"), seed=5))
    assert not same(first, rollout(given, seed=6))
    final = first[-1][-1]
    assert final["teacher_test_accuracy"] == task.teacher_test_accuracy and 0 < final["student_test_accuracy"] <= 1


def test_a_student_of_your_own_trains_and_repeats(factory):
    first = rollout(gym.make("TemperatureKD-v0", **kwargs_for(f"{factory}:sequential")), seed=1)
    assert same(first, rollout(gym.make("TemperatureKD-v0", **kwargs_for(f"{factory}:sequential")), seed=1))
    assert isinstance(gym.make("TemperatureKD-v0", **kwargs_for(f"{factory}:sequential")).unwrapped.task.student(),
                      nn.Sequential)  # fmt: skip
    with pytest.raises(ValueError, match=r"TemperatureKD-v0: feature_weight=0.5 needs a student and a teacher whose "
                       r"forward\(x, return_features=True\)"):  # fmt: skip
        gym.make("TemperatureKD-v0", **kwargs_for(f"{factory}:sequential", feature_weight=0.5))


def test_a_task_without_a_factory_is_recorded_by_name_and_not_made_again(factory):
    import dataclasses

    task = dataclasses.replace(task_from_factory(f"{factory}:digits"), factory=None)
    env = gym.make("TemperatureKD-v0", **kwargs_for(task))
    assert env.spec.kwargs["task"] == {"tensors": "digits", "factory": None}
    env.reset(seed=0)
    message = "TemperatureKD-v0: task=.*a task made from tensors without a factory cannot be rebuilt from its record"
    with pytest.raises(ValueError, match=message):
        gym.make(EnvSpec.from_json(env.spec.to_json()))


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("no_module_of_yours:digits", "task='no_module_of_yours:digits': cannot import module 'no_module_of_yours'"),
        ("{m}:nothing", "task='{m}:nothing': module '{m}' has no function 'nothing'"),
        (3, "task=3: expected one of"),
    ],
)
@pytest.mark.parametrize("env_id", ["TemperatureKD-v0", "N2NCompress-v0"])
def test_a_task_that_cannot_be_made_is_named(factory, env_id, task, message):
    task = task.format(m=factory) if isinstance(task, str) else task
    with pytest.raises(ValueError, match=f"{env_id}: {message.format(m=factory)}"):
        gym.make(env_id, task=task)


@pytest.mark.parametrize("env_id", ["TemperatureKD-v0", "N2NCompress-v0"])
def test_a_device_this_machine_lacks_is_named(factory, env_id):
    cases = [("bogus", "device='bogus': not a device torch knows"), ("cuda:7", "device='cuda:7'"),
             ("xla", "device='xla'; expected 'cpu', 'cuda', 'cuda:<n>' or 'mps'")]  # fmt: skip
    if not torch.cuda.is_available():
        cases.append(("cuda", "device='cuda': this machine has no CUDA device"))
    if not torch.backends.mps.is_available():
        cases.append(("mps", "device='mps': MPS is not available"))
    for device, message in cases:
        if device == "cuda:7" and torch.cuda.is_available() and torch.cuda.device_count() > 7:
            continue
        with pytest.raises(ValueError, match=f"{env_id}: {message}"):
            gym.make(env_id, task=f"{factory}:digits", device=device)


def n2n_kwargs(task, **extra):
    return {"task": task, "epochs": 1, "batch_size": 32, "cache_students": False, **extra}


def test_n2n_compresses_your_teacher_of_a_model_family(factory):
    env = gym.make("N2NCompress-v0", disable_env_checker=True, **n2n_kwargs(f"{factory}:digits"))
    assert warnings_of(lambda: gym_check_env(env.unwrapped)) == []
    env = gym.make("N2NCompress-v0", **n2n_kwargs(f"{factory}:digits"))
    assert set(warnings_of(lambda: sb3_check_env(env, warn=True))) <= set(ALLOWED_SB3)
    base = env.unwrapped
    assert base.num_layers == 1 and base.teacher_parameters == 64 * 32 + 32 + 32 * 10 + 10
    env.reset(seed=0)
    _, _, terminated, _, _ = env.step(0)  # keep the one layer
    assert not terminated
    _, reward, terminated, _, info = env.step(1)  # shrink it to half its width
    assert terminated and not info["degenerate"] and reward > 0
    assert info["student_parameters"] == 64 * 16 + 16 + 16 * 10 + 10
    again = gym.make("N2NCompress-v0", **n2n_kwargs(task_from_factory(f"{factory}:digits")))
    again.reset(seed=0)
    again.step(0)
    assert again.step(1)[1] == reward  # the same seed, the same student, whichever form of the task
    assert base.evaluator.key(base.student_architecture(), base.distill_config, 0) != again.unwrapped.evaluator.key(
        base.student_architecture(), base.distill_config, 1)  # fmt: skip


def test_n2n_says_what_it_refuses_and_why(factory):
    message = ("N2NCompress-v0: cannot compress the teacher of Task.*a Sequential is no model of the families .* "
               "it has no layer spec to read. N2N removes and shrinks")  # fmt: skip
    with pytest.raises(ValueError, match=message):
        gym.make("N2NCompress-v0", **n2n_kwargs(own_teacher_task(factory)))
    task = task_from_factory(f"{factory}:digits")
    task.teacher.extra = nn.Parameter(torch.zeros(3), requires_grad=False)
    try:
        with pytest.raises(ValueError, match="the MLP's layer spec has 2410 parameters and the module 2413"):
            gym.make("N2NCompress-v0", **n2n_kwargs(task))
    finally:
        del task.teacher.extra
    with pytest.raises(ValueError, match="N2NCompress-v0: tabular=True with a task of your own"):
        gym.make("N2NCompress-v0", task=f"{factory}:digits", tabular=True)


def own_teacher_task(factory) -> Task:
    task = task_from_factory(f"{factory}:digits")
    teacher = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    data = task.data
    return Task.from_tensors(train=(data.x_train, data.y_train), val=(data.x_val, data.y_val),
                             test=(data.x_test, data.y_test), teacher=teacher, student=task.student)  # fmt: skip
