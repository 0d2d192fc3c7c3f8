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


def _as_if_made_elsewhere(entry, shift):
    """The entry as another machine would have written it: every accuracy off by ``shift``, with the
    scores and summary that follow from them (a sound entry whose numbers the replay does not repeat)."""
    for run in entry["runs"]:
        for episode in run["episodes"]:
            episode["student_test_accuracy"] += shift
        run["score"] = run_score(run, entry["metric"])
    entry["summary"] = aggregate([run["score"] for run in entry["runs"]])
    entry["machine"] = "Linux x86_64, another CPU, torch 0.0"
    return entry


@pytest.mark.parametrize(("shift", "status"), [(1e-7, "CONSISTENT"), (0.5, "MISMATCH")])
def test_verify_elsewhere_reports_the_largest_difference_and_the_ci(tmp_path, tiny_json_kwargs, fast_bootstrap,
                                                                     shift, status):
    entry = fixed_policy_entry("random_t", ENV_ID, tiny_json_kwargs, (1000, 1001, 1002, 1003), tag="test",
                               progress=False)  # fmt: skip
    assert entry["machine"] == machine_kind()
    path = save_entry(_as_if_made_elsewhere(entry, shift), tmp_path)
    result = verify(path, tmp_path, progress=False)
    assert result.status == status and result.same_machine_kind is False and not result.problems
    assert result.largest_difference == pytest.approx(shift, rel=1e-3)
    assert "student_test_accuracy" in result.largest_difference_at
    assert result.inside_ci is (status == "CONSISTENT")
    assert "another machine kind made the entry" in result.lines()[-1]
    # The same numbers from this machine kind: exactness is the rule, whatever the CI says.
    saved = json.loads(path.read_text())
    saved["machine"] = machine_kind()
    path.write_text(json.dumps(saved))
    assert verify(path, tmp_path, progress=False).status == "MISMATCH"
