"""The field's temperature baselines: schedules, the black-box map and its search, the best constant
chosen on validation, and CTKD's adversarial temperature."""

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.common.evaluation import fixed_policy_entry, run_episode, save_entry, verify_entry
from agents.common.selection import search_linear_map, select_best_constant, select_env_setting
from agents.temperature.ctkd import CTKDPolicy, GlobalTemperature, cosine_reversal_weight, gradient_reversal
from agents.temperature.policies import LinearMapPolicy, ScheduledTemperaturePolicy
from agents.temperature.specs import fixed_policy, policy_from_spec
from kd_envs.envs.temperature_kd import action_to_temperature
from kd_envs.losses import kd_loss


def temperatures(action) -> np.ndarray:
    return action_to_temperature(torch.as_tensor(action), 6.0).numpy()


class _Env:
    max_steps = 3


@pytest.mark.parametrize(("shape", "expected"), [("linear", [8.0, 4.5, 1.0]), ("cosine", [8.0, 4.5, 1.0])])
def test_schedules_run_from_start_to_end(shape, expected):
    policy = ScheduledTemperaturePolicy("s", 8.0, 1.0, shape)
    policy.attach(_Env())
    policy.seed(0)
    got = [temperatures(policy.predict(np.zeros((4, 3), np.float32))[0]) for _ in range(3)]
    np.testing.assert_allclose([g[0] for g in got], expected, rtol=1e-5)
    assert all(np.all(g == g[0]) for g in got)  # one temperature for the whole batch
    policy.seed(1)  # a new episode starts over
    np.testing.assert_allclose(temperatures(policy.predict(np.zeros((4, 3), np.float32))[0]), 8.0, rtol=1e-5)


def test_cosine_schedule_is_slow_at_both_ends():
    policy = ScheduledTemperaturePolicy("s", 8.0, 1.0, "cosine")
    assert policy.temperature_at(1, 5) == pytest.approx(8.0 - 7.0 * (1 - math.cos(math.pi / 4)) / 2)
    assert ScheduledTemperaturePolicy("s", 8.0, 1.0, "linear").temperature_at(1, 5) == pytest.approx(6.25)


def test_schedule_needs_the_episode_length_and_valid_settings():
    with pytest.raises(RuntimeError, match="attach"):
        ScheduledTemperaturePolicy("s", 8.0, 1.0).predict(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="shape='step'"):
        ScheduledTemperaturePolicy("s", 8.0, 1.0, "step")
    with pytest.raises(ValueError, match="end=12"):
        ScheduledTemperaturePolicy("s", 8.0, 12)


