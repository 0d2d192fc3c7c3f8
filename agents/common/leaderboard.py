"""Leaderboard entries: one JSON file per (env, agent, tag), written atomically; aggregation by the
interquartile mean with a 95% stratified-bootstrap confidence interval (rliable); rendering to a
Markdown table and a PNG; verification by re-running an entry's stored policy.

A *run* is one independently trained agent (one training seed) scored by its mean over the
evaluation seeds; for a fixed policy, which is not trained, each evaluation episode is a run.
"""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
import warnings
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from agents.common.figures import save_figure
from kd_envs.tasks import atomic_write, task_json

# The default leaderboard folder, relative to the working directory (the repository root for `make` and
# the scripts); every function that reads or writes entries takes the folder as an argument.
LEADERBOARD_DIR = Path("leaderboard")
SCHEMA_VERSION = 1
# The tracked leaderboard's size budget (entries, rendered tables and plots, weights-only models); the
# README states it and a test holds it.
LEADERBOARD_BUDGET_MB = 40
MIN_OFFICIAL_RUNS = 5
BOOTSTRAP_REPS = 5000


def aggregate(scores: list[float], seed: int = 0) -> dict[str, Any]:
    """IQM with its 95% stratified-bootstrap CI (rliable), mean and std of the per-run scores."""
    from rliable import library as rly
    from rliable import metrics

    matrix = np.asarray(scores, dtype=np.float64).reshape(-1, 1)  # runs x tasks (one task)
    # rliable 1.2's StratifiedBootstrap resamples with NumPy's global generator and ignores random_state,
    # so seed that generator for the call and give the caller's state back afterwards.
    global_state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            # arch (under rliable) warns that its random_state argument is deprecated: not ours to fix.
            warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
            points, intervals = rly.get_interval_estimates(
                {"agent": matrix},
                lambda x: np.array([metrics.aggregate_iqm(x)]),
                reps=BOOTSTRAP_REPS,
                random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(global_state)
    return {
        "runs": len(scores),
        "iqm": float(points["agent"][0]),
        "iqm_ci95": [float(intervals["agent"][0, 0]), float(intervals["agent"][1, 0])],
        "mean": float(matrix.mean()),
        "std": float(matrix.std(ddof=1)) if len(scores) > 1 else 0.0,
    }


def run_score(run: dict[str, Any], metric: str) -> float:
    """A run's score: the mean of ``metric`` over its evaluation episodes."""
    return float(np.mean([episode[metric] for episode in run["episodes"]]))


class DirtyTreeError(RuntimeError):
    """An official entry was asked for from code that git cannot pin: uncommitted changes, or no checkout."""


def git_commit(repo: Path | None = None) -> str | None:
    """The commit of the checkout holding ``repo`` (default: this code's own checkout, which git finds
    upward from this file's folder), with ``-dirty`` for uncommitted changes to tracked files; None
    outside a git checkout (an installed wheel)."""
    repo = Path(__file__).parent if repo is None else Path(repo)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine_kind() -> str:
    """The kind of machine an entry was made on, on which ``--verify`` is exact: OS, architecture, CPU
    model, torch version and the CPU kernels torch dispatches to (``torch.backends.cpu.get_cpu_capability``:
    AVX2, AVX512, ...); float results can differ in the last bits across any of these. Two virtual
    machines can report the same model name ("AMD EPYC") and run different kernels: on 2026-12-07 an
    AVX2 host gave other bits than the AVX-512 host that had recorded the same kind without it. Entries
    made before then record the kind without the kernels, which ``--verify`` treats as another kind."""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        pass
    import torch

    kind = f"{platform.system()} {platform.machine()}, {cpu or 'unknown CPU'}, torch {version('torch')}"
    return f"{kind}, {torch.backends.cpu.get_cpu_capability()}"


def commit_for_entry(tag: str) -> str | None:
    """The commit an entry with ``tag`` records; for ``tag="official"`` a clean checkout is required
    (:class:`DirtyTreeError` otherwise), so a command can check before it spends the evaluation."""
    commit = git_commit()
    if tag == "official" and (commit is None or commit.endswith("-dirty")):
        raise DirtyTreeError(
            f"tag='official' needs a clean git checkout (git_commit={commit!r}): commit or stash your changes, "
            "or make the entry under another tag"
        )
    return commit


def json_env_kwargs(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Env kwargs as an entry or a ``config.json`` records them: a ``task`` given as a ``TaskConfig`` or a
    ``Task`` in its JSON form (:func:`kd_envs.tasks.task_json`: a task of your own as its factory
    ``"module:function"``, which rebuilds it, or without one as a record that names it)."""
    if "task" not in env_kwargs:
        return env_kwargs
    return {**env_kwargs, "task": task_json(env_kwargs["task"])}


def make_entry(
    env_id: str,
    env_kwargs: dict[str, Any],
    agent: dict[str, Any],
    runs: list[dict[str, Any]],
    evaluation_seeds: list[int],
    metric: str,
    packages: dict[str, str],
    tag: str = "official",
    notes: str = "",
    torch_threads: int = 1,
) -> dict[str, Any]:
    """An entry; ``runs`` is a list of {"training_seed", "model", "episodes": [per-seed results]}, evaluated
    on ``torch_threads`` torch threads (recorded: an episode's numbers can depend on the count).

    An official entry (``tag="official"``) must be reproducible from a commit: from a dirty checkout or
    no checkout at all it raises :class:`DirtyTreeError`; other tags record ``-dirty`` as it is."""
    commit = commit_for_entry(tag)
    for run in runs:
        run["score"] = run_score(run, metric)
    env_name, _, env_version = env_id.rpartition("-v")
    return {
        "schema": SCHEMA_VERSION,
        "env_id": env_id,
        "env_version": int(env_version) if env_version.isdigit() else env_version,
        "env_name": env_name,
        "env_kwargs": json_env_kwargs(env_kwargs),
        "agent": agent,
        "tag": tag,
        "metric": metric,
        "training_seeds": [r["training_seed"] for r in runs if r["training_seed"] is not None],
        "evaluation_seeds": list(evaluation_seeds),
        "runs": runs,
        "summary": aggregate([r["score"] for r in runs]),
        "official": tag == "official" and len(runs) >= MIN_OFFICIAL_RUNS,
        "notes": notes,
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "packages": packages,
        "git_commit": commit,
        "machine": machine_kind(),
        "torch_threads": torch_threads,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def board_id(env_id: str, env_kwargs: dict[str, Any] | None = None) -> str:
    """The table an entry ranks in: its env id, or on a task set ``<env id>-<task set>-<split>`` (a task
    set's entries are scored on other tasks than the env's default, so they rank apart), or on a student
    table (N2NCompress-v0's ``tabular``) ``<env id>-<table>``: its teacher and subspace are not the default's."""
    kwargs = env_kwargs or {}
    if kwargs.get("tabular"):
        from kd_envs.tasks.tables import DEFAULT_TABLE

        return f"{env_id}-{DEFAULT_TABLE if kwargs['tabular'] is True else kwargs['tabular']}"
    if kwargs.get("task_set") is None:
        return env_id
    return f"{env_id}-{kwargs['task_set']}-{kwargs.get('split', 'train')}"


def entry_path(env_id: str, agent_name: str, tag: str, directory: Path = LEADERBOARD_DIR) -> Path:
    """The entry's file; ``env_id`` is its :func:`board_id`."""
    return Path(directory) / "entries" / f"{env_id}__{agent_name}__{tag}.json"


def write_entry(entry: dict[str, Any], path: Path) -> Path:
    """Write atomically: a reader (or an interrupt) never sees half a file."""
    path = Path(path)

    def dump(f) -> None:
        json.dump(entry, f, indent=2)
        f.write("\n")

    atomic_write(path, dump, mode="w")
    return path


def load_entries(directory: Path = LEADERBOARD_DIR) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, json.loads(p.read_text())) for p in sorted((Path(directory) / "entries").glob("*.json"))]


def unreferenced_models(directory: Path = LEADERBOARD_DIR) -> list[Path]:
    """The folders of ``models/`` that no entry's run refers to (left behind when an entry is re-made
    with other models), sorted."""
    directory = Path(directory)
    referenced = {run["model"] for _, entry in load_entries(directory) for run in entry.get("runs", [])
                  if isinstance(run, dict) and run.get("model")}  # fmt: skip
    models = directory / "models"
    folders = sorted(p for p in models.iterdir() if p.is_dir()) if models.is_dir() else []
    return [p for p in folders if p.relative_to(directory).as_posix() not in referenced]


def render(directory: Path = LEADERBOARD_DIR) -> tuple[Path, list[Path]]:
    """Write ``README.md`` (one table per env id, best IQM first) and one PNG per env id."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    by_env: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for path, entry in load_entries(directory):
        settings = entry.get("evaluation_env_kwargs") or []
        scored = settings[0] if len(settings) == 1 else entry["env_kwargs"]
        by_env.setdefault(board_id(entry["env_id"], scored), []).append((path, entry))
    lines = [
        "# KD-Gym leaderboard",
        "",
        "Generated by `scripts/leaderboard.py` from `entries/*.json`; do not edit by hand.",
        "Score: interquartile mean (IQM) over runs with its 95% stratified-bootstrap confidence interval",
        "(rliable), and mean ± std. A run is one training seed of a learned agent (its mean over the",
        "evaluation seeds), or one evaluation episode of a fixed policy.",
        f"Official entries have at least {MIN_OFFICIAL_RUNS} runs;",
        "`--verify ENTRY` re-runs an entry's stored policy on its evaluation seeds.",
        "",
    ]
    plots = []
    for env_id, entries in sorted(by_env.items()):
        entries.sort(key=lambda pe: -pe[1]["summary"]["iqm"])
        metric = entries[0][1]["metric"]
        lines += [f"## {env_id}", "", f"Metric: `{metric}`.", ""]
        confident = any(CONFIDENT_PREDICTION_COLUMNS[0][1][0] in _episodes(e)[0] for _, e in entries)
        extra = [title for title, _ in CONFIDENT_PREDICTION_COLUMNS] if confident else []
        lines += ["| agent | tag | runs | IQM [95% CI] | mean ± std | " + "".join(f"{t} | " for t in extra)
                  + "eval seeds | env kwargs | entry |", "|---" * (8 + len(extra)) + "|"]  # fmt: skip
        for path, e in entries:
            s = e["summary"]
            kwargs = ", ".join(f"{k}={v}" for k, v in sorted(e["env_kwargs"].items())) or "defaults"
            tag = e["tag"] + (" (too few runs)" if e["tag"] == "official" and not e["official"] else "")
            cells = "".join(f"{_mean_of(e, key)} | " for _, key in CONFIDENT_PREDICTION_COLUMNS) if confident else ""
            lines.append(
                f"| {e['agent']['name']} | {tag} | {s['runs']} "
                f"| {s['iqm']:.4f} [{s['iqm_ci95'][0]:.4f}, {s['iqm_ci95'][1]:.4f}] "
                f"| {s['mean']:.4f} ± {s['std']:.4f} | {cells}{len(e['evaluation_seeds'])} | {kwargs} "
                f"| [{path.name}](entries/{path.name}) |"
            )
        if confident:
            lines += ["", "Confident prediction (means over every evaluation episode, test split): ECE over 15 bins, "
                      "before → after temperature scaling fitted on validation; NLL likewise; accuracy at the "
                      "confidence threshold that keeps 90% of validation; area under the risk–coverage curve."]
        plot = directory / f"{env_id}.png"
        fig, ax = plt.subplots(figsize=(7, 0.5 * len(entries) + 1.5))
        names = [f"{e['agent']['name']} ({e['tag']})" for _, e in entries][::-1]
        iqm = np.array([e["summary"]["iqm"] for _, e in entries][::-1])
        ci = np.array([e["summary"]["iqm_ci95"] for _, e in entries][::-1])
        ax.errorbar(iqm, range(len(names)), xerr=[iqm - ci[:, 0], ci[:, 1] - iqm], fmt="o", capsize=4)
        for i, (_, e) in enumerate(entries[::-1]):
            scores = [r["score"] for r in e["runs"]]
            ax.scatter(scores, [i] * len(scores), s=10, alpha=0.4, color="gray")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel(f"{metric} (IQM, 95% CI; gray: runs)")
        ax.set_title(env_id)
        fig.tight_layout()
        save_figure(fig, plot, dpi=120)
        plt.close(fig)
        plots.append(plot)
        lines += ["", f"![{env_id}]({plot.name})", ""]
        response = _render_temperature_response(env_id, entries, directory, plt)
        if response is not None:
            lines += response[0]
            plots.append(response[1])
        searches = [(p, e) for p, e in entries if e["agent"]["kind"] == "search"]
        if searches:
            students_lines, students_plot = _render_students(env_id, searches, directory, plt)
            lines += students_lines
            plots.append(students_plot)
    lines += _study_sections(directory)
    readme = directory / "README.md"
    readme.write_text("\n".join(lines) + "\n")
    return readme, plots


# Studies whose report (a markdown table written beside the entries, and figures) the leaderboard
# page shows after the per-env tables: (title, table file, figures, what it is).
STUDY_REPORTS = (
    ("Interference study", "Interference-study.md",
     ("Interference-context-matrices.png", "Interference-study.png",
      "Interference-study-conflict_visible-forgetting.png", "Interference-study-conflict_hidden-forgetting.png"),
     "Written by `scripts/interference_study.py` from the entries above and their runs' records: greedy "
     "return and the paper's training-return AUC (IQM [95% CI] over training seeds), the mean off-diagonal "
     "of the context-interference matrix (single-task settings) and the final forgetting (drift settings)."),
    ("N2N study", "N2N-study.md", ("N2N-transfer.png",),
     "Written by `scripts/n2n_study.py` from the N2NCompress-v0 entries above and their searches: the final "
     "reward of each search's best student (test split) beside what the searches saw (validation proxy), "
     "the compression target, N2N's policy transfer and the cost of a search."),
    ("N2N budget study", "N2N-study-budget.md", (),
     "Written by `scripts/n2n_study.py --name budget`: searchers on the deep default with the `budget` reward (a "
     "hard parameter budget, AMC-style masks): the best students' test accuracy over the teacher's."),
    ("N2N regret", "N2N-regret.md", ("N2N-regret.png",),
     "Written by `scripts/n2n_regret.py`: searchers ranked on the student table n2n-vgg-v0 (every student of the "
     "VGG-style teacher), hundreds of searches each, by their regret against the table's exact optimum."),
)  # fmt: skip


def _study_sections(directory: Path) -> list[str]:
    lines: list[str] = []
    for title, table, figures, about in STUDY_REPORTS:
        if not (directory / table).is_file():
            continue
        lines += [f"## {title}", "", about, "", (directory / table).read_text().rstrip(), ""]
        lines += [f"![{figure}]({figure})" for figure in figures if (directory / figure).is_file()]
        lines.append("")
    return lines


# Columns of the rendered table for envs whose final info reports confident prediction (TemperatureKD-v0).
CONFIDENT_PREDICTION_COLUMNS = (
    ("ECE → scaled", ("student_test_ece", "student_test_ece_scaled")),
    ("NLL → scaled", ("student_test_nll", "student_test_nll_scaled")),
    ("acc @ 90% cov.", ("student_selective_accuracy_90",)),
    ("AURC", ("student_test_aurc",)),
)


def _episodes(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [episode for run in entry["runs"] for episode in run["episodes"]]


def _mean_of(entry: dict[str, Any], keys: tuple[str, ...]) -> str:
    """The mean of each key over the entry's episodes, joined by →; "–" where an entry predates the key."""
    episodes = _episodes(entry)
    if any(key not in episodes[0] for key in keys):
        return "–"
    return " → ".join(f"{np.mean([ep[key] for ep in episodes]):.4f}" for key in keys)


def _constant_temperature(entry: dict[str, Any]) -> float | None:
    """The temperature of a constant-temperature entry (``constant_t<T>``, or a chosen constant), else None."""
    agent = entry["agent"]
    if agent["kind"] != "fixed" or entry["env_kwargs"].get("kd_weight") == 0.0:
        return None
    if agent.get("policy", {}).get("class", "constant") == "constant" and agent.get("policy", {}).get("temperature"):
        return float(agent["policy"]["temperature"])
    name = agent["name"]
    if name.startswith("constant_t"):
        try:
            return float(name[len("constant_t") :])
        except ValueError:
            return None
    return None


def _render_temperature_response(env_id: str, entries: list[tuple[Path, dict[str, Any]]], directory: Path, plt):
    """For a distillation env with constant-temperature entries: the student's score against the constant
    T (IQM and 95% CI of the official entries), cross-entropy alone as a band, and the validation
    accuracy that chose ``best_constant`` where that entry exists. None when there is nothing to draw."""
    official = [e for _, e in entries if e["tag"] == "official" and e["official"]]
    constants = sorted((t, e) for e in official if (t := _constant_temperature(e)) is not None
                       and e["agent"]["name"].startswith("constant_t"))  # fmt: skip
    if len(constants) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ts = np.array([t for t, _ in constants])
    iqm = np.array([e["summary"]["iqm"] for _, e in constants])
    ci = np.array([e["summary"]["iqm_ci95"] for _, e in constants])
    ax.errorbar(ts, iqm, yerr=[iqm - ci[:, 0], ci[:, 1] - iqm], fmt="o-", capsize=4,
                label="constant T (test, IQM, 95% CI)")
    for e in official:
        if e["agent"]["name"] == "no_kd":
            s = e["summary"]
            ax.axhspan(*s["iqm_ci95"], color="gray", alpha=0.25, label=f"cross-entropy alone ({s['iqm']:.3f})")
            ax.axhline(s["iqm"], color="gray", lw=1)
        if e["agent"]["name"] == "best_constant" and "selection" in e["agent"]:
            table = e["agent"]["selection"]["validation_accuracy"]
            vt = sorted(table, key=float)
            ax.plot([float(t) for t in vt], [table[t] for t in vt], "s--", color="tab:orange", ms=4,
                    label="validation accuracy that chose best_constant (training seeds)")  # fmt: skip
            ax.axvline(e["agent"]["policy"]["temperature"], color="tab:orange", lw=1, ls=":")
            s = e["summary"]
            ax.errorbar([e["agent"]["policy"]["temperature"]], [s["iqm"]], capsize=4, fmt="*", ms=10,
                        color="tab:orange", yerr=[[s["iqm"] - s["iqm_ci95"][0]], [s["iqm_ci95"][1] - s["iqm"]]],
                        label=f"best_constant, T = {e['agent']['policy']['temperature']:g} (test)")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xticks(ts, [f"{t:g}" for t in ts])
    ax.set_xlabel("temperature T (constant over the run)")
    ax.set_ylabel(entries[0][1]["metric"])
    ax.set_title(f"{env_id}: temperature response")
    ax.legend(fontsize=7)
    fig.tight_layout()
    plot = directory / f"{env_id}-temperature-response.png"
    save_figure(fig, plot, dpi=120)
    plt.close(fig)
    lines = [f"### Temperature response ({env_id})", "",
             "| T | IQM [95% CI] | mean ± std |", "|---|---|---|"]  # fmt: skip
    for t, e in constants:
        s = e["summary"]
        lines.append(f"| {t:g} | {s['iqm']:.4f} [{s['iqm_ci95'][0]:.4f}, {s['iqm_ci95'][1]:.4f}] "
                     f"| {s['mean']:.4f} ± {s['std']:.4f} |")  # fmt: skip
    return lines + ["", f"![temperature response]({plot.name})", ""], plot


def _render_students(env_id: str, searches: list[tuple[Path, dict[str, Any]]], directory: Path, plt):
    """The best student of every search run (a table, and a compression-accuracy scatter plot) and how
    fast each agent's search improved (best search reward so far against episodes, mean over runs, read
    from the ``search.json`` stored beside the entry's models)."""
    lines = [f"### Best students found ({env_id})", "",
             "Each search's best student (by its search reward), retrained with the full budget; C and the",
             "test accuracies are means over the evaluation seeds.", "",
             "| agent | tag | training seed | student | C | A_test | A_test / A_teacher |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    fig, (ax, curve) = plt.subplots(1, 2, figsize=(11, 4))
    for _, e in searches:
        points, histories = [], []
        for run in e["runs"]:
            c = float(np.mean([ep["compression"] for ep in run["episodes"]]))
            a = float(np.mean([ep["student_test_accuracy"] for ep in run["episodes"]]))
            a_t = float(np.mean([ep["teacher_test_accuracy"] for ep in run["episodes"]]))
            points.append((c, a / a_t))
            summary = run.get("search", {}).get("best", {}).get("architecture_summary", "")
            lines.append(f"| {e['agent']['name']} | {e['tag']} | {run['training_seed']} | `{summary}` | {c:.3f} "
                         f"| {a:.4f} | {a / a_t:.3f} |")  # fmt: skip
            record = directory / run["model"] / "search.json"
            if record.is_file():
                rewards = [h["reward"] for h in json.loads(record.read_text())["history"]]
                histories.append(np.maximum.accumulate(rewards))
        label = f"{e['agent']['name']} ({e['tag']})"
        ax.scatter(*zip(*points), label=label, alpha=0.7)
        if histories:
            length = min(len(h) for h in histories)
            curve.plot(np.arange(1, length + 1), np.mean([h[:length] for h in histories], axis=0), label=label)
    ax.set_xlabel("compression C = 1 - params(student) / params(teacher)")
    ax.set_ylabel("test accuracy / teacher's")
    ax.set_title("best student of each search (full budget)")
    ax.legend(fontsize=8)
    curve.set_xlabel("episodes (students proposed)")
    curve.set_ylabel("best search reward so far (mean over runs)")
    curve.set_title("search progress")
    curve.legend(fontsize=8)
    fig.suptitle(env_id)
    fig.tight_layout()
    plot = directory / f"{env_id}-students.png"
    save_figure(fig, plot, dpi=120)
    plt.close(fig)
    return lines + ["", f"![best students and search progress]({plot.name})", ""], plot
