"""The N2N study's report (``scripts/n2n_study.py``): what the searches of each entry saw
(:func:`summarise_group`), N2N's policy transfer (:func:`transfer_result`, :func:`plot_transfer`), the
compression target (:func:`compression_target`), the cost of a search (:func:`search_cost`) and the study's
table (:func:`study_table`), from the searches' records (``search.json``) under the study's runs folder."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.common.compression import final_evaluation
from agents.common.evaluation import SEARCH_EVALUATION_SEEDS
from agents.common.figures import save_figure
from agents.common.leaderboard import aggregate
from kd_envs.envs.n2n_compress import DEFAULT_PARAMETER_BUDGET
from kd_envs.tasks.architecture import Architecture

ENV_ID = "N2NCompress-v0"
# Episodes at each end of a search over which the transfer result averages the search reward.
TRANSFER_WINDOW = 10
# The compression target: >= 10x fewer parameters (C >= 0.9) at >= 95% of the teacher's test accuracy.
TARGET_COMPRESSION, TARGET_ACCURACY_RATIO = 0.9, 0.95


def summarise_group(entry: dict[str, Any], searches: list[dict[str, Any]]) -> dict[str, Any]:
    """An entry's final reward beside what its searches saw: the best search reward (validation proxy),
    the distinct students, the mean reward of the last 20 episodes, and how many best students meet the
    compression target on the test split."""
    final = [r["score"] for r in entry["runs"]]
    best = [s["best"]["reward"] for s in searches]
    last = [float(np.mean([h["reward"] for h in s["history"][-20:]])) for s in searches]
    met = 0
    for run in entry["runs"]:
        c = float(np.mean([e["compression"] for e in run["episodes"]]))
        ratio = float(np.mean([e["student_test_accuracy"] / e["teacher_test_accuracy"] for e in run["episodes"]]))
        met += c >= TARGET_COMPRESSION and ratio >= TARGET_ACCURACY_RATIO
    ratios = [float(np.mean([e["student_test_accuracy"] / e["teacher_test_accuracy"] for e in r["episodes"]]))
              for r in entry["runs"]]  # fmt: skip
    return {
        "final_reward": aggregate(final),
        "test_accuracy_ratio": aggregate(ratios),
        "student_parameters": [int(np.mean([e["student_parameters"] for e in r["episodes"]])) for r in entry["runs"]],
        "best_search_reward": aggregate(best),
        "unique_students": [s["unique_students"] for s in searches],
        "last20_mean_reward": aggregate(last),
        "searches_meeting_target": met,
        "searches": len(searches),
    }


def transfer_result(
    runs: Path, transfer_seeds: Sequence[int], transfer_source: str | Mapping[str, Any]
) -> dict[str, Any] | None:
    """N2N started from a policy trained on the VGG-style teacher against N2N from scratch (the joint
    searches with the same seeds): mean search reward over the first and last TRANSFER_WINDOW episodes.

    :param runs: the study's runs folder (``<runs>/transfer/n2n/seed_<s>`` and ``<runs>/joint/n2n/seed_<s>``)
    :param transfer_source: the task the transferred policies learned on (a name or a TaskConfig dict)
    """
    pairs = []
    for seed in transfer_seeds:
        transferred = runs / "transfer" / "n2n" / f"seed_{seed}" / "search.json"
        scratch = runs / "joint" / "n2n" / f"seed_{seed}" / "search.json"
        if transferred.is_file() and scratch.is_file():
            pairs.append((seed, json.loads(transferred.read_text()), json.loads(scratch.read_text())))
    if not pairs:
        return None
    source = transfer_source if isinstance(transfer_source, str) else "a custom task"
    result: dict[str, Any] = {"source_task": source, "seeds": [p[0] for p in pairs],
                              "window": TRANSFER_WINDOW, "curves": {}}  # fmt: skip
    for label, index in (("transfer", 1), ("scratch", 2)):
        rewards = [[h["reward"] for h in p[index]["history"]] for p in pairs]
        first = [float(np.mean(r[:TRANSFER_WINDOW])) for r in rewards]
        last = [float(np.mean(r[-TRANSFER_WINDOW:])) for r in rewards]
        result[label] = {"first": first, "last": last, "best": [p[index]["best"]["reward"] for p in pairs],
                         "first_mean": float(np.mean(first)), "first_std": float(np.std(first)),
                         "last_mean": float(np.mean(last)), "last_std": float(np.std(last))}  # fmt: skip
        length = min(len(r) for r in rewards)
        result["curves"][label] = np.mean([r[:length] for r in rewards], axis=0).round(4).tolist()
    return result


def student_from_record(teacher: Architecture, record: dict[str, Any]) -> Architecture:
    """A proposed student rebuilt from its search record (the teacher layers it removed and the widths
    its summary gives, in order), checked against the record's parameter count and summary."""
    removed = set(record["removed_layers"])
    arch = teacher.remove_layers([i not in removed for i in range(len(teacher.layers))])
    tokens = record["architecture_summary"].replace("[", "").replace("]", "").split()
    widths = [int("".join(ch for ch in token.split("/")[0].split("+")[0] if ch.isdigit())) for token in tokens]
    layers = tuple(replace(layer, outputs=w) for layer, w in zip(arch.layers, widths, strict=True))
    arch = replace(arch, layers=layers)
    if arch.num_parameters() != record["student_parameters"] or arch.describe() != record["architecture_summary"]:
        raise ValueError(f"could not rebuild the student {record['architecture_summary']} from its record")
    return arch


