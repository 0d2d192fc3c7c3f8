"""Training a compressed student from its :class:`~kd_envs.tasks.architecture.Architecture` by
distillation from the task's teacher, with a memory and disk cache of the results.

The student learns from scratch with ``ce_weight`` * cross-entropy on the labels + ``kd_weight`` *
the L2 distance between its logits and the teacher's (N2N's loss is the L2 term alone: ``ce_weight=0``).
An evaluation is a pure function of (task, architecture, :class:`DistillConfig`, seed), so its result
is cached under a hash of exactly those: a repeated architecture costs nothing. A result on disk is
written with its sha256 (:mod:`kd_envs.tasks.cache`): one that is missing, truncated, altered or cached
before checksums is reported by path and trained again, and processes that evaluate the same student at
once train it once.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from kd_envs.losses import logit_l2_loss
from kd_envs.tasks.architecture import Architecture, build_architecture
from kd_envs.tasks.cache import CorruptCacheError, CorruptCacheWarning, load_or_build, read_verified, write_verified
from kd_envs.tasks.datasets import augment_batch
from kd_envs.tasks.task import Task, config_hash, default_cache_dir
from kd_envs.tasks.training import TrainConfig, accuracy, predict_logits, resolve_device, steps_per_epoch


@dataclass(frozen=True)
class DistillConfig:
    """How a candidate student is trained: ``training`` (epochs, batch, optimiser, rate) and the
    weights of the two loss terms."""

    training: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, batch_size=256, lr=1e-2))
    kd_weight: float = 1.0
    ce_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("kd_weight", "ce_weight"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"DistillConfig.{name}={value!r}: expected a non-negative number")
        if self.kd_weight == 0 and self.ce_weight == 0:
            raise ValueError("DistillConfig: kd_weight and ce_weight are both 0, nothing to train on")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class StudentEvaluator:
    """Trains and scores students of one task; results are kept in memory and (with ``persist``) on
    disk under ``<cache_dir>/students/<key>.json`` (default cache dir: the teachers').

    A result holds ``val_accuracy`` (what search rewards use), ``test_accuracy`` (for the final report
    only), ``parameters``, ``train_seconds`` and ``cached`` (whether this call trained nothing).

    Students train on ``device`` (the task's data and teacher are moved there once; weights and batch orders
    are drawn from CPU generators, alike on every device). A result trained off the CPU is cached under a
    key of its own: another device's kernels give other last bits, and a CPU run must never read them.
    """

    def __init__(
        self, task: Task, cache_dir: str | Path | None = None, persist: bool = True, device: str | torch.device = "cpu"
    ):
        self.device = resolve_device(device)
        self.task = task.to(self.device)
        self.cache_dir = (Path(cache_dir) if cache_dir else default_cache_dir()) if persist else None
        self._memory: dict[str, dict[str, Any]] = {}
        self._teacher_train_logits: torch.Tensor | None = None
        self.teacher_val_accuracy = accuracy(self.task.teacher, self.task.data.x_val, self.task.data.y_val)

    def key(self, arch: Architecture, config: DistillConfig, seed: int) -> str:
        parts = [self.task.teacher_record["key"], self.task.data_key(), arch.to_dict(), config.to_dict(), seed]
        if self.device.type != "cpu":  # (the CPU's keys are those of before devices existed)
            parts.append({"device": self.device.type})
        return config_hash("student", *parts)

    def cached(self, arch: Architecture, config: DistillConfig, seed: int) -> dict[str, Any] | None:
        """The result cached for these, or None; a disk file that fails its checks is reported (a
        ``CorruptCacheWarning`` naming it) and ignored."""
        key = self.key(arch, config, seed)
        try:
            return self._load(key)
        except CorruptCacheError as error:
            warnings.warn(f"{error}; not used", CorruptCacheWarning, stacklevel=2)
            return None

    def _load(self, key: str) -> dict[str, Any] | None:
        if key in self._memory:
            return self._memory[key]
        path = self._path(key)
        raw = None if path is None else read_verified(path)  # no checksum: trained again, nothing vouches for it
        if raw is None:
            return None
        try:
            result = json.loads(raw)
        except ValueError as exc:
            raise CorruptCacheError(path, f"unparsable JSON ({exc})") from exc
        missing = {"val_accuracy", "test_accuracy", "parameters"} - set(result if isinstance(result, dict) else ())
        if missing:
            raise CorruptCacheError(path, f"not a student result (lacks {sorted(missing)})")
        self._memory[key] = result
        return result

    def evaluate(
        self, arch: Architecture, config: DistillConfig, seed: int, progress: bool = False, use_cache: bool = True
    ) -> dict[str, Any]:
        """Train ``arch`` from scratch (weights and batch order from ``seed``) and score it; with
        ``use_cache=False`` it trains even when a result is cached (and replaces it)."""
        key = self.key(arch, config, seed)
        trained = []

        def load() -> dict[str, Any] | None:
            return self._load(key) if use_cache else None

        def build() -> dict[str, Any]:
            trained.append(key)
            return self._evaluate(key, arch, config, seed, progress)

        path = self._path(key)
        if path is None:  # kept in memory only: no other process can share it
            found = load()
            result = found if found is not None else build()
        else:
            result = load_or_build(path, load, build)
        return {**result, "cached": not trained}

    def _evaluate(
        self, key: str, arch: Architecture, config: DistillConfig, seed: int, progress: bool
    ) -> dict[str, Any]:
        start = time.perf_counter()
        student = self.train(arch, config, seed, progress)
        data = self.task.data
        result = {
            "architecture": arch.to_dict(),
            "parameters": arch.num_parameters(),
            "val_accuracy": accuracy(student, data.x_val, data.y_val),
            "test_accuracy": accuracy(student, data.x_test, data.y_test),
            "train_seconds": round(time.perf_counter() - start, 3),
            "seed": seed,
            "distill": config.to_dict(),
        }
        self._memory[key] = result
        path = self._path(key)
        if path is not None:
            write_verified(path, json.dumps(result).encode())
        return result

    def train(self, arch: Architecture, config: DistillConfig, seed: int, progress: bool = False) -> torch.nn.Module:
        """The trained student module (no caching: the cache keeps scores, not weights)."""
        data = self.task.data
        generator = torch.Generator().manual_seed(seed)
        student = build_architecture(arch, generator).to(self.device)
        tc = config.training
        n = len(data.y_train)
        per_epoch = steps_per_epoch(n, tc.batch_size)
        optimizer, scheduler = tc.make_optimizer(student.parameters(), per_epoch * tc.epochs)
        teacher_logits = None if data.augment else self._train_logits()
        student.train()
        for _ in tqdm(range(tc.epochs), desc="student", unit="epoch", disable=not progress):
            order = torch.randperm(n, generator=generator).to(self.device)
            for step in range(per_epoch):
                idx = order[step * tc.batch_size : (step + 1) * tc.batch_size]
                x, y = data.x_train[idx], data.y_train[idx]
                if data.augment:  # the teacher must see the same augmented inputs
                    x = augment_batch(x, generator)
                    with torch.no_grad():
                        target = self.task.teacher(x)
                else:
                    target = teacher_logits[idx]
                logits = student(x)
                loss = config.kd_weight * logit_l2_loss(logits, target)
                if config.ce_weight:
                    loss = loss + config.ce_weight * F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
        student.eval()
        return student

    def _train_logits(self) -> torch.Tensor:
        # Without augmentation the teacher's targets never change: compute them once per task.
        if self._teacher_train_logits is None:
            self._teacher_train_logits = predict_logits(self.task.teacher, self.task.data.x_train)
        return self._teacher_train_logits

    def _path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / "students" / f"{key}.json"
