"""`make run`: a quick, complete pass over TemperatureKD-v0 on the embedded default task (mnist1d).

Trains the teacher on first use (cached afterwards), trains a PPO baseline on a few training seeds,
evaluates it beside the fixed-temperature baselines on the first evaluation seeds, writes "quick"
entries into leaderboard/, renders leaderboard/README.md and its plot, and prints the table.
Quick entries are small by design (their run count is in the table); official entries need at
least 5 runs: see the README for the commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from agents.baselines import train_agent
from agents.evaluation import EVALUATION_SEEDS, TRAINING_SEEDS, fixed_policy_entry, save_entry, trained_agents_entry
from agents.fixed_policies import FIXED_POLICIES
from agents.leaderboard import render
from kd_envs.tasks import make_task

ENV_ID = "TemperatureKD-v0"


def mean_temperature(entry: dict) -> float:
    return float(np.mean([e["temperature_mean"] for run in entry["runs"] for e in run["episodes"]]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per distillation run (env default: 30)")
    parser.add_argument("--training-seeds", type=int, default=2, help="PPO agents to train")
    parser.add_argument("--timesteps", type=int, default=1240, help="PPO budget per agent (env steps)")
    parser.add_argument("--episodes", type=int, default=3, help="evaluation seeds per policy")
    parser.add_argument("--runs-dir", default="runs/quickstart")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console()
    env_kwargs = {"epochs": args.epochs}
    seeds = EVALUATION_SEEDS[: args.episodes]

    console.rule(f"KD-Gym quickstart: {ENV_ID}, task mnist1d, {env_kwargs}")
    task = make_task("mnist1d", progress=True)
    console.print(f"teacher: {task.config.teacher} test accuracy {task.teacher_test_accuracy:.4f} "
                  f"(cache key {task.teacher_record['key']}); student: {task.config.student}")  # fmt: skip

    entries = []
    for name in FIXED_POLICIES:
        entries.append(fixed_policy_entry(name, ENV_ID, env_kwargs, seeds, tag="quick"))
    model_dirs = []
    for seed in TRAINING_SEEDS[: args.training_seeds]:
        out = Path(args.runs_dir) / "ppo" / f"seed_{seed}"
        console.print(f"training PPO, training seed {seed}, {args.timesteps} steps")
        train_agent("ppo", ENV_ID, seed, out, args.timesteps, env_kwargs, progress_bar=True, tensorboard=True)
        model_dirs.append(out)
    entries.append(trained_agents_entry(model_dirs, seeds, tag="quick", name="ppo"))

    for entry in entries:
        save_entry(entry)
    readme, plots = render()

    table = Table(title=f"{ENV_ID}: student test accuracy (quick entries, {args.episodes} evaluation seeds)")
    for column in ("agent", "runs", "IQM [95% CI]", "mean ± std"):
        table.add_column(column)
    for entry in sorted(entries, key=lambda e: -e["summary"]["iqm"]):
        s = entry["summary"]
        table.add_row(entry["agent"]["name"], str(s["runs"]), f"{s['iqm']:.4f} [{s['iqm_ci95'][0]:.4f}, "
                      f"{s['iqm_ci95'][1]:.4f}]", f"{s['mean']:.4f} ± {s['std']:.4f}")  # fmt: skip
    console.print(table)
    console.print(f"teacher test accuracy: {task.teacher_test_accuracy:.4f}")
    episode_steps = entries[-1]["runs"][0]["episodes"][0]["steps"]  # the PPO entry's episode length
    console.print(f"PPO runs = {args.training_seeds} training seeds of {args.timesteps} steps = "
                  f"{args.timesteps / episode_steps:.1f} episodes each (official entries: 10 seeds, 10 episodes); "
                  f"its mean temperature in evaluation: {mean_temperature(entries[-1]):.2f}. "
                  f"Fixed-policy runs = evaluation episodes.")  # fmt: skip
    console.print(f"leaderboard: {readme}, plot: {', '.join(map(str, plots))}; TensorBoard: {args.runs_dir}")


if __name__ == "__main__":
    main()