def compression_target(runs: Path, env_kwargs: Mapping[str, Any], final_epochs: int) -> dict[str, Any] | None:
    """The issue's target, a student >= 10x smaller (C >= 0.9) at >= 95% of the teacher's test accuracy:
    among every student any joint search proposed with C >= 0.9, the one with the best validation
    accuracy (the search proxy; ties go to the smaller), retrained on the evaluation seeds and scored on
    the test split (``final_epochs`` epochs). Selection never sees the test split.

    :param runs: the study's runs folder (the joint searches are ``<runs>/joint/<algo>/seed_<s>``)
    :param env_kwargs: the searches' N2NCompress-v0 kwargs
    """
    records = []
    for d in sorted((runs / "joint").glob("*/seed_*")):
        if (d / "search.json").is_file():
            records += [h for h in json.loads((d / "search.json").read_text())["history"]
                        if not h["degenerate"] and h["compression"] >= TARGET_COMPRESSION]  # fmt: skip
    if not records:
        return None
    best = max(records, key=lambda h: (h["accuracy"], h["compression"]))
    env = gym.make(ENV_ID, **env_kwargs)
    arch = student_from_record(env.unwrapped.teacher_architecture, best)
    env.close()
    results = final_evaluation(ENV_ID, env_kwargs, arch.to_dict(), list(SEARCH_EVALUATION_SEEDS),
                               final_epochs)  # fmt: skip
    ratio = float(np.mean([r["student_test_accuracy"] / r["teacher_test_accuracy"] for r in results]))
    return {
        "candidates": len(records),
        "student": best["architecture_summary"],
        "student_parameters": best["student_parameters"],
        "compression": best["compression"],
        "proxy_val_accuracy": best["accuracy"],
        "test_accuracy": [r["student_test_accuracy"] for r in results],
        "teacher_test_accuracy": results[0]["teacher_test_accuracy"],
        "accuracy_ratio": ratio,
        "met": bool(best["compression"] >= TARGET_COMPRESSION and ratio >= TARGET_ACCURACY_RATIO),
    }


def search_cost(runs: Path) -> dict[str, Any]:
    """What a search costs: seconds per student trained (first evaluations, one core) and what a whole
    search would take on one core if it trained every distinct student itself (the cache shared between
    searches makes the study cheaper than that), over the joint searches under ``runs``."""
    seconds, per_search = [], []
    for d in sorted((runs / "joint").glob("*/seed_*")):
        if not (d / "search.json").is_file():
            continue
        history = json.loads((d / "search.json").read_text())["history"]
        first_seen: dict[str, float] = {}
        for h in history:
            if not h["degenerate"] and not h["cached"]:
                seconds.append(h["train_seconds"])
        # Each distinct student's training time, whichever search trained it first.
        for h in history:
            if not h["degenerate"]:
                first_seen.setdefault(h["architecture_summary"], h["train_seconds"])
        per_search.append(sum(first_seen.values()))
    return {
        "seconds_per_student": float(np.mean(seconds)) if seconds else None,
        "students_trained": len(seconds),
        "search_minutes_alone": float(np.mean(per_search) / 60) if per_search else None,
    }


