"""Resumable training (rl-zoo3's ``--save-freq`` and ``--trained-agent``, made exact where it can be).

A checkpoint is a folder ``<out_dir>/checkpoints/step_<num_timesteps>/`` holding

* ``model.zip``: the full SB3 save (weights, optimizer state, step and update counters, schedules,
  the last observation), not the leaderboard's acting zip;
* ``replay_buffer.pkl``: off-policy algorithms' replay buffer (SB3's ``save_replay_buffer``);
* ``rng.pkl``: the RNG states (Python ``random``, NumPy's global, torch's (and CUDA's), the agent's
  action space, the agent's own ``np.random.Generator`` / ``torch.Generator`` attributes, and for each
  env the reset to repeat: see :class:`ReplayableReset`);
* ``search.json`` on a search env: :class:`~agents.common.compression.SearchRecordCallback`'s records;
* ``manifest.json``, written last: the step count, the run's settings, whether the checkpoint lies on an
  episode boundary, and each file's sha256. A folder without a manifest, or whose files do not match it,
  is never used (an interrupt while writing leaves the previous checkpoint in force).

Checkpoints are taken at an *update boundary* (SB3's ``on_rollout_start``: the previous update is done,
the next rollout has not begun), where the model, its buffer and its last observation agree. A periodic
checkpoint, due every ``save_freq`` steps, waits for a boundary at which every env has just finished an
episode (then a resumed run repeats the uninterrupted one exactly, see :func:`restore_checkpoint`), and
is written anyway once a second ``save_freq`` steps have passed without one.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from kd_envs.tasks import atomic_write

CHECKPOINTS_DIR = "checkpoints"
MANIFEST = "manifest.json"
# Complete checkpoints kept; older ones are removed once a newer one is complete.
KEEP_CHECKPOINTS = 2


class ReplayableReset(gym.Wrapper):
    """Records where each reset started (its seed, options and the env's ``np_random`` state before
    it, and the last seeded reset before it), so that a resumed run can repeat the reset that began the
    episode a checkpoint stands at. Transparent otherwise: it draws nothing and changes nothing the env
    returns."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.last_reset: dict[str, Any] | None = None
        self._seeded: dict[str, Any] | None = None
        self._replay: dict[str, Any] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if self._replay is not None:
            replay, self._replay = self._replay, None
            seed, options = replay["seed"], replay["options"]
            if seed is None:
                # First the run's seeded reset, for what an env derives there and keeps (N2NCompress-v0's
                # training seed), then the RNG stream where the repeated reset began.
                if replay["seeded"] is not None:
                    self.env.reset(**replay["seeded"])
                self._seeded = replay["seeded"]
                self.np_random = generator_from_state(replay["np_random"])
        if seed is not None:
            self._seeded = {"seed": seed, "options": options}
        self.last_reset = {"seed": seed, "options": options, "np_random": self.np_random.bit_generator.state,
                           "seeded": self._seeded}  # fmt: skip
        return self.env.reset(seed=seed, options=options)

    def replay_reset(self, reset: dict[str, Any]) -> None:
        """Make the next reset repeat ``reset`` (a :attr:`last_reset`), whatever seed it is given."""
        self._replay = reset


def generator_from_state(state: dict[str, Any]) -> np.random.Generator:
    generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
    generator.bit_generator.state = state
    return generator


def _own_generators(model: BaseAlgorithm) -> dict[str, np.random.Generator | torch.Generator]:
    """The agent's own generators (N2N's ``generator``, the searchers' ``rng``), by attribute name."""
    return {k: v for k, v in vars(model).items() if isinstance(v, (np.random.Generator, torch.Generator))}


def rng_states(model: BaseAlgorithm, episode_boundary: bool) -> dict[str, Any]:
    """Every RNG state a run draws from. ``env_resets``: per env, the reset a resumed run performs: at an
    episode boundary the one that began the current episode, else a reset continuing the env's stream."""
    env = model.get_env()
    if episode_boundary:
        resets = env.get_attr("last_reset")
    else:
        # A new episode from where each env's np_random stands (after the run's seeded reset).
        resets = [{**last, "seed": None, "options": None, "np_random": g.bit_generator.state}
                  for last, g in zip(env.get_attr("last_reset"), env.get_attr("np_random"))]  # fmt: skip
    generators = {}
    for name, generator in _own_generators(model).items():
        generators[name] = (generator.get_state() if isinstance(generator, torch.Generator)
                            else generator.bit_generator.state)  # fmt: skip
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "action_space": model.action_space.np_random.bit_generator.state,
        "generators": generators,
        "env_resets": resets,
    }


