"""Proxy fidelity on N2NCompress-v0 (agents.common.fidelity): Kendall's tau, Spearman's rho and the top-10
precision between the search proxy (the env's `epochs`, 5) and the final training (30 epochs), over students
spread across compression levels, with the proxy-vs-proxy tau across training seeds as the noise ceiling.

    python scripts/n2n_fidelity.py                          # 200 students of the deep default (see below)
    python scripts/n2n_fidelity.py --students 20 --runs runs/n2n_fidelity_quick    # a quick look
    python scripts/n2n_fidelity.py --table n2n-vgg-v0       # read off a built student table: no training

Live, each student is played through the env on proxy seeds 0 and 1 and retrained once for the final budget
(seed 1000, test split); every result is appended to <runs>/records.jsonl as it is made and a rerun skips
what is there. Cost on the deep default: about 2 x 5.7 s + 34 s per student on one core, some 2.5 core-hours
for 200 students. The report goes to <runs>/fidelity.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents.common.compression import FULL_EPOCHS
from agents.common.fidelity import (
    measure_fidelity,
    random_student_codes,
    students_across_compression,
    table_fidelity,
)
from kd_envs.tasks.tables import TABLES, code_architecture, load_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", choices=sorted(TABLES), default=None, help="read the numbers off this table")
    parser.add_argument("--env-kwargs", type=json.loads, default={}, help="N2NCompress-v0 kwargs (JSON)")
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--bins", type=int, default=10, help="compression bins the students are spread over")
    parser.add_argument("--proxy-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--final-seeds", type=int, nargs="+", default=[1000])
    parser.add_argument("--final-epochs", type=int, default=FULL_EPOCHS)
    parser.add_argument("--seed", type=int, default=0, help="draws the students")
    parser.add_argument("--runs", type=Path, default=Path("runs/n2n_fidelity"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.table:
        report = {"table": args.table, **table_fidelity(load_table(args.table))}
    else:
        env = gym.make("N2NCompress-v0", **args.env_kwargs)
        n2n = env.unwrapped
        rng = np.random.default_rng(args.seed)
        pool = random_student_codes(env, 20 * args.students, rng)
        parameters = [code_architecture(n2n.teacher_architecture, n2n.shrink_factors, c).num_parameters() for c in pool]
        compression = 1.0 - np.array(parameters) / n2n.teacher_parameters
        codes = [pool[i] for i in students_across_compression(compression, args.students, args.bins, rng)]
        report = {"env_kwargs": args.env_kwargs, **measure_fidelity(
            args.env_kwargs, codes, args.runs / "records.jsonl", args.proxy_seeds, args.final_seeds,
            args.final_epochs)}  # fmt: skip
    args.runs.mkdir(parents=True, exist_ok=True)
    (args.runs / "fidelity.json").write_text(json.dumps(report, indent=1) + "\n")
    for name in ("accuracy", "n2n_reward"):
        print(name, json.dumps(report[name]))


if __name__ == "__main__":
    main()
