"""RLKD on the seed paper's pairing, CIFAR-100 ResNet110 -> ResNet20, at smoke scale: proves the path
(CIFAR-format files read from a local folder, the ResNet teacher trained and cached, augmented batches,
RLKD trained through train_agent and evaluated against constant T=4) on a small local set.

With no --data-root it writes one: sklearn's 8x8 digits (shipped offline), upscaled to 32x32 RGB and
stored in CIFAR-100's python format (labels 0-9 of the 100). With --data-root it reads your extracted
``cifar-100-python`` folder (and takes the first --train/--test images of it).

    python scripts/rlkd_cifar_smoke.py                  # ~5 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from sklearn.datasets import load_digits

import kd_envs  # noqa: F401
from agents.common.evaluation import EVALUATION_SEEDS, run_episode
from agents.common.training import train_agent
from agents.temperature.specs import fixed_policy
from kd_envs.tasks import TASKS, count_parameters
from kd_envs.tasks.datasets import write_cifar_files


def write_digits_as_cifar100(root: Path, num_train: int, num_test: int) -> Path:
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    images = digits.images[order] * (255.0 / 16.0)  # 8x8 in [0, 16]
    big = np.kron(images, np.ones((4, 4))).astype(np.uint8)  # 32x32
    rows = np.repeat(big.reshape(len(big), 1, 1024), 3, axis=1).reshape(len(big), 3072)  # grey -> R, G, B planes
    labels = digits.target[order]
    a, b = num_train, num_train + num_test
    return write_cifar_files(root, "cifar100", (rows[:a], labels[:a]), (rows[a:b], labels[a:b]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding cifar-100-python/")
    parser.add_argument("--out", type=Path, default=Path("runs/rlkd_cifar_smoke"))
    parser.add_argument("--train", type=int, default=448, help="training + validation images (64 for validation)")
    parser.add_argument("--test", type=int, default=256)
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of one distillation episode")
    parser.add_argument("--timesteps", type=int, default=24, help="RLKD's training steps (batches)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = args.data_root
    if root is None:
        root = args.out / "data"
        if not (root / "cifar-100-python").is_dir():
            write_digits_as_cifar100(root, args.train, args.test)
    paper = TASKS["cifar100-resnet110-resnet20"].to_dict()
    task = {**paper,
            "dataset": {**paper["dataset"], "num_train": args.train - 64, "num_val": 64, "num_test": args.test},
            "teacher_training": {**paper["teacher_training"], "epochs": args.teacher_epochs}}  # fmt: skip
    env_kwargs = {"task": task, "data_root": str(root), "batch_size": 64, "epochs": args.epochs,
                  "reward_set_size": 64}  # fmt: skip
    start = time.perf_counter()
    env = gym.make("TemperatureKD-v0", **env_kwargs)  # trains and caches the ResNet110 teacher on first use
    teacher_s = time.perf_counter() - start
    base = env.unwrapped
    print(f"teacher ResNet110 ({count_parameters(base.task.teacher):,} params): test accuracy "
          f"{base.task.teacher_test_accuracy:.3f} ({teacher_s:.0f} s incl. data); student ResNet20, "
          f"{base.max_steps} batches of 64 per episode")  # fmt: skip

    start = time.perf_counter()
    trained = train_agent("rlkd", "TemperatureKD-v0", 0, args.out / "rlkd", args.timesteps, env_kwargs,
                          hyperparams={"n_steps": 8, "batch_size": 4}, progress_bar=True)  # fmt: skip
    train_s = time.perf_counter() - start
    seed = EVALUATION_SEEDS[0]
    results = {"teacher_test_accuracy": base.task.teacher_test_accuracy, "teacher_seconds": teacher_s,
               "rlkd_training_steps": args.timesteps, "rlkd_training_seconds": train_s}  # fmt: skip
    for name, policy in (("rlkd", trained.model), ("constant_t4", fixed_policy("constant_t4"))):
        start = time.perf_counter()
        episode = run_episode(env, policy, seed)
        results[name] = {k: episode[k] for k in ("student_test_accuracy", "temperature_mean", "temperature_std")}
        results[name]["seconds"] = time.perf_counter() - start
        print(f"{name}: student test accuracy {episode['student_test_accuracy']:.3f}, temperature "
              f"{episode['temperature_mean']:.2f} ± {episode['temperature_std']:.2f} "
              f"({results[name]['seconds']:.0f} s)")  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
