"""`make run`: a quick, complete pass over TemperatureKD-v0 on the embedded default task
(mnist1d-cloud-edge, whose teacher ships with the package).

Trains a PPO baseline on a few training seeds, evaluates it beside cross-entropy alone, constant
temperatures and CTKD on the first evaluation seeds, writes "quick" entries and their rendered table and
plot under runs/quickstart/leaderboard (never into the tracked leaderboard/), and prints the table.
Quick entries are small by design (their run count is in the table); official entries need at least 5
runs: see docs/leaderboard-protocol.md for the commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from agents.common.evaluation import (
    EVALUATION_SEEDS,
    TRAINING_SEEDS,
    fixed_policy_entry,
    save_entry,
    trained_agents_entry,
)
from agents.common.leaderboard import render
from agents.common.training import train_agent
from kd_envs.tasks import make_task

ENV_ID = "TemperatureKD-v0"
QUICK_POLICIES = ("no_kd", "constant_t1", "constant_t4", "constant_t8", "ctkd_global")


def mean_temperature(entry: dict) -> float:
    return float(np.mean([e["temperature_mean"] for run in entry["runs"] for e in run["episodes"]]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per distillation run (default: the task's 40)")
    parser.add_argument("--training-seeds", type=int, default=2, help="PPO agents to train")
    parser.add_argument("--timesteps", type=int, default=1800, help="PPO budget per agent (env steps)")
    parser.add_argument("--episodes", type=int, default=3, help="evaluation seeds per policy")
    parser.add_argument("--runs-dir", default="runs/quickstart")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console()
    env_kwargs = {} if args.epochs is None else {"epochs": args.epochs}
    seeds = EVALUATION_SEEDS[: args.episodes]
    leaderboard = Path(args.runs_dir) / "leaderboard"

    console.rule(f"KD-Gym quickstart: {ENV_ID}, task mnist1d-cloud-edge, {env_kwargs or 'default kwargs'}")
    task = make_task("mnist1d-cloud-edge", progress=True)
    sha = task.fingerprint()["teacher_sha256"]
    console.print(f"teacher: {task.config.teacher}, test accuracy {task.teacher_test_accuracy:.4f} "
                  f"({task.teacher_record.get('source', 'cache')}, sha256 {sha[:12]}…); "
                  f"student: {task.config.student} on {len(task.data.y_train)} labelled instances")  # fmt: skip

    entries = []
    for name in QUICK_POLICIES:
        entries.append(fixed_policy_entry(name, ENV_ID, env_kwargs, seeds, tag="quick"))
    model_dirs = []
    for seed in TRAINING_SEEDS[: args.training_seeds]:
        out = Path(args.runs_dir) / "ppo" / f"seed_{seed}"
        console.print(f"training PPO, training seed {seed}, {args.timesteps} steps")
        train_agent("ppo", ENV_ID, seed, out, args.timesteps, env_kwargs, progress_bar=True, tensorboard=True)
        model_dirs.append(out)
    entries.append(trained_agents_entry(model_dirs, seeds, tag="quick", name="ppo", directory=leaderboard))

    for entry in entries:
        save_entry(entry, leaderboard)
    readme, plots = render(leaderboard)

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
