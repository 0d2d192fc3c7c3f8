"""Build a student table of N2NCompress-v0 (kd_envs.tasks.tables: every student of a subspace, scored by the
env's own proxy on the table's proxy seeds and by the final training), resumably.

    python scripts/n2n_table.py                             # build n2n-vgg-v0 (or go on building it)
    python scripts/n2n_table.py --limit 6                   # train 6 results, then print the cost estimate
    python scripts/n2n_table.py --shard 0/2 & python scripts/n2n_table.py --shard 1/2   # two processes

Each result is appended to <work>/records-<i>-of-<n>.jsonl as it is made; a rerun skips what is recorded.
When everything is recorded (rerun one shard after the others finish: the best students' final trainings
need every proxy score) the table is written to kd_envs/tasks/tables/<name>.json and its sha256 printed:
record it in kd_envs.tasks.tables.TABLES for gym.make("N2NCompress-v0", tabular=True) to read the file.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from agents.common.leaderboard import git_commit
from agents.common.n2n_table import build_table
from kd_envs.tasks.tables import DEFAULT_TABLE, TABLES, TABLES_DIR


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default=DEFAULT_TABLE, choices=sorted(TABLES))
    parser.add_argument("--work", type=Path, default=None, help="records folder (default runs/n2n_table/<table>)")
    parser.add_argument("--out", type=Path, default=None, help=f"the table file (default {TABLES_DIR}/<table>.json)")
    parser.add_argument("--cache-dir", default=None, help="teacher and student cache (default: the env's)")
    parser.add_argument("--shard", default="0/1", help="i/n: build the students whose index is i mod n")
    parser.add_argument("--limit", type=int, default=None, help="stop after training this many results")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one core per process: run shards for more
    index, count = (int(x) for x in args.shard.split("/"))
    summary = build_table(
        args.table,
        args.work or Path("runs/n2n_table") / args.table,
        out_path=args.out,
        cache_dir=args.cache_dir,
        shard=(index, count),
        limit=args.limit,
        made={"command": shlex.join(["python", *sys.argv]), "commit": git_commit()},
        progress=not args.no_progress,
    )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
