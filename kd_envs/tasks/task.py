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

import dataclasses
import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

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
from kd_envs.tasks.models import ModelConfig, build_model, count_parameters
from kd_envs.tasks.training import TrainConfig, accuracy, train_classifier

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
    if task not in TASKS:
        raise ValueError(f"task={task!r}: expected one of {sorted(TASKS)}, a TaskConfig or its dict")
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


@dataclass
class Task:
    """A ready task: the data, the trained teacher (frozen, eval mode) and what is known of it.

    ``data`` is what the student sees: its training split is the transfer set (the first
    ``config.transfer_size`` instances); ``teacher_data`` is the dataset the teacher learned from
    (the same object when the task has no transfer size). Validation and test splits are shared, unless
    the task has an ``edge_dataset``: then ``data`` is the edge's own draw, every split of it.
    """

    config: TaskConfig
    data: DatasetSplits
    teacher: nn.Module
    teacher_record: dict[str, Any]
    teacher_data: DatasetSplits | None = None

    def __post_init__(self) -> None:
        if self.teacher_data is None:
            self.teacher_data = self.data

    @property
    def teacher_test_accuracy(self) -> float:
        """The teacher's accuracy on the student's test split: its record's, or, on an edge dataset of
        its own, measured on the edge's test split (once)."""
        if self.config.edge_dataset is None:
            return float(self.teacher_record["test_accuracy"])
        if "_edge_teacher_accuracy" not in self.__dict__:
            self._edge_teacher_accuracy = accuracy(self.teacher, self.data.x_test, self.data.y_test)
        return self._edge_teacher_accuracy

    def fingerprint(self) -> dict[str, Any]:
        """What a result depends on beyond the env's kwargs: the teacher's weights and the data, by hash
        (leaderboard entries record it, and ``--verify`` checks it before replaying)."""
        splits = {f.name: getattr(self.teacher_data, f.name) for f in dataclasses.fields(self.teacher_data)
                  if isinstance(getattr(self.teacher_data, f.name), torch.Tensor)}  # fmt: skip
        if self.config.edge_dataset is not None:  # the edge's own draw is part of what a result depends on
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
        return build_model(self.config.student, self.data.input_shape, self.data.num_classes, generator)


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
    config: TaskConfig, data: DatasetSplits, cache_dir: Path | None = None, progress: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """The task's teacher: the shipped artifact for its key if there is one, else from the cache, else
    trained now and cached. Returns (model, record).

    A loaded teacher is checked (finite weights, their recorded sha256, its recorded test accuracy
    recomputed on ``data``): a shipped one that fails is an error; a cached one that fails, or whose
    files are missing, truncated or altered, is reported by path (a ``CorruptCacheWarning``) and trained
    again. Processes that need the same teacher at once train it once: one trains, the others wait on
    ``<key>.pt.lock`` and then load it."""
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
            model, data, config.teacher_training, generator, progress=progress, description="teacher"
        )
        record = {
            "key": key,
            "config": key_parts,
            "parameters": count_parameters(model),
            "val_accuracy": history[-1],
            "test_accuracy": accuracy(model, data.x_test, data.y_test),
            "train_seconds": round(time.perf_counter() - start, 1),
            "weights_sha256": tensors_sha256(model.state_dict()),
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
) -> Task:
    """Resolve ``task`` (a name in :data:`TASKS`, a :class:`TaskConfig` or its dict), load its data
    and its teacher (trained on first use). ``data_root`` overrides the dataset's folder (CIFAR)."""
    config = resolve_task(task)
    if data_root is not None:
        config = dataclasses.replace(config, dataset=dataclasses.replace(config.dataset, root=str(data_root)))
    cache = Path(cache_dir) if cache_dir else None
    data = load_task_data(config.dataset, cache)
    teacher, record = load_or_train_teacher(config, data, cache, progress=progress)
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
