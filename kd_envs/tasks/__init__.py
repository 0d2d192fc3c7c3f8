"""Distillation tasks: datasets, model families, teacher training and its checked disk cache (no gym here)."""

from kd_envs.tasks.cache import CorruptCacheError, CorruptCacheWarning
from kd_envs.tasks.datasets import DATASETS, DatasetConfig, DatasetSplits, augment_batch, load_dataset
from kd_envs.tasks.models import (
    CIFAR_RESNET_DEPTHS,
    MODEL_FAMILIES,
    ModelConfig,
    architecture_of,
    architecture_of_module,
    build_model,
    count_parameters,
)
from kd_envs.tasks.task import (
    CACHE_ENV,
    TASKS,
    Task,
    TaskConfig,
    TaskFactoryError,
    atomic_write,
    default_cache_dir,
    load_or_train_teacher,
    make_task,
    resolve_task,
    task_from_factory,
    task_json,
    task_or_config,
)
from kd_envs.tasks.training import (
    TrainConfig,
    accuracy,
    predict_logits,
    resolve_device,
    steps_per_epoch,
    train_classifier,
)

__all__ = [
    "CACHE_ENV", "CIFAR_RESNET_DEPTHS", "DATASETS", "MODEL_FAMILIES", "TASKS",
    "CorruptCacheError", "CorruptCacheWarning",
    "DatasetConfig", "DatasetSplits", "ModelConfig", "Task", "TaskConfig", "TaskFactoryError", "TrainConfig",
    "accuracy", "architecture_of", "architecture_of_module", "atomic_write", "augment_batch", "build_model",
    "count_parameters", "default_cache_dir", "load_dataset",
    "load_or_train_teacher", "make_task", "predict_logits", "resolve_device", "resolve_task", "steps_per_epoch",
    "task_from_factory", "task_json", "task_or_config", "train_classifier",
]  # fmt: skip
