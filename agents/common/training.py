"""Stable-Baselines3 / sb3-contrib baselines, trained through one entry point with hyperparameters
kept in YAML files in rl-zoo3's format (``agents/hyperparams/<algo>.yml``: env id -> settings)."""

from __future__ import annotations

import copy
import functools
import io
import json
import platform
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, StopTrainingOnMaxEpisodes
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise

import kd_envs  # noqa: F401  (registers the environments)
from agents.common.checkpoints import (
    CHECKPOINTS_DIR,
    ReplayableReset,
    ResumableCheckpoint,
    checkpoint_on_sigint,
    latest_checkpoint,
    restore_checkpoint,
    settings_differences,
)
from agents.common.compression import SEARCH_ENVS, SearchRecordCallback
from agents.common.episodes import info_numbers  # noqa: F401 (re-exported where its callers found it)
from agents.common.leaderboard import json_env_kwargs
from agents.common.registry import ZOO_KEYS, algo_class, load_hyperparams, policy_class
from agents.common.torch_layers import FEATURES_EXTRACTORS
from kd_envs.tasks import atomic_write


@dataclass
class TrainedAgent:
    model: BaseAlgorithm
    config: dict[str, Any]


def package_versions() -> dict[str, str]:
    names = ("kd-gym", "gymnasium", "stable-baselines3", "sb3-contrib", "torch", "numpy")
    return {"python": platform.python_version(), **{name: version(name) for name in names}}


def build_agent(
    algo: str,
    env_id: str,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    hyperparams: dict[str, Any] | None = None,
    tensorboard_log: str | None = None,
    verbose: int = 0,
    init_from: str | Path | None = None,
    checkpoint: str | Path | None = None,
) -> tuple[BaseAlgorithm, dict[str, Any]]:
    """An untrained SB3 agent on a vectorised ``env_id``, with the YAML settings (``hyperparams``
    overrides them key by key); or, with ``init_from`` (a saved ``model.zip``), that agent's weights
    continuing on this env (N2N's policy transfer to another teacher); or, with ``checkpoint`` (a
    checkpoint folder, see :mod:`agents.common.checkpoints`), the checkpointed agent as it was, ready to
    ``learn(..., reset_num_timesteps=False)``. Returns (model, the settings)."""
    params = load_hyperparams(algo, env_id)
    params.update(hyperparams or {})
    n_envs = int(params.get("n_envs", 1))
    # A callable rather than the id: the env gets exactly these kwargs (make_vec_env would add render_mode).
    train_env_kwargs = {**(env_kwargs or {}), **params.get("env_kwargs", {})}
    # ReplayableReset records each reset's RNG state, so that a checkpoint can be resumed exactly.
    env = make_vec_env(functools.partial(gym.make, env_id, **train_env_kwargs), n_envs=n_envs, seed=seed,
                       wrapper_class=ReplayableReset)  # fmt: skip
    # A copy: SB3 writes into policy_kwargs (A2C its optimizer class, SAC use_sde), which must not leak
    # into the settings recorded in config.json.
    kwargs = copy.deepcopy({k: v for k, v in params.items() if k not in ZOO_KEYS})
    if params.get("noise_type"):
        if params["noise_type"] != "normal":
            raise ValueError(f"noise_type={params['noise_type']!r}: only 'normal' is supported")
        n_actions = int(np.prod(env.action_space.shape))
        kwargs["action_noise"] = NormalActionNoise(np.zeros(n_actions), params["noise_std"] * np.ones(n_actions))
    policy = params.get("policy", "MlpPolicy")
    extractor = (kwargs.get("policy_kwargs") or {}).get("features_extractor_class")
    if isinstance(extractor, str):
        if extractor not in FEATURES_EXTRACTORS:
            raise ValueError(f"features_extractor_class={extractor!r}: expected one of {sorted(FEATURES_EXTRACTORS)}")
        kwargs["policy_kwargs"]["features_extractor_class"] = FEATURES_EXTRACTORS[extractor]
    if checkpoint is not None:
        # The saved data holds every setting; force_reset=False keeps the last observation, which
        # restore_checkpoint compares with the repeated reset's.
        model = algo_class(algo).load(Path(checkpoint) / "model.zip", env=env, force_reset=False,
                                      tensorboard_log=tensorboard_log, verbose=verbose)  # fmt: skip
        return model, params
    if init_from is not None:
        model = algo_class(algo).load(init_from, env=env, device="cpu", seed=seed, tensorboard_log=tensorboard_log,
                                      verbose=verbose, **kwargs)  # fmt: skip
        return model, params
    model = algo_class(algo)(
        policy_class(policy), env, seed=seed, tensorboard_log=tensorboard_log, verbose=verbose, **kwargs
    )
    return model, params


