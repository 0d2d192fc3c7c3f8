"""TemperatureKD-v0 on the task set ``cloud-edge-v0``: references, oracle bounds and learned agents, as entries.

Stages (each skips what exists, so an interrupted run resumes; ``--runs-dir`` keeps tables and agents):

* ``table --split train|test``: every constant T of the grid on every instance of the split, mean validation
  accuracy over training seeds 0–2 (``agents.common.selection.constant_table``);
* ``references``: entries on the test split, every evaluation seed on each test instance:
  ``single_best`` (the constant chosen on the train split's validation table), ``static_oracle`` (each test
  instance's own best constant, chosen on its validation split), ``ramp_cosine``, ``mask_single_best`` and
  ``ramp_cosine_mask`` (KD only where the teacher's top-1 class is the label), ``ctkd_global``, ``no_kd``;
  and on the default task with ``observation="extended"``: ``mask_best_constant`` and ``ramp_cosine_mask``;
* ``ppo --seed S``: PPO with ``InstancePolicy`` on the train split (``observation="extended"``,
  ``action="temperature_weight"``), ``--timesteps`` steps; ``ppo_default --seed S``: the same on the default task;
* ``rlkd --seed S``: RLKD on the train split with ``observation="extended"`` (a temperature per instance: RLKD
  sets no weights), its YAML's budget and exploration;
* ``map --seed K``: search K of the black-box map on the extended observation (a temperature and a weight,
  each linear in the seven columns: ``LinearMapPolicy`` with a ``weight_map``), Optuna TPE, ``--trials``
  trials of one episode per train instance on training seed K, scored by mean validation accuracy;
* ``entries``: the agents' and the searches' entries (the task set's scored on the test split).

    python scripts/temperature_kd_task_set.py table --split train
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from agents.common.evaluation import (
    EVALUATION_SEEDS,
    TRAINING_SEEDS,
    fixed_policy_entry,
    save_entry,
    searched_policies_entry,
    trained_agents_entry,
)
from agents.common.leaderboard import LEADERBOARD_DIR, board_id, entry_path
from agents.common.selection import (
    CONSTANT_GRID,
    MAP_BIAS_RANGE,
    MAP_SLOPE_RANGE,
    SELECTION_METRIC,
    SELECTION_SEEDS,
    WEIGHT_BIAS_RANGE,
    WEIGHT_SLOPE_RANGE,
    constant_table,
    per_instance_constants,
    search_linear_map,
    single_best_constant,
)
from agents.common.training import train_agent

ENV_ID = "TemperatureKD-v0"
TASK_SET = "cloud-edge-v0"
LEARNING = {"observation": "extended", "action": "temperature_weight"}
TABLE_SEEDS = SELECTION_SEEDS[:3]
TEST_INSTANCES = [0, 1, 2, 3]
TRAIN_INSTANCES = [0, 1, 2, 3]
RLKD_KWARGS = {"task_set": TASK_SET, "split": "train", "observation": "extended"}


def split_kwargs(split: str) -> dict:
    return {"task_set": TASK_SET, "split": split, **LEARNING}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("table", "references", "ppo", "ppo_default", "rlkd", "map", "entries"))
    parser.add_argument("--trials", type=int, default=40, help="map: Optuna trials per search")
    parser.add_argument("--only", action="append", default=None, help="entries: only these entry names")
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument("--seed", type=int, action="append", default=None)
    parser.add_argument("--timesteps", type=int, default=None)
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/TemperatureKD-v0/task_set"))
    parser.add_argument("--tag", default="official")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.runs_dir.mkdir(parents=True, exist_ok=True)

    def table_path(split: str) -> Path:
        return args.runs_dir / f"constants_{split}.json"

    def missing(name: str, kwargs: dict) -> bool:
        return not entry_path(board_id(ENV_ID, kwargs), name, args.tag, args.leaderboard_dir).is_file()

    def save(entry) -> None:
        s = entry["summary"]
        path = save_entry(entry, args.leaderboard_dir)
        ci = s["iqm_ci95"]
        print(f"{entry['agent']['name']}: IQM {s['iqm']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}] -> {path}", flush=True)

    if args.stage == "table":
        if not table_path(args.split).is_file():
            table = constant_table(ENV_ID, split_kwargs(args.split), CONSTANT_GRID, TABLE_SEEDS)
            record = {"table": table, "grid": list(CONSTANT_GRID), "seeds": list(TABLE_SEEDS),
                      "metric": SELECTION_METRIC, "env_kwargs": split_kwargs(args.split)}  # fmt: skip
            table_path(args.split).write_text(json.dumps(record, indent=1))
        return

    if args.stage == "references":
        train, test = (json.loads(table_path(s).read_text()) for s in ("train", "test"))
        t_single = single_best_constant(train["table"])
        oracle = per_instance_constants(test["table"])
        kwargs = split_kwargs("test")
        chosen = {
            "single_best": ({"class": "constant", "temperature": t_single},
                            {"chosen_on": "the train split's validation table", **train}),
            "static_oracle": ({"class": "per_instance", "temperatures": oracle},
                              {"chosen_on": "each test instance's own validation split", **test}),
            "mask_single_best": ({"class": "constant", "temperature": t_single, "mask": "teacher_agrees"},
                                 {"chosen_on": "the train split's validation table (T, without the mask)", **train}),
        }  # fmt: skip
        for name, (spec, selection) in chosen.items():
            if missing(name, kwargs):
                save(fixed_policy_entry(name, ENV_ID, kwargs, tag=args.tag, policy_spec=spec, selection=selection,
                                        instances=TEST_INSTANCES))  # fmt: skip
        for name in ("ramp_cosine", "ramp_cosine_mask", "no_kd", "ctkd_global"):
            if missing(name, kwargs):
                save(fixed_policy_entry(name, ENV_ID, kwargs, tag=args.tag, instances=TEST_INSTANCES))
        # The default task with the extended observation: the mask at the default's best constant.
        best = json.loads(entry_path(ENV_ID, "best_constant", "official", args.leaderboard_dir).read_text())
        spec = {**best["agent"]["policy"], "mask": "teacher_agrees"}
        if missing("mask_best_constant", LEARNING):
            # The default's choice, made on the env kwargs {} (temperature only), which --verify --deep replays.
            selection = {**best["agent"]["selection"], "env_kwargs": best["env_kwargs"]}
            save(fixed_policy_entry("mask_best_constant", ENV_ID, LEARNING, tag=args.tag, policy_spec=spec,
                                    selection=selection))  # fmt: skip
        if missing("ramp_cosine_mask", LEARNING):
            save(fixed_policy_entry("ramp_cosine_mask", ENV_ID, LEARNING, tag=args.tag))
        return

    if args.stage in ("ppo", "ppo_default", "rlkd"):
        kwargs = {"ppo": split_kwargs("train"), "ppo_default": dict(LEARNING), "rlkd": RLKD_KWARGS}[args.stage]
        algo = "rlkd" if args.stage == "rlkd" else "ppo"
        for seed in args.seed or [0]:
            out = args.runs_dir / args.stage / f"seed_{seed}"
            if not (out / "model.zip").is_file():
                train_agent(algo, ENV_ID, seed, out, args.timesteps, kwargs, tensorboard=False)
        return

    if args.stage == "map":
        train = json.loads(table_path("train").read_text())
        for k in args.seed or [0]:
            path = args.runs_dir / "map" / f"search_{k}.json"
            if path.is_file():
                continue
            seeds = [TRAINING_SEEDS[k]]
            found = search_linear_map(ENV_ID, split_kwargs("train"), k, args.trials, seeds,
                                      start_temperature=single_best_constant(train["table"]), features=7,
                                      weight_map=True, instances=TRAIN_INSTANCES)  # fmt: skip
            record = {"training_seed": k, "policy": {"class": "map", "weights": found["weights"],
                                                     "weight_map": found["weight_map"]},
                      "search_value": found["value"], "search_history": found["history"], "episode_seeds": seeds}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=1))
        return

    if args.stage == "entries":
        searches = [json.loads(p.read_text()) for p in sorted((args.runs_dir / "map").glob("search_*.json"))]
        wanted = lambda name: args.only is None or name in args.only  # noqa: E731
        if searches and wanted("blackbox_map") and missing("blackbox_map", split_kwargs("test")):
            search = {"sampler": "optuna TPE", "trials": args.trials, "episodes_per_trial": len(TRAIN_INSTANCES),
                      "budget_episodes": args.trials * len(TRAIN_INSTANCES), "objective": SELECTION_METRIC,
                      "on": "one episode per train instance (training seed = search seed)",
                      "space": {"w0": MAP_BIAS_RANGE, "w1..w7": MAP_SLOPE_RANGE, "v0": WEIGHT_BIAS_RANGE,
                                "v1..v7": WEIGHT_SLOPE_RANGE},
                      "start": "the single best constant, weights 1"}  # fmt: skip
            save(searched_policies_entry("blackbox_map", ENV_ID, split_kwargs("test"), searches, search, tag=args.tag,
                                         instances=TEST_INSTANCES))  # fmt: skip
        for stage, name in (("ppo", "ppo"), ("ppo_default", "ppo_extended"), ("rlkd", "rlkd")):
            dirs = sorted((args.runs_dir / stage).glob("seed_*/model.zip"))
            if not dirs or not wanted(name):
                continue
            model_dirs = [d.parent for d in dirs]
            if stage in ("ppo", "rlkd"):
                kwargs = split_kwargs("test") if stage == "ppo" else {**RLKD_KWARGS, "split": "test"}
                if missing(name, kwargs):
                    save(trained_agents_entry(model_dirs, EVALUATION_SEEDS, args.tag, name, args.leaderboard_dir,
                                              evaluation_env_kwargs=[kwargs], instances=TEST_INSTANCES))  # fmt: skip
            elif missing(name, LEARNING):
                save(trained_agents_entry(model_dirs, EVALUATION_SEEDS, args.tag, name, args.leaderboard_dir))


if __name__ == "__main__":
    main()
