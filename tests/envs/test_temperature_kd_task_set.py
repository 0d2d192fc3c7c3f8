"""TemperatureKD-v0's room to learn: the extended observation, per-instance distillation weights, and task
sets with held-out instances (a tiny set of digits tasks for speed; the shipped set where its promises are
about the shipped data)."""


import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from torch.nn import functional as F

import kd_envs  # noqa: F401
from kd_envs.envs.temperature_kd import action_to_temperature
from kd_envs.losses import kd_loss
from kd_envs.tasks import task_sets as task_sets_module
from kd_envs.tasks.task_sets import load_task_set
from tests.conftest import TINY_TASK

LEARNING = {"observation": "extended", "action": "temperature_weight"}


def rollout(env, seed, actions, options=None):
    obs, info = env.reset(seed=seed, options=options)
    out = [(obs, info)]
    for a in actions:
        obs, reward, terminated, _, info = env.step(a)
        out.append((obs, reward, info))
        if terminated:
            break
    return out


# -- the extended observation ---------------------------------------------------------------------------------
def test_extended_observation_columns_match_a_hand_computation(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", **tiny_kwargs, **LEARNING).unwrapped
    assert env.observation_space.shape == (32, 7) and env.action_space.shape == (32, 2)
    obs, _ = env.reset(seed=3)
    for step in range(3):
        x, y = env.batch_data()
        student, teacher = env.batch_logits()
        np.testing.assert_allclose(obs[:, 3], step / env.max_steps, rtol=1e-6)
        np.testing.assert_allclose(obs[:, 4], F.softmax(teacher, 1)[torch.arange(32), y].numpy(), rtol=1e-5)
        np.testing.assert_array_equal(obs[:, 5], (teacher.argmax(1) == y).float().numpy())
        np.testing.assert_allclose(obs[:, 6], F.softmax(student, 1)[torch.arange(32), y].numpy(), rtol=1e-4,
                                   atol=1e-6)  # fmt: skip
        paper = gym.make("TemperatureKD-v0", **tiny_kwargs).unwrapped
        paper.reset(seed=3)
        obs, *_ = env.step(np.zeros((32, 2), np.float32))
    assert env.observation_space.contains(obs)


def test_the_extended_observation_ends_at_progress_one_and_keeps_the_papers_columns(tiny_kwargs):
    paper = rollout(gym.make("TemperatureKD-v0", **tiny_kwargs), 5, [np.zeros(32, np.float32)] * 100)
    extended = rollout(gym.make("TemperatureKD-v0", **tiny_kwargs, observation="extended"), 5,
                       [np.zeros(32, np.float32)] * 100)  # fmt: skip
    for p, e in zip(paper, extended, strict=True):
        np.testing.assert_array_equal(p[0], e[0][:, :3])
    assert np.all(extended[-1][0][:, 3] == 1.0)
    assert paper[-1][2]["student_test_accuracy"] == extended[-1][2]["student_test_accuracy"]


# -- distillation weights -------------------------------------------------------------------------------------
def test_weights_scale_each_instances_kd_term_by_hand(tiny_kwargs):
    """One step equals γ·CE + α·(1/B)·Σ w_i·T_i²·KL_i done by hand, and info's loss_kd is that KD term."""
    env = gym.make("TemperatureKD-v0", **tiny_kwargs, **LEARNING).unwrapped
    env.reset(seed=11)
    x, y = (t.clone() for t in env.batch_data())
    teacher = env.batch_logits()[1].clone()
    reference = type(env.student)(64, 10, 8, 1)
    reference.load_state_dict(env.student.state_dict())
    optimizer = torch.optim.Adam(reference.parameters(), lr=env.options.student_lr)
    action = np.stack([np.linspace(-1, 1, 32), np.linspace(1, -1, 32)], axis=1).astype(np.float32)
    temperature = action_to_temperature(torch.as_tensor(action[:, 0]), env.options.action_scale)
    weight = torch.as_tensor((action[:, 1] + 1) / 2)
    logits = reference(x)
    kd = sum(weight[i] * kd_loss(logits[i : i + 1], teacher[i : i + 1], temperature[i]) for i in range(32)) / 32
    (0.1 * F.cross_entropy(logits, y) + 0.9 * kd).backward()
    optimizer.step()
    _, _, _, _, info = env.step(action)
    assert info["loss_kd"] == pytest.approx(kd.item(), rel=1e-5)
    assert info["batch_weight_mean"] == pytest.approx(0.5, abs=1e-6)
    for p, q in zip(env.student.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


def test_weight_one_is_the_temperature_env_and_weight_zero_is_cross_entropy_alone(tiny_kwargs):
    t = np.linspace(-1, 1, 32, dtype=np.float32)
    plain = rollout(gym.make("TemperatureKD-v0", **tiny_kwargs), 2, [t] * 100)
    ones = rollout(gym.make("TemperatureKD-v0", **tiny_kwargs, action="temperature_weight"), 2,
                   [np.stack([t, np.ones(32, np.float32)], 1)] * 100)  # fmt: skip
    assert [s[1] for s in plain[1:]] == [s[1] for s in ones[1:]]
    assert plain[-1][2]["student_test_accuracy"] == ones[-1][2]["student_test_accuracy"]
    no_kd = rollout(gym.make("TemperatureKD-v0", **tiny_kwargs, kd_weight=0.0), 2, [t] * 100)
    zeros = rollout(gym.make("TemperatureKD-v0", **tiny_kwargs, action="temperature_weight"), 2,
                    [np.stack([t, -np.ones(32, np.float32)], 1)] * 100)  # fmt: skip
    assert [s[1] for s in no_kd[1:]] == [s[1] for s in zeros[1:]]
    assert zeros[-1][2]["weight_mean"] == 0.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"observation": "full"}, "observation='full'; expected one of ('paper', 'extended')"),
    ({"action": "weight"}, "action='weight'; expected one of ('temperature', 'temperature_weight')"),
    ({"split": "test"}, "split='test'; expected 'train' (a split is one of a task set's"),
    ({"task_set": "nope-v0"}, "task_set='nope-v0'; expected one of"),
])  # fmt: skip
def test_bad_new_kwargs_give_a_clear_error(tiny_kwargs, kwargs, message):
    made = {k: v for k, v in tiny_kwargs.items() if k != "task" or "task_set" not in kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        gym.make("TemperatureKD-v0", **{**made, **kwargs})


def test_a_weight_action_of_the_wrong_shape_names_both(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", **tiny_kwargs, action="temperature_weight")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(32,\).*expected a numeric array of shape \(32, 2\) \(a temperature"):
        env.step(np.zeros(32, np.float32))


# -- task sets ------------------------------------------------------------------------------------------------
def test_task_set_episodes_name_their_instance_and_follow_the_split(tiny_set):
    train = gym.make("TemperatureKD-v0", **tiny_set, split="train").unwrapped
    test = gym.make("TemperatureKD-v0", **tiny_set, split="test").unwrapped
    assert [i.name for i in train.instances] == ["w8-l256", "w4-l128"]
    assert [i.name for i in test.instances] == ["w4-l256", "w8-l128"]
    seen = set()
    for seed in range(12):
        _, info = train.reset(seed=seed)
        seen.add(info["instance_name"])
        assert train.instances[info["instance"]].name == info["instance_name"]
        _, _, _, _, info2 = train.step(np.zeros(32, np.float32))
        assert info2["instance_name"] == info["instance_name"]
    assert seen == {"w8-l256", "w4-l128"}
    _, info = test.reset(seed=0, options={"instance": 1})
    assert info["instance_name"] == "w8-l128"
    assert test.max_steps == 2 * (128 // 32) and len(test.task.data.y_train) == 128


def test_a_drawn_instance_and_the_same_instance_given_give_the_same_episode(tiny_set):
    env = gym.make("TemperatureKD-v0", **tiny_set)
    actions = [np.full(32, 0.1 * k - 0.5, np.float32) for k in range(100)]
    drawn = rollout(env, 7, actions)
    given = rollout(env, 7, actions, options={"instance": drawn[0][1]["instance"]})
    again = rollout(gym.make("TemperatureKD-v0", **tiny_set), 7, actions)
    for a, b, c in zip(drawn, given, again, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[0], c[0])
    assert drawn[-1][2]["student_test_accuracy"] == given[-1][2]["student_test_accuracy"]


@pytest.mark.parametrize(("options", "message"), [
    ({"instance": 2}, r"instance=2; expected an integer in \[0, 2\): task set 'tiny-v0' split 'train' has 2"),
    ({"instance": True}, r"instance=True; expected an integer"),
    ({"task": 1}, r"options=\{'task': 1\}; expected None or \{'instance': i\}"),
])  # fmt: skip
def test_bad_reset_options_give_a_clear_error(tiny_set, options, message):
    with pytest.raises(ValueError, match=message):
        gym.make("TemperatureKD-v0", **tiny_set).reset(seed=0, options=options)


def test_a_task_and_a_task_set_together_are_refused(tiny_set):
    with pytest.raises(ValueError, match="task=.*expected None with task_set='tiny-v0'"):
        gym.make("TemperatureKD-v0", **tiny_set, task=TINY_TASK)


def test_an_edited_task_set_file_is_refused_by_its_sha256(tiny_set):
    path = task_sets_module.TASK_SETS_DIR / "tiny-v0.json"
    path.write_bytes(path.read_bytes().replace(b'"w8-l128"', b'"w8-l129"'))
    with pytest.raises(ValueError, match="sha256 .* is not the recorded"):
        gym.make("TemperatureKD-v0", **tiny_set)


def test_task_set_env_passes_the_checker(tiny_set):
    check_env(gym.make("TemperatureKD-v0", **tiny_set, **LEARNING, split="test").unwrapped, skip_render_check=True)


# -- the shipped set ------------------------------------------------------------------------------------------
def test_the_shipped_set_is_a_latin_square_of_its_three_axes():
    task_set = load_task_set("cloud-edge-v0")
    names = {split: [i.name for i in task_set.split(split)] for split in ("train", "test")}
    assert len(names["train"]) == len(names["test"]) == 4 and not set(names["train"]) & set(names["test"])
    for split in ("train", "test"):
        for level in ("labels500", "labels1000", "cnn16x2", "cnn32x3", "clean", "noisy"):
            assert sum(level in n.split("-") for n in names[split]) == 2, (split, level)
    noisy = [i for i in task_set.instances if "noisy" in i.name]
    assert all(i.task.edge_dataset.generator == {"corr_noise_scale": 0.5} for i in noisy)


@pytest.mark.slow
def test_the_shipped_test_split_passes_the_checker_and_repeats_its_episodes(mnist1d_cache):
    kwargs = {"task_set": "cloud-edge-v0", "split": "test", **LEARNING, "cache_dir": str(mnist1d_cache)}
    env = gym.make("TemperatureKD-v0", **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    actions = [np.zeros((64, 2), np.float32)] * 20
    first = rollout(env, 1000, actions, options={"instance": 3})
    second = rollout(gym.make("TemperatureKD-v0", **kwargs), 1000, actions, options={"instance": 3})
    assert first[0][1]["instance_name"] == "labels1000-cnn32x3-noisy"
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
    # The noisy edge's teacher is unreliable on the edge's own test split; the clean edge's is not.
    env.unwrapped._use_instance(3)
    assert 0.6 < env.unwrapped.task.teacher_test_accuracy < 0.8
    env.unwrapped._use_instance(1)
    assert env.unwrapped.task.teacher_test_accuracy > 0.95
