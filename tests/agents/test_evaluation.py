import copy
import io
import json
import shutil
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.common.evaluation import (
    EVALUATION_SEEDS,
    TRAINING_SEEDS,
    entry_problems,
    evaluate,
    file_sha256,
    fixed_policy_entry,
    run_episode,
    save_entry,
    trace_episode,
    trained_agents_entry,
    verify,
    verify_entry,
)
from agents.common.leaderboard import aggregate, machine_kind, run_score
from agents.temperature.specs import fixed_policy

ENV_ID = "TemperatureKD-v0"
SEEDS = (1000, 1001)


def test_training_and_evaluation_seeds_are_apart():
    assert not set(TRAINING_SEEDS) & set(EVALUATION_SEEDS)
    assert set(SEEDS) <= set(EVALUATION_SEEDS)


def test_fixed_policy_entry_scores_the_episodes(tiny_json_kwargs, fast_bootstrap):
    entry = fixed_policy_entry("constant_t4", ENV_ID, tiny_json_kwargs, SEEDS, tag="test", progress=False)
    assert entry["summary"]["runs"] == 2 and len(entry["runs"]) == 2
    assert entry["agent"] == {"kind": "fixed", "name": "constant_t4"}
    assert entry["evaluation_seeds"] == list(SEEDS) and entry["training_seeds"] == []
    assert entry["metric"] == "student_test_accuracy"
    assert entry["env_kwargs"] == tiny_json_kwargs

    # The same episodes, played here by hand.
    env = gym.make(ENV_ID, **tiny_json_kwargs)
    action, _ = fixed_policy("constant_t4").predict(np.zeros((32, 3), dtype=np.float32))
    for seed, run in zip(SEEDS, entry["runs"]):
        env.reset(seed=seed)
        total, terminated = 0.0, False
        while not terminated:
            _, reward, terminated, truncated, info = env.step(action)
            total += reward
            assert not truncated
        (episode,) = run["episodes"]
        assert episode["seed"] == seed and episode["steps"] == 16
        assert run["score"] == episode["student_test_accuracy"] == info["student_test_accuracy"]
        assert episode["return"] == total
        assert episode["temperature_mean"] == pytest.approx(4.0)
    scores = [run["score"] for run in entry["runs"]]
    assert entry["summary"]["mean"] == pytest.approx(np.mean(scores))


def test_evaluation_episodes_depend_only_on_their_seed(tiny_json_kwargs):
    policy = fixed_policy("random_t")
    both = evaluate(policy, ENV_ID, tiny_json_kwargs, SEEDS, progress=False)
    assert evaluate(policy, ENV_ID, tiny_json_kwargs, SEEDS[1:], progress=False) == both[1:]
    assert both[0]["temperature_mean"] != both[1]["temperature_mean"]


class ThreadsSeen:
    """constant_t4, noting the torch thread count at every step."""

    def __init__(self):
        self.policy, self.seen = fixed_policy("constant_t4"), set()

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        self.seen.add(torch.get_num_threads())
        return self.policy.predict(observation, deterministic=deterministic)


@pytest.fixture
def callers_threads():
    """The caller runs on two torch threads during the test (the suite's one afterwards)."""
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(1)


def test_evaluate_runs_on_the_threads_it_is_given_and_gives_the_callers_back(tiny_json_kwargs, callers_threads):
    policy = ThreadsSeen()
    evaluate(policy, ENV_ID, tiny_json_kwargs, SEEDS[:1], progress=False)
    assert policy.seen == {1} and torch.get_num_threads() == callers_threads  # one by default, not the caller's
    policy = ThreadsSeen()
    torch.set_num_threads(1)
    evaluate(policy, ENV_ID, tiny_json_kwargs, SEEDS[:1], progress=False, threads=2)
    assert policy.seen == {2} and torch.get_num_threads() == 1


