import functools
import io
import json
import math
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import trim_mean

import agents.common.leaderboard
from agents.common.evaluation import file_sha256
from agents.common.leaderboard import (
    LEADERBOARD_BUDGET_MB,
    MIN_OFFICIAL_RUNS,
    DirtyTreeError,
    aggregate,
    entry_path,
    load_entries,
    make_entry,
    render,
    write_entry,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_aggregate_iqm_and_its_interval():
    scores = list(np.random.default_rng(0).normal(0.7, 0.1, size=10))
    summary = aggregate(scores)
    assert summary["runs"] == 10
    assert summary["iqm"] == pytest.approx(trim_mean(scores, 0.25), rel=1e-12)
    low, high = summary["iqm_ci95"]
    assert low < summary["iqm"] < high
    assert min(scores) <= low and high <= max(scores)
    assert summary["mean"] == pytest.approx(np.mean(scores), rel=1e-12)


def test_aggregate_is_reproducible_and_leaves_global_randomness_alone(fast_bootstrap):
    scores = [0.1, 0.4, 0.5, 0.55, 0.9]
    np.random.seed(1)
    first = aggregate(scores)
    after_first = np.random.random()
    np.random.seed(2)
    assert aggregate(scores) == first  # seeded by its own seed, whatever NumPy's global state
    np.random.seed(1)
    expected = np.random.random()
    np.random.seed(1)
    aggregate(scores)
    assert np.random.random() == after_first == expected
    assert aggregate(scores, seed=1)["iqm_ci95"] != first["iqm_ci95"]


def test_aggregate_mean_and_std_by_hand(fast_bootstrap):
    summary = aggregate([1.0, 2.0, 3.0, 4.0])
    assert summary["mean"] == 2.5
    assert summary["std"] == pytest.approx(math.sqrt(5 / 3))  # sample std: (2.25 + 0.25 + 0.25 + 2.25) / 3
    # Eight scores: the IQM drops the two lowest and the two highest.
    assert aggregate([0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 9.0, 9.0])["iqm"] == pytest.approx(2.5)
    single = aggregate([0.5])
    assert single["runs"] == 1 and single["std"] == 0.0 and single["mean"] == 0.5


def episodes(metric_values, metric="student_test_accuracy"):
    return [{"seed": 1000 + i, "return": 0.0, metric: v} for i, v in enumerate(metric_values)]


def fake_entry(env_id="TemperatureKD-v0", name="ppo", scores=(0.5, 0.6), tag="test"):
    runs = [{"training_seed": i, "model": f"models/{name}/seed_{i}", "episodes": episodes([s, s + 0.1])}
            for i, s in enumerate(scores)]  # fmt: skip
    agent = {"kind": "sb3", "name": name}
    return make_entry(env_id, {"epochs": 2}, agent, runs, [1000, 1001], "student_test_accuracy", {"numpy": "x"}, tag)


def test_official_entries_refuse_a_dirty_or_unknown_checkout(monkeypatch, fast_bootstrap):
    official = [0.5] * MIN_OFFICIAL_RUNS
    for commit in ("1234abcd-dirty", None):
        monkeypatch.setattr(agents.common.leaderboard, "git_commit", lambda repo=None, c=commit: c)
        with pytest.raises(DirtyTreeError, match=f"git_commit={commit!r}"):
            fake_entry(scores=official, tag="official")
        assert fake_entry(scores=official, tag="quick")["git_commit"] == commit  # other tags record it as it is


def test_git_commit_reads_the_checkout(tmp_path, monkeypatch):
    monkeypatch.undo()  # the real git_commit, not the suite's fixed clean commit
    git_commit = agents.common.leaderboard.git_commit
    assert git_commit(tmp_path) is None  # not a checkout
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    run = functools.partial(subprocess.run, cwd=tmp_path, check=True, capture_output=True, env={**os.environ, **env})
    run(["git", "init", "-q"])
    (tmp_path / "a.txt").write_text("1")
    run(["git", "add", "a.txt"])
    run(["git", "commit", "-qm", "a"])
    head = run(["git", "rev-parse", "HEAD"], text=True).stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "untracked.txt").write_text("new files do not make the tree dirty")
    assert git_commit(tmp_path) == head
    (tmp_path / "a.txt").write_text("2")
    assert git_commit(tmp_path) == head + "-dirty"


