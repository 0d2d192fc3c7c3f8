"""The N2N table study in one command: searchers ranked on the student table n2n-vgg-v0 (agents.common.regret),
hundreds of searches each, with their regret against the table's exact optimum at every budget; then the
report (the table, the proxy's fidelity read off it, regret tables and curves, probability of improvement).

    python scripts/n2n_regret.py                       # 5 searchers x 100 searches x 500 students, 2 rewards
    python scripts/n2n_regret.py --searches 5 --students 50 --runs runs/n2n_regret_quick   # a quick look
    python scripts/n2n_regret.py --report-only         # the report from finished searches
    python scripts/n2n_regret.py --entry evolution     # a leaderboard entry instead: 5 searches of 100 students

A search is one seed of one searcher with its YAML settings (agents/hyperparams/<algo>.yml) on the tabular env
(tabular=True, the reward option, training_seed drawn from the search's seed). Searches run in chunks of
--chunk seeds, each chunk a Ray task of one CPU (--workers), saved as <runs>/<reward>/<algo>/seeds_<a>-<b>.json
when it ends: finished chunks are skipped, so the command resumes. The report goes to
<leaderboard>/N2N-regret.{json,md,png}.

--entry ALGO instead saves --entry-searches searches of 100 students by ALGO on the table (train_agent, reward n2n,
seeds 0..N-1) and makes their leaderboard entry (board N2NCompress-v0-<table>, tag "table"): each search's best
student is scored by the table's final training on its first final seed (the one every network has), and
`kd-gym leaderboard --verify` runs the searches again, student by student.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from agents.common.evaluation import save_entry, search_entry
from agents.common.jobs import run_jobs
from agents.common.leaderboard import LEADERBOARD_DIR, render
from agents.common.parallel import add_worker_arguments
from agents.common.regret import BUDGETS, SEARCHERS, landscape, table_env_kwargs, table_search
from agents.common.reports.regret import plot_regret, study, study_lines
from agents.common.training import train_agent
from kd_envs.tasks import atomic_write
from kd_envs.tasks.tables import DEFAULT_TABLE, TABLES, load_table

REWARDS = ("n2n", "budget")


def run_chunk(out: str, algo: str, seeds: list[int], students: int, env_kwargs: dict) -> str:
    """The searches of one chunk of seeds, saved together when the last ends (skipped if saved)."""
    torch.set_num_threads(1)
    path = Path(out)
    if path.is_file():
        return f"done {path}"
    searches = [table_search(algo, seed, students, env_kwargs) for seed in seeds]
    atomic_write(path, lambda f: f.write(json.dumps(searches)), mode="w")
    return f"searched {path}"


def chunk_path(runs: Path, reward: str, algo: str, seeds: list[int]) -> Path:
    return runs / reward / algo / f"seeds_{seeds[0]}-{seeds[-1]}.json"


def jobs(args) -> list[dict]:
    """Seed-major: a partial run has every searcher on the same seeds."""
    out = []
    seeds = list(range(args.searches))
    chunks = [seeds[i : i + args.chunk] for i in range(0, len(seeds), args.chunk)]
    for reward in args.rewards:
        kwargs = table_env_kwargs(args.table, reward, args.parameter_budget)
        for chunk in chunks:
            for algo in args.searchers:
                path = chunk_path(args.runs, reward, algo, chunk)
                if not path.is_file():
                    out.append({"out": str(path), "algo": algo, "seeds": chunk, "students": args.students,
                                "env_kwargs": kwargs})  # fmt: skip
    return out


def load_searches(runs: Path, reward: str, searchers: list[str], students: int) -> list[dict]:
    searches = []
    for algo in searchers:
        for path in sorted((runs / reward / algo).glob("seeds_*.json")):
            searches += [s for s in json.loads(path.read_text()) if s["n_students"] == students]
    return searches


def table_entry(args) -> Path:
    """``--entry``: the searches (skipped where saved) and their entry."""
    dirs = []
    for seed in range(args.entry_searches):
        out = args.runs / "entry" / args.entry / f"seed_{seed}"
        if not (out / "search.json").is_file():
            train_agent(args.entry, "N2NCompress-v0", seed, out, env_kwargs={"tabular": args.table},
                        hyperparams={"n_students": 100}, progress_bar=False, tensorboard=False)  # fmt: skip
        dirs.append(out)
    # The table holds every network's final training on its first final seed only (all three for the best
    # networks): the entry is scored on that seed, tagged "table" rather than official (which asks for three).
    seeds = [load_table(args.table).final_seeds[0]]
    entry = search_entry(dirs, seeds, "table", args.entry, args.leaderboard_dir, progress=False)
    return save_entry(entry, args.leaderboard_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default=DEFAULT_TABLE, choices=sorted(TABLES))
    parser.add_argument("--searchers", nargs="+", default=list(SEARCHERS), choices=list(SEARCHERS))
    parser.add_argument("--rewards", nargs="+", default=list(REWARDS), choices=list(REWARDS))
    parser.add_argument("--parameter-budget", type=float, default=0.1, help="of the 'budget' reward")
    parser.add_argument("--searches", type=int, default=100, help="searches per searcher (seeds 0..N-1)")
    parser.add_argument("--students", type=int, default=max(BUDGETS), help="students per search")
    parser.add_argument("--chunk", type=int, default=10, help="searches per job")
    add_worker_arguments(parser, "chunks of searches", default=2)
    parser.add_argument("--runs", type=Path, default=Path("runs/n2n_regret"))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--entry", choices=list(SEARCHERS), default=None,
                        help="make this searcher's leaderboard entry (and nothing else)")  # fmt: skip
    parser.add_argument("--entry-searches", type=int, default=5)
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.runs = args.runs / args.table
    if args.entry:
        print(f"entry: {table_entry(args)}")
        render(args.leaderboard_dir)
        return
    if not args.report_only:
        todo = jobs(args)
        if todo:
            run_jobs(run_chunk, todo, args.workers, "search chunks", "chunk", address=args.ray_address)
    table = load_table(args.table)
    landscapes = {r: landscape(table_env_kwargs(args.table, r, args.parameter_budget)) for r in args.rewards}
    searches = {r: load_searches(args.runs, r, args.searchers, args.students) for r in args.rewards}
    report = study(table, landscapes, searches)
    report["protocol"] = {"searchers": args.searchers, "searches": args.searches, "students": args.students,
                          "parameter_budget": args.parameter_budget}  # fmt: skip
    directory = args.leaderboard_dir
    (directory / "N2N-regret.json").write_text(json.dumps(report, indent=1) + "\n")
    (directory / "N2N-regret.md").write_text("\n".join(study_lines(report)).rstrip() + "\n")
    plot_regret(landscapes, searches, directory / "N2N-regret.png")
    render(directory)
    print("\n".join(study_lines(report)))


if __name__ == "__main__":
    main()
