"""Evaluate saved agents or a fixed policy on the fixed evaluation seeds; writes one leaderboard entry.

python scripts/evaluate.py --fixed constant_t4
python scripts/evaluate.py --models runs/TemperatureKD-v0/ppo/seed_* --tag official
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from agents.evaluation import EVALUATION_SEEDS, fixed_policy_entry, save_entry, trained_agents_entry
from agents.fixed_policies import FIXED_POLICIES
from agents.leaderboard import LEADERBOARD_DIR


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--fixed", choices=sorted(FIXED_POLICIES), help="a fixed reference policy")
    what.add_argument("--models", nargs="+", help="folders written by scripts/train.py, one per training seed")
    parser.add_argument("--env", default="TemperatureKD-v0", help="env id (fixed policies; agents know theirs)")
    parser.add_argument("--env-kwargs", type=json.loads, default={}, help="JSON dict (fixed policies)")
    parser.add_argument("--episodes", type=int, default=len(EVALUATION_SEEDS),
                        help=f"use the first N evaluation seeds of {list(EVALUATION_SEEDS)}")  # fmt: skip
    parser.add_argument("--tag", default="official", help="entry tag; 'official' entries need >= 5 runs")
    parser.add_argument("--name", default=None, help="agent name in the entry (default: the algorithm)")
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR,
                        help="where the entry is written and the models copied (default: %(default)s)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not 1 <= args.episodes <= len(EVALUATION_SEEDS):
        parser.error(f"--episodes must be in [1, {len(EVALUATION_SEEDS)}]")
    seeds = EVALUATION_SEEDS[: args.episodes]
    if args.fixed:
        entry = fixed_policy_entry(args.fixed, args.env, args.env_kwargs, seeds, args.tag)
    else:
        entry = trained_agents_entry(args.models, seeds, args.tag, args.name, args.leaderboard_dir)
    path = save_entry(entry, args.leaderboard_dir)
    s = entry["summary"]
    print(f"{entry['agent']['name']}: IQM {s['iqm']:.4f} [{s['iqm_ci95'][0]:.4f}, {s['iqm_ci95'][1]:.4f}], "
          f"mean {s['mean']:.4f} ± {s['std']:.4f} over {s['runs']} runs -> {path}")  # fmt: skip


if __name__ == "__main__":
    main()
