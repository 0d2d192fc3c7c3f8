"""Choose IQ's distillation anchor and weight by measurement, on validation seeds.

    python scripts/iq_selection.py                # 5 settings x 3 seeds on the conflicting drift (~15 min, 2 cores)
    python scripts/iq_selection.py --report-only

Each candidate trains IQ (iq.yml's InterferenceCartPole-v0 settings, the warm-up of 5,000 states) on
the interference study's conflicting cyclic drift with the context visible, on training seeds
100-102, kept apart from the study's seeds 0-9 and from every evaluation seed. The score is the mean
greedy return over both contexts across the second half of training (the evaluation curve, seeds
2000-2004), with the area under the training-return curve beside it. Runs resume; the table goes to
leaderboard/InterferenceCartPole-v0-iq-selection.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from agents.common.interference import STUDY_SETTINGS
from agents.common.jobs import run_jobs
from agents.common.reports.interference import selection_row, train_interference_run

CANDIDATES = {
    "target_anchor": {"anchor_update_interval": None, "distillation_weight": "1-eps"},
    "anchor_2k": {"anchor_update_interval": 2000, "distillation_weight": "1-eps"},
    "anchor_10k": {"anchor_update_interval": 10000, "distillation_weight": "1-eps"},
    "anchor_2k_weight_0.1": {"anchor_update_interval": 2000, "distillation_weight": 0.1},
    "no_distillation": {"anchor_update_interval": None, "distillation_weight": 0.0},
}
VALIDATION_SEEDS = (100, 101, 102)
SETTING = "conflict_visible"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/iq_selection"))
    parser.add_argument("--out", type=Path, default=Path("leaderboard/InterferenceCartPole-v0-iq-selection.json"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    setting = STUDY_SETTINGS[SETTING]
    jobs = [dict(algo="iq", env_id=setting["env_id"], seed=seed, out_dir=str(args.runs / name / f"seed_{seed}"),
                 env_kwargs=setting["env_kwargs"], hyperparams=params, eval_freq=5000)
            for name, params in CANDIDATES.items() for seed in VALIDATION_SEEDS
            if not (args.runs / name / f"seed_{seed}" / "interference.json").is_file()]  # fmt: skip
    if jobs and not args.report_only:
        run_jobs(train_interference_run, jobs, args.jobs, "IQ candidates", "run")
    table = {}
    for name, params in CANDIDATES.items():
        paths = [args.runs / name / f"seed_{s}" / "interference.json" for s in VALIDATION_SEEDS]
        if not all(p.is_file() for p in paths):
            continue
        table[name] = row = selection_row(params, [json.loads(p.read_text())["summary"] for p in paths])
        score = row["score_per_seed"]
        print(f"{name:22s} score {np.mean(score):7.1f} ± {np.std(score):5.1f}   AUC {row['training_return_auc']:7.1f}")
    if table:
        best = max(table, key=lambda k: table[k]["score"])
        out = {"setting": SETTING, "env_kwargs": setting["env_kwargs"], "validation_seeds": list(VALIDATION_SEEDS),
               "score": "mean greedy return over both contexts, second half of training (seeds 2000-2004)",
               "candidates": table, "chosen": best}  # fmt: skip
        args.out.write_text(json.dumps(out, indent=1))
        print(f"chosen: {best} {table[best]['params']}; wrote {args.out}")


if __name__ == "__main__":
    main()