def test_entries_record_their_threads_and_verify_replays_with_them(tmp_path, tiny_json_kwargs, fast_bootstrap,
                                                                   monkeypatch, callers_threads):  # fmt: skip
    import agents.common.evaluation as evaluation

    entry = fixed_policy_entry("constant_t4", ENV_ID, tiny_json_kwargs, SEEDS[:1], tag="test", progress=False,
                               threads=2)  # fmt: skip
    assert entry["torch_threads"] == 2
    assert fixed_policy_entry("no_kd", ENV_ID, tiny_json_kwargs, SEEDS[:1], tag="test",
                              progress=False)["torch_threads"] == 1  # fmt: skip
    path = save_entry(entry, tmp_path)
    seen = []
    run_episode = evaluation.run_episode
    monkeypatch.setattr(evaluation, "run_episode", lambda *a, **k: seen.append(torch.get_num_threads())
                        or run_episode(*a, **k))  # fmt: skip
    torch.set_num_threads(1)
    assert verify(path, tmp_path, progress=False).status == "OK"
    assert seen == [2] and torch.get_num_threads() == 1
    # An entry made before entries recorded threads replays on one, whatever the caller's count.
    del entry["torch_threads"]
    path.write_text(json.dumps(entry))
    torch.set_num_threads(callers_threads)
    verify(path, tmp_path, progress=False)
    assert seen == [2, 1] and torch.get_num_threads() == callers_threads
    path.write_text(json.dumps({**entry, "torch_threads": 0}))
    assert verify_entry(path, tmp_path, progress=False) == ["torch_threads 0: expected an int >= 1"]


def test_fixed_entry_verifies_and_detects_tampering(tmp_path, tiny_json_kwargs, fast_bootstrap):
    entry = fixed_policy_entry("random_t", ENV_ID, tiny_json_kwargs, SEEDS, tag="test", progress=False)
    path = save_entry(entry, tmp_path)
    assert path == tmp_path / "entries" / f"{ENV_ID}__random_t__test.json"
    assert verify_entry(path, tmp_path, progress=False) == []
    saved = json.loads(path.read_text())
    saved["runs"][1]["episodes"][0]["temperature_mean"] += 1e-9
    path.write_text(json.dumps(saved))
    (mismatch,) = verify_entry(path, tmp_path, progress=False)
    assert "evaluation seed 1001" in mismatch and "temperature_mean" in mismatch


def test_trained_agents_entry_copies_verifies_and_detects_tampering(tmp_path, tiny_ppo_dirs, fast_bootstrap):
    entry = trained_agents_entry(tiny_ppo_dirs, SEEDS, tag="test", directory=tmp_path, progress=False)
    assert entry["agent"]["kind"] == "sb3" and entry["agent"]["name"] == "ppo"
    assert entry["agent"]["total_timesteps"] == 32
    assert entry["training_seeds"] == [0, 1] and entry["summary"]["runs"] == 2
    for seed, run in zip((0, 1), entry["runs"]):
        # Addressed by content: the folder is the sha256 of the stored model.zip, which the entry records.
        assert run["model"] == f"models/{run['model_sha256']}"
        assert file_sha256(tmp_path / run["model"] / "model.zip") == run["model_sha256"]
        config = "config.json"
        assert (tmp_path / run["model"] / config).read_bytes() == (tiny_ppo_dirs[seed] / config).read_bytes()
        # The stored model: the same weights, the optimizer's moments dropped, deflated.
        with zipfile.ZipFile(tmp_path / run["model"] / "model.zip") as slim, \
                zipfile.ZipFile(tiny_ppo_dirs[seed] / "model.zip") as full:  # fmt: skip
            assert slim.namelist() == full.namelist()
            weights, original = (torch.load(io.BytesIO(z.read("policy.pth")), weights_only=True) for z in (slim, full))
            assert weights.keys() == original.keys() and all(torch.equal(weights[k], original[k]) for k in weights)
            assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in slim.infolist())
            state = torch.load(io.BytesIO(slim.read("policy.optimizer.pth")), weights_only=False)
            assert state["state"] == {} and state["param_groups"]
        assert [e["seed"] for e in run["episodes"]] == list(SEEDS)
        assert run["score"] == pytest.approx(np.mean([e["student_test_accuracy"] for e in run["episodes"]]))

    path = save_entry(entry, tmp_path)
    assert verify_entry(path, tmp_path, progress=False) == []

    saved = json.loads(path.read_text())
    saved["runs"][1]["episodes"][0]["student_test_accuracy"] += 0.25
    path.write_text(json.dumps(saved))
    score, rerun = verify_entry(path, tmp_path, progress=False)
    assert "training seed 1" in rerun and "evaluation seed 1000" in rerun and "student_test_accuracy" in rerun
    # The stored run score no longer follows from the (tampered) episodes either.
    assert "run score" in score


