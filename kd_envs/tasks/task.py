"""A distillation task: dataset + trained teacher + student architecture, from a small config.

Teachers are trained by our own code on first use and cached on disk, keyed by a hash of their
config and seed, together with their test accuracy. The generated dataset is cached the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kd_envs.tasks.datasets import DatasetConfig, DatasetSplits, load_dataset
from kd_envs.tasks.models import ModelConfig, build_model, count_parameters
from kd_envs.tasks.training import TrainConfig, accuracy, train_classifier

CACHE_ENV = "KD_GYM_CACHE"
# Bump when a change to the code would change what a cached teacher or dataset holds.
CACHE_VERSION = 1


@dataclass(frozen=True)
class TaskConfig:
    """Dataset, teacher (architecture, training, seed) and student architecture."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    teacher: ModelConfig = field(default_factory=lambda: ModelConfig("cnn1d", width=64, depth=3))
    student: ModelConfig = field(default_factory=lambda: ModelConfig("cnn1d", width=8, depth=2))
    teacher_training: TrainConfig = field(default_factory=TrainConfig)
    teacher_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"TaskConfig got unknown fields {sorted(unknown)}; expected {sorted(known)}")
        parts = {"dataset": DatasetConfig, "teacher": ModelConfig, "student": ModelConfig,
                 "teacher_training": TrainConfig}  # fmt: skip
        kwargs = {k: (parts[k](**v) if k in parts and isinstance(v, dict) else v) for k, v in d.items()}
        return cls(**kwargs)


TASKS: dict[str, TaskConfig] = {
    # The default: nothing to download, a teacher in about half a minute on a laptop CPU.
    "mnist1d": TaskConfig(),
    # A deeper teacher for layer removal (N2NCompress-v0): VGG-style, 6 convs in 3 pooled stages.
    "mnist1d-vgg": TaskConfig(teacher=ModelConfig("vgg", width=16, depth=3)),
    "digits": TaskConfig(
        dataset=DatasetConfig("digits"),
        teacher=ModelConfig("mlp", width=256, depth=2),
        student=ModelConfig("mlp", width=16, depth=1),
        teacher_training=TrainConfig(epochs=40, batch_size=64, lr=1e-3),
    ),
    # The seed paper's pairing; needs CIFAR's python-format files in a local folder.
    "cifar100-resnet110-resnet20": TaskConfig(
        dataset=DatasetConfig("cifar100"),
        teacher=ModelConfig("resnet", depth=110),
        student=ModelConfig("resnet", depth=20),
        teacher_training=TrainConfig(epochs=240, batch_size=64, optimizer="sgd", lr=0.05, weight_decay=5e-4),
    ),
    "cifar10-resnet56-resnet20": TaskConfig(
        dataset=DatasetConfig("cifar10"),
        teacher=ModelConfig("resnet", depth=56),
        student=ModelConfig("resnet", depth=20),
        teacher_training=TrainConfig(epochs=240, batch_size=64, optimizer="sgd", lr=0.05, weight_decay=5e-4),
    ),
}


def resolve_task(task: str | TaskConfig | dict[str, Any]) -> TaskConfig:
    if isinstance(task, TaskConfig):
        return task
    if isinstance(task, dict):
        return TaskConfig.from_dict(task)
    if task not in TASKS:
        raise ValueError(f"task={task!r}: expected one of {sorted(TASKS)}, a TaskConfig or its dict")
    return TASKS[task]


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kd_gym")


def config_hash(*parts: Any) -> str:
    blob = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def atomic_write(path: Path, write, mode: str = "wb") -> None:
    """Write ``path`` through ``write(file)`` (a file opened with ``mode``) into a temporary file, then
    rename it: a reader, or an interrupt, never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Task:
    """A ready task: the data, the trained teacher (frozen, eval mode) and what is known of it."""

    config: TaskConfig
    data: DatasetSplits
    teacher: nn.Module
    teacher_record: dict[str, Any]

    @property
    def teacher_test_accuracy(self) -> float:
        return float(self.teacher_record["test_accuracy"])

    def build_student(self, generator: torch.Generator | None = None) -> nn.Module:
        return build_model(self.config.student, self.data.input_shape, self.data.num_classes, generator)


def load_task_data(config: DatasetConfig, cache_dir: Path | None = None) -> DatasetSplits:
    """The dataset, from the disk cache when a generated one (mnist1d) was made before."""
    if config.name != "mnist1d":  # digits and CIFAR are read from files already
        return load_dataset(config)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_dir / "datasets" / f"{config.name}-{config_hash(dataclasses.asdict(config))}.npz"
    if path.is_file():
        with np.load(path) as z:
            return DatasetSplits(**{k: torch.from_numpy(z[k]) for k in z.files if k != "num_classes"},
                                 num_classes=int(z["num_classes"]))  # fmt: skip
    data = load_dataset(config)
    arrays = {k: v.numpy() for k, v in dataclasses.asdict(data).items() if isinstance(v, torch.Tensor)}
    atomic_write(path, lambda f: np.savez(f, num_classes=data.num_classes, **arrays))
    return data


def load_or_train_teacher(
    config: TaskConfig, data: DatasetSplits, cache_dir: Path | None = None, progress: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """The task's teacher from the cache, or trained now and cached. Returns (model, record)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key_parts = {
        "dataset": dataclasses.asdict(config.dataset) | {"root": None},  # where CIFAR lies is no part of it
        "teacher": dataclasses.asdict(config.teacher),
        "training": dataclasses.asdict(config.teacher_training),
        "seed": config.teacher_seed,
    }
    key = config_hash(key_parts)
    weights_path = cache_dir / "teachers" / f"{key}.pt"
    record_path = cache_dir / "teachers" / f"{key}.json"
    generator = torch.Generator().manual_seed(config.teacher_seed)
    model = build_model(config.teacher, data.input_shape, data.num_classes, generator)
    if weights_path.is_file() and record_path.is_file():
        model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        record = json.loads(record_path.read_text())
    else:
        start = time.perf_counter()
        history = train_classifier(
            model, data, config.teacher_training, generator, progress=progress, description="teacher"
        )
        record = {
            "key": key,
            "config": key_parts,
            "parameters": count_parameters(model),
            "val_accuracy": history[-1],
            "test_accuracy": accuracy(model, data.x_test, data.y_test),
            "train_seconds": round(time.perf_counter() - start, 1),
        }
        atomic_write(weights_path, lambda f: torch.save(model.state_dict(), f))
        atomic_write(record_path, lambda f: f.write(json.dumps(record, indent=2).encode()))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, record


def make_task(
    task: str | TaskConfig | dict[str, Any] = "mnist1d",
    cache_dir: str | Path | None = None,
    data_root: str | None = None,
    progress: bool = False,
) -> Task:
    """Resolve ``task`` (a name in :data:`TASKS`, a :class:`TaskConfig` or its dict), load its data
    and its teacher (trained on first use). ``data_root`` overrides the dataset's folder (CIFAR)."""
    config = resolve_task(task)
    if data_root is not None:
        config = dataclasses.replace(config, dataset=dataclasses.replace(config.dataset, root=str(data_root)))
    cache = Path(cache_dir) if cache_dir else None
    data = load_task_data(config.dataset, cache)
    teacher, record = load_or_train_teacher(config, data, cache, progress=progress)
    return Task(config, data, teacher, record)
