"""One full-scale TemperatureKD-v0 episode on a device (a GPU), timed: steps per second and the projected
time of the whole episode, so that the full-scale budgets (the seed paper's CIFAR-100 ResNet110 -> ResNet20,
240 epochs of batches of 64) can be checked the day a GPU is available.

    kd-gym bench device                                  # CIFAR-100 from $KD_GYM_CIFAR_ROOT, on cuda
    kd-gym bench device --data-root ~/data --steps 2000  # time the first 2,000 steps, project the rest
    python scripts/gpu_episode.py --device cuda:1

The teacher is trained on the same device on first use (240 epochs of ResNet110: hours on a GPU) and cached
(``$KD_GYM_CACHE``); later runs load it. The action is a constant temperature (T = 4): the env's own cost,
not a policy's. Refused with a message that says what is missing: a device this machine lacks (checked
first), a CIFAR folder that is not there.
"""

from __future__ import annotations

import argparse
import sys
import time

import gymnasium as gym
import numpy as np
import torch

import kd_envs  # noqa: F401  (registers the environments)
from kd_envs.envs.temperature_kd import temperature_to_action
from kd_envs.tasks import TASKS, Task, make_task, resolve_device, steps_per_epoch, task_or_config

FULL_SCALE = {"task": "cifar100-resnet110-resnet20", "epochs": 240, "batch_size": 64}


def timed_episode(env: gym.Env, steps: int | None, seed: int = 0) -> dict[str, float]:
    """Run ``env`` (made) from ``reset(seed)`` at T = 4 for ``steps`` steps or to the episode's end; the reset
    (the student's creation) is timed apart from the steps, and a GPU is synchronised before each clock."""
    device = env.unwrapped.options.device

    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    action = np.full(env.action_space.shape, temperature_to_action(4.0, env.unwrapped.options.action_scale),
                     dtype=np.float32)  # fmt: skip
    start = now()
    env.reset(seed=seed)
    reset_seconds = now() - start
    done, start, info = 0, now(), {}
    while steps is None or done < steps:
        _, _, terminated, truncated, info = env.step(action)
        done += 1
        if terminated or truncated:
            break
    seconds = now() - start
    return {"steps": done, "seconds": seconds, "steps_per_second": done / seconds, "reset_seconds": reset_seconds,
            "student_test_accuracy": info.get("student_test_accuracy", float("nan"))}  # fmt: skip


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=formatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:<n> or mps (cpu runs too, at CPU speed)")
    parser.add_argument("--task", default=FULL_SCALE["task"],
                        help=f"a name in {sorted(TASKS)} or a factory 'module:function' (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=FULL_SCALE["epochs"])
    parser.add_argument("--batch-size", type=int, default=FULL_SCALE["batch_size"])
    parser.add_argument("--steps", type=int, default=None, help="time only the first N steps (default: the episode)")
    parser.add_argument("--data-root", default=None, help="the folder of CIFAR's python-format files")
    parser.add_argument("--cache-dir", default=None, help="teacher and dataset cache (default $KD_GYM_CACHE)")
    args = parser.parse_args(argv)
    name = parser.prog
    try:
        device = resolve_device(args.device)  # first: a machine without the device fails in a second
    except ValueError as error:
        print(f"{name}: {error}. This benchmark times a full-scale episode on a GPU; nothing ran.", file=sys.stderr)
        return 2
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    print(f"device: {device} ({where}); task {args.task}, {args.epochs} epochs of batches of {args.batch_size}")
    try:
        task = task_or_config(args.task)
        if not isinstance(task, Task):  # a named task: its teacher trains on the device on first use
            task = make_task(task, cache_dir=args.cache_dir, data_root=args.data_root, progress=True, device=device)
    except (FileNotFoundError, ValueError) as error:  # no CIFAR folder; a task that is none
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    env = gym.make("TemperatureKD-v0", task=task, epochs=args.epochs, batch_size=args.batch_size, device=args.device,
                   reward_set_size=min(256, len(task.data.y_val)))  # fmt: skip
    per_epoch = steps_per_epoch(len(task.data.y_train), args.batch_size)
    result = timed_episode(env, args.steps)
    total = per_epoch * args.epochs
    print(f"steps: {result['steps']} of the episode's {total} in {result['seconds']:.1f} s: "
          f"{result['steps_per_second']:.1f} steps/s (reset {result['reset_seconds']:.2f} s); the whole episode "
          f"at this rate: {total / result['steps_per_second'] / 3600:.2f} h")  # fmt: skip
    if result["steps"] == total:
        print(f"student test accuracy: {result['student_test_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
