"""The sweep that chose TemperatureKD-v0's default task: where does distillation pay, and does the
temperature matter?

Every candidate task (transfer-set size x student) is run through the env itself with constant
temperatures and with cross-entropy alone, on the sweep seeds (training seeds, never the evaluation
seeds). Candidates are ranked on the student's *validation* accuracy (the test split never chooses);
test accuracy and the wall time of one episode are recorded beside it. Results are appended to a JSON
lines file as they come, so an interrupted sweep resumes; ``--report`` writes the table and JSON.

    python scripts/temperature_kd_sweep.py --shard 0/2 & python scripts/temperature_kd_sweep.py --shard 1/2
    python scripts/temperature_kd_sweep.py --report
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import gymnasium as gym
import torch
from tqdm.auto import tqdm

import kd_envs  # noqa: F401
from agents.common.evaluation import run_episode
from agents.common.reports.temperature_kd import sweep_table
from agents.temperature.policies import FixedTemperaturePolicy
from kd_envs.tasks import TASKS, ModelConfig, TaskConfig, TrainConfig

SWEEP_SEEDS = (0, 1, 2)
TEMPERATURES = (None, 1.0, 2.0, 4.0, 8.0)  # None: cross-entropy alone
TRANSFER_SIZES = (500, 1000, 2000)
STUDENTS = (ModelConfig("cnn1d", width=16, depth=2), ModelConfig("cnn1d", width=32, depth=3))
SCHEDULE = TrainConfig(epochs=40, batch_size=64)


def candidates() -> list[tuple[str, TaskConfig]]:
    base = TASKS["mnist1d"]
    out = []
    for size, student in itertools.product(TRANSFER_SIZES, STUDENTS):
        name = f"transfer{size}-{student.family}{student.width}x{student.depth}"
        out.append((name, TaskConfig(dataset=base.dataset, teacher=base.teacher, student=student,
                                     teacher_training=base.teacher_training, transfer_size=size,
                                     student_training=SCHEDULE)))  # fmt: skip
    return out


def setting_name(temperature: float | None) -> str:
    return "ce" if temperature is None else f"t{temperature:g}"


def run(out: Path, shard: tuple[int, int]) -> None:
    done = set()
    if out.is_file():
        done = {(r["candidate"], r["setting"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())}
    jobs = [(name, config, t, seed) for name, config in candidates() for t in TEMPERATURES for seed in SWEEP_SEEDS]
    jobs = [j for i, j in enumerate(jobs) if i % shard[1] == shard[0]]
    todo = [j for j in jobs if (j[0], setting_name(j[2]), j[3]) not in done]
    envs: dict[tuple[str, bool], gym.Env] = {}
    for name, config, t, seed in tqdm(todo, desc=f"sweep {shard[0]}/{shard[1]}", unit="episode"):
        ce_only = t is None
        if (name, ce_only) not in envs:
            kwargs = {"ce_weight": 1.0, "kd_weight": 0.0} if ce_only else {}
            envs[(name, ce_only)] = gym.make("TemperatureKD-v0", task=config.to_dict(), **kwargs)
        policy = FixedTemperaturePolicy(setting_name(t), 1.0 if ce_only else t)
        start = time.perf_counter()
        episode = run_episode(envs[(name, ce_only)], policy, seed)
        record = {"candidate": name, "setting": setting_name(t), "seed": seed,
                  "seconds": round(time.perf_counter() - start, 3), **episode}  # fmt: skip
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")


def report(out: Path, json_path: Path) -> None:
    records = [json.loads(line) for line in out.read_text().splitlines()]
    table, lines = sweep_table(records, [name for name, _ in candidates()], [setting_name(t) for t in TEMPERATURES])
    json_path.write_text(json.dumps({"seeds": SWEEP_SEEDS, "table": table}, indent=1) + "\n")
    print("validation accuracy (test accuracy), mean over sweep seeds", list(SWEEP_SEEDS))
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/temperature_kd_sweep/records.jsonl")
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th job from the i-th")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--json", default="leaderboard/TemperatureKD-v0-sweep.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.report:
        report(out, Path(args.json))
        return
    i, n = map(int, args.shard.split("/"))
    run(out, (i, n))


if __name__ == "__main__":
    main()
