"""Benchmark TemperatureKD-v0 against the same distillation run as a plain training loop.

Both run in this process on the same task, batch size, epochs, temperature (constant, T=4) and
student initialisation, interleaved and repeated; the ratio of medians is what to read (machines are
noisy, absolute times are not comparable across machines). The figure (the default episode against
the hand loop with the same reward pass) is the median of paired ratios: in each repeat the two run
back to back twice, in mirrored order (hand, env, env, hand). Two hand-written loops: the plain one
(the training step only), and one that also measures the student on the env's held-out reward set
after every step, the work the default reward itself needs: the env against the second is the env's
own overhead.

    kd-gym bench temperature_kd            # full default episodes (the task's schedule)
    kd-gym bench temperature_kd --epochs 5 --repeats 3
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from torch.nn import functional as F

import kd_envs  # noqa: F401
from agents.common.benchmarks import Figure
from kd_envs.envs.temperature_kd import FEATURE_LOSSES, REWARD_MEASURES, TemperatureKDEnv, temperature_to_action
from kd_envs.losses import kd_loss
from kd_envs.tasks import make_task, predict_logits, steps_per_epoch


def plain_loop(task, teacher_logits, batch_size: int, epochs: int, temperature: float, seed: int,
               ce_weight: float = 0.1, kd_weight: float = 0.9,
               reward_set: tuple[torch.Tensor, torch.Tensor] | None = None):  # fmt: skip
    """The distillation run without an environment: seconds and the student's test accuracy.
    ``teacher_logits`` on the training set are computed once beforehand, as the env does on creation.
    With a ``reward_set`` (inputs, labels), the student's accuracy on it is measured after every step
    (one eval-mode pass), the work the held-out reward does each step."""
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    student = task.build_student(generator)
    optimizer = torch.optim.Adam(student.parameters(), lr=task.config.student_training.lr)
    data = task.data
    per_epoch = steps_per_epoch(len(data.y_train), batch_size)
    for _ in range(epochs):
        order = torch.randperm(len(data.y_train), generator=generator)
        for step in range(per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            logits = student(data.x_train[idx])
            loss = ce_weight * F.cross_entropy(logits, data.y_train[idx]) + kd_weight * kd_loss(
                logits, teacher_logits[idx], temperature
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if reward_set is not None:
                with torch.no_grad():
                    student.eval()
                    (student(reward_set[0]).argmax(1) == reward_set[1]).sum().item()
                    student.train()
    accuracy = (predict_logits(student, data.x_test).argmax(1) == data.y_test).float().mean().item()
    return time.perf_counter() - start, accuracy


def env_episode(env, temperature: float, seed: int):
    """One full episode at a constant temperature: seconds (reset included), steps, test accuracy."""
    action = np.full(env.action_space.shape, temperature_to_action(temperature, 6.0), dtype=np.float32)
    start = time.perf_counter()
    env.reset(seed=seed)
    steps = 0
    while True:
        _, _, terminated, truncated, info = env.step(action)
        steps += 1
        if terminated or truncated:
            break
    return time.perf_counter() - start, steps, info["student_test_accuracy"]


def main(argv: list[str] | None = None, prog: str | None = None) -> list[Figure]:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=formatter)
    parser.add_argument("--task", default="mnist1d-cloud-edge")
    parser.add_argument("--epochs", type=int, default=None, help="default: the task's schedule")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the task's schedule")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reward-interval", type=int, default=5, help="the held-out shortcut's k, also timed")
    parser.add_argument("--no-features", dest="features", action="store_false",
                        help="skip timing feature distillation (feature_weight=1 with each feature loss)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = make_task(args.task, progress=True)
    args.epochs = args.epochs or task.config.student_training.epochs
    args.batch_size = args.batch_size or task.config.student_training.batch_size
    settings = {m: {"reward_measure": m} for m in REWARD_MEASURES}
    settings[f"heldout, reward_interval={args.reward_interval}"] = {"reward_measure": "heldout",
                                                                   "reward_interval": args.reward_interval}
    for loss in FEATURE_LOSSES if args.features else ():  # the cost of feature_weight > 0 (default measure)
        settings[f"heldout, feature_loss={loss}"] = {"feature_weight": 1.0, "feature_loss": loss}
    envs = {
        name: gym.make("TemperatureKD-v0", task=args.task, epochs=args.epochs, batch_size=args.batch_size, **kwargs)
        for name, kwargs in settings.items()
    }
    teacher_logits = predict_logits(task.teacher, task.data.x_train)
    default = inspect.signature(TemperatureKDEnv).parameters["reward_measure"].default
    # The hand loop that also does the default reward's work: the env's own reward set, measured each step.
    reward_set = (envs[default].unwrapped.reward_x, envs[default].unwrapped.reward_y)
    plain_loop(task, teacher_logits, args.batch_size, 1, 4.0, seed=0)  # warm-up, not timed
    times: dict[str, list[float]] = {"plain": [], "hand": [], **{m: [] for m in envs}}
    # The figure's pairs: the default episode and the hand loop with the same reward pass, one right
    # after the other, twice per repeat in mirrored order (hand, env, env, hand).
    pairs: list[float] = []
    steps = 0
    for repeat in range(args.repeats):
        seconds, accuracy = plain_loop(task, teacher_logits, args.batch_size, args.epochs, 4.0, seed=repeat)
        times["plain"].append(seconds)
        print(f"repeat {repeat}: plain loop {seconds:.2f}s (student test acc {accuracy:.4f})", end="")
        pair: dict[str, list[float]] = {"hand": [], "env": []}
        for side in ("hand", "env", "env", "hand"):
            if side == "hand":
                seconds, _ = plain_loop(task, teacher_logits, args.batch_size, args.epochs, 4.0, seed=repeat,
                                        reward_set=reward_set)  # fmt: skip
            else:
                seconds, steps, accuracy = env_episode(envs[default], 4.0, seed=repeat)
            pair[side].append(seconds)
        times["hand"] += pair["hand"]
        times[default] += pair["env"]
        pairs += [e / h for e, h in zip(pair["env"], pair["hand"])]
        print(f" | hand loop with the reward pass {pair['hand'][0]:.2f}s, {pair['hand'][1]:.2f}s | env[{default}] "
              f"{pair['env'][0]:.2f}s, {pair['env'][1]:.2f}s (acc {accuracy:.4f})", end="")  # fmt: skip
        for measure, env in envs.items():
            if measure == default:
                continue
            seconds, steps, accuracy = env_episode(env, 4.0, seed=repeat)
            times[measure].append(seconds)
            print(f" | env[{measure}] {seconds:.2f}s (acc {accuracy:.4f})", end="")
        print()
    plain = statistics.median(times["plain"])
    print(f"\ntask={args.task} epochs={args.epochs} batch_size={args.batch_size} threads={args.threads} "
          f"steps/episode={steps} repeats={args.repeats}")  # fmt: skip
    hand = statistics.median(times["hand"])
    print(f"plain loop: {plain:.2f}s per run (median); with the held-out reward pass each step: {hand:.2f}s")
    for measure in envs:
        t = statistics.median(times[measure])
        print(f"env reward_measure={measure:8s}: {t:.2f}s per episode, {steps / t:,.0f} steps/s, "
              f"ratio env/plain = {t / plain:.3f} ({(t / plain - 1) * 100:+.1f}%)")  # fmt: skip
    print(f"default ({default}): ratio env/plain = {statistics.median(times[default]) / plain:.2f}")
    figure = Figure.of_repeats(f"temperature_kd - default ({default}) env / hand loop with the same reward pass",
                               pairs, 1.05, at_least=False)  # fmt: skip
    print(f"default ({default}): ratio env/hand loop with the same reward pass = {figure.ratio:.3f} (median of "
          f"{len(pairs)} pairs run back to back; middle half {figure.spread[0]:.3f}-{figure.spread[1]:.3f}, all "
          f"{', '.join(f'{r:.3f}' for r in pairs)})")  # fmt: skip
    return [figure]


if __name__ == "__main__":
    main()
