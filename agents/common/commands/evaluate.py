"""Evaluate saved agents or a fixed policy on the fixed evaluation seeds; writes one leaderboard entry.

kd-gym evaluate --fixed constant_t4
kd-gym evaluate --models runs/TemperatureKD-v0/ppo/seed_* --tag official
kd-gym evaluate --models runs/N2NCompress-v0/n2n/seed_*    # retrains each search's best student
kd-gym evaluate --fixed constant_t4 --workers 2             # two episodes at a time (Ray, this machine)
kd-gym evaluate --fixed constant_t4 --ray-address HOST:6379 # on a running Ray cluster

Every evaluation episode is seeded, so ``--workers N`` and ``--ray-address`` write the same numbers as
the serial run (``--workers 1``, the default, runs without Ray).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agents.common.compression import FULL_EPOCHS, SEARCH_ENVS
from agents.common.evaluation import (
    EVALUATION_SEEDS,
    SEARCH_EVALUATION_SEEDS,
    fixed_policy_entry,
    save_entry,
    search_entry,
    trained_agents_entry,
)
from agents.common.leaderboard import LEADERBOARD_DIR, DirtyTreeError, commit_for_entry
from agents.common.parallel import add_worker_arguments
from agents.temperature.specs import FIXED_POLICIES


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=formatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--fixed", choices=sorted(FIXED_POLICIES), help="a fixed reference policy")
    what.add_argument("--models", nargs="+", help="folders written by kd-gym train, one per training seed")
    parser.add_argument("--env", default="TemperatureKD-v0", help="env id (fixed policies; agents know theirs)")
    parser.add_argument("--env-kwargs", type=json.loads, default={}, help="JSON dict (fixed policies)")
    parser.add_argument("--episodes", type=int, default=None,
                        help=f"use the first N evaluation seeds of {list(EVALUATION_SEEDS)} (default: all; "
                             f"{len(SEARCH_EVALUATION_SEEDS)} for searches, whose best student is retrained per seed)")
    parser.add_argument("--final-epochs", type=int, default=FULL_EPOCHS,
                        help="searches (N2NCompress-v0): epochs of the best student's final training")  # fmt: skip
    parser.add_argument("--tag", default="official", help="entry tag; 'official' entries need >= 5 runs")
    parser.add_argument("--name", default=None, help="agent name in the entry (default: the algorithm)")
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR,
                        help="where the entry is written and the models copied (default: %(default)s)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of every evaluation episode (the entry records it; --verify replays "
                             "with it)")  # fmt: skip
    add_worker_arguments(parser, "evaluation episodes")
    args = parser.parse_args(argv)
    try:  # before the evaluation, not after it
        commit_for_entry(args.tag)
    except DirtyTreeError as error:
        parser.error(str(error))
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: expected >= 1")
    first_config = json.loads((Path(args.models[0]) / "config.json").read_text()) if args.models else {}
    search = first_config.get("env_id") in SEARCH_ENVS
    episodes = len(SEARCH_EVALUATION_SEEDS if search else EVALUATION_SEEDS) if args.episodes is None else args.episodes
    if not 1 <= episodes <= len(EVALUATION_SEEDS):
        parser.error(f"--episodes must be in [1, {len(EVALUATION_SEEDS)}]")
    seeds = EVALUATION_SEEDS[:episodes]
    if args.fixed:
        entry = fixed_policy_entry(args.fixed, args.env, args.env_kwargs, seeds, args.tag, workers=args.workers,
                                   address=args.ray_address, threads=args.threads)  # fmt: skip
    elif search:
        entry = search_entry(args.models, seeds, args.tag, args.name, args.leaderboard_dir, args.final_epochs,
                             workers=args.workers, address=args.ray_address, threads=args.threads)  # fmt: skip
    else:
        entry = trained_agents_entry(args.models, seeds, args.tag, args.name, args.leaderboard_dir,
                                     workers=args.workers, address=args.ray_address, threads=args.threads)  # fmt: skip
    path = save_entry(entry, args.leaderboard_dir)
    s = entry["summary"]
    print(f"{entry['agent']['name']}: IQM {s['iqm']:.4f} [{s['iqm_ci95'][0]:.4f}, {s['iqm_ci95'][1]:.4f}], "
          f"mean {s['mean']:.4f} ± {s['std']:.4f} over {s['runs']} runs -> {path}")  # fmt: skip


if __name__ == "__main__":
    main()