def test_verify_recomputes_the_summary(tmp_path, tiny_json_kwargs, fast_bootstrap):
    entry = fixed_policy_entry("constant_t1", ENV_ID, tiny_json_kwargs, SEEDS, tag="test", progress=False)
    path = save_entry(entry, tmp_path)
    saved = json.loads(path.read_text())
    saved["summary"]["iqm"] += 0.01
    path.write_text(json.dumps(saved))
    (mismatch,) = verify_entry(path, tmp_path, progress=False)
    assert mismatch.startswith("summary iqm")


def test_verify_reruns_the_stored_models(tmp_path, tiny_ppo_dirs, fast_bootstrap):
    entry = trained_agents_entry(tiny_ppo_dirs, SEEDS, tag="test", directory=tmp_path, progress=False)
    path = save_entry(entry, tmp_path)
    # Swap the two stored agents: every recorded number now belongs to the other model.
    stored = [tmp_path / run["model"] / "model.zip" for run in entry["runs"]]
    swap = tmp_path / "swap.zip"
    shutil.move(stored[0], swap)
    shutil.move(stored[1], stored[0])
    shutil.move(swap, stored[1])
    mismatches = verify_entry(path, tmp_path, progress=False)
    assert len(mismatches) == 2 and all("is not the entry's" in m for m in mismatches)
    # Without the recorded hashes (an entry written before they were), the replay still tells.
    saved = json.loads(path.read_text())
    for run in saved["runs"]:
        del run["model_sha256"]
    path.write_text(json.dumps(saved))
    mismatches = verify_entry(path, tmp_path, progress=False)
    assert mismatches and not any("sha256" in m for m in mismatches)


def test_a_model_stored_twice_is_kept_once(tmp_path, tiny_ppo_dirs, fast_bootstrap):
    first = trained_agents_entry(tiny_ppo_dirs, SEEDS[:1], tag="a", directory=tmp_path, progress=False)
    second = trained_agents_entry(tiny_ppo_dirs, SEEDS[:1], tag="b", directory=tmp_path, progress=False)
    assert [r["model"] for r in first["runs"]] == [r["model"] for r in second["runs"]]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(r["model_sha256"] for r in first["runs"])


def test_training_seeds_must_not_be_evaluation_seeds(tmp_path, tiny_ppo_dirs):
    with pytest.raises(ValueError, match="overlap"):
        trained_agents_entry(tiny_ppo_dirs, (1, 1000), tag="test", directory=tmp_path, progress=False)
    assert not (tmp_path / "models").exists()


def test_one_entry_holds_one_configuration(tmp_path, tiny_ppo_dirs):
    other = tmp_path / "other"
    shutil.copytree(tiny_ppo_dirs[1], other)
    config = json.loads((other / "config.json").read_text())
    config["env_kwargs"] = dict(config["env_kwargs"], epochs=3)
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="share env id, env kwargs and algorithm"):
        trained_agents_entry([tiny_ppo_dirs[0], other], SEEDS, directory=tmp_path, progress=False)