def restore_global_rng(states: dict[str, Any], model: BaseAlgorithm) -> None:
    """Put back the global, action-space and agent-owned RNG states of :func:`rng_states`."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    model.action_space.np_random.bit_generator.state = states["action_space"]
    own = _own_generators(model)
    for name, state in states["generators"].items():
        if isinstance(own.get(name), torch.Generator):
            own[name].set_state(state)
        elif name in own:
            own[name].bit_generator.state = state  # in place: the policy may share the generator


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _step_dir(directory: Path, num_timesteps: int) -> Path:
    return directory / f"step_{num_timesteps:012d}"


def save_checkpoint(
    model: BaseAlgorithm,
    directory: str | Path,
    settings: dict[str, Any],
    episode_boundary: bool,
    extra_files: dict[str, bytes] | None = None,
    keep: int = KEEP_CHECKPOINTS,
) -> Path:
    """Write a checkpoint of ``model`` (see the module docstring) under ``directory`` and return its folder.
    Every file goes through a temporary file and ``os.replace``; the manifest comes last."""
    directory = Path(directory)
    folder = _step_dir(directory, model.num_timesteps)
    (folder / MANIFEST).unlink(missing_ok=True)  # a re-save at the same step: incomplete until it is done
    writers: dict[str, Callable[[Any], None]] = {
        "model.zip": model.save,
        "rng.pkl": lambda f: pickle.dump(rng_states(model, episode_boundary), f, protocol=pickle.HIGHEST_PROTOCOL),
    }
    if getattr(model, "replay_buffer", None) is not None:
        writers["replay_buffer.pkl"] = model.save_replay_buffer
    for name, content in (extra_files or {}).items():
        writers[name] = lambda f, content=content: f.write(content)
    for name, write in writers.items():
        atomic_write(folder / name, write)
    manifest = {
        "num_timesteps": int(model.num_timesteps),
        "episode_boundary": bool(episode_boundary),
        "settings": settings,
        "files": {name: _sha256(folder / name) for name in writers},
    }
    atomic_write(folder / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1, default=str).encode()))
    complete = [d for d in sorted(directory.glob("step_*")) if (d / MANIFEST).is_file()]
    for old in sorted(directory.glob("step_*")):
        if old != folder and (old not in complete or old in complete[:-keep]):
            shutil.rmtree(old, ignore_errors=True)
    return folder


def latest_checkpoint(directory: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete checkpoint under ``directory`` (its manifest present and every file's sha256
    matching) and its manifest; None if there is none."""
    for folder in sorted(Path(directory).glob("step_*"), reverse=True):
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        if all((folder / name).is_file() and _sha256(folder / name) == digest
               for name, digest in manifest["files"].items()):  # fmt: skip
            return folder, manifest
    return None


