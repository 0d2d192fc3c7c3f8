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

import torch

from agents.common.leaderboard import LEADERBOARD_DIR, load_entries
from agents.common.reports.temperature_kd import ENV_ID, plot_reliability, reliability_reports


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    entries = {e["agent"]["name"]: e for _, e in load_entries(args.leaderboard_dir)
               if e["env_id"] == ENV_ID and e["official"]}  # fmt: skip
    if "no_kd" not in entries:
        parser.error(f"no official no_kd entry for {ENV_ID} in {args.leaderboard_dir}/entries")
    reports = reliability_reports(entries, args.leaderboard_dir)
    plot = args.leaderboard_dir / f"{ENV_ID}-reliability.png"
    plot_reliability(reports, plot)
    (args.leaderboard_dir / f"{ENV_ID}-reliability.json").write_text(json.dumps(reports, indent=1) + "\n")
    print(f"wrote {plot}: " + ", ".join(f"{r['entry']} ECE {r['raw']['ece']:.4f} -> {r['scaled']['ece']:.4f}"
                                        for r in reports))  # fmt: skip


if __name__ == "__main__":
    main()
