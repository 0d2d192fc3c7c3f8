"""The task-set protocol on TemperatureKD-v0: policies with distillation weights, the static oracle, the
selections, entries scored on a split's instances (and --verify under attack), and the closed gap."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.common.evaluation import fixed_policy_entry, save_entry, trained_agents_entry, verify
from agents.common.reports.task_set import closed_gaps, headroom, iqm_ci, per_instance_scores
from agents.common.selection import constant_table, per_instance_constants, single_best_constant
from agents.common.training import train_agent
from agents.temperature.specs import fixed_policy, policy_from_spec
from kd_envs.envs.temperature_kd import action_to_temperature
from tests.envs.test_temperature_kd_task_set import LEARNING

ENV_ID = "TemperatureKD-v0"
SEEDS = (1000, 1001)


def test_the_mask_weights_only_instances_where_the_teacher_agrees():
    obs = np.random.default_rng(0).random((32, 7)).astype(np.float32)
    obs[:, 5] = np.arange(32) % 3 == 0
    policy = policy_from_spec({"name": "m", "class": "constant", "temperature": 6.0, "mask": "teacher_agrees"},
                              action="temperature_weight")  # fmt: skip
    action, _ = policy.predict(obs)
    assert action.shape == (32, 2)
    np.testing.assert_array_equal((action[:, 1] + 1) / 2, obs[:, 5])
    torch.testing.assert_close(action_to_temperature(torch.as_tensor(action[:, 0]), 6.0), torch.full((32,), 6.0))
    unmasked, _ = fixed_policy("constant_t4", action="temperature_weight").predict(obs)
    np.testing.assert_array_equal(unmasked[:, 1], 1.0)


@pytest.mark.parametrize(("spec", "action", "obs_columns", "message"), [
    ({"class": "constant", "temperature": 6.0, "mask": "teacher_agrees"}, "temperature", 7, "need action='temp"),
    ({"class": "constant", "temperature": 6.0, "mask": "teacher_agrees"}, "temperature_weight", 3, "observation='ext"),
    ({"class": "constant", "temperature": 6.0, "mask": "label"}, "temperature_weight", 7, "mask='label'; expected"),
])  # fmt: skip
def test_a_mask_without_what_it_needs_is_refused(spec, action, obs_columns, message):
    with pytest.raises(ValueError, match=message):
        policy_from_spec({"name": "m", **spec}, action=action).predict(np.zeros((32, obs_columns), np.float32))


def test_the_static_oracle_and_a_schedule_follow_the_episodes_instance(tiny_set):
    env = gym.make(ENV_ID, **tiny_set, split="test")
    oracle = policy_from_spec({"name": "o", "class": "per_instance", "temperatures": {"w4-l256": 2.0, "w8-l128": 7.0}})
    ramp = fixed_policy("ramp_linear")
    for instance, t, steps in ((0, 2.0, 16), (1, 7.0, 8)):
        oracle.attach(env.unwrapped)
        ramp.attach(env.unwrapped)
        ramp.seed(0)
        obs, _ = env.reset(seed=0, options={"instance": instance})
        torch.testing.assert_close(action_to_temperature(torch.as_tensor(oracle.predict(obs)[0]), 6.0),
                                   torch.full((32,), t))  # fmt: skip
        assert env.unwrapped.max_steps == steps
        temperatures = []
        for _ in range(steps):
            action = ramp.predict(obs)[0]
            temperatures.append(float(action_to_temperature(torch.as_tensor(action), 6.0)[0]))
            obs, *_ = env.step(action)
        assert temperatures[0] == pytest.approx(1.0, rel=1e-5) and temperatures[-1] == pytest.approx(8.0, rel=1e-5)
    with pytest.raises(ValueError, match="no temperature for instance 'w8-l256'"):
        oracle.attach(gym.make(ENV_ID, **tiny_set).unwrapped)
        oracle.predict(np.zeros((32, 3), np.float32))


def test_selection_picks_by_hand():
    table = {"a": {"1": 0.5, "4": 0.7, "8": 0.6}, "b": {"1": 0.9, "4": 0.6, "8": 0.95}}
    assert single_best_constant(table) == 8.0  # means 0.70, 0.65, 0.775
    assert per_instance_constants(table) == {"a": 4.0, "b": 8.0}
    assert single_best_constant({"a": {"1": 0.5, "2": 0.5}}) == 1.0  # ties: the first


def test_constant_table_scores_each_instance_on_validation(tiny_set):
    table = constant_table(ENV_ID, {**tiny_set, "split": "test"}, grid=(1.0, 4.0), seeds=(0,), progress=False)
    assert list(table) == ["w4-l256", "w8-l128"] and all(list(row) == ["1", "4"] for row in table.values())
    env = gym.make(ENV_ID, **tiny_set, split="test")
    obs, _ = env.reset(seed=0, options={"instance": 1})
    policy = fixed_policy("constant_t4")
    while True:
        obs, _, terminated, _, info = env.step(policy.predict(obs)[0])
        if terminated:
            break
    assert table["w8-l128"]["4"] == info["student_val_accuracy"]


def fake_entry(kind, matrix):
    """An entry's runs for a (runs × instances) matrix of scores, instances 0 and 1."""
    seeds = list(range(1000, 1000 + (len(matrix) if kind == "fixed" else 2)))
    if kind == "fixed":
        runs = [{"episodes": [{"seed": s, "instance": i, "student_test_accuracy": row[i]}]} for i in (0, 1)
                for s, row in zip(seeds, matrix)]  # fmt: skip
    else:  # each run's mean over its two episodes per instance is the matrix's cell
        runs = [{"episodes": [{"seed": s, "instance": i, "student_test_accuracy": row[i] + d}
                              for i in (0, 1) for s, d in zip(seeds, (-0.01, 0.01))]} for row in matrix]  # fmt: skip
    return {"agent": {"kind": kind, "name": kind}, "evaluation_instances": [0, 1], "runs": runs}


