"""Benchmark N2NCompress-v0: one episode against training the same student with the same budget in a
plain loop, and the speed-up of a cached repeat.

The plain loop is the distillation run a user would write (teacher logits on the training set
computed once, as the env does per task; CE + L2 on logits; validation accuracy at the end). Both run
in this process, interleaved and repeated; the ratio of medians is what to read.

    kd-gym bench n2n                 # the deep default (1-D ResNet-14), every layer kept at 1/2, 1/4, ...
    kd-gym bench n2n --task mnist1d --repeats 5 --epochs 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from torch.nn import functional as F

import kd_envs  # noqa: F401
from agents.common.benchmarks import Figure
from kd_envs.losses import logit_l2_loss
from kd_envs.tasks import accuracy, predict_logits, steps_per_epoch
from kd_envs.tasks.architecture import build_architecture


def plain_loop(task, arch, teacher_logits, epochs: int, batch_size: int, lr: float, seed: int) -> tuple[float, float]:
    """Train ``arch`` with CE + L2(logits) from scratch; returns (seconds, validation accuracy)."""
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    student = build_architecture(arch, generator)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    data = task.data
    per_epoch = steps_per_epoch(len(data.y_train), batch_size)
    for _ in range(epochs):
        order = torch.randperm(len(data.y_train), generator=generator)
        for step in range(per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            logits = student(data.x_train[idx])
            loss = logit_l2_loss(logits, teacher_logits[idx]) + F.cross_entropy(logits, data.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    student.eval()
    return time.perf_counter() - start, accuracy(student, data.x_val, data.y_val)


def episode(env, actions, seed: int | None) -> tuple[float, dict]:
    start = time.perf_counter()
    env.reset(seed=seed)
    for a in actions:
        _, _, terminated, _, info = env.step(np.int64(a))
        if terminated:
            break
    return time.perf_counter() - start, info


def main(argv: list[str] | None = None, prog: str | None = None) -> list[Figure]:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=formatter)
    parser.add_argument("--task", default="mnist1d-resnet")
    parser.add_argument("--epochs", type=int, default=5, help="candidate budget (the env's default: 5)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    # Student memory only: every first episode below really trains.
    env = gym.make("N2NCompress-v0", task=args.task, epochs=args.epochs, cache_students=False)
    n2n = env.unwrapped
    n = n2n.num_layers
    factors = n2n.shrink_factors
    # Keep every layer; shrink to 0.5, 0.25, 0.5, ... of the teacher's width.
    shrink = [factors.index(0.5) if i % 2 == 0 else factors.index(0.25) for i in range(n)]
    actions = [0] * n + shrink
    config = n2n.distill_config.training
    teacher_logits = predict_logits(n2n.task.teacher, n2n.task.data.x_train)

    plain, first, repeat = [], [], []
    for r in range(args.repeats):
        seconds, info = episode(env, actions, seed=r)  # a new seed: a new training seed, nothing cached
        assert not info["cached"], "the first episode of a seed must train"
        first.append(seconds)
        seconds, cached_info = episode(env, actions, seed=None)  # same training seed: from the cache
        assert cached_info["cached"] and cached_info["accuracy"] == info["accuracy"]
        repeat.append(seconds)
        arch = n2n.student_architecture()
        seconds, acc = plain_loop(n2n.task, arch, teacher_logits, config.epochs, config.batch_size, config.lr,
                                  seed=info["training_seed"])  # fmt: skip
        plain.append(seconds)
        print(f"repeat {r}: plain {plain[-1]:.2f} s (val acc {acc:.3f}), episode {first[-1]:.2f} s "
              f"(val acc {info['accuracy']:.3f}), cached repeat {repeat[-1] * 1e3:.1f} ms")  # fmt: skip

    p, e, c = statistics.median(plain), statistics.median(first), statistics.median(repeat)
    batches = steps_per_epoch(len(n2n.task.data.y_train), config.batch_size)
    print(f"\ntask {args.task}, student {info['architecture_summary']} ({info['student_parameters']} params, "
          f"C = {info['compression']:.3f}), {config.epochs} epochs x {batches} batches of {config.batch_size}; "
          f"medians of {args.repeats}:")  # fmt: skip
    print(f"  plain loop            {p:8.3f} s")
    print(f"  env episode           {e:8.3f} s   ratio to plain {e / p:.3f}")
    print(f"  cached repeat episode {c * 1e3:8.2f} ms  speed-up over a first episode x{e / c:,.0f}")
    return [Figure("n2n - first episode / cached repeat", e / c, 100, at_least=True)]


if __name__ == "__main__":
    main()