class EpisodeInfoCallback(BaseCallback):
    """Logs the numbers in each finished episode's last ``info`` (for TemperatureKD-v0 the student's
    test accuracy and the temperature statistics) to SB3's logger as ``episode/<key>`` means, so
    TensorBoard shows what the agent achieves, not only its return."""

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if not done:
                continue
            # info_numbers leaves out Monitor's "episode" dict, the terminal observation and bool flags.
            for key, value in info_numbers(info).items():
                self.logger.record_mean(f"episode/{key}", value)
        return True


def train_agent(
    algo: str,
    env_id: str,
    seed: int,
    out_dir: str | Path,
    total_timesteps: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    hyperparams: dict[str, Any] | None = None,
    progress_bar: bool = True,
    tensorboard: bool = True,
    init_from: str | Path | None = None,
    callbacks: Sequence[BaseCallback] = (),
    save_freq: int | None = None,
    resume: bool = False,
) -> TrainedAgent:
    """Train one agent and save ``model.zip`` and ``config.json`` (everything needed to rebuild and
    evaluate it) in ``out_dir``; TensorBoard logs go to ``out_dir/tb``. On a search env
    (N2NCompress-v0) every finished episode's student and the best one go to ``search.json``.
    ``init_from`` starts from a saved agent's weights (see :func:`build_agent`); ``callbacks`` run beside
    the built-in ones (e.g. :class:`agents.common.interference.InterferenceCallback`).

    Checkpoints (:mod:`agents.common.checkpoints`) go to ``out_dir/checkpoints``: every ``save_freq`` steps
    (None: none), and on Ctrl-C, at the next update boundary, before ``KeyboardInterrupt`` ends the run.
    ``resume=True`` continues from the newest complete checkpoint (the same settings are required; the
    step budget may differ) to the same total step count, with step counts and logs continuing; a search
    keeps the students it recorded and its budget counts them. With no checkpoint it starts afresh.
    A resume from a checkpoint on an episode boundary repeats the uninterrupted run exactly (see
    :func:`agents.common.checkpoints.restore_checkpoint` for when it cannot)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensorboard_log = str(out_dir / "tb") if tensorboard else None
    settings = {"env_id": env_id, "env_kwargs": json_env_kwargs(env_kwargs or {}), "algo": algo, "seed": seed,
                "init_from": None if init_from is None else str(init_from),
                "hyperparams": {**load_hyperparams(algo, env_id), **(hyperparams or {})}}  # fmt: skip
    found = latest_checkpoint(out_dir / CHECKPOINTS_DIR) if resume else None
    if resume and found is None:
        print(f"--resume: no complete checkpoint in {out_dir / CHECKPOINTS_DIR}; starting from step 0")
    if found is not None:
        differences = settings_differences(found[1]["settings"], settings)
        if differences:
            raise ValueError(f"cannot resume from {found[0]} with other settings: " + "; ".join(differences))
    model, params = build_agent(algo, env_id, seed, env_kwargs, hyperparams, tensorboard_log, init_from=init_from,
                                checkpoint=None if found is None else found[0])  # fmt: skip
    search = SearchRecordCallback() if env_id in SEARCH_ENVS else None
    if found is not None:
        exact = restore_checkpoint(model, found[0])
        if search is not None:
            search.restore(json.loads((found[0] / "search.json").read_text()))
        print(f"resuming from {found[0]} at step {model.num_timesteps}"
              + ("" if exact else " (mid-episode: the episodes in progress restart from a reset)"))  # fmt: skip
    budget: list[BaseCallback] = []
    if params.get("n_students") is not None:
        if search is None:
            raise ValueError(f"n_students is a search budget; {env_id} is not a search env ({SEARCH_ENVS})")
        n_students = int(params["n_students"])
        # A resumed search's budget counts the students it recorded before the checkpoint.
        budget.append(StopTrainingOnMaxEpisodes(max(1, n_students - len(search.history))))
        # An episode takes at most two steps per teacher layer: the step count never binds first.
        steps = n_students * 2 * int(model.get_env().get_attr("num_layers")[0])
        if len(search.history) >= n_students:
            steps = model.num_timesteps  # the checkpoint ended the search: nothing left to learn
    if total_timesteps is not None or not budget:
        steps = int(total_timesteps if total_timesteps is not None else params["n_timesteps"])

    def search_file() -> dict[str, bytes]:
        return {"search.json": json.dumps(search.state(), indent=1).encode()} if search is not None else {}

    checkpoint = ResumableCheckpoint(out_dir / CHECKPOINTS_DIR, save_freq, settings, search_file)
    callback = CallbackList([EpisodeInfoCallback(), *([search] if search else []), *budget, *callbacks, checkpoint])
    # A resumed run goes on to the same total; a fresh one (even from init_from's weights) counts from 0.
    left = max(0, steps - model.num_timesteps) if found is not None else steps
    try:
        with checkpoint_on_sigint(checkpoint):
            if left > 0:
                model.learn(total_timesteps=left, callback=callback, progress_bar=progress_bar,
                            tb_log_name=f"{algo}_seed{seed}", reset_num_timesteps=found is None)  # fmt: skip
    except KeyboardInterrupt:
        last = latest_checkpoint(out_dir / CHECKPOINTS_DIR)
        where = f"the checkpoint at step {last[1]['num_timesteps']} ({last[0]})" if last else "no checkpoint"
        command = f"kd-gym train --algo {algo} --env {env_id} --seed {seed} --out {out_dir} --resume"
        print(f"\ninterrupted at step {model.num_timesteps}; {where}. To continue: {command}", flush=True)
        raise
    model.save(out_dir / "model.zip")
    if search is not None:
        atomic_write(out_dir / "search.json", lambda f: f.write(json.dumps(search.summary(), indent=1).encode()))
    config = {
        "env_id": env_id,
        "env_kwargs": json_env_kwargs(env_kwargs or {}),  # a task of your own: its factory, which rebuilds it
        "algo": algo,
        "seed": seed,
        "total_timesteps": steps,
        "init_from": None if init_from is None else str(init_from),
        "hyperparams": params,
        "packages": package_versions(),
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, default=str))
    return TrainedAgent(model, config)


def replay_search(config: dict[str, Any]) -> dict[str, Any]:
    """Run a saved search again from its ``config.json`` (what :func:`train_agent` wrote: algorithm, env id and
    kwargs, seed, hyperparameters, total timesteps) to the same number of students, and return its
    :class:`SearchRecordCallback` summary, as ``search.json`` holds it. A seeded search repeats exactly, so on a
    tabular env, where a student costs microseconds, this re-runs what a search entry claims to have found. A
    search that started from another agent's weights (``init_from``) is refused: its start is not in the config."""
    if config.get("env_id") not in SEARCH_ENVS:
        raise ValueError(f"replay_search: env_id {config.get('env_id')!r} is not a search env ({SEARCH_ENVS})")
    if config.get("init_from"):
        raise ValueError(
            f"replay_search: the search started from {config['init_from']}, which its config does not hold"
        )
    model, params = build_agent(config["algo"], config["env_id"], config["seed"], config["env_kwargs"],
                                config["hyperparams"])  # fmt: skip
    if params.get("n_students") is None:
        raise ValueError("replay_search: the config's hyperparameters give no n_students (a search's budget)")
    search = SearchRecordCallback()
    callback = CallbackList([EpisodeInfoCallback(), search, StopTrainingOnMaxEpisodes(int(params["n_students"]))])
    model.learn(total_timesteps=int(config["total_timesteps"]), callback=callback)
    return search.summary()