def test_trace_episode_records_each_epoch(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", **dict(tiny_kwargs, epochs=3))
    trace = trace_episode(env, fixed_policy("constant_t4"), seed=1000)
    base = env.unwrapped
    assert len(trace["test_accuracy"]) == len(trace["temperatures"]) == 3
    assert all(len(t) == base.steps_per_epoch * 32 for t in trace["temperatures"])
    np.testing.assert_allclose(np.concatenate(trace["temperatures"]), 4.0, rtol=1e-5)
    # The last epoch's accuracy is the episode's final test accuracy, and the episode is run_episode's.
    assert trace["test_accuracy"][-1] == pytest.approx(trace["student_test_accuracy"])
    plain = run_episode(gym.make("TemperatureKD-v0", **dict(tiny_kwargs, epochs=3)), fixed_policy("constant_t4"), 1000)
    assert plain["student_test_accuracy"] == trace["student_test_accuracy"]


def _sound_entry(tmp_path, tiny_json_kwargs):
    entry = fixed_policy_entry("constant_t1", ENV_ID, tiny_json_kwargs, SEEDS, tag="test", progress=False)
    assert entry_problems(entry) == []
    return entry


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda e: e.update(runs=[]), "runs is empty"),
        (lambda e: e.pop("metric"), "missing key 'metric'"),
        (lambda e: e.update(official="yes"), "'official' is str"),
        (lambda e: e.update(evaluation_seeds=[1000, 1002]), "not one episode per evaluation seed"),
        (lambda e: e.update(training_seeds=[1000]), "overlap the evaluation seeds"),
        (lambda e: e.update(official=True), "official is True but the rule"),  # 2 runs, tag "test"
        (lambda e: e["agent"].update(kind="magic"), "expected a 'name' and a 'kind'"),
        (lambda e: e["runs"][0].update(episodes=[]), "run 0: expected a dict with a non-empty 'episodes'"),
        (lambda e: e.update(metric="teacher_test_accuracy"),
         "metric 'teacher_test_accuracy': TemperatureKD-v0 entries are ranked by 'student_test_accuracy'"),
        (lambda e: e.update(torch_threads=1.5), "torch_threads 1.5: expected an int >= 1"),
    ],
)
def test_entry_problems_are_found_before_any_replay(tmp_path, tiny_json_kwargs, fast_bootstrap, edit, problem):
    entry = _sound_entry(tmp_path, tiny_json_kwargs)
    edit(entry)
    assert any(problem in p for p in entry_problems(entry)), entry_problems(entry)
    path = tmp_path / "entry.json"
    path.write_text(json.dumps(entry))
    assert any(problem in p for p in verify_entry(path, tmp_path, progress=False))


def test_the_official_rule_needs_the_protocol_seeds_and_a_clean_commit(tmp_path, tiny_json_kwargs, fast_bootstrap):
    entry = _sound_entry(tmp_path, tiny_json_kwargs)
    entry.update(tag="official", official=True, runs=entry["runs"] * 3, git_commit="abc-dirty")  # 6 runs
    problems = entry_problems(entry)
    assert any("evaluation seeds" in p for p in problems) and any("clean commit" in p for p in problems)


def test_an_entry_ranked_by_another_metric_is_refused_by_file(tmp_path, tiny_json_kwargs, capsys, fast_bootstrap):
    """The review's attack: an honest entry re-scored by the teacher's accuracy, its scores and summary
    recomputed to match, would top the table."""
    from agents.common.commands import leaderboard

    entry = _sound_entry(tmp_path, tiny_json_kwargs)
    entry["metric"] = "teacher_test_accuracy"
    for run in entry["runs"]:
        run["score"] = run_score(run, entry["metric"])
    entry["summary"] = aggregate([run["score"] for run in entry["runs"]])
    path = save_entry(entry, tmp_path)
    assert leaderboard.main(["--verify", str(path), "--leaderboard-dir", str(tmp_path)]) == 1
    assert f"MISMATCH {path}:\n  metric 'teacher_test_accuracy'" in capsys.readouterr().out


def test_official_trained_agents_record_each_models_sha256(tmp_path, tiny_ppo_dirs, fast_bootstrap):
    entry = trained_agents_entry(tiny_ppo_dirs, SEEDS, tag="test", directory=tmp_path, progress=False)
    runs = [copy.deepcopy(run) for run in entry["runs"] * 3]  # six runs: enough for the official rule
    entry.update(tag="official", official=True, runs=runs)
    assert not any("model_sha256" in p for p in entry_problems(entry))
    del runs[3]["model_sha256"]
    assert any(p.startswith("run 3: an official sb3 entry records its stored model and the model's model_sha256")
               for p in entry_problems(entry))  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda c: c.update(seed=1000), "trained on evaluation seed 1000"),
        (lambda c: c.update(seed=5), "has seed 5, the entry 1"),
        (lambda c: c.update(total_timesteps=320), "has total_timesteps 320, the entry 32"),
        (lambda c: c["hyperparams"].update(n_epochs=10), "has hyperparams"),
        (lambda c: c["env_kwargs"].update(epochs=20), "has env_kwargs"),
        (lambda c: c.update(algo="a2c"), "has algo 'a2c', the entry 'ppo'"),
    ],
)
def test_a_stored_config_must_say_what_the_entry_says(tmp_path, tiny_ppo_dirs, fast_bootstrap, edit, problem):
    """A model trained on an evaluation seed, or with ten times the budget, replays exactly: its config.json
    must say so, and say what the entry says."""
    entry = trained_agents_entry(tiny_ppo_dirs, SEEDS, tag="test", directory=tmp_path, progress=False)
    path = save_entry(entry, tmp_path)
    stored = tmp_path / entry["runs"][1]["model"] / "config.json"
    config = json.loads(stored.read_text())
    edit(config)
    stored.write_text(json.dumps(config))
    problems = verify_entry(path, tmp_path, progress=False)
    assert any(problem in p for p in problems), problems
    assert all(p.startswith("training seed 1: ") for p in problems)


