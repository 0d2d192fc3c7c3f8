"""What every KD-Gym env checks the same way: the types of its kwargs, its ``render_mode``, and a ``task``
kwarg kept in the env's spec as JSON.

Each env validates its kwargs in one place (a dataclass's ``__post_init__`` or its factory); these are the
checks they share, so that a wrong type gets the same message everywhere: the env id, the kwarg, its value
and what is allowed. A bool is not an integer, a float with no fraction is not an integer, and a string is
not a number, as the kwargs come from JSON and YAML files where such slips are easy to make.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium.envs.registration import EnvSpec

from kd_envs.tasks import Task, TaskConfig, resolve_device, task_json


def is_int(value: Any) -> bool:
    """An integer (Python's or NumPy's), not a bool."""
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """A real number (Python's or NumPy's), not a bool, a string or a complex number."""
    return isinstance(value, (numbers.Real, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def kwarg_error(env_id: str, name: str, value: Any, allowed: str) -> ValueError:
    """The one message of every bad kwarg: ``<env id>: <name>=<value!r>; expected <allowed>``."""
    return ValueError(f"{env_id}: {name}={value!r}; expected {allowed}")


def check_int(env_id: str, name: str, value: Any, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise kwarg_error(env_id, name, value, "a positive integer" if minimum == 1 else f"an integer >= {minimum}")
    return int(value)


def check_number(env_id: str, name: str, value: Any, low: float, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = True) -> float:  # fmt: skip
    """A real number in the interval [low, high) (``low_open``/``high_open`` choose the ends; an infinite end is
    always open, so a finite number is required). The message names the interval as the envs' docs do."""
    ok = is_real(value) and math.isfinite(value)
    if ok:
        ok = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if not ok:
        if high == math.inf:
            allowed = f"a finite number {'>' if low_open else '>='} {low:g}"
        else:
            allowed = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise kwarg_error(env_id, name, value, allowed)
    return value


def check_bool(env_id: str, name: str, value: Any) -> bool:
    if not is_bool(value):
        raise kwarg_error(env_id, name, value, "True or False")
    return bool(value)


def check_choice(env_id: str, name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise kwarg_error(env_id, name, value, f"one of {tuple(choices)}")
    return value


def check_folder(env_id: str, name: str, value: Any) -> None:
    """A folder kwarg (``cache_dir``, ``data_root``): a path or None."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise kwarg_error(env_id, name, value, "a folder (a str or a path) or None")


def check_device(env_id: str, value: Any) -> torch.device:
    """A ``device`` kwarg: ``"cpu"``, ``"cuda"``, ``"cuda:<n>"`` or ``"mps"``, present on this machine
    (:func:`kd_envs.tasks.resolve_device`); the message names the env, the device and what this machine has."""
    try:
        return resolve_device(value)
    except ValueError as error:
        raise ValueError(f"{env_id}: {error}") from None


def check_render_mode(env_id: str, render_mode: Any, render_modes: Sequence[str]) -> str | None:
    """``render_mode`` is None or one of the env's ``metadata["render_modes"]``; any other is refused here, in
    every KD-Gym env alike, rather than failing at the first ``render()``."""
    if render_mode is not None and render_mode not in render_modes:
        raise kwarg_error(env_id, "render_mode", render_mode, f"None or one of {list(render_modes)}")
    return render_mode


class JsonTaskSpec:
    """Keeps ``spec.kwargs["task"]`` as plain JSON when the env was made with a :class:`TaskConfig` or a
    :class:`Task`.

    ``gym.make`` records the kwargs it was given in the env's spec, which ``EnvSpec.to_json`` must store
    and ``gym.make(EnvSpec.from_json(...))`` make again; a ``TaskConfig`` is stored as its dict
    (``TaskConfig.to_dict``), which every env taking ``task`` accepts and resolves to the same task, and a
    task of your own as its factory ``"module:function"`` (without one, as a record that names it but cannot
    make it again: :func:`kd_envs.tasks.task_json`).
    """

    _spec: EnvSpec | None = None

    @property
    def spec(self) -> EnvSpec | None:
        return self._spec

    @spec.setter
    def spec(self, spec: EnvSpec | None) -> None:
        if spec is not None and isinstance(spec.kwargs.get("task"), (TaskConfig, Task)):
            spec = dataclasses.replace(spec, kwargs={**spec.kwargs, "task": task_json(spec.kwargs["task"])})
        self._spec = spec
