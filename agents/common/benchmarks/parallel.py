"""Benchmark many seeds on Ray: the official evaluation of a fixed TemperatureKD-v0 policy (one episode
per evaluation seed) one after the other here, then as Ray tasks on ``--workers`` local workers; prints
the ratio serial / parallel and checks that both gave the same episodes.

The parallel time is given twice: with Ray's start (what ``kd-gym evaluate --workers N`` pays) and from
a started Ray (its workers still start, import torch and run a first, slower episode: a fixed cost of
several seconds per command that a longer evaluation spreads thinner). The serial time is measured
after a warm-up episode in this process, so it leaves out the serial run's own first-episode cost.

    kd-gym bench parallel                        # constant_t4, the default task, 10 seeds, 2 workers
    kd-gym bench parallel --epochs 10            # shorter episodes: Ray's start weighs more
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import ray
import torch

from agents.common.benchmarks import Figure
from agents.common.evaluation import EVALUATION_SEEDS, evaluate
from agents.common.parallel import start_ray
from agents.temperature.specs import FIXED_POLICIES, fixed_policy

# What a Ray worker runs for an evaluation task, timed in a fresh process: its imports, then two episodes.
_WORKER_CALLS = """
import json, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(1)
t1 = time.perf_counter()
from agents.common.episodes import episode_in_worker_env
from agents.temperature.specs import fixed_policy
t2 = time.perf_counter()
name, env_kwargs, seeds = json.loads(sys.argv[1])
times = []
for seed in seeds:
    start = time.perf_counter()
    episode_in_worker_env(fixed_policy(name), "TemperatureKD-v0", env_kwargs, seed)
    times.append(time.perf_counter() - start)
print(json.dumps([t1 - t0, t2 - t1, *times]))
"""


def fresh_worker_costs(policy: str, env_kwargs: dict, seeds) -> list[float]:
    """Seconds of a fresh process's torch import, its other imports and two episodes (a worker's calls)."""
    path = os.pathsep.join(p for p in sys.path if p)
    command = [sys.executable, "-c", _WORKER_CALLS, json.dumps([policy, env_kwargs, list(seeds)])]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": path})
    return json.loads(out.stdout.splitlines()[-1])


def main(argv: list[str] | None = None, prog: str | None = None) -> list[Figure]:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=formatter)
    parser.add_argument("--policy", default="constant_t4", choices=sorted(FIXED_POLICIES))
    parser.add_argument("--epochs", type=int, default=None, help="TemperatureKD-v0's epochs (default: the env's)")
    parser.add_argument("--episodes", type=int, default=len(EVALUATION_SEEDS), help="the first N evaluation seeds")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    env_kwargs = {} if args.epochs is None else {"epochs": args.epochs}
    seeds = EVALUATION_SEEDS[: args.episodes]
    policy = fixed_policy(args.policy)
    evaluate(policy, "TemperatureKD-v0", {**env_kwargs, "epochs": 1}, seeds[:1], progress=False)  # warm-up: data

    load = os.getloadavg()[0]
    start = time.perf_counter()
    serial = evaluate(policy, "TemperatureKD-v0", env_kwargs, seeds, progress=False)
    serial_seconds = time.perf_counter() - start
    print(f"serial: {serial_seconds:.1f}s for {len(seeds)} episodes")

    start = time.perf_counter()
    start_ray(args.workers)
    started = time.perf_counter()
    try:
        parallel = evaluate(policy, "TemperatureKD-v0", env_kwargs, seeds, progress=False, workers=args.workers)
    finally:
        ray.shutdown()
    end = time.perf_counter()
    print(f"{args.workers} Ray workers: {end - start:.1f}s with Ray's start ({started - start:.1f}s of it), "
          f"{end - started:.1f}s from a started Ray")  # fmt: skip
    # Other jobs on the machine take cores from the workers: the load says how many were free.
    print(f"\npolicy={args.policy} epochs={args.epochs or 'default'} episodes={len(seeds)} workers={args.workers} "
          f"cores={os.cpu_count()} load average before={load:.2f} after={os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"ratio serial/parallel = {serial_seconds / (end - start):.2f} with Ray's start, "
          f"{serial_seconds / (end - started):.2f} from a started Ray; identical episodes: {parallel == serial}")
    if parallel != serial:
        raise RuntimeError("bench parallel: the Ray workers' episodes differ from the serial ones")
    ideal = serial_seconds / args.workers
    costs = fresh_worker_costs(args.policy, env_kwargs, seeds[:2])
    print(f"where the time goes: {end - started - ideal:.1f}s from a started Ray above the ideal {ideal:.1f}s "
          f"(serial / workers); a fresh process running a worker's calls: torch import {costs[0]:.1f}s, the "
          f"episode's other imports {costs[1]:.1f}s, first episode {costs[2]:.1f}s, second {costs[3]:.1f}s (the "
          f"first's extra: the task's load and torch's lazy imports)")  # fmt: skip
    return [Figure(f"parallel - serial / {args.workers} Ray workers with Ray's start", serial_seconds / (end - start),
                   1.5, at_least=True),
            Figure(f"parallel - serial / {args.workers} Ray workers from a started Ray",
                   serial_seconds / (end - started), 1.8, at_least=True)]  # fmt: skip