def test_closed_gap_by_hand():
    single = fake_entry("fixed", [[0.5, 0.8], [0.7, 0.8]])  # means 0.6, 0.8
    oracle = fake_entry("fixed", [[0.7, 0.9], [0.9, 0.9]])  # means 0.8, 0.9: headroom 0.2, 0.1
    assert headroom(single, oracle)[0]["headroom"] == pytest.approx(0.2)
    agent = fake_entry("sb3", [[0.7, 0.85], [0.6, 1.0]])
    np.testing.assert_allclose(per_instance_scores(agent)[1], [[0.7, 0.85], [0.6, 1.0]])
    # (0.1 + 0.05) / 0.3 and (0.0 + 0.2) / 0.3: gains over the single best, over the total headroom.
    np.testing.assert_allclose(closed_gaps(agent, single, oracle), [0.5, 2 / 3])
    summary = iqm_ci(np.array([[0.5, 0.5], [0.0, 2.0]]))
    assert summary["mean"] == pytest.approx(0.75) and summary["iqm"] == pytest.approx(0.5)
    flat = fake_entry("fixed", [[0.6, 0.8], [0.6, 0.8]])
    with pytest.raises(ValueError, match="no headroom on the split"):
        closed_gaps(agent, single, flat)


def test_task_set_entries_verify_and_catch_an_edited_instance(tiny_set, tmp_path, fast_bootstrap):
    kwargs = {**tiny_set, "split": "test", **LEARNING}
    entry = fixed_policy_entry("ramp_cosine_mask", ENV_ID, kwargs, SEEDS, tag="test", progress=False, instances=[0, 1])
    assert entry["evaluation_instances"] == [0, 1] and len(entry["runs"]) == 4
    assert [e["instance"] for r in entry["runs"] for e in r["episodes"]] == [0, 0, 1, 1]
    assert entry["task_fingerprint"]["instances"] == ["w4-l256", "w8-l128"]
    path = save_entry(entry, tmp_path)
    assert path.name == "TemperatureKD-v0-tiny-v0-test__ramp_cosine_mask__test.json"
    assert verify(path, tmp_path, progress=False).status == "OK"
    # An attacker swaps which instance two episodes were on, keeping every score and the summary.
    forged = json.loads(path.read_text())
    forged["runs"][0]["episodes"][0]["instance"], forged["runs"][2]["episodes"][0]["instance"] = 1, 0
    path.write_text(json.dumps(forged))
    assert verify(path, tmp_path, progress=False).status == "MISMATCH"
    # Or drops an instance from the record.
    forged = dict(entry, evaluation_instances=[0])
    path.write_text(json.dumps(forged))
    assert "not one episode per evaluation seed" in " ".join(verify(path, tmp_path, progress=False).problems)


