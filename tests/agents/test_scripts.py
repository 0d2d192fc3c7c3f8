"""The command-line tools, run through their ``main(argv)`` on the tiny env into temporary folders; the
studies' reports through the library (agents.common.reports), and each study script once, end to end."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents.common.commands import evaluate, leaderboard, train

LEADERBOARD_DIR = Path(__file__).resolve().parents[2] / "leaderboard"  # the tracked one
ENV_ID = "TemperatureKD-v0"
TAG = "pytest"


@pytest.fixture(autouse=True)
def repo_leaderboard_untouched():
    readme = LEADERBOARD_DIR / "README.md"
    before = readme.stat().st_mtime_ns if readme.exists() else None
    yield
    assert not list(LEADERBOARD_DIR.glob(f"entries/*__{TAG}.json"))
    assert not list(LEADERBOARD_DIR.glob(f"models/*__{TAG}"))
    assert (readme.stat().st_mtime_ns if readme.exists() else None) == before


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_json_kwargs, tiny_ppo_hyperparams):
    out = tmp_path_factory.mktemp("runs") / "ppo"
    train.main(["--algo", "ppo", "--env", ENV_ID, "--seed", "0", "--seed", "1", "--timesteps", "32",
                "--env-kwargs", json.dumps(tiny_json_kwargs), "--hyperparams", json.dumps(tiny_ppo_hyperparams),
                "--out", str(out), "--no-progress"])  # fmt: skip
    return [out / "seed_0", out / "seed_1"]


def test_train_writes_one_folder_per_seed(trained, tiny_json_kwargs, tiny_ppo_hyperparams):
    for seed, folder in enumerate(trained):
        assert (folder / "model.zip").is_file()
        config = json.loads((folder / "config.json").read_text())
        assert (config["algo"], config["seed"], config["total_timesteps"]) == ("ppo", seed, 32)
        assert config["env_kwargs"] == tiny_json_kwargs
        assert config["hyperparams"]["n_steps"] == tiny_ppo_hyperparams["n_steps"]


def test_train_writes_a_single_seed_to_out(tmp_path, tiny_json_kwargs, tiny_ppo_hyperparams):
    train.main(["--algo", "ppo", "--seed", "2", "--timesteps", "16", "--env-kwargs", json.dumps(tiny_json_kwargs),
                "--hyperparams", json.dumps(tiny_ppo_hyperparams), "--out", str(tmp_path / "run"),
                "--no-progress"])  # fmt: skip
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 2


@pytest.mark.parametrize(
    ("script", "argv", "message"),
    [
        ("train", ["--algo", "ppo", "--seed", "1000"], "evaluation seeds are kept apart"),
        ("train", ["--algo", "c51"], "invalid choice"),
        ("evaluate", ["--fixed", "constant_t4", "--episodes", "0"], "--episodes"),
        ("evaluate", ["--fixed", "constant_t4", "--models", "somewhere"], "not allowed with"),
    ],
)
def test_parser_errors(tmp_path, capsys, script, argv, message):
    main = {"train": train.main, "evaluate": evaluate.main}[script]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out" if script == "train" else "--leaderboard-dir", str(tmp_path)])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_evaluate_refuses_an_official_entry_from_a_dirty_checkout_before_evaluating(tmp_path, capsys, monkeypatch):
    import agents.common.leaderboard

    monkeypatch.setattr(agents.common.leaderboard, "git_commit", lambda repo=None: "abc-dirty")
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--fixed", "constant_t4", "--tag", "official", "--leaderboard-dir", str(tmp_path)])
    assert exit_.value.code == 2
    assert "needs a clean git checkout (git_commit='abc-dirty')" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_kd_gym_dispatches_to_the_subcommands(capsys):
    from agents.common.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "usage: kd-gym train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "n2n", "--help"])
    assert "usage: kd-gym bench n2n" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["fly"])
    assert exit_.value.code == 2 and "invalid choice: 'fly'" in capsys.readouterr().err


def test_evaluate_then_verify_trained_agents(tmp_path, trained, capsys, fast_bootstrap):
    evaluate.main(["--models", *map(str, trained), "--episodes", "2", "--tag", TAG, "--leaderboard-dir", str(tmp_path)])
    path = tmp_path / "entries" / f"{ENV_ID}__ppo__{TAG}.json"
    assert str(path) in capsys.readouterr().out
    entry = json.loads(path.read_text())
    assert entry["summary"]["runs"] == 2 and entry["evaluation_seeds"] == [1000, 1001]
    for run in entry["runs"]:
        assert (tmp_path / run["model"] / "model.zip").is_file()

    assert leaderboard.main(["--verify", str(path), "--leaderboard-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("OK ")

    entry["runs"][0]["episodes"][1]["return"] += 1e-6
    path.write_text(json.dumps(entry))
    assert leaderboard.main(["--verify", str(path), "--leaderboard-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"MISMATCH {path}") and "training seed 0, evaluation seed 1001: return" in out


def test_evaluate_fixed_verify_and_render(tmp_path, tiny_json_kwargs, capsys, fast_bootstrap):
    for name in ("constant_t4", "no_kd"):
        evaluate.main(["--fixed", name, "--env-kwargs", json.dumps(tiny_json_kwargs), "--episodes", "2",
                       "--tag", TAG, "--leaderboard-dir", str(tmp_path)])  # fmt: skip
    paths = sorted((tmp_path / "entries").glob("*.json"))
    assert [p.name for p in paths] == [f"{ENV_ID}__constant_t4__{TAG}.json", f"{ENV_ID}__no_kd__{TAG}.json"]
    assert json.loads(paths[1].read_text())["env_kwargs"]["kd_weight"] == 0.0
    assert leaderboard.main(["--verify", *map(str, paths), "--leaderboard-dir", str(tmp_path)]) == 0

    # One bad entry among good ones fails the whole check.
    entry = json.loads(paths[0].read_text())
    entry["runs"][1]["episodes"][0]["student_test_accuracy"] = 1.5
    paths[0].write_text(json.dumps(entry))
    capsys.readouterr()
    assert leaderboard.main(["--verify", *map(str, paths), "--leaderboard-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"MISMATCH {paths[0]}" in out and f"OK {paths[1]}" in out

    assert leaderboard.main(["--leaderboard-dir", str(tmp_path)]) == 0
    readme = (tmp_path / "README.md").read_text()
    assert "| constant_t4 | pytest |" in readme and "| no_kd | pytest |" in readme
    assert (tmp_path / f"{ENV_ID}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reliability_report_replays_the_best_entry_and_cross_entropy(tmp_path, tiny_json_kwargs, fast_bootstrap):
    from agents.common.reports.temperature_kd import plot_reliability, reliability_reports

    for name in ("constant_t4", "no_kd"):
        evaluate.main(["--fixed", name, "--env-kwargs", json.dumps(tiny_json_kwargs), "--episodes", "5",
                       "--tag", "official", "--leaderboard-dir", str(tmp_path)])  # fmt: skip
    entries = {p.name.split("__")[1]: json.loads(p.read_text()) for p in (tmp_path / "entries").glob("*.json")}
    reports = reliability_reports(entries, tmp_path)
    plot_reliability(reports, tmp_path / f"{ENV_ID}-reliability.png")
    assert (tmp_path / f"{ENV_ID}-reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for r in reports:  # the replay is the entry's first episode: the same student, the same measures
        first = entries[r["entry"]]["runs"][0]["episodes"][0]
        assert r["raw"]["ece"] == pytest.approx(first["student_test_ece"])
        assert r["scaled"]["ece"] == pytest.approx(first["student_test_ece_scaled"])
        assert r["student_test_accuracy"] == first["student_test_accuracy"]
    assert reports[0]["entry"] == "no_kd"


@pytest.mark.slow  # about 20 s on two cores: two fresh interpreters, eleven tiny searches and their reports
def test_n2n_study_runs_every_part_and_reports(tmp_path, tiny_n2n_kwargs, run_script):
    from agents.common.reports.n2n import student_from_record
    from kd_envs.tasks import ModelConfig, TaskConfig

    base = TaskConfig.from_dict(tiny_n2n_kwargs["task"])
    source = TaskConfig(dataset=base.dataset, teacher=ModelConfig("mlp", width=32, depth=2),
                        teacher_training=base.teacher_training)  # fmt: skip
    board = tmp_path / "board"
    (board / "entries").mkdir(parents=True)
    argv = ["--seeds", "0", "1", "--transfer-seeds", "0", "--students", "6", "--final-epochs", "1", "--jobs", "1",
            "--runs", str(tmp_path / "runs"), "--tag", "test", "--leaderboard-dir", str(board),
            "--env-kwargs", json.dumps({**tiny_n2n_kwargs, "training_seed": 0}),
            "--transfer-source", json.dumps(source.to_dict())]  # fmt: skip
    run_script("n2n_study", *argv)
    names = sorted(p.name for p in (board / "entries").glob("*.json"))
    assert names == sorted(f"N2NCompress-v0__{n}__test.json" for n in
                           ("random_search", "evolution", "n2n", "maskable_ppo", "n2n_two_stage"))  # fmt: skip
    report = json.loads((board / "N2N-study.json").read_text())
    assert set(report["agents"]) == {"random_search", "evolution", "n2n", "maskable_ppo", "n2n_two_stage"}
    for row in report["agents"].values():
        assert row["searches"] == 2 and row["final_reward"]["runs"] == 2
    transfer = report["transfer"]
    assert transfer["seeds"] == [0] and len(transfer["curves"]["transfer"]) == 6
    scratch = json.loads((tmp_path / "runs" / "joint" / "n2n" / "seed_0" / "search.json").read_text())
    assert transfer["scratch"]["first"] == [pytest.approx(np.mean([h["reward"] for h in scratch["history"][:10]]))]
    assert "N2N study" in (board / "README.md").read_text() and (board / "N2N-transfer.png").is_file()
    # Every proposed student can be rebuilt from its record (the compression target's candidates are).
    teacher = gym.make("N2NCompress-v0", **tiny_n2n_kwargs).unwrapped.teacher_architecture
    for h in scratch["history"]:
        if not h["degenerate"]:
            assert student_from_record(teacher, h).num_parameters() == h["student_parameters"]
    # A second call finds every search done and trains nothing new.
    before = sorted(p.stat().st_mtime for p in (tmp_path / "runs").rglob("search.json"))
    run_script("n2n_study", *argv)
    assert sorted(p.stat().st_mtime for p in (tmp_path / "runs").rglob("search.json")) == before


def _write_search(folder: Path, rewards: list[float], seconds: list[float], cached: list[bool]) -> None:
    folder.mkdir(parents=True)
    history = [{"reward": r, "train_seconds": s, "cached": c, "degenerate": False, "architecture_summary": f"s{i % 2}"}
               for i, (r, s, c) in enumerate(zip(rewards, seconds, cached))]  # fmt: skip
    (folder / "search.json").write_text(json.dumps({"history": history, "best": {"reward": max(rewards)}}))


def test_n2n_transfer_result_and_search_cost_by_hand(tmp_path):
    from agents.common.reports.n2n import search_cost, transfer_result

    _write_search(tmp_path / "joint" / "n2n" / "seed_0", [0.1] * 10 + [0.5] * 10, [2.0] * 20, [False] * 2 + [True] * 18)
    _write_search(tmp_path / "transfer" / "n2n" / "seed_0", [0.3] * 10 + [0.7] * 10, [4.0] * 20, [False] * 20)
    result = transfer_result(tmp_path, [0, 1], "mnist1d-vgg")  # seed 1 has no searches: left out
    assert result["seeds"] == [0] and result["source_task"] == "mnist1d-vgg" and result["window"] == 10
    assert result["transfer"]["first"] == [pytest.approx(0.3)] and result["transfer"]["last"] == [pytest.approx(0.7)]
    assert result["scratch"]["first_mean"] == pytest.approx(0.1) and result["scratch"]["best"] == [0.5]
    assert len(result["curves"]["scratch"]) == 20
    assert transfer_result(tmp_path, [1], {"dataset": "custom"}) is None
    # Two students trained (not cached) at 2 s; the search's two distinct students, 2 s each, alone.
    cost = search_cost(tmp_path)
    assert cost == {"seconds_per_student": 2.0, "students_trained": 2, "search_minutes_alone": pytest.approx(4 / 60)}


def test_the_device_episode_script_names_what_is_missing_and_times_an_episode(own_tasks, monkeypatch, capsys):
    """scripts/gpu_episode.py (``kd-gym bench device``): a device this machine lacks and a missing CIFAR folder are
    refused with a message that names them, before any work; on the CPU it times a short episode of a small task."""
    import torch

    from agents.common.benchmarks.device import main as device_main

    monkeypatch.delenv("KD_GYM_CIFAR_ROOT", raising=False)
    if not torch.cuda.is_available():
        assert device_main(["--device", "cuda"]) == 2
        assert "device='cuda': this machine has no CUDA device" in capsys.readouterr().err
    assert device_main(["--device", "cuda:99"]) == 2
    assert "device='cuda:99'" in capsys.readouterr().err
    assert device_main(["--device", "cpu", "--data-root", "/nonexistent/cifar"]) == 2
    assert "cifar100: expected CIFAR's python-format files in /nonexistent/cifar/cifar-100-python" in (
        capsys.readouterr().err)  # fmt: skip
    assert device_main(["--device", "cpu", "--task", f"{own_tasks}:digits", "--epochs", "1", "--batch-size", "32",
                        "--steps", "3"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "device: cpu" in out and "steps: 3 of the episode's 8 in" in out and "steps/s" in out


def test_bench_all_runs_each_benchmark_and_ends_with_lines_a_script_reads_back(capsys, tmp_path, monkeypatch):
    """``kd-gym bench all`` on two stand-in benchmarks: each runs at its defaults (no arguments), the
    output ends with one ``name: ratio = X (target T)`` line per figure, and the record it writes is what
    the docs' table is generated from."""
    import os

    from agents.common.benchmarks import Figure, parse_summary
    from agents.common.commands import bench
    from agents.common.docs import BLOCKS

    # Paired repeats 0.98, 1.10, 1.02: median 1.02; inclusive quartiles 1.00 and 1.06.
    figures = {"fast": [Figure.of_repeats("fast - env / hand loop", [0.98, 1.10, 1.02], 1.05, at_least=False)],
               "slow": [Figure("slow - serial / parallel", 1.4, 1.5, at_least=True),
                        Figure("slow - cached speed-up", 162.0, 100, at_least=True)]}  # fmt: skip
    # Stand-in benchmarks as modules on disk: `bench all` runs each in a fresh process, which notes its
    # pid and arguments.
    for name, produced in figures.items():
        (tmp_path / f"stand_in_{name}.py").write_text(
            "import os\nfrom agents.common.benchmarks import Figure\n"
            "def main(argv, prog):\n"
            f"    open({str(tmp_path / name)!r}, 'w').write(repr((argv, prog, os.getpid())))\n"
            f"    return {produced!r}\n")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(bench, "BENCHMARKS", {name: f"stand_in_{name}" for name in figures})
    assert bench.main(["all", "--record", str(tmp_path / "benchmarks.json")]) == 0
    out = capsys.readouterr().out
    calls = {name: eval((tmp_path / name).read_text()) for name in figures}  # noqa: S307 (our own repr)
    assert [argv for argv, _, _ in calls.values()] == [[], []]
    assert calls["slow"][1] == "kd-gym bench slow"
    pids = {pid for _, _, pid in calls.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    expected = [*figures["fast"], *figures["slow"]]
    assert out.rstrip().splitlines()[-3:] == [f.line() for f in expected]
    assert out.rstrip().splitlines()[-3] == "fast - env / hand loop: ratio = 1.020 (target <= 1.05)"
    assert parse_summary(out) == expected
    assert "summary: 2 of 3 targets met" in out
    record = json.loads((tmp_path / "benchmarks.json").read_text())
    assert [f["met"] for f in record["figures"]] == [True, False, True]
    table = BLOCKS["benchmarks"]("", "benchmarks.md", tmp_path)
    assert "| slow - serial / parallel | 1.400 | one run | ≥ 1.5 | **no** |" in table
    assert "| fast - env / hand loop | 1.020 | 1.000–1.060 (3 pairs) | ≤ 1.05 | yes |" in table
    assert record["figures"][0]["repeats"] == [0.98, 1.1, 1.02]
    assert f"({record['cores']} cores)" in table and record["date"] in table
    with pytest.raises(ValueError, match="without ':'"):
        Figure("a: b", 1.0, 1.0, at_least=True)
