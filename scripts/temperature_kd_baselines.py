"""The field's temperature baselines on TemperatureKD-v0's default task, as official entries.

* fixed policies: cross-entropy alone, constant T ∈ {1, 2, 4, 8}, random T, global schedules (T = 8 → 1
  and 1 → 8, linear and cosine), CTKD (global and instance-wise);
* ``best_constant``: the constant T with the best validation accuracy over a grid, on episodes seeded
  from training seeds 0–4, then scored on the evaluation seeds;
* ``blackbox_map``: 5 independent Optuna searches (TPE, search seeds 0–4) of a 4-weight per-instance map,
  each ``--trials`` trials of 2 episodes (training seeds 2k, 2k+1) scored by validation accuracy and
  started from the best constant; each search's best map is a run scored on the evaluation seeds.

* feature distillation at the best constant T: ``nmd`` (neuron-manifold distillation, the seed
  method's feature loss), ``hint`` (FitNets) and ``attention`` (attention transfer), each with its
  weight β ∈ {0.1, 1, 10} chosen on validation (training seeds 0–2).

Each entry is skipped when it exists and each finished search or selection is kept in ``--runs-dir``,
so an interrupted run resumes.

    python scripts/temperature_kd_baselines.py [--only fixed|best_constant|blackbox_map|features]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from agents.common.evaluation import TRAINING_SEEDS, fixed_policy_entry, save_entry, searched_policies_entry
from agents.common.leaderboard import LEADERBOARD_DIR, entry_path
from agents.common.selection import (
    CONSTANT_GRID,
    MAP_BIAS_RANGE,
    MAP_SLOPE_RANGE,
    SELECTION_METRIC,
    SELECTION_SEEDS,
    search_linear_map,
    select_best_constant,
    select_env_setting,
)
from agents.temperature.specs import policy_from_spec
from kd_envs.envs.temperature_kd import FEATURE_LOSSES

ENV_ID = "TemperatureKD-v0"
FIXED = ("no_kd", "constant_t1", "constant_t2", "constant_t4", "constant_t8", "random_t", "anneal_linear",
         "anneal_cosine", "ramp_linear", "ramp_cosine", "ctkd_global", "ctkd_instance")  # fmt: skip
SEARCHES = 5
EPISODES_PER_TRIAL = 2
FEATURE_WEIGHTS = (0.1, 1.0, 10.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("fixed", "best_constant", "blackbox_map", "features"), default=None)
    parser.add_argument("--trials", type=int, default=20, help="Optuna trials per map search")
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/TemperatureKD-v0/baselines"))
    parser.add_argument("--tag", default="official")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.runs_dir.mkdir(parents=True, exist_ok=True)

    def missing(name: str) -> bool:
        return not entry_path(ENV_ID, name, args.tag, args.leaderboard_dir).is_file()

    def save(entry) -> None:
        s = entry["summary"]
        path = save_entry(entry, args.leaderboard_dir)
        print(f"{entry['agent']['name']}: IQM {s['iqm']:.4f} [{s['iqm_ci95'][0]:.4f}, {s['iqm_ci95'][1]:.4f}], "
              f"mean {s['mean']:.4f} ± {s['std']:.4f} -> {path}", flush=True)  # fmt: skip

    if args.only in (None, "fixed"):
        for name in FIXED:
            if missing(name):
                save(fixed_policy_entry(name, ENV_ID, {}, tag=args.tag))

    selection_path = args.runs_dir / "best_constant.json"
    if args.only in (None, "best_constant", "blackbox_map", "features"):
        if selection_path.is_file():
            selection = json.loads(selection_path.read_text())
        else:
            best, table = select_best_constant(ENV_ID, {})
            selection = {"temperature": best, "validation_accuracy": {str(t): v for t, v in table.items()},
                         "grid": list(CONSTANT_GRID), "seeds": list(SELECTION_SEEDS), "metric": SELECTION_METRIC}
            selection_path.write_text(json.dumps(selection, indent=1))
        if args.only in (None, "best_constant") and missing("best_constant"):
            save(fixed_policy_entry("best_constant", ENV_ID, {}, tag=args.tag,
                                    policy_spec={"class": "constant", "temperature": selection["temperature"]},
                                    selection=selection))  # fmt: skip

    if args.only in (None, "blackbox_map") and missing("blackbox_map"):
        searches = []
        for k in range(SEARCHES):
            path = args.runs_dir / f"blackbox_map_{k}.json"
            if not path.is_file():
                seeds = TRAINING_SEEDS[EPISODES_PER_TRIAL * k : EPISODES_PER_TRIAL * (k + 1)]
                found = search_linear_map(ENV_ID, {}, k, args.trials, seeds, start_temperature=selection["temperature"])
                record = {"training_seed": k, "policy": {"class": "map", "weights": found["weights"]},
                          "search_value": found["value"], "search_history": found["history"],
                          "episode_seeds": list(seeds)}  # fmt: skip
                path.write_text(json.dumps(record, indent=1))
            searches.append(json.loads(path.read_text()))
        search = {"sampler": "optuna TPE", "trials": args.trials, "episodes_per_trial": EPISODES_PER_TRIAL,
                  "budget_episodes": args.trials * EPISODES_PER_TRIAL, "objective": SELECTION_METRIC,
                  "space": {"w0": MAP_BIAS_RANGE, "w1..w3": MAP_SLOPE_RANGE},
                  "start": f"the best constant T = {selection['temperature']}"}  # fmt: skip
        save(searched_policies_entry("blackbox_map", ENV_ID, {}, searches, search, tag=args.tag))

    if args.only in (None, "features"):
        spec = {"class": "constant", "temperature": selection["temperature"]}
        for loss in FEATURE_LOSSES:
            if not missing(loss):
                continue
            path = args.runs_dir / f"{loss}_weight.json"
            if not path.is_file():
                candidates = {f"{w:g}": {"feature_weight": w, "feature_loss": loss} for w in FEATURE_WEIGHTS}
                best, table = select_env_setting(ENV_ID, candidates, policy_from_spec({"name": loss, **spec}))
                path.write_text(json.dumps({"feature_weight": float(best), "validation_accuracy": table,
                                            "seeds": list(SELECTION_SEEDS[:3]), "temperature": spec["temperature"],
                                            "metric": SELECTION_METRIC}, indent=1))  # fmt: skip
            chosen = json.loads(path.read_text())
            kwargs = {"feature_weight": chosen["feature_weight"], "feature_loss": loss}
            save(fixed_policy_entry(loss, ENV_ID, kwargs, tag=args.tag, policy_spec=spec,
                                    selection={"best_constant": selection, "feature_weight": chosen}))  # fmt: skip


if __name__ == "__main__":
    main()
