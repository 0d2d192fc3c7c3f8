"""TemperatureKD-v0's studies' reports: the reliability of the final student (``scripts/temperature_kd_report.py``:
:func:`final_student_bins`, :func:`reliability_reports`, :func:`plot_reliability`) and the table of the sweep
that chose the default task (``scripts/temperature_kd_sweep.py``: :func:`sweep_table`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from torch.nn import functional as F

import kd_envs  # noqa: F401
from agents.common.evaluation import entry_policies, run_episode
from agents.common.figures import save_figure
from kd_envs.metrics import expected_calibration_error, fit_temperature, reliability_bins
from kd_envs.tasks import predict_logits

ENV_ID = "TemperatureKD-v0"


def final_student_bins(entry: dict, directory: Path) -> dict:
    """Replay the entry's first policy on its first evaluation seed; the test split's reliability bins
    and ECE of the final student, raw and after temperature scaling fitted on validation."""
    label, policy = entry_policies(entry, directory)[0]
    env = gym.make(ENV_ID, **entry["env_kwargs"])
    seed = entry["evaluation_seeds"][0]
    episode = run_episode(env, policy, seed)
    student, data = env.unwrapped.student, env.unwrapped.task.data
    test, val = predict_logits(student, data.x_test), predict_logits(student, data.x_val)
    temperature = fit_temperature(val, data.y_val)
    out = {"entry": entry["agent"]["name"], "policy": label, "seed": seed, "temperature": temperature,
           "student_test_accuracy": episode["student_test_accuracy"]}  # fmt: skip
    for name, logits in (("raw", test), ("scaled", test / temperature)):
        probs = F.softmax(logits.double(), dim=1)
        out[name] = {"ece": expected_calibration_error(probs, data.y_test), **reliability_bins(probs, data.y_test)}
    return out


def reliability_reports(entries: Mapping[str, dict], directory: Path) -> list[dict]:
    """:func:`final_student_bins` of cross-entropy alone (the ``no_kd`` entry), then of the entry with the
    best IQM when that is another, among ``entries`` (by agent name; their models under ``directory``)."""
    if "no_kd" not in entries:
        raise ValueError(f"reliability_reports: no no_kd entry among {sorted(entries)}")
    best = max(entries.values(), key=lambda e: e["summary"]["iqm"])
    reports = [final_student_bins(entries["no_kd"], directory)]
    if best["agent"]["name"] != "no_kd":
        reports.append(final_student_bins(best, directory))
    return reports


def plot_reliability(reports: Sequence[dict], path: Path) -> None:
    """Reliability diagrams, one panel per report of :func:`reliability_reports`: the accuracy in each
    confidence bin, raw and after temperature scaling, against the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(5 * len(reports), 4.5), squeeze=False)
    for ax, report in zip(axes[0], reports):
        edges = np.array(report["raw"]["edges"])
        centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        for name, colour, offset in (("raw", "tab:red", -0.25), ("scaled", "tab:blue", 0.25)):
            accuracy = np.nan_to_num(np.array(report[name]["accuracy"], dtype=float))
            ax.bar(centres + offset * width, accuracy, width=width / 2, color=colour, alpha=0.7,
                   label=f"{name}: ECE {report[name]['ece']:.4f}")  # fmt: skip
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlabel("confidence (top-1 probability), 15 bins")
        ax.set_ylabel("accuracy in the bin")
        ax.set_title(f"{report['entry']} (test acc {report['student_test_accuracy']:.4f}, seed {report['seed']})\n"
                     f"scaled: T = {report['temperature']:.2f} fitted on validation", fontsize=9)  # fmt: skip
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{ENV_ID}: reliability of the final student, best entry against cross-entropy alone")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def sweep_table(
    records: Sequence[Mapping[str, Any]], candidates: Sequence[str], settings: Sequence[str]
) -> tuple[dict[str, dict], list[str]]:
    """The sweep's table from its records (one per episode: ``candidate``, ``setting``, ``seed``,
    ``seconds`` and the episode's measures): per candidate and setting, the validation and test accuracy
    and the seconds of every seed; and its Markdown lines (:func:`sweep_lines`)."""
    table = {}
    for name in candidates:
        row = {}
        for s in settings:
            rs = [r for r in records if r["candidate"] == name and r["setting"] == s]
            if rs:
                row[s] = {k: [r[k] for r in rs] for k in ("student_val_accuracy", "student_test_accuracy", "seconds")}
        table[name] = row
    return table, sweep_lines(table, settings)


def sweep_lines(table: Mapping[str, Mapping[str, Any]], settings: Sequence[str]) -> list[str]:
    """The Markdown lines of a sweep's ``table`` (as :func:`sweep_table` builds it and the sweep's JSON
    stores it), as the docs show it: per candidate that has every setting, the mean validation (test)
    accuracy per setting, the best temperature's gain over cross-entropy alone ("ce"), the spread over
    temperatures (validation) and the mean seconds per episode."""
    labels = ["CE" if s == "ce" else f"T={s.removeprefix('t')}" for s in settings]
    lines = ["| candidate | " + " | ".join(labels) + " | best T − CE | max − min over T | s/episode |",
             "|---" * (len(settings) + 4) + "|"]  # fmt: skip
    for name, row in table.items():
        if len(row) < len(settings):
            continue
        val = {s: float(np.mean(row[s]["student_val_accuracy"])) for s in settings}
        test = {s: float(np.mean(row[s]["student_test_accuracy"])) for s in settings}
        over_t = [val[s] for s in settings if s != "ce"]
        seconds = float(np.mean([x for s in settings for x in row[s]["seconds"]]))
        cells = " | ".join(f"{val[s]:.3f} ({test[s]:.3f})" for s in settings)
        lines.append(f"| `{name}` | {cells} | {max(over_t) - val['ce']:+.3f} | {max(over_t) - min(over_t):.3f} "
                     f"| {seconds:.1f} |")  # fmt: skip
    return lines