def test_a_policy_recorded_by_its_older_bare_name_is_the_same_policy(tmp_path, tiny_ppo_dirs, fast_bootstrap):
    entry = trained_agents_entry(tiny_ppo_dirs, SEEDS[:1], tag="test", directory=tmp_path, progress=False)
    assert entry["agent"]["hyperparams"]["policy"] == "agents.rlkd.policies.InstancePolicy"
    path = save_entry(entry, tmp_path)
    stored = tmp_path / entry["runs"][1]["model"] / "config.json"
    for policy, problems in (("InstancePolicy", 0), ("MlpPolicy", 1)):
        config = json.loads(stored.read_text())
        config["hyperparams"]["policy"] = policy
        stored.write_text(json.dumps(config))
        assert len(verify_entry(path, tmp_path, progress=False)) == problems


SELECTION = {"temperature": 2.0, "validation_accuracy": {"1.0": 0.5, "2.0": 0.7, "4.0": 0.7}, "grid": [1.0, 2.0, 4.0],
             "seeds": [0, 1], "metric": "student_val_accuracy"}  # fmt: skip


@pytest.fixture
def selected_entry(tiny_json_kwargs, fast_bootstrap):
    """best_constant's shape: T = 2 chosen on a validation table where it ties with T = 4 (the first wins)."""
    return fixed_policy_entry("best_constant", ENV_ID, tiny_json_kwargs, SEEDS[:1], tag="test", progress=False,
                              policy_spec={"class": "constant", "temperature": 2.0},
                              selection=copy.deepcopy(SELECTION))  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda a: (a["selection"].update(temperature=4.0), a["policy"].update(temperature=4.0)),
         "selection: temperature 4 is not the best of its validation table (temperature 2: 0.7 against 0.7)"),
        (lambda a: a["selection"]["validation_accuracy"].update({"1.0": 0.9}),
         "selection: temperature 2 is not the best of its validation table (temperature 1: 0.9 against 0.7)"),
        (lambda a: a["policy"].update(temperature=4.0), "chose temperature 2 but the entry was evaluated with 4.0"),
        (lambda a: a["selection"].update(seeds=[0, 1000]), "chosen on seeds [0, 1000], which overlap the evaluation"),
        (lambda a: a["selection"].update(metric="student_test_accuracy"), "chosen on 'student_test_accuracy'"),
        (lambda a: a["selection"].update(grid=[1.0, 2.0]), "its grid [1.0, 2.0] is not its table's values"),
    ],
)
def test_a_selection_must_agree_with_its_own_table(selected_entry, edit, problem):
    assert entry_problems(selected_entry) == []
    edit(selected_entry["agent"])
    assert any(problem in p for p in entry_problems(selected_entry)), entry_problems(selected_entry)


def test_a_feature_weight_must_be_its_tables_best(selected_entry):
    agent = selected_entry["agent"]
    chosen = {"feature_weight": 10.0, "temperature": 2.0, "validation_accuracy": {"0.1": 0.9, "1": 0.95, "10": 0.93},
              "seeds": [0], "metric": "student_val_accuracy"}  # fmt: skip
    agent["selection"] = {"best_constant": agent["selection"], "feature_weight": chosen}
    selected_entry["env_kwargs"]["feature_weight"] = 10.0
    assert entry_problems(selected_entry) == ["selection 'feature_weight': feature_weight 10 is not the best of its "
                                              "validation table (feature_weight 1: 0.95 against 0.93)"]  # fmt: skip
    chosen["feature_weight"] = 1.0
    assert entry_problems(selected_entry) == ["selection 'feature_weight': chose feature_weight 1 but the entry was "
                                              "evaluated with 10.0"]  # fmt: skip


