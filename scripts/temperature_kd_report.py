"""Reliability diagrams on TemperatureKD-v0: the official entry with the best IQM against cross-entropy
alone (``no_kd``), before and after temperature scaling fitted on validation.

Each policy is replayed on the first evaluation seed (a fixed policy as it is, a searched or trained
entry through its first run), and the final student's test predictions are binned
(:func:`kd_envs.metrics.reliability_bins`). Writes ``<leaderboard>/TemperatureKD-v0-reliability.png``
and its JSON.

    python scripts/temperature_kd_report.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import matplotlib
import numpy as np
import torch
from torch.nn import functional as F

import kd_envs  # noqa: F401
from agents.common.evaluation import entry_policies, run_episode
from agents.common.leaderboard import LEADERBOARD_DIR, load_entries
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = {e["agent"]["name"]: e for _, e in load_entries(args.leaderboard_dir)
               if e["env_id"] == ENV_ID and e["official"]}  # fmt: skip
    if "no_kd" not in entries:
        parser.error(f"no official no_kd entry for {ENV_ID} in {args.leaderboard_dir}/entries")
    best = max(entries.values(), key=lambda e: e["summary"]["iqm"])
    reports = [final_student_bins(entries["no_kd"], args.leaderboard_dir)]
    if best["agent"]["name"] != "no_kd":
        reports.append(final_student_bins(best, args.leaderboard_dir))
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
    plot = args.leaderboard_dir / f"{ENV_ID}-reliability.png"
    fig.savefig(plot, dpi=120)
    plt.close(fig)
    (args.leaderboard_dir / f"{ENV_ID}-reliability.json").write_text(json.dumps(reports, indent=1) + "\n")
    print(f"wrote {plot}: " + ", ".join(f"{r['entry']} ECE {r['raw']['ece']:.4f} -> {r['scaled']['ece']:.4f}"
                                        for r in reports))  # fmt: skip


if __name__ == "__main__":
    main()
