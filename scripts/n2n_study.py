"""The N2N study in one command: four searchers on N2NCompress-v0's deep default (a 1-D ResNet-14
teacher, 13 removable layers) at equal budgets in students proposed, N2N's two-stage protocol against
its joint single-episode mode, and N2N's policy transfer from the VGG-style teacher; then the
leaderboard entries and the report.

    python scripts/n2n_study.py                       # everything (see docs/studies/ for the budget)
    python scripts/n2n_study.py --report-only         # entries, transfer result and figures from finished runs
    python scripts/n2n_study.py --seeds 0 --students 10 --tag quick --runs runs/n2n_quick   # a quick look
    python scripts/n2n_study.py --workers 16 --ray-address HOST:6379    # the searches on a Ray cluster

Searches (saved under <runs>/<part>/<algo>/seed_<s>; finished ones are skipped and an interrupted one goes on
from its last checkpoint, so the command resumes):
- ``joint``: ``random_search``, ``evolution`` (aging evolution), ``n2n`` and ``maskable_ppo``, each with
  ``--students`` students per search, one search per seed;
- ``two_stage``: N2N with the paper's protocol (half the budget removes layers, the other half shrinks
  the best student of the first half; ``agents.common.two_stage.two_stage_search``);
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
from pathlib import Path
from typing import Any

import torch

from agents.common.compression import FULL_EPOCHS, final_evaluation
from agents.common.evaluation import SEARCH_EVALUATION_SEEDS, save_entry, search_entry
from agents.common.jobs import run_jobs
from agents.common.leaderboard import LEADERBOARD_DIR, render
from agents.common.parallel import add_worker_arguments
from agents.common.reports.n2n import (
    ENV_ID,
    compression_target,
    plot_transfer,
    search_cost,
    study_table,
    summarise_group,
    transfer_result,
)
from agents.common.training import train_agent
from agents.common.two_stage import two_stage_search

AGENTS = ("random_search", "evolution", "n2n", "maskable_ppo")
# Searchers a study may name beyond the default four.
MORE_AGENTS = ("hill_climbing",)
# The proxy's training seed, shared by every search (see the module docstring).
SEARCH_ENV_KWARGS = {"training_seed": 0}
TRANSFER_SOURCE_TASK = "mnist1d-vgg"
MIN_OFFICIAL_SEARCHES = 5


def run_job(kind: str, out: str, **job: Any) -> str:
    """One search (``kind`` "search" or "two_stage") or one final evaluation ("final") of the study;
    a search is skipped when its result exists."""
    out = Path(out)
    if kind == "final":
        search = json.loads((out / "search.json").read_text())
        config = json.loads((out / "config.json").read_text())
        final_evaluation(ENV_ID, config["env_kwargs"], search["best"]["architecture"], job["seeds"], job["epochs"])
        return f"final {out}"
    if (out / "search.json").is_file() and (out / "config.json").is_file():
        return f"done {out}"
    # An interrupted search goes on from its last checkpoint (one at each update) with the students it recorded.
    if kind == "two_stage":
        two_stage_search(job["algo"], job["seed"], out, job["students"], job["env_kwargs"], save_freq=1, resume=True)
    else:
        train_agent(job["algo"], ENV_ID, job["seed"], out, env_kwargs=job["env_kwargs"],
                    hyperparams={"n_students": job["students"]}, progress_bar=False,
                    init_from=job.get("init_from"), save_freq=1, resume=True)  # fmt: skip
    return f"trained {out}"


def study_jobs(args) -> list[dict[str, Any]]:
    """Every job of the study (:func:`run_job`'s arguments, for :func:`agents.common.jobs.run_jobs`), most
    needed first: the joint searches (seed-major, so that a partial run has every agent on the same seeds),
    each followed by its best student's final training; then the transfer (source searches on the
    VGG-style teacher, then the searches they start); then the two-stage searches and their final
    training. A search is named by its output folder; what needs it waits for it (``after``)."""
    jobs: list[dict[str, Any]] = []

    def search(kind: str, algo: str, seed: int, out: Path, env_kwargs: dict[str, Any], **extra) -> None:
        jobs.append({"kind": kind, "algo": algo, "seed": seed, "students": args.students, "env_kwargs": env_kwargs,
                     "out": str(out), "name": str(out), **extra})  # fmt: skip

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
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=[*AGENTS, *MORE_AGENTS])
    parser.add_argument("--name", default="",
                        help="a study apart from the default (e.g. 'budget' with --env-kwargs giving that reward): "
                             "its entries are <agent>_<name> and its report N2N-study-<name>.{json,md}")  # fmt: skip
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
    add_worker_arguments(parser, "searches and final trainings (one search is sequential: searches run side by side)",
                         default=2, aliases=["--jobs"])  # fmt: skip
    parser.add_argument("--runs", type=Path, default=Path("runs/n2n_study"))
    parser.add_argument("--tag", default="official")
    parser.add_argument("--report-only", action="store_true", help="skip the searches; entries and figures")
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if not args.report_only:
        run_jobs(run_job, study_jobs(args), args.workers, "study jobs", address=args.ray_address)
    report(args)


def entry_name(algo: str, part: str, name: str = "") -> str:
    """The entry's name: the agent for the joint searches, else ``<agent>_<part>``; then ``_<name>`` for a study
    named apart."""
    return (algo if part == "joint" else f"{algo}_{part}") + (f"_{name}" if name else "")


def report(args) -> None:
    """Entries for every group of finished searches, then the study's table, JSON and figures."""
    groups = [("joint", algo) for algo in args.agents] + ([] if args.no_two_stage else [("two_stage", "n2n")])
    study = {"budget_students": args.students, "final_epochs": args.final_epochs, "env_kwargs": args.env_kwargs,
             "agents": {}}  # fmt: skip
    for part, algo in groups:
        dirs = [args.runs / part / algo / f"seed_{s}" for s in args.seeds]
        dirs = [d for d in dirs if (d / "search.json").is_file()]
        if not dirs:
            continue
        name = entry_name(algo, part, args.name)
        # An official entry needs at least MIN_OFFICIAL_SEARCHES searches; fewer (an unfinished study) are
        # reported under another tag.
        tag = args.tag if len(dirs) >= MIN_OFFICIAL_SEARCHES or args.tag != "official" else "partial"
        entry = search_entry(dirs, list(SEARCH_EVALUATION_SEEDS), tag, name, args.leaderboard_dir,
                             args.final_epochs)  # fmt: skip
        save_entry(entry, args.leaderboard_dir)
        searches = [json.loads((d / "search.json").read_text()) for d in dirs]
        study["agents"][name] = summarise_group(entry, searches)
    if not args.no_transfer:
        study["transfer"] = transfer_result(args.runs, args.transfer_seeds, args.transfer_source)
    study["compression_target"] = compression_target(args.runs, args.env_kwargs, args.final_epochs)
    study["cost"] = search_cost(args.runs)
    stem = "N2N-study" + (f"-{args.name}" if args.name else "")
    (args.leaderboard_dir / f"{stem}.json").write_text(json.dumps(study, indent=1) + "\n")
    (args.leaderboard_dir / f"{stem}.md").write_text(study_table(study) + "\n")
    if study.get("transfer"):
        plot_transfer(study["transfer"], args.leaderboard_dir / "N2N-transfer.png")
    render(args.leaderboard_dir)


if __name__ == "__main__":
    main()