def test_make_entry(fast_bootstrap):
    entry = fake_entry(scores=(0.5, 0.7))
    assert [run["score"] for run in entry["runs"]] == pytest.approx([0.55, 0.75])
    assert entry["summary"]["runs"] == 2 and entry["summary"]["mean"] == pytest.approx(0.65)
    assert (entry["env_name"], entry["env_version"]) == ("TemperatureKD", 0)
    assert entry["training_seeds"] == [0, 1] and entry["evaluation_seeds"] == [1000, 1001]
    assert not entry["official"]
    assert json.loads(json.dumps(entry)) == entry
    official = [0.5] * MIN_OFFICIAL_RUNS
    assert fake_entry(scores=official, tag="official")["official"]
    assert not fake_entry(scores=official[1:], tag="official")["official"]
    assert not fake_entry(scores=official, tag="quick")["official"]


def test_write_entry_round_trips(tmp_path, fast_bootstrap):
    entry = fake_entry()
    path = write_entry(entry, entry_path(entry["env_id"], "ppo", "test", tmp_path))
    assert path == tmp_path / "entries" / "TemperatureKD-v0__ppo__test.json"
    assert json.loads(path.read_text()) == entry
    assert load_entries(tmp_path) == [(path, entry)]


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_write_entry_is_atomic(tmp_path, monkeypatch, interruption, fast_bootstrap):
    path = tmp_path / "entries" / "e.json"
    write_entry({"version": 1}, path)
    before = path.read_text()

    def half_dump(obj, f, **kwargs):
        f.write('{"version": ')
        f.flush()
        raise interruption

    monkeypatch.setattr(agents.common.leaderboard.json, "dump", half_dump)
    with pytest.raises(interruption):
        write_entry({"version": 2}, path)
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["e.json"]


