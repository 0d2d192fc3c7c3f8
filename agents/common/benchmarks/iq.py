"""Speed of IQ against SB3's DQN, and the interference wrapper's overhead, measured in one process.

    kd-gym bench iq                 # 10k training steps per agent, 4 repeats
    kd-gym bench iq --steps 3000 --repeats 2

1. Training steps per second of IQ and of SB3's DQN on InterferenceCartPole-v0 with the same
   settings (iq.yml / dqn.yml: same budget, train_freq, gradient steps, net) under the study's cyclic
   drift of the conflicting contexts (visible); IQ's extra cost is its k-means per step (each state
   encoded and assigned once, when observed), k heads and the distillation term. Ratio = IQ / DQN.
2. Environment steps per second (random actions, same seed) of CartPole-v1 against
   InterferenceCartPole-v0 plain, cyclic and smooth: the overhead of the context wrapper, TimeLimit
   and checker included. Ratio = wrapped / raw time per step.
Runs alternate, and each figure is the median of paired ratios (the two sides run one right after the
other: training runs in alternating order, env steps in turns of ``--chunk`` steps), since the machine
is shared and drifts.
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


def env_seconds(env: gym.Env, actions: list) -> float:
    """Seconds for ``actions`` on ``env`` (reset where an episode ends), the env carrying on from before."""
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return time.perf_counter() - start


def main(argv: list[str] | None = None, prog: str | None = None) -> list[Figure]:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=formatter)
    parser.add_argument("--steps", type=int, default=10_000, help="training steps per agent")
    parser.add_argument("--repeats", type=int, default=4, help="training runs per agent (pairs, in alternating order)")
    parser.add_argument("--env-steps", type=int, default=50_000, help="env steps per env speed measurement")
    parser.add_argument("--chunk", type=int, default=1_000, help="env steps per turn: the envs take turns")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    speeds: dict[str, list[float]] = {"dqn": [], "iq": []}
    for repeat in range(args.repeats):
        for algo in ("dqn", "iq") if repeat % 2 == 0 else ("iq", "dqn"):
            speeds[algo].append(training_speed(algo, args.steps, seed=repeat))
    training = Figure.of_repeats("iq - IQ / SB3 DQN training steps per second",
                                 [i / d for i, d in zip(speeds["iq"], speeds["dqn"])], 0.9, at_least=True)  # fmt: skip
    dqn, iq = (float(np.median(speeds[a])) for a in ("dqn", "iq"))
    print(f"training on {ENV_ID} (conflicting cyclic drift), {args.steps} steps, median of {args.repeats}:")
    print(f"  SB3 DQN {dqn:8.0f} steps/s")
    print(f"  IQ      {iq:8.0f} steps/s   ratio IQ/DQN = {training.ratio:.3f} (median of the {args.repeats} pairs: "
          f"{', '.join(f'{r:.3f}' for r in training.repeats)})")  # fmt: skip

    settings = {"CartPole-v1 (raw)": ("CartPole-v1", {}), "plain": (ENV_ID, {}),
                "cyclic": (ENV_ID, STUDY_SETTINGS["cyclic"]["env_kwargs"]),
                "smooth": (ENV_ID, {"drift": "smooth", "phase_length": 10_000, "phase_unit": "steps"})}  # fmt: skip
    envs = {name: gym.make(env_id, **kwargs) for name, (env_id, kwargs) in settings.items()}
    rng = np.random.default_rng(0)
    for env in envs.values():
        env.reset(seed=0)
    # The envs take turns, a chunk of steps each (the same random actions), so that the machine's drifts
    # fall on all of them alike; each turn's ratio wrapped / raw is one pair.
    seconds: dict[str, list[float]] = {name: [] for name in envs}
    for turn in range(max(args.env_steps // args.chunk, 1)):
        actions = rng.integers(0, 2, args.chunk).tolist()
        names = list(envs) if turn % 2 == 0 else list(reversed(envs))
        for name in names:
            seconds[name].append(env_seconds(envs[name], actions))
    for env in envs.values():
        env.close()
    raw = seconds["CartPole-v1 (raw)"]
    print(f"env steps (random actions), {args.env_steps} steps in turns of {args.chunk}, median over the turns:")
    for name, values in seconds.items():
        overhead = float(np.median([v / r for v, r in zip(values, raw)]))
        print(f"  {name:18s} {args.chunk / float(np.median(values)):9.0f} steps/s   overhead (this / raw) = "
              f"{overhead:.3f}")  # fmt: skip
    smooth = Figure.of_repeats("iq - smooth drift step / raw CartPole step",
                               [v / r for v, r in zip(seconds["smooth"], raw)], 1.3, at_least=False)  # fmt: skip
    if smooth.spread is not None:
        print(f"  smooth drift: middle half of the {len(smooth.repeats)} turns' ratios {smooth.spread[0]:.3f}-"
              f"{smooth.spread[1]:.3f}")  # fmt: skip
    return [training, smooth]


if __name__ == "__main__":
    main()