def load_agent(model_dir: str | Path) -> TrainedAgent:
    """A saved agent (``model.zip`` + ``config.json``) ready to ``predict``."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    model = algo_class(config["algo"]).load(model_dir / "model.zip", device="cpu")
    return TrainedAgent(model, config)


# Entries of a saved agent's data that only training reads; load leaves them None and learn re-creates them.
TRAINING_ONLY_DATA = ("_last_obs", "_last_original_obs", "_last_episode_starts", "ep_info_buffer", "ep_success_buffer")
# Networks that predict() never reads, by the suffix of their name: DQN's and QR-DQN's targets, SAC's and
# TD3's target actor and critic, IQ's anchor. Each is a copy of the network named without the suffix.
COPY_SUFFIXES = ("_target", "_anchor")


def _share_copies(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with each copy network's tensors replaced by its online network's (same shape and dtype),
    so that torch.save writes one storage for both."""
    shared = dict(state)
    for key, tensor in state.items():
        parts = key.split(".")
        for i, part in enumerate(parts):
            suffix = next((s for s in COPY_SUFFIXES if part.endswith(s) and len(part) > len(s)), None)
            if suffix is None:
                continue
            online = state.get(".".join([*parts[:i], part[: -len(suffix)], *parts[i + 1 :]]))
            if online is not None and online.shape == tensor.shape and online.dtype == tensor.dtype:
                shared[key] = online
            break
    return shared


