"""The N2N study in one command: four searchers on N2NCompress-v0's deep default (a 1-D ResNet-14
teacher, 13 removable layers) at equal budgets in students proposed, N2N's two-stage protocol against
its joint single-episode mode, and N2N's policy transfer from the VGG-style teacher; then the
leaderboard entries and the report.

    python scripts/n2n_study.py                       # everything (see docs/studies/ for the budget)
    python scripts/n2n_study.py --report-only         # entries, transfer result and figures from finished runs
    python scripts/n2n_study.py --seeds 0 --students 10 --tag quick --runs runs/n2n_quick   # a quick look

Searches (saved under <runs>/<part>/<algo>/seed_<s>; finished ones are skipped, so the command resumes):
- ``joint``: ``random_search``, ``evolution`` (aging evolution), ``n2n`` and ``maskable_ppo``, each with
  ``--students`` students per search, one search per seed;
- ``two_stage``: N2N with the paper's protocol (half the budget removes layers, the other half shrinks
  the best student of the first half; ``agents.search.two_stage.two_stage_search``);
- ``transfer_source``: N2N on ``mnist1d-vgg`` (seeds ``--transfer-seeds``), whose policies then start
  ``transfer`` searches on the deep default (the paper's VGG -> ResNet transfer).

Every search fixes the candidates' training seed (``training_seed=0``): a student's proxy score is then a
function of its architecture alone, the same for every agent and seed, so the searches share the
student cache without leaking anything between them (a cached result is what training would return).
Each search's best student is retrained for the full budget on the evaluation seeds (parallel, cached)
before the entries are written.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from agents.common.compression import FULL_EPOCHS, final_evaluation
from agents.common.evaluation import SEARCH_EVALUATION_SEEDS, save_entry, search_entry
from agents.common.leaderboard import LEADERBOARD_DIR, aggregate, render
from agents.common.training import train_agent
from agents.search.two_stage import two_stage_search
from kd_envs.tasks.architecture import Architecture

ENV_ID = "N2NCompress-v0"
AGENTS = ("random_search", "evolution", "n2n", "maskable_ppo")
# The proxy's training seed, shared by every search (see the module docstring).
SEARCH_ENV_KWARGS = {"training_seed": 0}
TRANSFER_SOURCE_TASK = "mnist1d-vgg"
MIN_OFFICIAL_SEARCHES = 5
# Episodes at each end of a search over which the transfer result averages the search reward.
TRANSFER_WINDOW = 10
# The compression target: >= 10x fewer parameters (C >= 0.9) at >= 95% of the teacher's test accuracy.
TARGET_COMPRESSION, TARGET_ACCURACY_RATIO = 0.9, 0.95


def run_job(job: dict[str, Any]) -> str:
    """One search (or one final evaluation) of the study; skipped when its result exists."""
    torch.set_num_threads(1)
    out = Path(job["out"])
    if job["kind"] == "final":
        search = json.loads((out / "search.json").read_text())
        config = json.loads((out / "config.json").read_text())
        final_evaluation(ENV_ID, config["env_kwargs"], search["best"]["architecture"], job["seeds"], job["epochs"])
        return f"final {out}"
    if (out / "search.json").is_file() and (out / "config.json").is_file():
        return f"done {out}"
    if job["kind"] == "two_stage":
        two_stage_search(job["algo"], job["seed"], out, job["students"], job["env_kwargs"])
    else:
        train_agent(job["algo"], ENV_ID, job["seed"], out, env_kwargs=job["env_kwargs"],
                    hyperparams={"n_students": job["students"]}, progress_bar=False,
                    init_from=job.get("init_from"))  # fmt: skip
    return f"trained {out}"


def run_jobs(jobs: list[dict[str, Any]], n_jobs: int, description: str = "study jobs") -> None:
    """Run ``jobs`` in their list order, ``n_jobs`` at a time in spawned processes (in this process when
    ``n_jobs`` is 1); a job with ``after`` (output folders) starts once those jobs are done, and a free
    worker takes the first job in the list that is ready."""
    pending, done = list(jobs), set()

    def ready(job: dict[str, Any]) -> bool:
        return all(str(d) in done for d in job.get("after", ()))

    bar = tqdm(total=len(jobs), desc=description, unit="job")
    if n_jobs == 1:
        while pending:
            job = next(j for j in pending if ready(j))
            pending.remove(job)
            run_job(job)
            if job["kind"] != "final":
                done.add(job["out"])
            bar.update()
        bar.close()
        return
    with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn")) as pool:
        running: dict[Any, dict[str, Any]] = {}
        while pending or running:
            while len(running) < n_jobs and any(ready(j) for j in pending):
                job = next(j for j in pending if ready(j))
                pending.remove(job)
                running[pool.submit(run_job, job)] = job
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()
                job = running.pop(future)
                if job["kind"] != "final":
                    done.add(job["out"])
                bar.update()
    bar.close()


def study_jobs(args) -> list[dict[str, Any]]:
    """Every job of the study, most needed first: the joint searches (seed-major, so that a partial run
    has every agent on the same seeds), each followed by its best student's final training; then the
    transfer (source searches on the VGG-style teacher, then the searches they start); then the two-stage
    searches and their final training."""
    jobs: list[dict[str, Any]] = []

    def search(kind: str, algo: str, seed: int, out: Path, env_kwargs: dict[str, Any], **extra) -> None:
        jobs.append({"kind": kind, "algo": algo, "seed": seed, "students": args.students, "env_kwargs": env_kwargs,
                     "out": str(out), **extra})  # fmt: skip

    def final(out: Path) -> None:
        jobs.append({"kind": "final", "out": str(out), "after": [str(out)], "seeds": list(SEARCH_EVALUATION_SEEDS),
                     "epochs": args.final_epochs})  # fmt: skip

    for seed in args.seeds:
        for algo in args.agents:
            search("search", algo, seed, args.runs / "joint" / algo / f"seed_{seed}", args.env_kwargs)
    for seed in args.seeds:
        for algo in args.agents:
            final(args.runs / "joint" / algo / f"seed_{seed}")
    if not args.no_transfer:
        for seed in args.transfer_seeds:
            source = args.runs / "transfer_source" / "n2n" / f"seed_{seed}"
            search("search", "n2n", seed, source, {**args.env_kwargs, "task": args.transfer_source})
        for seed in args.transfer_seeds:
            source = args.runs / "transfer_source" / "n2n" / f"seed_{seed}"
            search("search", "n2n", seed, args.runs / "transfer" / "n2n" / f"seed_{seed}", args.env_kwargs,
                   init_from=str(source / "model.zip"), after=[str(source)])  # fmt: skip
    if not args.no_two_stage:
        for seed in args.seeds:
            search("two_stage", "n2n", seed, args.runs / "two_stage" / "n2n" / f"seed_{seed}", args.env_kwargs)
        for seed in args.seeds:
            final(args.runs / "two_stage" / "n2n" / f"seed_{seed}")
    return jobs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--transfer-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--students", type=int, default=100, help="budget of every search, in students proposed")
    parser.add_argument("--final-epochs", type=int, default=FULL_EPOCHS)
    parser.add_argument("--env-kwargs", type=json.loads, default=SEARCH_ENV_KWARGS,
                        help="JSON dict: the searches' env kwargs (default: the deep default task, training_seed 0)")
    parser.add_argument("--transfer-source", type=json.loads, default=json.dumps(TRANSFER_SOURCE_TASK),
                        help="JSON: the task (a name or a TaskConfig dict) the transferred policies learn on")
    parser.add_argument("--no-two-stage", action="store_true")
    parser.add_argument("--no-transfer", action="store_true")
    parser.add_argument("--jobs", type=int, default=2, help="searches run in parallel (one core each)")
    parser.add_argument("--runs", type=Path, default=Path("runs/n2n_study"))
    parser.add_argument("--tag", default="official")
    parser.add_argument("--report-only", action="store_true", help="skip the searches; entries and figures")
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if not args.report_only:
        run_jobs(study_jobs(args), args.jobs)
    report(args)


def entry_name(algo: str, part: str) -> str:
    return algo if part == "joint" else f"{algo}_{part}"


def report(args) -> None:
    """Entries for every group of finished searches, then the study's table, JSON and figures."""
    groups = [("joint", algo) for algo in args.agents] + ([] if args.no_two_stage else [("two_stage", "n2n")])
    rows, study = [], {"budget_students": args.students, "final_epochs": args.final_epochs, "agents": {}}
    for part, algo in groups:
        dirs = [args.runs / part / algo / f"seed_{s}" for s in args.seeds]
        dirs = [d for d in dirs if (d / "search.json").is_file()]
        if not dirs:
            continue
        name = entry_name(algo, part)
        # An official entry needs at least MIN_OFFICIAL_SEARCHES searches; fewer (an unfinished study) are
        # reported under another tag.
        tag = args.tag if len(dirs) >= MIN_OFFICIAL_SEARCHES or args.tag != "official" else "partial"
        entry = search_entry(dirs, list(SEARCH_EVALUATION_SEEDS), tag, name, args.leaderboard_dir,
                             args.final_epochs)  # fmt: skip
        save_entry(entry, args.leaderboard_dir)
        searches = [json.loads((d / "search.json").read_text()) for d in dirs]
        study["agents"][name] = summarise_group(entry, searches)
        rows.append((name, study["agents"][name]))
    if not args.no_transfer:
        study["transfer"] = transfer_result(args)
    study["compression_target"] = compression_target(args)
    study["cost"] = search_cost(args)
    (args.leaderboard_dir / "N2N-study.json").write_text(json.dumps(study, indent=1) + "\n")
    (args.leaderboard_dir / "N2N-study.md").write_text(study_table(study) + "\n")
    if study.get("transfer"):
        plot_transfer(study["transfer"], args.leaderboard_dir / "N2N-transfer.png")
    render(args.leaderboard_dir)


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
    return {
        "final_reward": aggregate(final),
        "best_search_reward": aggregate(best),
        "unique_students": [s["unique_students"] for s in searches],
        "last20_mean_reward": aggregate(last),
        "searches_meeting_target": met,
        "searches": len(searches),
    }