def test_unserialisable_entry_leaves_the_previous_file(tmp_path):
    path = tmp_path / "e.json"
    write_entry({"version": 1}, path)
    before = path.read_text()
    with pytest.raises(TypeError):
        write_entry({"version": 2, "env_kwargs": {"task": object()}}, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["e.json"]


def test_render(tmp_path, fast_bootstrap):
    for entry in (fake_entry(name="ppo", scores=(0.5, 0.6)), fake_entry(name="sac", scores=(0.8, 0.9)),
                  fake_entry(env_id="OtherKD-v1", name="td3", scores=(0.1, 0.2))):  # fmt: skip
        write_entry(entry, entry_path(entry["env_id"], entry["agent"]["name"], entry["tag"], tmp_path))
    readme, plots = render(tmp_path)
    assert readme == tmp_path / "README.md"
    assert sorted(plots) == [tmp_path / "OtherKD-v1.png", tmp_path / "TemperatureKD-v0.png"]
    for plot in plots:
        assert plot.read_bytes()[:8] == PNG_MAGIC
    text = readme.read_text()
    assert "## TemperatureKD-v0" in text and "## OtherKD-v1" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| agent")]
    assert [row.split(" | ")[0] for row in rows] == ["| td3", "| sac", "| ppo"]  # by env id, best IQM first
    assert "(entries/TemperatureKD-v0__sac__test.json)" in text
    assert "![TemperatureKD-v0](TemperatureKD-v0.png)" in text


def test_render_temperature_response_and_confident_prediction_columns(tmp_path, fast_bootstrap):
    def constant(name, scores, ece=None, policy=None):
        entry = fake_entry(name=name, scores=scores, tag="official")
        entry["agent"] = {"kind": "fixed", "name": name, **({"policy": policy} if policy else {})}
        for run in entry["runs"]:
            for episode in run["episodes"]:
                if ece is not None:
                    episode.update(student_test_ece=ece, student_test_ece_scaled=ece / 2, student_test_nll=1.0,
                                   student_test_nll_scaled=0.5, student_selective_accuracy_90=0.9,
                                   student_test_aurc=0.01)  # fmt: skip
        return entry

    runs = (0.5, 0.6, 0.55, 0.52, 0.58)
    entries = [
        constant("constant_t1", runs, ece=0.2),
        constant("constant_t4", tuple(s + 0.2 for s in runs), ece=0.1),
        constant("no_kd", runs),
        constant("best_constant", runs, policy={"class": "constant", "temperature": 4}),
    ]
    entries[-1]["agent"]["selection"] = {"validation_accuracy": {"1.0": 0.5, "4.0": 0.8}}
    for entry in entries:
        write_entry(entry, entry_path(entry["env_id"], entry["agent"]["name"], entry["tag"], tmp_path))
    readme, plots = render(tmp_path)
    assert tmp_path / "TemperatureKD-v0-temperature-response.png" in plots
    text = readme.read_text()
    assert "| 1 | " in text and "| 4 | " in text  # the response table, one row per constant T
    assert "| ECE → scaled | NLL → scaled | acc @ 90% cov. | AURC |" in text
    row = next(line for line in text.splitlines() if line.startswith("| constant_t4 | official"))
    assert "| 0.1000 → 0.0500 | 1.0000 → 0.5000 | 0.9000 | 0.0100 |" in row
    row = next(line for line in text.splitlines() if line.startswith("| no_kd | official"))
    assert "| – | – | – | – |" in row  # an entry without the measures


def test_render_shows_a_study_report_after_the_tables(tmp_path):
    from agents.common.leaderboard import render

    (tmp_path / "Interference-study.md").write_text("| setting | agent |\n|---|---|\n| cartpole | iq |\n")
    (tmp_path / "Interference-study.png").write_bytes(b"png")
    readme, _ = render(tmp_path)
    text = readme.read_text()
    assert "## Interference study" in text and "| cartpole | iq |" in text
    assert "![Interference-study.png](Interference-study.png)" in text
    assert "Interference-context-matrices.png" not in text  # only figures that exist


# -- the tracked leaderboard is data: entries, and the models they name by content, within a budget ----------
REPO_LEADERBOARD = Path(__file__).resolve().parents[2] / "leaderboard"


def test_tracked_models_are_addressed_by_content_and_each_is_named_by_an_entry():
    referenced = set()
    for path, entry in load_entries(REPO_LEADERBOARD):
        for run in entry["runs"]:
            if run.get("model"):
                assert run["model"] == f"models/{run['model_sha256']}", path.name
                referenced.add(run["model_sha256"])
    stored = {p.name for p in (REPO_LEADERBOARD / "models").iterdir()}
    assert stored == referenced  # no model without an entry, no entry without its model
    for sha in stored:
        folder = REPO_LEADERBOARD / "models" / sha
        assert file_sha256(folder / "model.zip") == sha
        with zipfile.ZipFile(folder / "model.zip") as archive:  # weights only: no optimizer state
            for name in archive.namelist():
                if name.endswith("optimizer.pth"):
                    assert torch.load(io.BytesIO(archive.read(name)), weights_only=False)["state"] == {}


def test_tracked_leaderboard_fits_the_budget_the_readme_states():
    size = sum(p.stat().st_size for p in REPO_LEADERBOARD.rglob("*") if p.is_file())
    assert size <= LEADERBOARD_BUDGET_MB * 2**20, f"leaderboard/ holds {size / 2**20:.1f} MB"
    readme = (REPO_LEADERBOARD.parent / "README.md").read_text()
    assert f"`leaderboard/` ≤ {LEADERBOARD_BUDGET_MB} MB" in readme


def test_every_tracked_entry_is_sound():
    from agents.common.evaluation import entry_problems

    problems = {path.name: entry_problems(entry) for path, entry in load_entries(REPO_LEADERBOARD)}
    assert {name: p for name, p in problems.items() if p} == {}


def test_every_tracked_trained_agent_is_what_its_stored_configs_say():
    from agents.common.evaluation import stored_config_problems

    entries = load_entries(REPO_LEADERBOARD)
    problems = {path.name: stored_config_problems(entry, REPO_LEADERBOARD) for path, entry in entries}
    assert {name: p for name, p in problems.items() if p} == {}


def test_figures_are_written_as_small_palette_pngs(tmp_path):
    """save_figure keeps the picture (size in pixels, colours within a palette's rounding) in about a third
    of matplotlib's bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from agents.common.figures import save_figure

    fig, ax = plt.subplots(figsize=(6, 3))
    for k in range(6):
        ax.plot(np.sin(np.linspace(0, 6, 200) + k), label=f"curve {k}")
    ax.legend()
    fig.savefig(tmp_path / "plain.png", dpi=110)
    save_figure(fig, tmp_path / "compact.png", dpi=110)
    plt.close(fig)
    plain, compact = Image.open(tmp_path / "plain.png"), Image.open(tmp_path / "compact.png")
    assert compact.mode == "P" and compact.size == plain.size
    assert (tmp_path / "compact.png").stat().st_size < 0.6 * (tmp_path / "plain.png").stat().st_size
    difference = np.abs(np.asarray(compact.convert("RGB"), float) - np.asarray(plain.convert("RGB"), float))
    assert difference.mean() < 2.0  # out of 255: the same picture