def settings_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The settings (by key, nested ones as ``hyperparams.learning_rate``) on which two runs differ."""
    saved, current = (json.loads(json.dumps(s, default=str, sort_keys=True)) for s in (saved, current))
    differences = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key == "hyperparams":
            differences += [f"{key}.{d}" for d in settings_differences(a, b)]
        elif a != b:
            differences.append(f"{key}: checkpoint {a!r}, now {b!r}")
    return differences


def restore_checkpoint(model: BaseAlgorithm, folder: str | Path) -> bool:
    """Finish loading a checkpoint into ``model`` (already ``load``-ed from its ``model.zip`` with
    ``force_reset=False`` on a fresh env built as the run's was): the replay buffer, the env resets and
    every RNG state. Returns whether the resumed run repeats the interrupted one exactly.

    Exact when the checkpoint lies on an episode boundary and the env's state after a reset depends on
    nothing but its arguments, its ``np_random`` and what its last seeded reset set: each env repeats the
    run's seeded reset, then the reset that began its current episode, and gives the checkpoint's last
    observation again (checked; a mismatch counts as mid-episode). Otherwise (a checkpoint taken mid-episode, an
    interrupt) the episodes in progress are cut off: each env starts a new one, drawn from where its
    ``np_random`` stood, and the replay buffer's last transition of that episode has no successor."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    if (folder / "replay_buffer.pkl").is_file():
        model.load_replay_buffer(folder / "replay_buffer.pkl")
    with (folder / "rng.pkl").open("rb") as f:
        states = pickle.load(f)
    env = model.get_env()
    for index, reset in enumerate(states["env_resets"]):
        env.env_method("replay_reset", reset, indices=[index])
    obs = env.reset()
    saved = model._last_obs
    exact = bool(manifest["episode_boundary"]) and saved is not None and _same_observation(obs, saved)
    if not exact:
        model._last_obs = obs
        model._last_episode_starts = np.ones((env.num_envs,), dtype=bool)
    # Last: the resets above may draw from the global RNGs, as the run's own resets did before the checkpoint.
    restore_global_rng(states, model)
    return exact


def _same_observation(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return np.array_equal(a, b)


class ResumableCheckpoint(BaseCallback):
    """Writes checkpoints (:func:`save_checkpoint`) at update boundaries: every ``save_freq`` steps
    (preferring an episode boundary, see the module docstring; None: none), and at the first boundary
    after :meth:`request_interrupt`, after which it raises ``KeyboardInterrupt`` to end ``learn``.

    :param directory: where the ``step_<n>`` folders go
    :param settings: the run's settings, recorded in each manifest (a resumed run must match them)
    :param extra_files: called at each checkpoint; more files to write into it, by name
    """

    def __init__(
        self,
        directory: str | Path,
        save_freq: int | None,
        settings: dict[str, Any],
        extra_files: Callable[[], dict[str, bytes]] | None = None,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        if save_freq is not None and save_freq < 1:
            raise ValueError(f"save_freq={save_freq}: expected an integer >= 1 (steps) or None")
        self.directory, self.save_freq, self.settings = Path(directory), save_freq, settings
        self.extra_files = extra_files
        self.interrupt_requested = False
        self.last_saved: Path | None = None
        self._dones: np.ndarray | None = None
        self._due: int | None = None

    def request_interrupt(self) -> None:
        self.interrupt_requested = True

    def _init_callback(self) -> None:
        if self.save_freq is not None:
            self._due = (self.num_timesteps // self.save_freq + 1) * self.save_freq

    def _on_step(self) -> bool:
        self._dones = np.asarray(self.locals["dones"])
        return True

    def _on_rollout_start(self) -> None:
        boundary = self._dones is None or bool(self._dones.all())  # nothing stepped yet: just reset
        if self.interrupt_requested:
            self.save(boundary)
            raise KeyboardInterrupt(f"interrupted; checkpoint at step {self.num_timesteps} in {self.last_saved}")
        if self._due is not None and self.num_timesteps >= self._due and self._dones is not None:
            if boundary or self.num_timesteps >= self._due + self.save_freq:
                self.save(boundary)
                self._due = (self.num_timesteps // self.save_freq + 1) * self.save_freq

    def save(self, episode_boundary: bool) -> Path:
        extra = self.extra_files() if self.extra_files else None
        self.last_saved = save_checkpoint(self.model, self.directory, self.settings, episode_boundary, extra)
        if self.verbose:
            print(f"checkpoint at step {self.num_timesteps}: {self.last_saved}")
        return self.last_saved


@contextmanager
def checkpoint_on_sigint(checkpoint: ResumableCheckpoint) -> Iterator[None]:
    """While inside, a first Ctrl-C (SIGINT) asks ``checkpoint`` to save at the next update boundary and
    stop; a second one interrupts at once (the last complete checkpoint stays). Only in the main thread
    (Python delivers signals there); elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        print("\ninterrupt: saving a checkpoint at the end of this rollout (Ctrl-C again to stop at once)",
              flush=True)  # fmt: skip
        checkpoint.request_interrupt()
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, handler) or signal.default_int_handler
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
