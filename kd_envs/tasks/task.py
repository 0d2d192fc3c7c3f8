"""A distillation task: dataset + trained teacher + student architecture, from a small config.

Teachers are trained by our own code on first use and cached on disk, keyed by a hash of their
config and seed, together with their test accuracy. The generated dataset is cached the same way.
Some teachers ship with the package as fixed artifacts (``kd_envs/tasks/teachers/<key>.pt``, with a
record holding their weights' sha256): a task whose teacher key has a shipped artifact loads it, checks
the hash, and never retrains, so its results replay on any machine.

Cached files cannot poison a run (:mod:`kd_envs.tasks.cache`): each is written with a sha256 sidecar and
checked on load, and a loaded teacher must have finite weights and score its recorded test accuracy.
A cached file that fails is reported by path and rebuilt; a shipped teacher that fails is an error.

A *cloud–edge* task (``transfer_size``) gives the student a labelled transfer set smaller than the
teacher's training data: the teacher (the cloud) learned from the whole training split, the student
(the edge) sees only its first ``transfer_size`` instances, and learns the rest of what the teacher
knows through distillation.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kd_envs.tasks.architecture import Architecture
from kd_envs.tasks.cache import (
    CorruptCacheError,
    UnverifiedCacheError,
    load_or_build,
    read_verified,
    write_sidecar,
    write_verified,
)
from kd_envs.tasks.cache import atomic_write as atomic_write  # lived here first; its importers still find it
from kd_envs.tasks.datasets import DatasetConfig, DatasetSplits, load_dataset
from kd_envs.tasks.models import (
    ModelConfig,
    architecture_of,
    architecture_of_module,
    build_model,
    build_seeded,
    count_parameters,
)
from kd_envs.tasks.training import TrainConfig, accuracy, resolve_device, train_classifier

CACHE_ENV = "KD_GYM_CACHE"
# Bump when a change to the code would change what a cached teacher or dataset holds.
CACHE_VERSION = 1
# Teachers shipped with the package, by teacher key (see :func:`teacher_key`).
SHIPPED_TEACHERS_DIR = Path(__file__).parent / "teachers"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskConfig:
    """Dataset, teacher (architecture, training, seed) and student architecture."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    teacher: ModelConfig = field(default_factory=lambda: ModelConfig("cnn1d", width=64, depth=3))
    student: ModelConfig = field(default_factory=lambda: ModelConfig("cnn1d", width=8, depth=2))
    teacher_training: TrainConfig = field(default_factory=TrainConfig)
    teacher_seed: int = 0
    # The student's labelled transfer set: the first ``transfer_size`` instances of the training split
    # (None: all of it). A subset, not a separate draw, so the teacher, its validation and test splits
    # and its shipped artifact are shared with the full-data task; the edge's data is part of the cloud's.
    transfer_size: int | None = None
    # The student's default schedule in TemperatureKD-v0 (epochs, batch size, Adam's rate), which its
    # kwargs override one by one.
    student_training: TrainConfig = field(default_factory=TrainConfig)
    # The edge's own data, when it is not a subset of the teacher's: the student's transfer set (its first
    # ``transfer_size`` training instances), validation and test splits come from this draw, while the
    # teacher learned from ``dataset`` (e.g. a noisier sensor than the cloud's: ``DatasetConfig(generator=
    # {"corr_noise_scale": 0.5})``). None: the edge's data is part of the cloud's.
    edge_dataset: DatasetConfig | None = None

    def __post_init__(self) -> None:
        if self.transfer_size is not None and (
            not isinstance(self.transfer_size, int) or isinstance(self.transfer_size, bool) or self.transfer_size < 1
        ):
            raise ValueError(f"TaskConfig.transfer_size={self.transfer_size!r}: expected a positive integer or None")
        num_train = (self.edge_dataset or self.dataset).sizes()[0]
        if self.transfer_size is not None and self.transfer_size > num_train:
            raise ValueError(
                f"TaskConfig.transfer_size={self.transfer_size}: the dataset's training split has only {num_train}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["edge_dataset"] is None:  # as before the field existed: specs and hashes of older tasks unchanged
            del d["edge_dataset"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"TaskConfig got unknown fields {sorted(unknown)}; expected {sorted(known)}")
        parts = {"dataset": DatasetConfig, "teacher": ModelConfig, "student": ModelConfig,
                 "teacher_training": TrainConfig, "student_training": TrainConfig,
                 "edge_dataset": DatasetConfig}  # fmt: skip
        kwargs = {k: (parts[k](**v) if k in parts and isinstance(v, dict) else v) for k, v in d.items()}
        return cls(**kwargs)


TASKS: dict[str, TaskConfig] = {
    # TemperatureKD-v0's default (cloud–edge): the shipped 1-D CNN 64x3 teacher learned from 8,000
    # instances; the student, a 1-D CNN 32x3, has the first 1,000 of them with labels, 40 epochs of
    # batches of 64. Chosen by the sweep in scripts/temperature_kd_sweep.py (docs/studies/): there KD pays
    # and the temperature moves the result.
    "mnist1d-cloud-edge": TaskConfig(
        student=ModelConfig("cnn1d", width=32, depth=3),
        transfer_size=1000,
        student_training=TrainConfig(epochs=40, batch_size=64),
    ),
    # The first default (every instance labelled, a 1-D CNN 8x2 student): cross-entropy alone wins.
    "mnist1d": TaskConfig(),
    # N2NCompress-v0's default: a deep teacher for layer removal, a 1-D ResNet-14 (13 convs: a stem and
    # three stages of two residual blocks, 16/32/64 channels; 61,242 parameters), shipped.
    "mnist1d-resnet": TaskConfig(teacher=ModelConfig("resnet1d", width=16, depth=14)),
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
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(
            f"task={task!r}: expected one of {sorted(TASKS)}, a TaskConfig or its dict, a Task "
            "(Task.from_tensors) or its factory 'module:function'"
        )
    return TASKS[task]


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kd_gym")


def config_hash(*parts: Any) -> str:
    blob = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of named tensors' names, dtypes, shapes and bytes, in name order: the same weights give the
    same hash whatever file format or torch version wrote them."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


# The student of a task made from tensors, when it is not one of the model families: a function of no
# arguments that builds a fresh, untrained module (on the CPU); :meth:`Task.build_student` seeds its draws.
StudentFactory = Callable[[], nn.Module]
# What a task made from tensors without a factory is recorded as in a spec or an entry: it names the task
# but cannot rebuild it (:func:`task_or_config` says so).
TENSORS_RECORD_KEY = "tensors"
_FACTORY_FORM = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(eq=False)  # a task is itself: comparing its tensors and modules field by field means nothing
class Task:
    """A ready task: the data, the trained teacher (frozen, eval mode) and what is known of it.

    ``data`` is what the student sees: its training split is the transfer set (the first
    ``transfer_size`` instances); ``teacher_data`` is the dataset the teacher learned from
    (the same object when the task has no transfer size). Validation and test splits are shared, unless
    the task has an ``edge_dataset``: then ``data`` is the edge's own draw, every split of it.

    A named task (:func:`make_task`) has its ``config``; a task of your own (:meth:`from_tensors`) has
    none, and its ``student``, ``student_training``, ``name`` and ``factory`` say what the config would.
    Both kinds are used alike: ``student`` and ``student_training`` are set on either.
    """

    config: TaskConfig | None
    data: DatasetSplits
    teacher: nn.Module
    teacher_record: dict[str, Any]
    teacher_data: DatasetSplits | None = None
    student: ModelConfig | StudentFactory | None = None
    student_training: TrainConfig | None = None
    name: str | None = None
    # "module:function": a function of no arguments that returns this task; what specs and entries record.
    factory: str | None = None

    def __repr__(self) -> str:  # the dataclass's would print every tensor
        what = f"name={self.name!r}, factory={self.factory!r}" if self.config is None else f"config={self.config!r}"
        return (f"Task({what}, teacher={type(self.teacher).__name__}, {len(self.data.y_train)} training instances "
                f"of shape {self.data.input_shape}, {self.data.num_classes} classes)")  # fmt: skip

    def __post_init__(self) -> None:
        if self.teacher_data is None:
            self.teacher_data = self.data
        if self.config is not None:
            self.student, self.student_training = self.config.student, self.config.student_training
        elif self.student is None or self.student_training is None:
            raise ValueError("Task: without a config, give its student and student_training (Task.from_tensors)")

    @classmethod
    def from_tensors(
        cls,
        *,
        train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        teacher: nn.Module,
        student: ModelConfig | StudentFactory,
        transfer_size: int | None = None,
        student_training: TrainConfig | None = None,
        num_classes: int | None = None,
        name: str = "tensors",
        factory: str | None = None,
    ) -> Task:
        """A task of your own: your data, your trained teacher, your student.

        ``train``, ``val`` and ``test`` are ``(inputs, labels)`` pairs: inputs of one shape per instance
        (kept as float32 on the CPU), labels a 1-D integer tensor in ``[0, num_classes)`` (``num_classes``
        defaults to the largest label + 1). The validation split gives the envs' rewards, the test split
        the final scores. ``teacher`` is a trained module mapping a batch of inputs to logits; a frozen
        copy is kept, on the CPU, in eval mode (yours is left as it is). ``student`` is a
        :class:`~kd_envs.tasks.ModelConfig` or a function of no arguments that builds a fresh module;
        its initial weights are drawn from the episode's seed. ``transfer_size`` gives the student only
        the first instances of ``train`` (the teacher learned from all of them). ``student_training`` is
        the student's default schedule in TemperatureKD-v0 (its kwargs override it). ``factory``,
        ``"module:function"``, names a function of no arguments that returns this task: specs and
        leaderboard entries record it, and ``gym.make(..., task="module:function")`` and ``--verify``
        rebuild the task with it; without one an entry records the task's name, which cannot rebuild it.

        Everything is checked here, and an error names the argument: the splits' types, dtypes and
        shapes, finite inputs, labels in range, and one forward pass of the teacher and of a student on
        two training instances, each giving ``(2, num_classes)`` finite logits.
        """
        where = "Task.from_tensors"
        splits = {arg: _checked_split(where, arg, value) for arg, value in (("train", train), ("val", val),
                                                                            ("test", test))}  # fmt: skip
        shape = tuple(splits["train"][0].shape[1:])
        for arg in ("val", "test"):
            if tuple(splits[arg][0].shape[1:]) != shape:
                raise ValueError(f"{where}: {arg} inputs have shape {tuple(splits[arg][0].shape[1:])} per instance; "
                                 f"train's have {shape}")  # fmt: skip
        largest = max(int(y.max()) for _, y in splits.values())
        smallest = min(int(y.min()) for _, y in splits.values())
        if num_classes is None:
            num_classes = largest + 1
        elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"{where}: num_classes={num_classes!r}; expected an integer >= 2 or None")
        if smallest < 0 or largest >= num_classes or num_classes < 2:
            raise ValueError(f"{where}: labels range over [{smallest}, {largest}]; expected labels in "
                             f"[0, num_classes={num_classes}) with num_classes >= 2")  # fmt: skip
        n = len(splits["train"][1])
        if transfer_size is not None and (
            isinstance(transfer_size, bool) or not isinstance(transfer_size, int) or not 1 <= transfer_size <= n
        ):
            raise ValueError(f"{where}: transfer_size={transfer_size!r}; expected an integer in [1, {n}] (train "
                             f"has {n} instances) or None")  # fmt: skip
        if student_training is None:
            student_training = TrainConfig()
        if not isinstance(student_training, TrainConfig):
            raise ValueError(f"{where}: student_training={student_training!r}; expected a kd_envs.tasks.TrainConfig")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: name={name!r}; expected a non-empty string")
        if factory is not None and (not isinstance(factory, str) or not _FACTORY_FORM.match(factory)):
            raise ValueError(f"{where}: factory={factory!r}; expected 'module:function' (a function of no arguments "
                             "that returns this task) or None")  # fmt: skip
        if not isinstance(teacher, nn.Module):
            raise ValueError(f"{where}: teacher is a {type(teacher).__name__}; expected a trained torch.nn.Module")
        if not (isinstance(student, ModelConfig) or callable(student)):
            raise ValueError(f"{where}: student={student!r}; expected a kd_envs.tasks.ModelConfig or a function of "
                             "no arguments that builds a fresh torch.nn.Module")  # fmt: skip
        frozen = copy.deepcopy(teacher).cpu().eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        full = DatasetSplits(*splits["train"], *splits["val"], *splits["test"], num_classes=num_classes)
        probe = full.x_train[:2]
        _check_logits(where, "teacher", lambda: frozen(probe), len(probe), num_classes)
        student_data = full
        if transfer_size is not None:
            student_data = dataclasses.replace(full, x_train=full.x_train[:transfer_size],
                                               y_train=full.y_train[:transfer_size])  # fmt: skip
        weights = tensors_sha256(frozen.state_dict())
        record = {
            "key": f"{TENSORS_RECORD_KEY}-{weights[:16]}",
            "source": TENSORS_RECORD_KEY,
            "parameters": count_parameters(frozen),
            "test_accuracy": accuracy(frozen, full.x_test, full.y_test),
            "weights_sha256": weights,
        }
        task = cls(None, student_data, frozen, record, teacher_data=full, student=student,
                   student_training=student_training, name=name, factory=factory)  # fmt: skip

        def student_logits() -> torch.Tensor:
            module = task.build_student(torch.Generator().manual_seed(0))
            if not isinstance(module, nn.Module):
                raise TypeError(f"it built a {type(module).__name__}, not a torch.nn.Module")
            with torch.no_grad():
                return module.eval()(probe)

        _check_logits(where, "student", student_logits, len(probe), num_classes)
        return task

    @property
    def teacher_test_accuracy(self) -> float:
        """The teacher's accuracy on the student's test split: its record's, or, on an edge dataset of
        its own, measured on the edge's test split (once)."""
        if self.config is None or self.config.edge_dataset is None:
            return float(self.teacher_record["test_accuracy"])
        if "_edge_teacher_accuracy" not in self.__dict__:
            self._edge_teacher_accuracy = accuracy(self.teacher, self.data.x_test, self.data.y_test)
        return self._edge_teacher_accuracy

    def fingerprint(self) -> dict[str, Any]:
        """What a result depends on beyond the env's kwargs: the teacher's weights and the data, by hash
        (leaderboard entries record it, and ``--verify`` checks it before replaying)."""
        splits = {f.name: getattr(self.teacher_data, f.name) for f in dataclasses.fields(self.teacher_data)
                  if isinstance(getattr(self.teacher_data, f.name), torch.Tensor)}  # fmt: skip
        if self.config is not None and self.config.edge_dataset is not None:  # the edge's own draw counts too
            splits |= {f"edge_{f.name}": getattr(self.data, f.name) for f in dataclasses.fields(self.data)
                       if isinstance(getattr(self.data, f.name), torch.Tensor)}  # fmt: skip
        return {
            "teacher_key": self.teacher_record.get("key"),
            "teacher_sha256": tensors_sha256(self.teacher.state_dict()),
            "teacher_test_accuracy": self.teacher_test_accuracy,
            "teacher_source": self.teacher_record.get("source", "cache"),
            "dataset_sha256": tensors_sha256(splits),
            "transfer_size": len(self.data.y_train),
        }

    def build_student(self, generator: torch.Generator | None = None) -> nn.Module:
        """A fresh student on the CPU, its initial weights drawn from ``generator`` (the global generator is
        left as it was) or, without one, from the global generator."""
        if isinstance(self.student, ModelConfig):
            return build_model(self.student, self.data.input_shape, self.data.num_classes, generator)
        return build_seeded(self.student, generator)

    def teacher_architecture(self) -> Architecture:
        """The teacher's layer spec (what N2NCompress-v0 removes and shrinks): its model family's for a named
        task; for a task of your own, read off the teacher module, which must be a model of one of the
        families (:func:`~kd_envs.tasks.models.architecture_of_module` raises ``ValueError`` saying why not)."""
        if self.config is not None:
            return architecture_of(self.config.teacher, self.data.input_shape, self.data.num_classes)
        return architecture_of_module(self.teacher, self.data.input_shape)

    def data_key(self) -> dict[str, Any]:
        """The data, as the students' cache keys name it: a named task's dataset config (where its files lie
        is no part of it), a task of your own's dataset sha256 (computed once)."""
        if self.config is not None:
            return self.config.dataset.key_parts() | {"root": None}
        if "dataset_sha256" not in self.__dict__:
            self.dataset_sha256 = self.fingerprint()["dataset_sha256"]
        return {TENSORS_RECORD_KEY: self.dataset_sha256}

    def to(self, device: str | torch.device) -> Task:
        """This task with its data and its teacher on ``device``: ``self`` when they are there already (no
        copy), else a new task whose teacher is a copy (this one is left where it is). ``teacher_data``,
        which only fingerprints read, stays where it is unless it is ``data`` itself."""
        device = torch.device(device)
        data = self.data.to(device)
        tensors = list(self.teacher.parameters()) + list(self.teacher.buffers())
        teacher_there = all(t.device == device for t in tensors)
        if data is self.data and teacher_there:
            return self
        teacher = self.teacher if teacher_there else copy.deepcopy(self.teacher).to(device)
        teacher_data = data if self.teacher_data is self.data else self.teacher_data
        return dataclasses.replace(self, data=data, teacher=teacher, teacher_data=teacher_data)


def _checked_split(where: str, arg: str, value: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``(inputs, labels)`` split of :meth:`Task.from_tensors`, checked: float32 inputs and int64 labels
    on the CPU (no copy where they are so already)."""
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(t, torch.Tensor) for t in value)):
        raise ValueError(f"{where}: {arg} is a {type(value).__name__}; expected a pair (inputs, labels) of tensors")
    x, y = value
    if not x.is_floating_point() or x.dim() < 2:
        raise ValueError(f"{where}: {arg} inputs have dtype {x.dtype} and shape {tuple(x.shape)}; expected floating "
                         "point inputs of shape (instances, ...)")  # fmt: skip
    if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{where}: {arg} labels have dtype {y.dtype} and shape {tuple(y.shape)}; expected a 1-D "
                         "integer tensor")  # fmt: skip
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"{where}: {arg} has {len(x)} inputs and {len(y)} labels; expected as many, at least one")
    x = x.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError(f"{where}: {arg} inputs hold NaN or inf")
    return x, y.detach().to("cpu", torch.int64)


def _check_logits(where: str, what: str, forward: Callable[[], Any], n: int, num_classes: int) -> None:
    """``forward()`` must give finite logits of shape ``(n, num_classes)``; else a ValueError naming ``what``."""
    try:
        with torch.no_grad():
            out = forward()
    except Exception as exc:  # noqa: BLE001 (whatever a user's module raises, the message names it)
        raise ValueError(f"{where}: {what} fails on {n} training inputs ({type(exc).__name__}: {exc})") from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{where}: {what} maps {n} training inputs to {got}; expected logits of shape "
                         f"({n}, {num_classes})")  # fmt: skip
    if not torch.isfinite(out).all():
        raise ValueError(f"{where}: {what} gives NaN or inf logits on training inputs")


class TaskFactoryError(ValueError):
    """A ``task`` that cannot be rebuilt here: a factory ``"module:function"`` that cannot be imported or
    called, or the record of a task made from tensors without a factory."""


def task_from_factory(factory: str) -> Task:
    """The task ``factory`` (``"module:function"``, a function of no arguments) returns, its ``factory`` set to
    this string. Raises :class:`TaskFactoryError`, naming the factory, when it cannot be imported, is not a
    function, raises, or returns something else than a :class:`Task`."""
    module_name, _, function_name = factory.partition(":")
    if not _FACTORY_FORM.match(factory):
        raise TaskFactoryError(f"task={factory!r}: expected a task name in {sorted(TASKS)} or a factory "
                               "'module:function'")  # fmt: skip
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 (an import can fail in any way; the message says how)
        raise TaskFactoryError(f"task={factory!r}: cannot import module {module_name!r} ({type(exc).__name__}: {exc}); "
                               "a task of your own is rebuilt by importing its factory: put its module on the "
                               "path (PYTHONPATH)") from exc  # fmt: skip
    function = getattr(module, function_name, None)
    if not callable(function):
        raise TaskFactoryError(f"task={factory!r}: module {module_name!r} has no function {function_name!r}")
    try:
        task = function()
    except Exception as exc:  # noqa: BLE001
        raise TaskFactoryError(f"task={factory!r}: the factory raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(task, Task):
        raise TaskFactoryError(f"task={factory!r}: the factory returned a {type(task).__name__}; expected a "
                               "kd_envs.tasks.Task (Task.from_tensors)")  # fmt: skip
    return task if task.factory == factory else dataclasses.replace(task, factory=factory)


def task_or_config(task: str | TaskConfig | dict[str, Any] | Task) -> Task | TaskConfig:
    """What an env's ``task`` kwarg names: a ready :class:`Task` (given, or returned by its factory
    ``"module:function"``) or the :class:`TaskConfig` of a named task (a name, a config or its dict). The
    record of a task made from tensors without a factory is refused (:class:`TaskFactoryError`): it names
    the task but cannot rebuild it."""
    if isinstance(task, Task):
        return task
    if isinstance(task, str) and ":" in task:
        return task_from_factory(task)
    if isinstance(task, dict) and TENSORS_RECORD_KEY in task:
        raise TaskFactoryError(f"task={task!r}: a task made from tensors without a factory cannot be rebuilt from "
                               "its record alone; make it with Task.from_tensors(..., factory='module:function') (a "
                               "function of no arguments that returns it), or pass the Task itself")  # fmt: skip
    return resolve_task(task)


def task_json(task: Any) -> Any:
    """``task`` as a spec or an entry records it, in JSON: a config as its dict, a task of your own as its
    factory (or, without one, ``{"tensors": name, "factory": None}``, which names it but cannot rebuild it), a
    named task's :class:`Task` as its config's dict; a name or a dict as it is."""
    if isinstance(task, TaskConfig):
        return task.to_dict()
    if isinstance(task, Task):
        if task.factory is not None:
            return task.factory
        if task.config is not None:
            return task.config.to_dict()
        return {TENSORS_RECORD_KEY: task.name, "factory": None}
    return task


def load_task_data(config: DatasetConfig, cache_dir: Path | None = None) -> DatasetSplits:
    """The dataset, from the disk cache when a generated one (mnist1d) was made before. A cached file
    that fails its checksum, has none or cannot be read is reported by path and generated again."""
    if config.name != "mnist1d":  # digits and CIFAR are read from files already
        return load_dataset(config)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_dir / "datasets" / f"{config.name}-{config_hash(config.key_parts())}.npz"

    def load() -> DatasetSplits | None:
        # A file without a checksum (written before them) is regenerated, not adopted: nothing else
        # vouches for it, and generating it costs seconds.
        raw = read_verified(path)
        if raw is None:
            return None
        try:
            with np.load(io.BytesIO(raw)) as z:
                arrays = {k: z[k] for k in z.files}
            data = DatasetSplits(**{k: torch.from_numpy(v) for k, v in arrays.items() if k != "num_classes"},
                                 num_classes=int(arrays["num_classes"]))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 (zip, pickle and key errors alike: the file is unusable)
            raise CorruptCacheError(path, f"unreadable npz ({type(exc).__name__}: {exc})") from exc
        sizes = (len(data.y_train), len(data.y_val), len(data.y_test))
        if sizes != config.sizes():
            raise CorruptCacheError(path, f"holds splits of {sizes} instances, its config asks for {config.sizes()}")
        return data

    def build() -> DatasetSplits:
        data = load_dataset(config)
        arrays = {k: v.numpy() for k, v in dataclasses.asdict(data).items() if isinstance(v, torch.Tensor)}
        buffer = io.BytesIO()
        np.savez(buffer, num_classes=data.num_classes, **arrays)
        write_verified(path, buffer.getvalue())
        return data

    return load_or_build(path, load, build)


def teacher_key(config: TaskConfig) -> str:
    """The teacher's cache key: its dataset, architecture, training and seed. The student's side of the
    task (student, transfer size, schedule) is no part of it: one teacher serves every student."""
    return config_hash(_teacher_key_parts(config))


def _teacher_key_parts(config: TaskConfig) -> dict[str, Any]:
    return {
        "dataset": config.dataset.key_parts() | {"root": None},  # where CIFAR lies is no part of it
        "teacher": dataclasses.asdict(config.teacher),
        "training": dataclasses.asdict(config.teacher_training),
        "seed": config.teacher_seed,
    }


# How far a loaded teacher's recomputed test accuracy may be from its record, in test examples. The
# weights are pinned by their sha256, so this guards the record and the data; one example of slack lets
# another machine's kernels flip one borderline argmax (a NaN weight or an edited record moves it by far
# more: a NaN makes every prediction the same class).
ACCURACY_TOLERANCE_EXAMPLES = 1


def _parse_record(raw: bytes, path: Path, what: str) -> dict[str, Any]:
    try:
        record = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise CorruptCacheError(path, "empty (0 bytes)" if not raw else f"unparsable JSON ({exc})", what) from exc
    if not isinstance(record, dict):
        raise CorruptCacheError(path, f"holds a {type(record).__name__}, not a teacher record", what)
    return record


def _parse_weights(raw: bytes, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not raw:
        raise CorruptCacheError(path, "empty (0 bytes)", what)
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (torch raises zip, pickle, EOF and OS errors alike)
        raise CorruptCacheError(path, f"unreadable weights ({type(exc).__name__}: {exc})", what) from exc
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise CorruptCacheError(path, f"holds a {type(state).__name__}, not a state dict of tensors", what)
    return state


def _check_teacher(
    model: nn.Module,
    key: str,
    state: dict[str, torch.Tensor],
    record: dict[str, Any],
    data: DatasetSplits,
    weights_path: Path,
    record_path: Path,
    what: str,
) -> None:
    """Load ``state`` into ``model`` if it is teacher ``key`` as its record describes it: finite weights,
    their sha256 as recorded, and the recorded test accuracy on ``data`` (to one example); else raise
    :class:`CorruptCacheError` naming the file at fault."""
    if record.get("key") != key:
        raise CorruptCacheError(record_path, f"records teacher {record.get('key')!r}, expected {key!r}", what)
    non_finite = {name: int((~torch.isfinite(t)).sum()) for name, t in state.items() if t.is_floating_point()}
    non_finite = {name: count for name, count in non_finite.items() if count}
    if non_finite:
        raise CorruptCacheError(weights_path, f"{sum(non_finite.values())} non-finite weights (NaN or inf) in "
                                f"{sorted(non_finite)}", what)  # fmt: skip
    sha = tensors_sha256(state)
    if sha != record.get("weights_sha256"):
        raise CorruptCacheError(weights_path, f"weights sha256 {sha} differs from its record's "
                                f"{record.get('weights_sha256')} ({record_path})", what)  # fmt: skip
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CorruptCacheError(weights_path, f"does not fit the teacher's architecture ({exc})", what) from exc
    recorded, n = record.get("test_accuracy"), len(data.y_test)
    recomputed = accuracy(model, data.x_test, data.y_test)
    if (
        not isinstance(recorded, (int, float)) or isinstance(recorded, bool)
        or abs(round(recomputed * n) - round(recorded * n)) > ACCURACY_TOLERANCE_EXAMPLES
    ):  # fmt: skip
        raise CorruptCacheError(record_path, f"records test accuracy {recorded!r}, but the teacher scores "
                                f"{recomputed} on the {n} test examples", what)  # fmt: skip


def _load_shipped_teacher(model: nn.Module, key: str, data: DatasetSplits) -> dict[str, Any] | None:
    """Load the shipped artifact for ``key`` into ``model`` after checking it (see :func:`_check_teacher`);
    None if none ships. A damaged one is an error, never retrained over: it is the package's data."""
    weights_path, record_path = SHIPPED_TEACHERS_DIR / f"{key}.pt", SHIPPED_TEACHERS_DIR / f"{key}.json"
    if not weights_path.is_file():
        return None
    if not record_path.is_file():
        raise FileNotFoundError(f"shipped teacher {weights_path} has no record {record_path}; the package's files "
                                "are incomplete")  # fmt: skip
    what = "shipped teacher"
    try:
        record = _parse_record(record_path.read_bytes(), record_path, what)
        state = _parse_weights(weights_path.read_bytes(), weights_path, what)
        _check_teacher(model, key, state, record, data, weights_path, record_path, what)
    except CorruptCacheError as error:
        raise CorruptCacheError(error.path, f"{error.problem}; the package's files are damaged (reinstall kd-gym)",
                                what) from error  # fmt: skip
    return {**record, "source": "shipped"}


def _load_cached_teacher(
    model: nn.Module, key: str, weights_path: Path, record_path: Path, data: DatasetSplits
) -> dict[str, Any] | None:
    """The cached teacher's record after loading its checked weights into ``model``; None if it was never
    cached. A pair written before checksums is adopted once it passes :func:`_check_teacher` (its record
    holds the weights' sha256 and accuracy, which vouch for both files): its checksums are written then."""
    raw: dict[Path, bytes | None] = {}
    unverified = []
    for path in (weights_path, record_path):
        try:
            raw[path] = read_verified(path)
        except UnverifiedCacheError:
            raw[path] = path.read_bytes()
            unverified.append(path)
    if raw[weights_path] is None and raw[record_path] is None:
        return None
    for path, other in ((weights_path, record_path), (record_path, weights_path)):
        if raw[path] is None:
            raise CorruptCacheError(path, f"missing, while {other.name} exists")
    record = _parse_record(raw[record_path], record_path, "cache file")
    state = _parse_weights(raw[weights_path], weights_path, "cache file")
    _check_teacher(model, key, state, record, data, weights_path, record_path, "cache file")
    for path in unverified:
        write_sidecar(path, raw[path])
        logger.info("adopted %s, cached before checksums: it passed the teacher's checks", path)
    return record


def load_or_train_teacher(
    config: TaskConfig,
    data: DatasetSplits,
    cache_dir: Path | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """The task's teacher: the shipped artifact for its key if there is one, else from the cache, else
    trained now and cached. Returns (model, record).

    A loaded teacher is checked (finite weights, their recorded sha256, its recorded test accuracy
    recomputed on ``data``): a shipped one that fails is an error; a cached one that fails, or whose
    files are missing, truncated or altered, is reported by path (a ``CorruptCacheWarning``) and trained
    again. Processes that need the same teacher at once train it once: one trains, the others wait on
    ``<key>.pt.lock`` and then load it.

    A teacher trained now trains on ``device`` (data, model and optimiser there; see
    :func:`~kd_envs.tasks.training.train_classifier`); the teacher returned is on the CPU either way, and a
    record made off the CPU says on which device (its key does not: one teacher per task)."""
    device = resolve_device(device)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key_parts = _teacher_key_parts(config)
    key = config_hash(key_parts)
    weights_path = cache_dir / "teachers" / f"{key}.pt"
    record_path = cache_dir / "teachers" / f"{key}.json"

    def seeded_model() -> tuple[nn.Module, torch.Generator]:
        # Training continues the generator that initialised the weights: a rebuild starts from scratch.
        generator = torch.Generator().manual_seed(config.teacher_seed)
        return build_model(config.teacher, data.input_shape, data.num_classes, generator), generator

    def load() -> tuple[nn.Module, dict[str, Any]] | None:
        model = seeded_model()[0]
        record = _load_cached_teacher(model, key, weights_path, record_path, data)
        return None if record is None else (model, record)

    def train() -> tuple[nn.Module, dict[str, Any]]:
        model, generator = seeded_model()
        logger.info("training teacher %s into %s", key, weights_path)
        start = time.perf_counter()
        history = train_classifier(
            model, data, config.teacher_training, generator, progress=progress, description="teacher", device=device
        )
        model.cpu()
        record = {
            "key": key,
            "config": key_parts,
            "parameters": count_parameters(model),
            "val_accuracy": history[-1],
            "test_accuracy": accuracy(model, data.x_test, data.y_test),
            "train_seconds": round(time.perf_counter() - start, 1),
            "weights_sha256": tensors_sha256(model.state_dict()),
            **({"device": str(device)} if device.type != "cpu" else {}),
        }
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        write_verified(weights_path, buffer.getvalue())  # the weights first: a record never outlives them
        write_verified(record_path, json.dumps(record, indent=2).encode())
        return model, record

    model = seeded_model()[0]
    shipped = _load_shipped_teacher(model, key, data)
    if shipped is not None:
        record = shipped
    else:
        model, record = load_or_build(weights_path, load, train)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, record


def make_task(
    task: str | TaskConfig | dict[str, Any] = "mnist1d-cloud-edge",
    cache_dir: str | Path | None = None,
    data_root: str | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> Task:
    """Resolve ``task`` (a name in :data:`TASKS`, a :class:`TaskConfig` or its dict), load its data
    and its teacher (trained on first use, on ``device``). ``data_root`` overrides the dataset's folder
    (CIFAR). The task returned is on the CPU (:meth:`Task.to` moves it)."""
    config = resolve_task(task)
    if data_root is not None:
        config = dataclasses.replace(config, dataset=dataclasses.replace(config.dataset, root=str(data_root)))
    cache = Path(cache_dir) if cache_dir else None
    data = load_task_data(config.dataset, cache)
    teacher, record = load_or_train_teacher(config, data, cache, progress=progress, device=device)
    student_data = data
    if config.edge_dataset is not None:
        edge = config.edge_dataset
        if data_root is not None:
            edge = dataclasses.replace(edge, root=str(data_root))
        student_data = load_task_data(edge, cache)
        if (student_data.input_shape, student_data.num_classes) != (data.input_shape, data.num_classes):
            raise ValueError(f"TaskConfig.edge_dataset {edge.name}: inputs {student_data.input_shape} and "
                             f"{student_data.num_classes} classes; the teacher's dataset has {data.input_shape} "
                             f"and {data.num_classes}")  # fmt: skip
    if config.transfer_size is not None:
        n = config.transfer_size
        student_data = dataclasses.replace(student_data, x_train=student_data.x_train[:n],
                                           y_train=student_data.y_train[:n])  # fmt: skip
    return Task(config, student_data, teacher, record, teacher_data=data)
