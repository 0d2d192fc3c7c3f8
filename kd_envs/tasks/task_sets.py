"""Task sets: named, versioned sets of distillation tasks with a train/test split of instances, the way
DACBench ships instance sets beside each benchmark. A set is data (``task_sets/<name>.json``), checked
against the sha256 recorded here before it is read, so that a result names exactly the instances it was
measured on; a changed instance is a new version of the set, never an edit of an old one.

A policy is trained on the ``train`` instances and scored on the ``test`` instances, which it never saw.
Each instance says why it is in the set (``why``); ``docs/tasks.md`` lists them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kd_envs.tasks.task import TaskConfig

TASK_SETS_DIR = Path(__file__).parent / "task_sets"
# name -> sha256 of its file: a set is read only if its bytes are these.
TASK_SETS: dict[str, str] = {
    "cloud-edge-v0": "f2673338d63d17e8ca19823a3c3628dfc70830b184f5a2e8eee75e9e11aaad51",
}
SPLITS = ("train", "test")


@dataclass(frozen=True)
class TaskInstance:
    """One instance of a task set: its index in the set, its name, split, task and why it is there."""

    index: int
    name: str
    split: str
    task: TaskConfig
    why: str


@dataclass(frozen=True)
class TaskSet:
    name: str
    description: str
    instances: tuple[TaskInstance, ...]

    def split(self, split: str) -> tuple[TaskInstance, ...]:
        """The instances of ``split`` (``"train"`` or ``"test"``), in the set's order."""
        if split not in SPLITS:
            raise ValueError(f"task set {self.name}: split={split!r}; expected one of {SPLITS}")
        return tuple(i for i in self.instances if i.split == split)


def task_set_sha256(name: str) -> str:
    return hashlib.sha256(_path(name).read_bytes()).hexdigest()


def _path(name: str) -> Path:
    if not isinstance(name, str) or name not in TASK_SETS:
        raise ValueError(f"task_set={name!r}; expected one of {sorted(TASK_SETS)}")
    return TASK_SETS_DIR / f"{name}.json"


def load_task_set(name: str) -> TaskSet:
    """The task set ``name`` (one of :data:`TASK_SETS`), after checking its file's sha256."""
    path = _path(name)
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    if sha != TASK_SETS[name]:
        raise ValueError(f"task set file {path}: sha256 {sha} is not the recorded {TASK_SETS[name]}; the package's "
                         "files are damaged or edited (a changed set is a new version with a new name)")  # fmt: skip
    data: dict[str, Any] = json.loads(raw)
    instances = tuple(
        TaskInstance(index, item["name"], item["split"], TaskConfig.from_dict(item["task"]), item["why"])
        for index, item in enumerate(data["instances"])
    )
    for instance in instances:
        if instance.split not in SPLITS:
            raise ValueError(f"task set {name}: instance {instance.name} has split {instance.split!r}")
    return TaskSet(data["name"], data["description"], instances)