def test_verify_deep_reruns_the_selection(tmp_path, tiny_json_kwargs, capsys, fast_bootstrap):
    from agents.common.commands import leaderboard
    from agents.common.selection import SELECTION_METRIC, select_best_constant

    grid, seeds = [1.0, 4.0], [0]
    best, table = select_best_constant(ENV_ID, tiny_json_kwargs, grid, seeds, progress=False)
    assert table[1.0] != table[4.0]  # the forgery below needs a table with one best

    def entry_choosing(temperature, table):
        selection = {"temperature": temperature, "validation_accuracy": {str(t): v for t, v in table.items()},
                     "grid": grid, "seeds": seeds, "metric": SELECTION_METRIC}  # fmt: skip
        return fixed_policy_entry("best_constant", ENV_ID, tiny_json_kwargs, SEEDS[:1], tag="test", progress=False,
                                  policy_spec={"class": "constant", "temperature": temperature}, selection=selection)

    path = save_entry(entry_choosing(best, table), tmp_path)
    result = verify(path, tmp_path, progress=False, deep=True)
    assert result.status == "OK" and result.reran_selection
    assert not verify(path, tmp_path, progress=False).reran_selection
    # A forger's: the other temperature, evaluated honestly, beside a table (its numbers swapped) that names it.
    other = next(t for t in grid if t != best)
    forged = entry_choosing(other, {best: table[other], other: table[best]})
    assert entry_problems(forged) == []  # consistent with itself: only a re-run tells
    path.write_text(json.dumps(forged))
    assert verify(path, tmp_path, progress=False).status == "OK"
    result = verify(path, tmp_path, progress=False, deep=True)
    assert result.status == "MISMATCH" and len(result.differences) == 2  # both numbers of the table
    assert result.problems == [f"selection: the re-run chose temperature {best:g}, the entry {other:g}"]
    assert leaderboard.main(["--verify", str(path), "--deep", "--leaderboard-dir", str(tmp_path)]) == 1
    assert f"MISMATCH {path}:\n  selection: the re-run chose" in capsys.readouterr().out