def acting_zip(
    source: str | Path | io.BufferedIOBase, target: str | Path | io.BufferedIOBase, deflate: bool = False
) -> None:
    """Rewrite an SB3 ``model.zip`` (any algorithm: SB3's, sb3-contrib's, ours) as an acting zip, which
    ``cls.load`` and :func:`load_agent` read unchanged and whose ``predict`` gives the same actions:

    - every optimizer keeps its settings (``param_groups``) but no state (Adam's moments, two tensors per
      parameter), like a freshly built one: SB3's ``set_parameters(exact_match=True)`` wants an entry
      for each optimizer that ``_get_torch_save_params`` names, and loads this one as it is;
    - a copy network that ``predict`` never reads (``q_net_target``, ``quantile_net_target``,
      ``actor_target``, ``critic_target``, IQ's ``q_net_anchor``) is stored as the network it copies,
      sharing its storage, so that strict state-dict loading still finds every key;
    - the data drops what only training reads (:data:`TRAINING_ONLY_DATA`: the last observation and the
      episode statistics).

    An agent loaded from it acts as the source did; trained further, it starts a fresh optimizer, and its
    target and anchor networks start as copies of the online network (as at construction).

    Each entry keeps its date and compression, so the same source gives the same bytes; ``deflate``
    instead deflates every entry with a fixed date (the leaderboard's store: the same model, wherever it
    was saved, gives the same bytes and sha256)."""
    with zipfile.ZipFile(source) as archive:
        infos = archive.infolist()
        entries = {info.filename: archive.read(info) for info in infos}
    data = json.loads(entries["data"])
    entries["data"] = json.dumps({k: v for k, v in data.items() if k not in TRAINING_ONLY_DATA}, indent=4).encode()
    for name, content in entries.items():
        if not name.endswith(".pth") or name == "pytorch_variables.pth":
            continue
        state = torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
        if set(state) == {"state", "param_groups"}:  # an optimizer's state dict
            state = {"state": {}, "param_groups": state["param_groups"]}
        else:
            state = _share_copies(state)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        entries[name] = buffer.getvalue()
    with zipfile.ZipFile(target, "w") as archive:
        for info in infos:
            date, compression = ((1980, 1, 1, 0, 0, 0), zipfile.ZIP_DEFLATED) if deflate else \
                (info.date_time, info.compress_type)  # fmt: skip
            archive.writestr(zipfile.ZipInfo(info.filename, date), entries[info.filename], compress_type=compression)


def save_acting_weights(model: BaseAlgorithm, path: str | Path | io.BufferedIOBase) -> None:
    """Save ``model`` as an acting zip (see :func:`acting_zip`): what ``predict`` needs, without the
    optimizer state and the networks only training reads. ``type(model).load`` reads it."""
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    acting_zip(buffer, path)
