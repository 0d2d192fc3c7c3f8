"""Benchmark many seeds on Ray: the official evaluation of a fixed TemperatureKD-v0 policy (one episode
per evaluation seed) one after the other here, then on ``--workers`` local workers (this process and
``workers - 1`` Ray workers, :class:`agents.common.parallel.RayExecutor`); prints the ratio serial /
parallel and checks that every run gave the same episodes.

The parallel time is given three times: with Ray's start (what ``kd-gym evaluate --workers N`` pays:
Ray starts while this process runs the first episode), from a started Ray (its fresh workers still
import torch, and torch's optimizer imports torch._dynamo on their first episode: a fixed cost per
worker and command that a longer evaluation spreads thinner), and from the same Ray again, whose
workers have run episodes (what a study that keeps one Ray for all its evaluations gets). The serial
time is measured after a warm-up episode in this process, so it leaves out the serial run's own
first-episode cost (so does this process's share of the parallel runs), and it is measured before and
after the parallel runs: the reference is the mean of the two, since the machine's speed drifts over
minutes. Last, the machine's ceiling: plain processes running the episodes at once against one alone
(before and after), which bounds what any two workers can give here.

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

from agents.common.benchmarks import Figure, fresh_process_env
from agents.common.evaluation import EVALUATION_SEEDS, evaluate
from agents.common.parallel import ray_workers, start_ray
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


def _worker_command(policy: str, env_kwargs: dict, seeds) -> list[str]:
    return [sys.executable, "-c", _WORKER_CALLS, json.dumps([policy, env_kwargs, list(seeds)])]


def fresh_worker_costs(policy: str, env_kwargs: dict, seeds) -> list[float]:
    """Seconds of a fresh process's torch import, its other imports and its episodes (a worker's calls)."""
    out = subprocess.run(_worker_command(policy, env_kwargs, seeds), capture_output=True, text=True, check=True,
                         env=fresh_process_env())  # fmt: skip
    return json.loads(out.stdout.splitlines()[-1])


def machine_ceiling(policy: str, env_kwargs: dict, seeds, processes: int) -> tuple[float, list[float]]:
    """The most ``processes`` workers can give on this machine: ``processes`` plain processes (no Ray) run
    the same episodes at once, between two lone runs of them; returns ``processes`` × (an episode's mean
    seconds alone) / (its mean seconds beside the others), each process's first episode left out, and
    the costs of the first lone process."""
    alone = fresh_worker_costs(policy, env_kwargs, seeds)
    command, env = _worker_command(policy, env_kwargs, seeds), fresh_process_env()
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(processes)]
    together = [json.loads(child.communicate()[0].splitlines()[-1]) for child in children]
    if any(child.returncode for child in children):
        raise RuntimeError("bench parallel: a process of the machine's ceiling failed")
    alone_again = fresh_worker_costs(policy, env_kwargs, seeds)
    lone = [*alone[3:], *alone_again[3:]]
    beside = [t for costs in together for t in costs[3:]]
    return processes * (sum(lone) / len(lone)) / (sum(beside) / len(beside)), alone


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

    def run_serially() -> tuple[list, float]:
        start = time.perf_counter()
        return evaluate(policy, "TemperatureKD-v0", env_kwargs, seeds, progress=False), time.perf_counter() - start

    load = os.getloadavg()[0]
    serial, before = run_serially()
    print(f"serial: {before:.1f}s for {len(seeds)} episodes")

    # As `kd-gym evaluate --workers 2` runs: evaluate() starts Ray while this process runs the first episode.
    start = time.perf_counter()
    cold = evaluate(policy, "TemperatureKD-v0", env_kwargs, seeds, progress=False, workers=args.workers)
    cold_seconds = time.perf_counter() - start
    start_ray(ray_workers(args.workers))  # as evaluate() starts it: this process is one of the workers
    try:
        start = time.perf_counter()
        parallel = evaluate(policy, "TemperatureKD-v0", env_kwargs, seeds, progress=False, workers=args.workers)
        started_seconds = time.perf_counter() - start
        start = time.perf_counter()  # the same Ray again: its workers have run an episode (as in a study)
        warm = evaluate(policy, "TemperatureKD-v0", env_kwargs, seeds, progress=False, workers=args.workers)
        warm_seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    # The serial run again: the machine's speed drifts over minutes; the reference is the mean of the two.
    again, after = run_serially()
    serial_seconds = (before + after) / 2
    print(f"serial again: {after:.1f}s; the reference: their mean, {serial_seconds:.1f}s")
    print(f"{args.workers} workers (this process and {ray_workers(args.workers)} Ray worker): {cold_seconds:.1f}s with "
          f"Ray's start, {started_seconds:.1f}s from a started Ray, {warm_seconds:.1f}s from a Ray whose workers "
          "have run episodes")  # fmt: skip
    # Other jobs on the machine take cores from the workers: the load says how many were free.
    print(f"\npolicy={args.policy} epochs={args.epochs or 'default'} episodes={len(seeds)} workers={args.workers} "
          f"cores={os.cpu_count()} load average before={load:.2f} after={os.getloadavg()[0]:.2f}")  # fmt: skip
    same = cold == parallel == warm == serial == again
    print(f"ratio serial/parallel = {serial_seconds / cold_seconds:.2f} with Ray's start, "
          f"{serial_seconds / started_seconds:.2f} from a started Ray, {serial_seconds / warm_seconds:.2f} from a Ray "
          f"whose workers have run episodes; identical episodes: {same}")  # fmt: skip
    if not same:
        raise RuntimeError("bench parallel: the Ray workers' episodes differ from the serial ones")
    ideal = serial_seconds / args.workers
    ceiling, costs = machine_ceiling(args.policy, env_kwargs, seeds[:4], args.workers)
    print(f"where the time goes: {started_seconds - ideal:.1f}s from a started Ray above the ideal {ideal:.1f}s "
          f"(serial / workers); a fresh process running a worker's calls: torch import {costs[0]:.1f}s, the "
          f"episode's other imports {costs[1]:.1f}s, first episode {costs[2]:.1f}s, then {costs[3]:.1f}s, "
          f"{costs[4]:.1f}s and {costs[5]:.1f}s (the first's extra: torch's lazy import of torch._dynamo by the "
          "optimizer, the task's load)")  # fmt: skip
    print(f"this machine's ceiling: {args.workers} plain processes running episodes at once give {ceiling:.2f}x one "
          f"process's speed (each episode is slower beside the others: shared caches and memory); the figures are "
          f"{serial_seconds / cold_seconds / ceiling:.0%} and {serial_seconds / started_seconds / ceiling:.0%} of "
          "it")  # fmt: skip
    return [Figure(f"parallel - serial / {args.workers} workers with Ray's start", serial_seconds / cold_seconds,
                   1.5, at_least=True),
            Figure(f"parallel - serial / {args.workers} workers from a started Ray",
                   serial_seconds / started_seconds, 1.8, at_least=True)]  # fmt: skip