def test_verify_reports_each_bad_file_by_path_and_goes_on(tmp_path, tiny_json_kwargs, capsys, fast_bootstrap):
    from agents.common.commands import leaderboard

    good = save_entry(_sound_entry(tmp_path, tiny_json_kwargs), tmp_path)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(good.read_text()[:100])
    unreadable = tmp_path / "missing.json"
    status = leaderboard.main(["--verify", str(truncated), str(unreadable), str(good), "--leaderboard-dir",
                               str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 2
    assert f"MISMATCH {truncated}:\n  cannot read the entry" in out
    assert f"MISMATCH {unreadable}:\n  cannot read the entry" in out
    assert f"OK {good}" in out and "2 of 3 entries failed" in out


def _as_if_made_elsewhere(entry, shifts, key=None):
    """The entry as another machine kind would have written it: ``key`` (default: the score) of the i-th
    episode off by ``shifts[i % len(shifts)]``, with the scores and summary that follow from them (a sound
    entry whose numbers the replay does not repeat)."""
    episodes = [episode for run in entry["runs"] for episode in run["episodes"]]
    for i, episode in enumerate(episodes):
        episode[key or entry["metric"]] += shifts[i % len(shifts)]
    for run in entry["runs"]:
        run["score"] = run_score(run, entry["metric"])
    entry["summary"] = aggregate([run["score"] for run in entry["runs"]])
    entry["machine"] = "Linux x86_64, another CPU, torch 0.0"
    return entry


@pytest.mark.parametrize(
    ("shifts", "key", "status", "directed"),
    [
        ([1e-7], None, "CONSISTENT", []),  # float rounding
        ([1e-3, -1e-3], None, "CONSISTENT", []),  # small and symmetric
        ([0.004], None, "MISMATCH", ["student_test_accuracy"]),  # the review's forgery: too large, and one way
        ([0.001], None, "MISMATCH", ["student_test_accuracy"]),  # within the tolerance, but one way
        ([-0.001], "student_test_ece", "MISMATCH", ["student_test_ece"]),  # a better calibration, one way
        ([0.01, -0.01], "student_test_nll", "MISMATCH", []),  # symmetric, but too large: not only the score counts
        ([0.5], None, "MISMATCH", ["student_test_accuracy"]),
    ],
)
def test_verify_elsewhere_is_consistent_only_for_small_differences_without_a_direction(
    tmp_path, tiny_json_kwargs, fast_bootstrap, shifts, key, status, directed
):
    entry = fixed_policy_entry("random_t", ENV_ID, tiny_json_kwargs, (1000, 1001, 1002, 1003), tag="test",
                               progress=False)  # fmt: skip
    assert entry["machine"] == machine_kind()
    path = save_entry(_as_if_made_elsewhere(entry, shifts, key), tmp_path)
    result = verify(path, tmp_path, progress=False)
    assert result.status == status and result.same_machine_kind is False and not result.problems
    assert result.directed == directed
    assert result.largest_difference == pytest.approx(max(map(abs, shifts)), rel=1e-3)
    assert (key or "student_test_accuracy") in result.largest_difference_at
    assert "another machine kind made the entry" in result.lines()[-1]
    # The same numbers from this machine kind: exactness is the rule.
    saved = json.loads(path.read_text())
    saved["machine"] = machine_kind()
    path.write_text(json.dumps(saved))
    assert verify(path, tmp_path, progress=False).status == "MISMATCH"


def test_record_machine_writes_the_kind_only_into_entries_that_replay_exactly(
    tmp_path, tiny_json_kwargs, capsys, fast_bootstrap
):
    from agents.common.commands import leaderboard

    entry = _sound_entry(tmp_path, tiny_json_kwargs)
    entry.pop("machine")  # as the entries made before the field existed
    exact, forged, kept = tmp_path / "exact.json", tmp_path / "forged.json", tmp_path / "kept.json"
    exact.write_text(json.dumps(entry))
    # A forger's entry without a machine kind: recording one would let a later replay call it CONSISTENT.
    shifted = _as_if_made_elsewhere(copy.deepcopy(entry), [0.001])
    shifted.pop("machine")
    forged.write_text(json.dumps(shifted))
    kept.write_text(json.dumps({**entry, "machine": "Linux x86_64, another CPU, torch 0.0"}))
    before = {p: p.read_text() for p in (forged, kept)}
    status = leaderboard.main(["--verify", str(exact), str(forged), str(kept), "--record-machine",
                               "--leaderboard-dir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 1 and f"OK {exact}: every recorded number matches exactly; recorded this machine kind" in out
    assert f"MISMATCH {forged}" in out and "the entry records no machine kind" in out
    assert {p: p.read_text() for p in (forged, kept)} == before  # not exact, or already recorded: untouched
    recorded = json.loads(exact.read_text())
    assert recorded["machine"] == machine_kind()
    assert "--record-machine" in recorded["machine_note"] and "replayed exactly" in recorded["machine_note"]
    assert {k: v for k, v in recorded.items() if k not in ("machine", "machine_note")} == entry
    assert verify(exact, tmp_path, progress=False).status == "OK"
    with pytest.raises(SystemExit):
        leaderboard.main(["--record-machine"])


def test_prune_removes_only_the_models_no_entry_refers_to(tmp_path, tiny_ppo_dirs, capsys, fast_bootstrap):
    from agents.common.commands import leaderboard
    from agents.common.leaderboard import unreferenced_models

    entry = trained_agents_entry(tiny_ppo_dirs, SEEDS, "test", "ppo", tmp_path, progress=False)
    save_entry(entry, tmp_path)
    kept = {tmp_path / run["model"] for run in entry["runs"]}
    stale = tmp_path / "models" / ("f" * 64)
    shutil.copytree(next(iter(kept)), stale)  # as a re-made entry leaves its old model behind
    assert unreferenced_models(tmp_path) == [stale]
    assert leaderboard.main(["--prune", "--leaderboard-dir", str(tmp_path)]) == 0
    assert f"removed {stale}" in capsys.readouterr().out
    assert not stale.exists() and all(folder.is_dir() for folder in kept)
    assert unreferenced_models(tmp_path) == []
    with pytest.raises(SystemExit):
        leaderboard.main(["--prune", "--verify", "x.json"])
