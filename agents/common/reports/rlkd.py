"""The RLKD report on TemperatureKD-v0 (``scripts/rlkd_report.py``): the entries comparable with RLKD's
(:func:`comparable`) side by side (:func:`entry_summaries`), the student's test accuracy after every epoch
(:func:`accuracy_curves`) and RLKD's temperatures over training (:func:`temperature_percentiles`),
from traced episodes (:func:`agents.common.evaluation.trace_episode`), and their figure (:func:`plot`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.common.figures import save_figure
from agents.temperature.specs import FIXED_POLICIES, fixed_policy


def comparable(entry: Mapping[str, Any], env_kwargs: Mapping[str, Any]) -> bool:
    """Whether ``entry`` was scored on the RLKD entry's env (``env_kwargs``), a fixed policy's own
    overrides aside (quick entries are not)."""
    kind, name = entry["agent"]["kind"], entry["agent"]["name"]
    overrides = fixed_policy(name).env_overrides if kind == "fixed" and name in FIXED_POLICIES else {}
    return {k: v for k, v in entry["env_kwargs"].items() if k not in overrides} == env_kwargs


def entry_summaries(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each entry's IQM [95% CI], mean, std, runs and evaluation seeds, by key, in increasing IQM."""
    return {key: {"iqm": e["summary"]["iqm"], "ci95": e["summary"]["iqm_ci95"], "mean": e["summary"]["mean"],
                  "std": e["summary"]["std"], "runs": e["summary"]["runs"],
                  "evaluation_seeds": len(e["evaluation_seeds"])}
            for key, e in sorted(entries.items(), key=lambda kv: kv[1]["summary"]["iqm"])}  # fmt: skip


def accuracy_curves(traces: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[float]]:
    """Per policy, the student's test accuracy after every epoch, mean over its traced episodes."""
    return {name: np.mean([t["test_accuracy"] for t in ts], axis=0).round(4).tolist() for name, ts in traces.items()}


def temperature_percentiles(traces: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[list[float]]]:
    """Per RLKD agent (a policy whose name starts with "rlkd"), the 5th, 25th, 50th, 75th and 95th
    percentiles of its instance temperatures in each epoch, over its traced episodes."""
    return {
        name: [np.percentile(np.concatenate([t["temperatures"][epoch] for t in ts]), [5, 25, 50, 75, 95])
               .round(3).tolist() for epoch in range(len(ts[0]["temperatures"]))]
        for name, ts in traces.items() if name.startswith("rlkd")
    }  # fmt: skip


def plot(summary: dict, curves: dict, percentiles: dict, path: Path) -> None:
    """Three panels: the entries' final accuracy, IQM [95% CI] (:func:`entry_summaries`), the test accuracy
    per epoch (:func:`accuracy_curves`) and RLKD's temperatures (:func:`temperature_percentiles`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_bar, ax_acc, ax_t) = plt.subplots(1, 3, figsize=(17, 4.8))
    names = list(summary)
    iqm = np.array([summary[n]["iqm"] for n in names])
    ci = np.array([summary[n]["ci95"] for n in names])
    colors = ["tab:red" if n.startswith("rlkd") else "tab:gray" for n in names]
    ax_bar.barh(names, iqm, xerr=[iqm - ci[:, 0], ci[:, 1] - iqm], color=colors, capsize=3)
    ax_bar.set_xlim(min(ci[:, 0]) - 0.02, max(ci[:, 1]) + 0.01)
    ax_bar.set_xlabel("student test accuracy, IQM [95% CI]")
    ax_bar.set_title("final accuracy per entry")
    for name, curve in curves.items():
        style = dict(color="tab:red", alpha=0.5, lw=1) if name.startswith("rlkd") else dict(lw=2)
        ax_acc.plot(np.arange(1, len(curve) + 1), curve, label=name, **style)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("student test accuracy")
    ax_acc.set_title("accuracy vs epoch (mean over traced seeds)")
    ax_acc.legend(fontsize=7)
    for (name, agent), color in zip(percentiles.items(), plt.cm.tab10.colors):
        p = np.array(agent)
        epochs = np.arange(1, len(p) + 1)
        ax_t.fill_between(epochs, p[:, 0], p[:, 4], alpha=0.15, color=color)
        ax_t.plot(epochs, p[:, 2], color=color, label=f"{name} (median, 5-95%)")
    for t, label in ((1.0, "T=1"), (4.0, "T=4")):
        ax_t.axhline(t, ls="--", lw=1, color="gray")
        ax_t.text(1, t, label, va="bottom", ha="left", fontsize=8)
    ax_t.set_ylim(0, 10)
    ax_t.set_xlabel("epoch")
    ax_t.set_ylabel("instance temperature")
    ax_t.set_title("RLKD's temperatures over training")
    ax_t.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