def test_ppo_trains_on_the_train_split_and_its_entry_scores_the_test_split(tiny_set, tmp_path, fast_bootstrap):
    train = {**tiny_set, "split": "train", **LEARNING}
    agent = train_agent("ppo", ENV_ID, 0, tmp_path / "ppo", 64, train, {"n_steps": 32, "batch_size": 32},
                        progress_bar=False, tensorboard=False)  # fmt: skip
    action, _ = agent.model.predict(np.zeros((32, 7), np.float32), deterministic=True)
    assert action.shape == (32, 2)
    assert agent.model.policy.log_std.shape == (2,)
    test = {**train, "split": "test"}
    entry = trained_agents_entry([tmp_path / "ppo"], SEEDS, tag="test", directory=tmp_path, progress=False,
                                 evaluation_env_kwargs=[test], instances=[0, 1])  # fmt: skip
    assert entry["task_fingerprint"]["split"] == "test"
    assert [e["instance"] for e in entry["runs"][0]["episodes"]] == [0, 0, 1, 1]
    path = save_entry(entry, tmp_path)
    assert path.name.startswith("TemperatureKD-v0-tiny-v0-test__ppo")
    assert verify(path, tmp_path, progress=False).status == "OK"


def test_the_map_search_with_weights_scores_each_instance_on_validation(tiny_set):
    from agents.common.selection import search_linear_map

    kwargs = {**tiny_set, "split": "train", **LEARNING}
    found = search_linear_map(ENV_ID, kwargs, 0, 2, [0], start_temperature=4.0, progress=False, features=7,
                              weight_map=True, instances=[0, 1])  # fmt: skip
    assert len(found["weights"]) == len(found["weight_map"]) == 8 and len(found["history"]) == 2
    # The first trial is the enqueued constant T = 4 with weights 1: the mean over both instances' episodes.
    env = gym.make(ENV_ID, **kwargs)
    policy = policy_from_spec({"name": "c", "class": "constant", "temperature": 4.0}, action="temperature_weight")
    from agents.common.evaluation import run_episode

    expected = np.mean([run_episode(env, policy, 0, i)["student_val_accuracy"] for i in (0, 1)])
    assert found["history"][0] == pytest.approx(expected, abs=1e-12)


def test_a_task_set_selection_must_agree_with_its_own_table(tiny_set, tmp_path, fast_bootstrap):
    """An attacker edits the single best constant or the oracle's temperature for one instance, keeping the
    table: the entry is refused before any replay."""
    from agents.common.evaluation import entry_problems

    kwargs = {**tiny_set, "split": "test", **LEARNING}
    table = {"w4-l256": {"1": 0.5, "4": 0.7}, "w8-l128": {"1": 0.6, "4": 0.5}}
    record = {"table": table, "grid": [1.0, 4.0], "seeds": [0], "metric": "student_val_accuracy"}
    oracle = fixed_policy_entry("static_oracle", ENV_ID, kwargs, SEEDS, tag="test", progress=False, instances=[0, 1],
                                policy_spec={"class": "per_instance", "temperatures": {"w4-l256": 4.0, "w8-l128": 1.0}},
                                selection=record)  # fmt: skip
    assert entry_problems(oracle) == []
    forged = json.loads(json.dumps(oracle))
    forged["agent"]["policy"]["temperatures"]["w8-l128"] = 4.0
    assert any("not each instance's best" in p for p in entry_problems(forged))
    single = json.loads(json.dumps(oracle))
    single["agent"]["policy"] = {"class": "constant", "temperature": 1.0}  # the means: T=1 0.55, T=4 0.60
    assert any("not the best mean" in p for p in entry_problems(single))
    single["agent"]["selection"]["seeds"] = [1000]
    assert any("overlap the evaluation seeds" in p for p in entry_problems(single))