def _budget_lines(study: dict[str, Any], ci) -> list[str]:
    """Under the ``"budget"`` reward the searches maximise accuracy within the budget: each agent's best
    students' test accuracy over the teacher's (what the reward measures, on the test split after the final
    training), beside their size."""
    budget = study["env_kwargs"].get("parameter_budget", DEFAULT_PARAMETER_BUDGET)
    lines = ["", f"Reward `budget` (at most {budget:.0%} of the teacher's parameters, enforced by the masks): the "
             "best students' test accuracy over the teacher's after the final training, IQM [95% CI] over searches.",
             "", "| agent | A_test / A_teacher, IQM [95% CI] | mean ± std | parameters (mean over searches) |",
             "|---|---|---|---|"]  # fmt: skip
    for name, row in study["agents"].items():
        r = row["test_accuracy_ratio"]
        lines.append(f"| `{name}` | {ci(r)} | {r['mean']:.4f} ± {r['std']:.4f} | "
                     f"{int(np.mean(row['student_parameters'])):,} |")  # fmt: skip
    return lines


def study_table(study: dict[str, Any]) -> str:
    """The study's Markdown (``N2N-study.md``): one row per agent, then the transfer, the compression
    target and the cost, from the study's JSON (``N2N-study.json``)."""

    def ci(a: dict[str, Any]) -> str:
        return f"{a['iqm']:.4f} [{a['iqm_ci95'][0]:.4f}, {a['iqm_ci95'][1]:.4f}]"

    lines = [f"Budget: {study['budget_students']} students proposed per search; best students retrained for "
             f"{study['final_epochs']} epochs on the evaluation seeds.", "",
             "| agent | final reward (test), IQM [95% CI] | mean ± std | best search reward (validation), IQM [95% CI] "
             "| mean reward, last 20 episodes | distinct students | best student ≥ 10× smaller at ≥ 95% accuracy |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in study["agents"].items():
        f = row["final_reward"]
        lines.append(f"| `{name}` | {ci(f)} | {f['mean']:.4f} ± {f['std']:.4f} | {ci(row['best_search_reward'])} "
                     f"| {row['last20_mean_reward']['mean']:.3f} | {int(np.mean(row['unique_students']))} "
                     f"| {row['searches_meeting_target']} of {row['searches']} |")  # fmt: skip
    if study.get("env_kwargs", {}).get("reward") == "budget":
        lines += _budget_lines(study, ci)  # after the first table, not inside it
    t = study.get("transfer")
    if t:
        lines += ["", f"Policy transfer ({t['source_task']} → the searches' task, seeds {t['seeds']}): mean search "
                  f"reward over the first and last {t['window']} episodes, mean ± std over seeds.", "",
                  "| N2N | first episodes | last episodes | best search reward |", "|---|---|---|---|"]  # fmt: skip
        for label in ("transfer", "scratch"):
            r = t[label]
            lines.append(f"| {label} | {r['first_mean']:.3f} ± {r['first_std']:.3f} | {r['last_mean']:.3f} ± "
                         f"{r['last_std']:.3f} | {np.mean(r['best']):.4f} |")  # fmt: skip
    target = study.get("compression_target")
    if target:
        lines += ["", f"Compression target (≥ 10× fewer parameters at ≥ 95% of the teacher's test accuracy): of the "
                  f"{target['candidates']} students with C ≥ 0.9 the joint searches proposed, the best by validation "
                  f"accuracy, `{target['student']}` ({target['student_parameters']} parameters, C = "
                  f"{target['compression']:.3f}), retrained on the evaluation seeds reaches test accuracy "
                  f"{np.mean(target['test_accuracy']):.4f} = {target['accuracy_ratio']:.3f} of the teacher's "
                  f"({'met' if target['met'] else 'not met'})."]  # fmt: skip
    cost = study["cost"]
    if cost["seconds_per_student"] is not None:
        lines += ["", f"Cost: {cost['seconds_per_student']:.1f} s per student trained (one core, "
                  f"{cost['students_trained']} first evaluations); one search alone would take "
                  f"{cost['search_minutes_alone']:.0f} min on one core."]  # fmt: skip
    return "\n".join(lines)


def plot_transfer(transfer: dict[str, Any], path: Path) -> None:
    """The search reward over a search's episodes (a moving mean over TRANSFER_WINDOW episodes, mean over
    seeds) of N2N from a transferred policy and from scratch (:func:`transfer_result`'s curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in transfer["curves"].items():
        curve = np.asarray(curve)
        window = min(TRANSFER_WINDOW, len(curve))
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window, len(curve) + 1), smooth, label=f"N2N, {label}")
    ax.set_xlabel("episodes (students proposed)")
    ax.set_ylabel(f"search reward ({TRANSFER_WINDOW}-episode mean, mean over seeds)")
    ax.set_title(f"policy transfer from {transfer['source_task']}")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