def test_schedule_over_a_whole_episode(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", **tiny_kwargs)
    result = run_episode(env, fixed_policy("anneal_linear"), seed=1000)
    assert result["temperature_max"] == pytest.approx(8.0, rel=1e-5)
    assert result["temperature_min"] == pytest.approx(1.0, rel=1e-5)
    assert result["temperature_mean"] == pytest.approx(4.5, rel=1e-5)  # linear and symmetric


def test_linear_map_matches_a_hand_computation():
    policy = LinearMapPolicy("m", [2.0, 3.0, -1.0, 0.5])
    obs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(temperatures(policy.predict(obs)[0]), [5.0, 1.5, 4.5, 2.0], rtol=1e-5)
    clipped = LinearMapPolicy("m", [20.0, 0, 0, 0]).predict(obs)[0]
    np.testing.assert_allclose(temperatures(clipped), 9.5, rtol=1e-5)
    with pytest.raises(ValueError, match="2 to 8 finite numbers"):
        LinearMapPolicy("m", [1.0])
    with pytest.raises(ValueError, match="2 to 8 finite numbers"):
        LinearMapPolicy("m", [1.0, float("nan")])
    with pytest.raises(ValueError, match="5 feature weights; the observation has 3 columns"):
        LinearMapPolicy("m", [1.0, 0, 0, 0, 0, 0]).predict(obs)


def test_linear_map_with_a_weight_map_by_hand():
    """On the extended observation: T from the first k columns, w = clip(v0 + v·x, 0, 1)."""
    obs = np.zeros((4, 7), np.float32)
    obs[:, 3] = [0.0, 0.5, 1.0, 1.0]  # progress
    obs[:, 5] = [1, 0, 1, 0]  # the teacher agrees
    policy = LinearMapPolicy("m", [1.0, 0, 0, 0, 7.0, 0, 0], weight_map=[-0.5, 0, 0, 0, 0, 0, 2.0],
                             action="temperature_weight")  # fmt: skip
    action = policy.predict(obs)[0]
    np.testing.assert_allclose(temperatures(action[:, 0]), [1.0, 4.5, 8.0, 8.0], rtol=1e-5)
    np.testing.assert_allclose((action[:, 1] + 1) / 2, [1.0, 0.0, 1.0, 0.0], atol=1e-7)
    with pytest.raises(ValueError, match="weight_map sets distillation weights"):
        LinearMapPolicy("m", [1.0, 0, 0, 0], weight_map=[1.0, 0, 0, 0])
    with pytest.raises(ValueError, match="expected 4 finite numbers, as many as weights"):
        LinearMapPolicy("m", [1.0, 0, 0, 0], weight_map=[1.0], action="temperature_weight")


def test_best_constant_is_chosen_on_validation(tiny_json_kwargs):
    best, table = select_best_constant("TemperatureKD-v0", tiny_json_kwargs, grid=(1.0, 4.0, 8.0), seeds=(0, 1),
                                       progress=False)  # fmt: skip
    env = gym.make("TemperatureKD-v0", **tiny_json_kwargs)
    for t, value in table.items():
        by_hand = np.mean([run_episode(env, policy_from_spec({"name": "c", "temperature": t}), s)
                           ["student_val_accuracy"] for s in (0, 1)])  # fmt: skip
        assert value == pytest.approx(by_hand)
    assert table[best] == max(table.values())


def test_map_search_starts_from_the_constant_and_keeps_its_best(tiny_json_kwargs):
    found = search_linear_map("TemperatureKD-v0", tiny_json_kwargs, search_seed=0, n_trials=4, episode_seeds=(0,),
                              start_temperature=4.0, progress=False)  # fmt: skip
    assert len(found["history"]) == 4 and found["value"] == max(found["history"])
    env = gym.make("TemperatureKD-v0", **tiny_json_kwargs)
    constant = run_episode(env, fixed_policy("constant_t4"), 0)["student_val_accuracy"]
    assert found["history"][0] == pytest.approx(constant)  # the first trial is T = 4 everywhere
    again = run_episode(env, LinearMapPolicy("m", found["weights"]), 0)["student_val_accuracy"]
    assert again == pytest.approx(found["value"])


# --- CTKD ----------------------------------------------------------------------------------------


def test_cosine_reversal_weight_follows_the_authors_curriculum():
    assert cosine_reversal_weight(0) == pytest.approx(0.0)
    assert cosine_reversal_weight(1) == pytest.approx(-(1 - math.cos(math.pi / 10)) / 2)  # -0.0245
    assert cosine_reversal_weight(5) == pytest.approx(-0.5)
    assert cosine_reversal_weight(10) == cosine_reversal_weight(40) == pytest.approx(-1.0)


def test_gradient_reversal_is_identity_forward_and_scales_backward():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = gradient_reversal(x, -0.3)
    assert torch.equal(y, x)
    (y * torch.tensor([2.0, 5.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-0.6, -1.5]))


def test_ctkd_ascends_the_kd_loss_through_the_reversal(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", **tiny_kwargs)
    policy = CTKDPolicy("ctkd_global")
    policy.attach(env.unwrapped)
    policy.seed(0)
    obs, _ = env.reset(seed=0)
    student_logits, teacher_logits = env.unwrapped.batch_logits()

    # By hand: T = 1 + 8.9·sigmoid(θ), θ = 1; dKD/dθ through T, weighted by α (kd_weight).
    theta = torch.ones(1, requires_grad=True)
    t = 1.0 + 8.9 * torch.sigmoid(theta)
    kd = kd_loss(student_logits, teacher_logits, t.expand(len(student_logits)))
    (env.unwrapped.options.kd_weight * kd).backward()
    action, _ = policy.predict(obs)
    np.testing.assert_allclose(temperatures(action), t.item(), rtol=1e-4)
    # SGD's first step (the authors' optimiser): θ -= lr·(λ·dKD/dθ + weight_decay·θ), λ = -0.0245 < 0,
    # so θ moves *up* the KD loss, by a step proportional to λ.
    weight = cosine_reversal_weight(1)
    expected = -policy.lr * (weight * theta.grad.item() + policy.weight_decay * 1.0)
    assert policy.temperature_module.value.item() - 1.0 == pytest.approx(expected, rel=5e-3)  # θ is float32


def test_ctkd_episodes_repeat_and_differ_from_a_constant(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", **tiny_kwargs)
    a = run_episode(env, fixed_policy("ctkd_instance"), seed=1000)
    b = run_episode(env, fixed_policy("ctkd_instance"), seed=1000)
    assert a == b
    assert a["temperature_std"] > 0  # per instance
    g = run_episode(env, fixed_policy("ctkd_global"), seed=1000)
    assert g["temperature_std"] < a["temperature_std"]
    assert 1.0 < g["temperature_min"] <= g["temperature_max"] < 9.9


def test_ctkd_needs_its_env():
    with pytest.raises(RuntimeError, match="attach"):
        CTKDPolicy("c").seed(0)
    with pytest.raises(ValueError, match="T must stay inside"):
        CTKDPolicy("c", t_start=1.0, t_range=9.5)
    assert isinstance(GlobalTemperature()(torch.zeros(3, 10), torch.zeros(3, 10)), torch.Tensor)


# --- entries --------------------------------------------------------------------------------------


def test_chosen_policy_entries_verify_and_a_changed_teacher_is_reported(tiny_json_kwargs, tmp_path, fast_bootstrap):
    entry = fixed_policy_entry("best_constant", "TemperatureKD-v0", tiny_json_kwargs, seeds=(1000,), tag="test",
                               progress=False, policy_spec={"class": "constant", "temperature": 2.5},
                               selection={"grid": [2.5]})  # fmt: skip
    assert entry["runs"][0]["episodes"][0]["temperature_mean"] == pytest.approx(2.5)
    assert set(entry["task_fingerprint"]) >= {"teacher_sha256", "dataset_sha256"}
    path = save_entry(entry, tmp_path)
    assert verify_entry(path, tmp_path, progress=False) == []

    edited = json.loads(path.read_text())
    edited["agent"]["policy"]["temperature"] = 3.0  # another policy than the one recorded
    path.write_text(json.dumps(edited))
    assert any("temperature_mean 2.5" in m for m in verify_entry(path, tmp_path, progress=False))

    edited["task_fingerprint"]["teacher_sha256"] = "0" * 64
    path.write_text(json.dumps(edited))
    (message,) = verify_entry(path, tmp_path, progress=False)
    assert message.startswith("task teacher_sha256: the entry's 0000")


def test_env_setting_is_chosen_on_validation(tiny_json_kwargs):
    candidates = {"ce": dict(tiny_json_kwargs, ce_weight=1.0, kd_weight=0.0),
                  "nmd": dict(tiny_json_kwargs, feature_weight=1.0, feature_loss="nmd")}  # fmt: skip
    best, table = select_env_setting("TemperatureKD-v0", candidates, fixed_policy("constant_t4"), seeds=(0,),
                                     progress=False)  # fmt: skip
    for name, kwargs in candidates.items():
        env = gym.make("TemperatureKD-v0", **kwargs)
        assert table[name] == run_episode(env, fixed_policy("constant_t4"), 0)["student_val_accuracy"]
    assert table[best] == max(table.values())
