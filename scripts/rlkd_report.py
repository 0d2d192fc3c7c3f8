"""RLKD report on TemperatureKD-v0: the entries' final test accuracies side by side, the student's test
accuracy after every epoch, and the temperatures RLKD gives over training; writes
leaderboard/TemperatureKD-v0-rlkd.png and leaderboard/TemperatureKD-v0-rlkd.json.

    python scripts/rlkd_report.py                       # after scripts/rlkd_study.sh's runs
    python scripts/rlkd_report.py --seeds 1000 --agents 2   # quicker traces
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import torch
from tqdm.auto import tqdm

import kd_envs  # noqa: F401
from agents.common.evaluation import EVALUATION_SEEDS, trace_episode
from agents.common.leaderboard import LEADERBOARD_DIR, load_entries
from agents.common.reports.rlkd import accuracy_curves, comparable, entry_summaries, plot, temperature_percentiles
from agents.common.training import load_agent
from agents.temperature.specs import fixed_policy

ENV_ID = "TemperatureKD-v0"
FIXED = ("no_kd", "constant_t1", "constant_t4", "constant_t8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", default="rlkd__official", help="the RLKD entry (<name>__<tag>) whose agents trace")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(EVALUATION_SEEDS[:2]), help="evaluation seeds")
    parser.add_argument("--agents", type=int, default=5, help="trace the entry's first N agents")
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    entries = {p.stem.split("__", 1)[1]: e for p, e in load_entries(args.leaderboard_dir) if e["env_id"] == ENV_ID}
    if args.entry not in entries:
        parser.error(f"no entry {ENV_ID}__{args.entry}.json in {args.leaderboard_dir}/entries")
    rlkd = entries[args.entry]
    entries = {key: e for key, e in entries.items() if comparable(e, rlkd["env_kwargs"])}

    policies = {name: (fixed_policy(name), fixed_policy(name).env_overrides) for name in FIXED}
    for run in rlkd["runs"][: args.agents]:
        agent = load_agent(args.leaderboard_dir / run["model"])
        policies[f"rlkd seed {run['training_seed']}"] = (agent.model, {})
    traces: dict[str, list[dict]] = {}
    with tqdm(total=len(policies) * len(args.seeds), desc="tracing", unit="episode") as bar:
        for name, (policy, overrides) in policies.items():
            env = gym.make(ENV_ID, **{**rlkd["env_kwargs"], **overrides})
            traces[name] = []
            for seed in args.seeds:
                traces[name].append(trace_episode(env, policy, seed))
                bar.update()
            env.close()

    summary = entry_summaries(entries)
    out_json = args.leaderboard_dir / f"{ENV_ID}-rlkd.json"
    curves = accuracy_curves(traces)
    # Per RLKD agent, the percentiles of its temperatures in each epoch (over the traced seeds).
    percentiles = temperature_percentiles(traces)
    out_json.write_text(json.dumps({"entries": summary, "seeds": args.seeds, "test_accuracy_per_epoch": curves,
                                    "rlkd_temperature_percentiles_per_epoch": percentiles}, indent=1))  # fmt: skip
    out_png = args.leaderboard_dir / f"{ENV_ID}-rlkd.png"
    plot(summary, curves, percentiles, out_png)
    for key, s in summary.items():
        print(f"{key:40s} IQM {s['iqm']:.4f} [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]  mean {s['mean']:.4f} ± "
              f"{s['std']:.4f}  ({s['runs']} runs x {s['evaluation_seeds']} eval seeds)")  # fmt: skip
    print(f"wrote {out_png} and {out_json}")


if __name__ == "__main__":
    main()