def transfer_result(args) -> dict[str, Any] | None:
    """N2N started from a policy trained on the VGG-style teacher against N2N from scratch (the joint
    searches with the same seeds): mean search reward over the first and last TRANSFER_WINDOW episodes."""
    pairs = []
    for seed in args.transfer_seeds:
        transferred = args.runs / "transfer" / "n2n" / f"seed_{seed}" / "search.json"
        scratch = args.runs / "joint" / "n2n" / f"seed_{seed}" / "search.json"
        if transferred.is_file() and scratch.is_file():
            pairs.append((seed, json.loads(transferred.read_text()), json.loads(scratch.read_text())))
    if not pairs:
        return None
    source = args.transfer_source if isinstance(args.transfer_source, str) else "a custom task"
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


def compression_target(args) -> dict[str, Any] | None:
    """The issue's target, a student >= 10x smaller (C >= 0.9) at >= 95% of the teacher's test accuracy:
    among every student any joint search proposed with C >= 0.9, the one with the best validation
    accuracy (the search proxy; ties go to the smaller), retrained on the evaluation seeds and scored on
    the test split. Selection never sees the test split."""
    records = []
    for d in sorted((args.runs / "joint").glob("*/seed_*")):
        if (d / "search.json").is_file():
            records += [h for h in json.loads((d / "search.json").read_text())["history"]
                        if not h["degenerate"] and h["compression"] >= TARGET_COMPRESSION]  # fmt: skip
    if not records:
        return None
    best = max(records, key=lambda h: (h["accuracy"], h["compression"]))
    env = gym.make(ENV_ID, **args.env_kwargs)
    arch = student_from_record(env.unwrapped.teacher_architecture, best)
    env.close()
    results = final_evaluation(ENV_ID, args.env_kwargs, arch.to_dict(), list(SEARCH_EVALUATION_SEEDS),
                               args.final_epochs)  # fmt: skip
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


def search_cost(args) -> dict[str, Any]:
    """What a search costs: seconds per student trained (first evaluations, one core) and what a whole
    search would take on one core if it trained every distinct student itself (the cache shared between
    searches makes the study cheaper than that)."""
    seconds, per_search = [], []
    for d in sorted((args.runs / "joint").glob("*/seed_*")):
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


def study_table(study: dict[str, Any]) -> str:
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
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
