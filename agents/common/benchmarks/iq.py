"""Speed of IQ against SB3's DQN, and the interference wrapper's overhead, measured in one process.

    kd-gym bench iq                 # 10k training steps per agent, 3 repeats
    kd-gym bench iq --steps 3000 --repeats 1

1. Training steps per second of IQ and of SB3's DQN on InterferenceCartPole-v0 with the same
   settings (iq.yml / dqn.yml: same budget, train_freq, gradient steps, net) under the study's cyclic
   drift of the conflicting contexts (visible); IQ's extra cost is its k-means per step (each state
   encoded and assigned once, when observed), k heads and the distillation term. Ratio = IQ / DQN.
2. Environment steps per second (random actions, same seed) of CartPole-v1 against
   InterferenceCartPole-v0 plain, cyclic and smooth: the overhead of the context wrapper, TimeLimit
   and checker included. Ratio = raw / wrapped time per step.
Runs alternate and the median is reported, since the machine is shared.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

import kd_envs  # noqa: F401  (registers the environments)
from agents.common.benchmarks import Figure
from agents.common.interference import STUDY_SETTINGS
from agents.common.training import build_agent

ENV_ID = "InterferenceCartPole-v0"


def training_speed(algo: str, steps: int, seed: int) -> float:
    model, _ = build_agent(algo, ENV_ID, seed, STUDY_SETTINGS["conflict_visible"]["env_kwargs"])
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - start)


def env_speed(env_id: str, kwargs: dict, steps: int, seed: int) -> float:
    env = gym.make(env_id, **kwargs)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def main(argv: list[str] | None = None, prog: str | None = None) -> list[Figure]:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=formatter)
    parser.add_argument("--steps", type=int, default=10_000, help="training steps per agent")
    parser.add_argument("--env-steps", type=int, default=50_000, help="env steps per env speed measurement")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    speeds: dict[str, list[float]] = {"dqn": [], "iq": []}
    for repeat in range(args.repeats):
        for algo in speeds:
            speeds[algo].append(training_speed(algo, args.steps, seed=repeat))
    dqn, iq = (float(np.median(speeds[a])) for a in ("dqn", "iq"))
    print(f"training on {ENV_ID} (conflicting cyclic drift), {args.steps} steps, median of {args.repeats}:")
    print(f"  SB3 DQN {dqn:8.0f} steps/s")
    print(f"  IQ      {iq:8.0f} steps/s   ratio IQ/DQN = {iq / dqn:.3f}")

    settings = {"CartPole-v1 (raw)": ("CartPole-v1", {}), "plain": (ENV_ID, {}),
                "cyclic": (ENV_ID, STUDY_SETTINGS["cyclic"]["env_kwargs"]),
                "smooth": (ENV_ID, {"drift": "smooth", "phase_length": 10_000, "phase_unit": "steps"})}  # fmt: skip
    env_speeds: dict[str, list[float]] = {name: [] for name in settings}
    for repeat in range(args.repeats):
        for name, (env_id, kwargs) in settings.items():
            env_speeds[name].append(env_speed(env_id, kwargs, args.env_steps, seed=repeat))
    raw = float(np.median(env_speeds["CartPole-v1 (raw)"]))
    print(f"env steps (random actions), {args.env_steps} steps, median of {args.repeats}:")
    for name, values in env_speeds.items():
        speed = float(np.median(values))
        print(f"  {name:18s} {speed:9.0f} steps/s   overhead (raw / this) = {raw / speed:.3f}")
    smooth = raw / float(np.median(env_speeds["smooth"]))
    return [Figure("iq - IQ / SB3 DQN training steps per second", iq / dqn, 0.9, at_least=True),
            Figure("iq - smooth drift step / raw CartPole step", smooth, 1.3, at_least=False)]


if __name__ == "__main__":
    main()
