"""Evaluate a policy (a saved agent or a fixed policy) over fixed evaluation seeds."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from agents.common.compression import FULL_EPOCHS, final_evaluation
from agents.common.episodes import (  # noqa: F401 (re-exported: the harness is where callers find them)
    EVALUATION_SEEDS,
    TRAINING_SEEDS,
    Policy,
    _start_episode,
    episode_in_new_env,
    episode_in_worker_env,
    info_numbers,
    on_threads,
    run_episode,
    torch_threads,
)
from agents.common.leaderboard import (
    LEADERBOARD_DIR,
    MIN_OFFICIAL_RUNS,
    SCHEMA_VERSION,
    aggregate,
    board_id,
    entry_path,
    machine_kind,
    make_entry,
    run_score,
    write_entry,
)
from agents.common.parallel import map_tasks
from agents.common.registry import policy_path
from agents.common.training import acting_zip, load_agent, package_versions, replay_search
from agents.temperature.specs import fixed_policy, policy_from_spec
from kd_envs.envs.temperature_kd import action_to_temperature
from kd_envs.tasks import TaskFactoryError, accuracy

# N2N's report retrains each search's best student with the full budget, one per seed: three seeds
# keep an entry of five searches under ten minutes on two cores.
SEARCH_EVALUATION_SEEDS: tuple[int, ...] = EVALUATION_SEEDS[:3]

# What an entry is ranked by, per env id: a key of the last step's info, or "return". N2N's is
# C(2 - C) * A / A_teacher with test accuracies, from agents.common.compression.final_evaluation.
SCORE_METRIC: dict[str, str] = {"TemperatureKD-v0": "student_test_accuracy", "N2NCompress-v0": "final_reward"}


def score_metric(env_id: str) -> str:
    return SCORE_METRIC.get(env_id, "return")


def trace_episode(env: gym.Env, policy: Policy, seed: int) -> dict[str, Any]:
    """One deterministic TemperatureKD-v0 episode from ``seed`` that also records, after every epoch,
    the student's test accuracy and the temperatures the policy gave in that epoch (for plots: the
    test split never enters a reward)."""
    base = env.unwrapped
    data, scale = base.task.data, base.options.action_scale
    obs = _start_episode(env, policy, seed)
    test_accuracy, temperatures, epoch_temperatures = [], [], []
    while True:
        action, _ = policy.predict(obs, deterministic=True)
        epoch_temperatures.append(action_to_temperature(torch.as_tensor(action).flatten(), scale).numpy())
        obs, _, terminated, truncated, info = env.step(action)
        if info["batch"] == 0:  # the step closed an epoch (the last one too)
            test_accuracy.append(accuracy(base.student, data.x_test, data.y_test))
            temperatures.append(np.concatenate(epoch_temperatures))
            epoch_temperatures = []
        if terminated or truncated:
            return {"seed": seed, "test_accuracy": test_accuracy, "temperatures": temperatures,
                    **info_numbers(info)}  # fmt: skip


def saved_agent_episode(model_dir: str, env_id: str, env_kwargs: dict[str, Any], seed: int,
                        instance: int | None = None) -> dict[str, Any]:  # fmt: skip
    """:func:`episode_in_new_env` for the agent saved in ``model_dir``, loaded here (one Ray task of
    :func:`trained_agents_entry`: a folder travels to a worker, not a model)."""
    return episode_in_new_env(load_agent(model_dir).model, env_id, env_kwargs, seed, instance)


def episode_plan(seeds: Sequence[int], instances: Sequence[int] | None) -> list[tuple[int, int | None]]:
    """The (seed, instance) of each evaluation episode, in the order entries record them: every seed on the
    first instance, then on the next (without a task set: every seed, instance None)."""
    return [(seed, instance) for instance in (instances if instances is not None else [None]) for seed in seeds]


def evaluate(
    policy: Policy,
    env_id: str,
    env_kwargs: dict[str, Any],
    seeds: Sequence[int] = EVALUATION_SEEDS,
    progress: bool = True,
    description: str = "evaluating",
    workers: int = 1,
    address: str | None = None,
    instances: Sequence[int] | None = None,
    threads: int = 1,
) -> list[dict[str, Any]]:
    """One episode per seed, or on a task set per (instance, seed) (:func:`episode_plan`); returns the
    per-episode results in that order. With ``workers`` > 1 (or a Ray cluster's ``address``) each episode is
    a Ray task (:func:`agents.common.parallel.map_tasks`) that gets a copy of ``policy`` and makes its own
    env: the same numbers as one after the other here. Every episode runs on ``threads`` torch threads
    (:func:`torch_threads`; the caller's count is given back)."""
    plan = episode_plan(seeds, instances)
    if workers > 1 or address is not None:
        tasks = [{"policy": policy, "env_id": env_id, "env_kwargs": env_kwargs, "seed": seed, "instance": instance}
                 for seed, instance in plan]  # fmt: skip
        return map_tasks(functools.partial(on_threads, episode_in_worker_env, threads), tasks, workers, address,
                         description if progress else None, "episode")  # fmt: skip
    with torch_threads(threads):
        env = gym.make(env_id, **env_kwargs)
        results = []
        for seed, instance in tqdm(plan, desc=description, unit="episode", disable=not progress):
            results.append(run_episode(env, policy, seed, instance))
        env.close()
    return results


def task_fingerprint(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The hashes of the teacher's weights and of the data an env's task uses (``Task.fingerprint``),
    or None for envs without a distillation task. Entries record it; verification checks it first."""
    env = gym.make(env_id, **env_kwargs)
    base = env.unwrapped
    task = getattr(base, "task", None)
    fingerprint = task.fingerprint() if task is not None and hasattr(task, "fingerprint") else None
    if fingerprint is not None and getattr(base, "task_set", None) is not None:
        # A split of a task set: every instance's teacher and data, hashed together in the split's order.
        from kd_envs.tasks.task_sets import task_set_sha256

        parts = []
        for position in range(len(base.instances)):
            base._use_instance(position)
            parts.append(base.task.fingerprint())
        joined = lambda key: hashlib.sha256("|".join(p[key] for p in parts).encode()).hexdigest()  # noqa: E731
        fingerprint = {"task_set": base.task_set.name, "task_set_sha256": task_set_sha256(base.task_set.name),
                       "split": base.instances[0].split, "instances": [i.name for i in base.instances],
                       "teacher_sha256": joined("teacher_sha256"),
                       "dataset_sha256": joined("dataset_sha256")}  # fmt: skip
    env.close()
    return fingerprint


def _with_fingerprint(entry: dict[str, Any], env_kwargs: dict[str, Any]) -> dict[str, Any]:
    fingerprint = task_fingerprint(entry["env_id"], env_kwargs)
    if fingerprint is not None:
        entry["task_fingerprint"] = fingerprint
    return entry


def _shared_config(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first config, after checking that every run of an entry shares env id, kwargs and algorithm."""
    first = configs[0]
    for c in configs[1:]:
        if (c["env_id"], c["env_kwargs"], c["algo"]) != (first["env_id"], first["env_kwargs"], first["algo"]):
            raise ValueError("all model dirs of one entry must share env id, env kwargs and algorithm")
    return first


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def store_model(model_dir: Path, files: Sequence[str], directory: Path) -> tuple[str, str]:
    """Store a run's ``files`` in the leaderboard ``directory``, addressed by content: ``model.zip``
    as an acting zip (:func:`agents.common.training.acting_zip`, deflated: weights only), its sha256 names the folder
    ``models/<sha256>/`` that holds it beside the other files. Returns (the folder relative to
    ``directory``, the sha256), which the entry records; a model stored before is reused, not copied."""
    models = Path(directory) / "models"
    models.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=models, prefix=".staging-"))
    try:
        acting_zip(Path(model_dir) / "model.zip", staging / "model.zip", deflate=True)
        for file in files:
            if file != "model.zip":
                shutil.copy2(Path(model_dir) / file, staging / file)
        sha = file_sha256(staging / "model.zip")
        target = models / sha
        if target.is_dir():
            for file in files:
                if file != "model.zip" and (target / file).read_bytes() != (staging / file).read_bytes():
                    raise ValueError(f"{target} holds the same model with a different {file}")
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target.relative_to(directory).as_posix(), sha


def stored_model_dir(run: dict[str, Any], directory: Path) -> Path:
    """A run's stored model folder, after checking that its ``model.zip`` is the one the entry records."""
    folder = Path(directory) / run["model"]
    recorded = run.get("model_sha256")
    if recorded is not None:
        found = file_sha256(folder / "model.zip")
        if found != recorded:
            raise ValueError(f"{folder / 'model.zip'}: sha256 {found} is not the entry's {recorded}")
    return folder


def _fixed_policy(name: str, spec: dict[str, Any] | None, env_kwargs: dict[str, Any]):
    """A registered fixed policy by name, or the policy a spec describes (its chosen parameters), acting
    through the env kwargs' ``action_scale`` and ``action``."""
    scale, action = env_kwargs.get("action_scale", 6.0), env_kwargs.get("action", "temperature")
    return policy_from_spec({"name": name, **spec}, scale, action) if spec else fixed_policy(name, scale, action)


def _record_instances(entry: dict[str, Any], instances: Sequence[int] | None) -> dict[str, Any]:
    if instances is not None:
        entry["evaluation_instances"] = list(instances)
    return entry


def fixed_policy_entry(
    name: str,
    env_id: str = "TemperatureKD-v0",
    env_kwargs: dict[str, Any] | None = None,
    seeds: Sequence[int] = EVALUATION_SEEDS,
    tag: str = "official",
    progress: bool = True,
    policy_spec: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
    workers: int = 1,
    address: str | None = None,
    instances: Sequence[int] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Evaluate a fixed policy; each evaluation episode is a run. ``name`` is one of
    :data:`agents.temperature.specs.FIXED_POLICIES`, or, with ``policy_spec``, the name of a policy whose
    parameters were chosen beforehand (``best_constant``): the entry stores the spec, and ``selection``
    (how it was chosen, on what) beside it. ``workers``/``address``/``instances``/``threads``: see
    :func:`evaluate` (the entry records ``threads``)."""
    policy = _fixed_policy(name, policy_spec, env_kwargs or {})
    kwargs = {**(env_kwargs or {}), **policy.env_overrides}
    episodes = evaluate(policy, env_id, kwargs, seeds, progress, name, workers, address, instances, threads)
    runs = [{"training_seed": None, "model": None, "episodes": [episode]} for episode in episodes]
    agent: dict[str, Any] = {"kind": "fixed", "name": name}
    if policy_spec:
        agent["policy"] = policy_spec
    if selection:
        agent["selection"] = selection
    entry = make_entry(env_id, kwargs, agent, runs, list(seeds), score_metric(env_id), package_versions(), tag,
                       torch_threads=threads)  # fmt: skip
    return _with_fingerprint(_record_instances(entry, instances), kwargs)


def searched_policies_entry(
    name: str,
    env_id: str,
    env_kwargs: dict[str, Any],
    searches: Sequence[dict[str, Any]],
    search: dict[str, Any],
    seeds: Sequence[int] = EVALUATION_SEEDS,
    tag: str = "official",
    progress: bool = True,
    instances: Sequence[int] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """An entry for policies found by independent searches (the black-box temperature map): each
    search is a run, ``{"training_seed": search seed, "policy": spec, ...its record}``, scored by its
    policy's mean over the evaluation seeds on ``threads`` torch threads. ``search`` says how (budget,
    objective, space)."""
    chose = {s for found in searches for s in found.get("episode_seeds", [])}
    if chose & set(seeds):
        raise ValueError(f"the searches chose on episode seeds {sorted(chose)}, which overlap the evaluation seeds")
    runs = []
    for found in searches:
        policy = _fixed_policy(name, found["policy"], env_kwargs)
        episodes = evaluate(policy, env_id, env_kwargs, seeds, progress, description=f"{name} {found['training_seed']}",
                            instances=instances, threads=threads)  # fmt: skip
        runs.append({**found, "model": None, "episodes": episodes})
    agent = {"kind": "searched", "name": name, "search": search}
    entry = make_entry(env_id, env_kwargs, agent, runs, list(seeds), score_metric(env_id), package_versions(), tag,
                       torch_threads=threads)  # fmt: skip
    return _with_fingerprint(_record_instances(entry, instances), env_kwargs)


def trained_agents_entry(
    model_dirs: Sequence[str | Path],
    seeds: Sequence[int] = EVALUATION_SEEDS,
    tag: str = "official",
    name: str | None = None,
    directory: Path = LEADERBOARD_DIR,
    progress: bool = True,
    evaluation_env_kwargs: Sequence[dict[str, Any]] | None = None,
    extra_files: Sequence[str] = (),
    workers: int = 1,
    address: str | None = None,
    instances: Sequence[int] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Evaluate agents saved by :func:`agents.common.training.train_agent` (one per training seed, same env,
    kwargs and algorithm) and copy them under ``directory/models`` so the entry can be verified.

    By default the agents are evaluated on the env kwargs they trained with. ``evaluation_env_kwargs``
    evaluates each of several settings instead, every seed on each, in that order (an interference env
    trained under drift is scored on each of its contexts held fixed); the entry records them.
    ``extra_files`` of each model dir are stored beside the model. With ``workers`` > 1 (or a Ray
    cluster's ``address``) every (model, setting, seed) episode is a Ray task that loads the model from
    its folder (:func:`saved_agent_episode`): the same numbers as the serial loop. ``instances``: on a task
    set, every seed on each of these instances of the split the agents' env kwargs name (e.g. trained with
    ``split="train"``, scored with ``evaluation_env_kwargs=[{..., "split": "test"}]``). Every episode runs on
    ``threads`` torch threads, which the entry records."""
    if instances is not None and evaluation_env_kwargs is not None and len(evaluation_env_kwargs) > 1:
        raise ValueError("an entry scores either several evaluation settings or a task set's instances, not both")
    agents = [(Path(d), load_agent(d)) for d in model_dirs]
    configs = [a.config for _, a in agents]
    first = _shared_config(configs)
    training_seeds = [c["seed"] for c in configs]
    if set(training_seeds) & set(seeds):
        raise ValueError(f"training seeds {training_seeds} overlap the evaluation seeds {list(seeds)}")
    name = name or first["algo"]
    env_id = first["env_id"]
    runs = []
    settings = list(evaluation_env_kwargs) if evaluation_env_kwargs else [first["env_kwargs"]]
    if workers > 1 or address is not None:
        # Absolute paths: a worker's working directory need not be this one (on a cluster, another machine's).
        tasks = [{"model_dir": str(model_dir.resolve()), "env_id": env_id, "env_kwargs": kwargs, "seed": seed,
                  "instance": instance} for model_dir, _ in agents for kwargs in settings
                 for seed, instance in episode_plan(seeds, instances)]  # fmt: skip
        flat = map_tasks(functools.partial(on_threads, saved_agent_episode, threads), tasks, workers, address,
                         name if progress else None, "episode")  # fmt: skip
        per_model = len(settings) * len(episode_plan(seeds, instances))
        parallel = [flat[i * per_model : (i + 1) * per_model] for i in range(len(agents))]
    for i, (model_dir, agent) in enumerate(agents):
        if workers > 1 or address is not None:
            episodes = parallel[i]
        else:
            episodes = [episode for kwargs in settings
                        for episode in evaluate(agent.model, env_id, kwargs, seeds, progress,
                                                description=f"{name} seed {agent.config['seed']}",
                                                instances=instances, threads=threads)]  # fmt: skip
        model, sha = store_model(model_dir, ("model.zip", "config.json", *extra_files), directory)
        runs.append({"training_seed": agent.config["seed"], "model": model, "model_sha256": sha, "episodes": episodes})
    spec = {
        "kind": "sb3",
        "name": name,
        "algo": first["algo"],
        "hyperparams": first["hyperparams"],
        "total_timesteps": first["total_timesteps"],
    }
    entry = make_entry(env_id, first["env_kwargs"], spec, runs, list(seeds), score_metric(env_id),
                       package_versions(), tag, torch_threads=threads)  # fmt: skip
    if evaluation_env_kwargs:
        entry["evaluation_env_kwargs"] = settings
    return _with_fingerprint(_record_instances(entry, instances), settings[0])


def search_entry(
    model_dirs: Sequence[str | Path],
    seeds: Sequence[int] = SEARCH_EVALUATION_SEEDS,
    tag: str = "official",
    name: str | None = None,
    directory: Path = LEADERBOARD_DIR,
    epochs: int = FULL_EPOCHS,
    progress: bool = True,
    workers: int = 1,
    address: str | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """An entry for searches on N2NCompress-v0 saved by :func:`agents.common.training.train_agent` (one per
    training seed): each search's best student (``search.json``) is retrained with ``epochs`` epochs on
    every evaluation seed and scored on the test split (:func:`agents.common.compression.final_evaluation`),
    on ``threads`` torch threads (recorded in the entry). With ``workers`` > 1 (or a Ray cluster's
    ``address``) each (search, seed) retraining is a Ray task."""
    configs = [json.loads((Path(d) / "config.json").read_text()) for d in model_dirs]
    first = _shared_config(configs)
    name = name or first["algo"]
    env_id = first["env_id"]
    searches = [json.loads((Path(d) / "search.json").read_text()) for d in model_dirs]
    for model_dir, search in zip(model_dirs, searches):
        if search["best"] is None:
            raise ValueError(f"{model_dir}/search.json found no valid student")
    if workers > 1 or address is not None:
        tasks = [
            {
                "env_id": env_id,
                "env_kwargs": config["env_kwargs"],
                "architecture": search["best"]["architecture"],
                "seeds": [seed],
                "epochs": epochs,
            }
            for config, search in zip(configs, searches)
            for seed in seeds
        ]
        flat = [e for es in map_tasks(functools.partial(on_threads, final_evaluation, threads), tasks, workers,
                                      address, name if progress else None, "student") for e in es]  # fmt: skip
    runs = []
    for i, (model_dir, config, search) in enumerate(zip(map(Path, model_dirs), configs, searches)):
        if workers > 1 or address is not None:
            episodes = flat[i * len(seeds) : (i + 1) * len(seeds)]
        else:
            with torch_threads(threads):
                episodes = final_evaluation(env_id, config["env_kwargs"], search["best"]["architecture"], seeds,
                                            epochs, progress=progress)  # fmt: skip
        model, sha = store_model(model_dir, ("model.zip", "config.json", "search.json"), directory)
        best = {k: v for k, v in search["best"].items() if k != "architecture"}
        runs.append({"training_seed": config["seed"], "model": model, "model_sha256": sha,
                     "architecture": search["best"]["architecture"],
                     "search": {"episodes": search["episodes"], "unique_students": search["unique_students"],
                                "best": best},
                     "episodes": episodes})  # fmt: skip
    spec = {
        "kind": "search",
        "name": name,
        "algo": first["algo"],
        "hyperparams": first["hyperparams"],
        "total_timesteps": first["total_timesteps"],
        "final_epochs": epochs,
    }
    entry = make_entry(env_id, first["env_kwargs"], spec, runs, list(seeds), score_metric(env_id),
                       package_versions(), tag, torch_threads=threads)  # fmt: skip
    return _with_fingerprint(entry, first["env_kwargs"])


def scored_env_kwargs(entry: dict[str, Any]) -> dict[str, Any]:
    """The env kwargs an entry was scored with: its one evaluation setting if it has one (an agent trained on a
    task set's train split, scored on its test split), else the kwargs it was made with."""
    settings = entry.get("evaluation_env_kwargs") or []
    return settings[0] if len(settings) == 1 else entry["env_kwargs"]


def save_entry(entry: dict[str, Any], directory: Path = LEADERBOARD_DIR) -> Path:
    board = board_id(entry["env_id"], scored_env_kwargs(entry))
    return write_entry(entry, entry_path(board, entry["agent"]["name"], entry["tag"], directory))


def entry_policies(entry: dict[str, Any], directory: Path = LEADERBOARD_DIR) -> list[tuple[str, Policy]]:
    """The policies an entry scored, rebuilt, with a label each: one for a fixed policy, one per search
    for searched policies, one per training seed for trained agents (loaded from the entry's models).
    Not for N2N searches, whose runs are students, not policies."""
    agent = entry["agent"]
    if agent["kind"] == "fixed":
        return [("fixed", _fixed_policy(agent["name"], agent.get("policy"), entry["env_kwargs"]))]
    if agent["kind"] == "searched":
        kwargs = entry["env_kwargs"]
        return [(f"search seed {run['training_seed']}", _fixed_policy(agent["name"], run["policy"], kwargs))
                for run in entry["runs"]]  # fmt: skip
    if agent["kind"] == "search":
        raise ValueError("an N2N search entry holds students, not policies")
    return [(f"training seed {run['training_seed']}", load_agent(stored_model_dir(run, directory)).model)
            for run in entry["runs"]]  # fmt: skip


def _recorded_runs(entry: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The recorded episodes per policy of :func:`entry_policies` (a fixed policy's runs are one each)."""
    if entry["agent"]["kind"] == "fixed":
        return [[e for run in entry["runs"] for e in run["episodes"]]]
    return [run["episodes"] for run in entry["runs"]]


AGENT_KINDS = ("fixed", "searched", "sb3", "search")
# Agents trained by the harness, whose runs are stored models (their config.json beside them).
TRAINED_KINDS = ("sb3", "search")
# The keys every entry holds, with their JSON types (make_entry writes them).
ENTRY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "schema": int, "env_id": str, "env_kwargs": dict, "agent": dict, "tag": str, "metric": str,
    "training_seeds": list, "evaluation_seeds": list, "runs": list, "summary": dict, "official": bool,
    "git_commit": (str, type(None)),
}  # fmt: skip


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _selection_records(selection: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The choices a selection records, each beside its validation table: the selection itself
    (``best_constant``: its ``temperature`` and ``validation_accuracy`` over a ``grid``), or each of its named
    parts (a feature loss's entry: ``{"best_constant": {...}, "feature_weight": {...}}``)."""
    if "validation_accuracy" in selection:
        return [("selection", selection)]
    return [(f"selection {name!r}", record) for name, record in selection.items()
            if isinstance(record, dict) and "validation_accuracy" in record]  # fmt: skip


def _task_set_selection_problems(selection: dict[str, Any], policy: dict[str, Any], evaluation_seeds) -> list[str]:
    """A task set's choice against its own per-instance validation table: a constant policy's temperature is
    the split's single best (``single_best_constant``), a per-instance policy's temperatures each instance's
    best (``per_instance_constants``); chosen on validation, on seeds apart from the evaluation seeds."""
    from agents.common.selection import SELECTION_METRIC, per_instance_constants, single_best_constant

    table = selection["table"]
    try:
        if not table or not all(_is_number(v) for row in table.values() for v in row.values()):
            raise ValueError
        single, per_instance = single_best_constant(table), per_instance_constants(table)
    except (AttributeError, TypeError, ValueError, StopIteration):
        return ["selection: expected a table {instance: {temperature: validation accuracy}} of numbers"]
    problems = []
    kind = policy.get("class", "constant")
    if kind == "constant" and policy.get("temperature") != single:
        problems.append(f"selection: temperature {policy.get('temperature')!r} is not the best mean of its "
                        f"validation table over the split's instances (T = {single:g})")  # fmt: skip
    if kind == "per_instance" and policy.get("temperatures") != per_instance:
        problems.append(f"selection: temperatures {policy.get('temperatures')!r} are not each instance's best of "
                        f"its validation table ({per_instance})")  # fmt: skip
    if set(selection.get("seeds") or []) & set(evaluation_seeds):
        problems.append(f"selection: chosen on seeds {selection.get('seeds')}, which overlap the evaluation seeds")
    if selection.get("metric", SELECTION_METRIC) != SELECTION_METRIC:
        problems.append(f"selection: chosen on {selection['metric']!r}, not on {SELECTION_METRIC!r}")
    return problems


def selection_problems(entry: dict[str, Any]) -> list[str]:
    """What is wrong with the choices a fixed entry records in ``agent["selection"]``: each chosen value
    (``feature_weight`` where the record has one, else ``temperature``) must be its own validation table's
    best (ties: the first in the recorded ``grid``'s order, else in the table's), the value the entry was
    evaluated with (the policy's temperature, the env's feature weight), chosen on the validation metric and
    on seeds apart from the evaluation seeds; a task set's per-instance ``table`` as
    :func:`_task_set_selection_problems` says."""
    from agents.common.selection import SELECTION_METRIC

    selection = entry["agent"].get("selection")
    if selection is None:
        return []
    if not isinstance(selection, dict):
        return [f"selection is {type(selection).__name__}, expected an object"]
    problems = []
    policy = entry["agent"].get("policy") or {}
    if isinstance(selection.get("table"), dict):
        problems += _task_set_selection_problems(selection, policy, entry["evaluation_seeds"])
    for label, record in _selection_records(selection):
        key = "feature_weight" if "feature_weight" in record else "temperature"
        table, chosen = record["validation_accuracy"], record.get(key)
        try:
            values = {float(value): score for value, score in table.items()}
            order = [float(value) for value in (record.get("grid") or table)]
        except (AttributeError, TypeError, ValueError):
            values, order = {}, []
        if not values or not all(map(_is_number, values.values())) or not _is_number(chosen):
            problems.append(f"{label}: expected a number {key!r} and a validation_accuracy table of numbers")
            continue
        if sorted(order) != sorted(values):
            problems.append(f"{label}: its grid {record.get('grid')} is not its table's values {list(table)}")
            continue
        best = max(order, key=lambda value: (values[value], -order.index(value)))
        if float(chosen) != best:
            problems.append(f"{label}: {key} {chosen:g} is not the best of its validation table ({key} {best:g}: "
                            f"{values[best]!r} against {values.get(float(chosen))!r})")  # fmt: skip
        evaluated = {"temperature": policy.get("temperature"),
                     "feature_weight": entry["env_kwargs"].get("feature_weight")}  # fmt: skip
        for name, value in evaluated.items():
            recorded = record.get(name)
            if _is_number(recorded) and _is_number(value) and float(value) != float(recorded):
                problems.append(f"{label}: chose {name} {recorded:g} but the entry was evaluated with {value!r}")
        seeds = record.get("seeds") or []
        if set(seeds) & set(entry["evaluation_seeds"]):
            problems.append(f"{label}: chosen on seeds {seeds}, which overlap the evaluation seeds")
        if record.get("metric", SELECTION_METRIC) != SELECTION_METRIC:
            problems.append(f"{label}: chosen on {record['metric']!r}, not on {SELECTION_METRIC!r}")
    return problems


def entry_problems(entry: Any) -> list[str]:
    """What is wrong with an entry before anything is replayed: its schema (keys, types, runs and their
    episodes on the entry's evaluation seeds), its ``metric`` (the env's :func:`score_metric`), its selection
    (:func:`selection_problems`) and the official rule (``tag="official"``, at least ``MIN_OFFICIAL_RUNS``
    runs, the protocol's evaluation seeds, a clean commit, a ``model_sha256`` on every run of a trained
    agent). Empty when sound."""
    if not isinstance(entry, dict):
        return [f"an entry is a JSON object, not {type(entry).__name__}"]
    problems = [f"missing key {key!r}" for key in ENTRY_FIELDS if key not in entry]
    for key, kind in ENTRY_FIELDS.items():
        value = entry.get(key)
        if key in entry and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
            problems.append(f"{key!r} is {type(value).__name__}, expected {getattr(kind, '__name__', 'str or null')}")
    if problems:
        return problems
    if entry["schema"] != SCHEMA_VERSION:
        problems.append(f"schema {entry['schema']}; this code reads schema {SCHEMA_VERSION}")
    if entry["metric"] != score_metric(entry["env_id"]):
        problems.append(f"metric {entry['metric']!r}: {entry['env_id']} entries are ranked by "
                        f"{score_metric(entry['env_id'])!r}")  # fmt: skip
    threads = entry.get("torch_threads", 1)
    if not _is_int(threads) or threads < 1:
        problems.append(f"torch_threads {threads!r}: expected an int >= 1")
    if not isinstance(entry.get("machine", ""), str):
        problems.append(f"machine {entry['machine']!r}: expected a string")
    kind = entry["agent"].get("kind")
    if kind not in AGENT_KINDS or not isinstance(entry["agent"].get("name"), str):
        problems.append(f"agent {entry['agent']!r}: expected a 'name' and a 'kind' in {AGENT_KINDS}")
    if kind == "fixed":
        problems += selection_problems(entry)
    seeds = entry["evaluation_seeds"]
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        problems.append(f"evaluation_seeds {seeds!r}: expected a non-empty list of ints")
    if set(entry["training_seeds"]) & set(seeds):
        problems.append(f"training seeds {entry['training_seeds']} overlap the evaluation seeds")
    runs = entry["runs"]
    if not runs:
        problems.append("runs is empty")
    settings = len(entry.get("evaluation_env_kwargs") or [None])
    instances = entry.get("evaluation_instances")
    if instances is not None and (
        not isinstance(instances, list) or not instances
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in instances)
    ):  # fmt: skip
        problems.append(f"evaluation_instances {instances!r}: expected a non-empty list of ints")
        instances = None
    settings *= len(instances or [None])
    for i, run in enumerate(runs):
        if not isinstance(run, dict) or not isinstance(run.get("episodes"), list) or not run["episodes"] \
                or not all(isinstance(e, dict) and "seed" in e for e in run["episodes"]):  # fmt: skip
            problems.append(f"run {i}: expected a dict with a non-empty 'episodes' list of dicts with a 'seed'")
            continue
        if kind != "fixed" and [e["seed"] for e in run["episodes"]] != list(seeds) * settings:
            problems.append(f"run {i}: its episodes' seeds are not the entry's evaluation seeds")
    if kind == "fixed" and not problems and [e["seed"] for r in runs for e in r["episodes"]] != list(seeds) * settings:
        problems.append("the fixed policy's runs are not one episode per evaluation seed (and instance)")
    if instances is not None and not problems:
        recorded = [e.get("instance") for r in runs for e in r["episodes"]]
        expected = [i for _, i in episode_plan(seeds, instances)] * (1 if kind == "fixed" else len(runs))
        if recorded != expected:
            problems.append("the episodes' instances are not the entry's evaluation_instances, every seed on each")
    official = entry["tag"] == "official" and len(runs) >= MIN_OFFICIAL_RUNS
    if entry["official"] != official:
        problems.append(f"official is {entry['official']} but the rule (tag 'official', >= {MIN_OFFICIAL_RUNS} runs; "
                        f"this entry: tag {entry['tag']!r}, {len(runs)} runs) says {official}")  # fmt: skip
    if entry["official"]:
        protocol = list(SEARCH_EVALUATION_SEEDS if kind == "search" else EVALUATION_SEEDS)
        if list(seeds) != protocol:
            problems.append(f"an official {kind} entry is scored on the evaluation seeds {protocol}, not {seeds}")
        commit = entry["git_commit"]
        if commit is None or commit.endswith("-dirty"):
            problems.append(f"an official entry needs a clean commit; git_commit is {commit!r}")
        if kind in TRAINED_KINDS:
            for i, run in enumerate(runs):
                if not isinstance(run, dict) or not run.get("model") or not isinstance(run.get("model_sha256"), str):
                    problems.append(f"run {i}: an official {kind} entry records its stored model and the model's "
                                    "model_sha256 on every run")  # fmt: skip
    return problems


def _same_policy_path(hyperparams: Any) -> Any:
    """Hyperparameters with their policy as a dotted path (:func:`agents.common.registry.policy_path`: a run
    trained before the YAML files gave dotted paths records the bare name of the same class)."""
    if isinstance(hyperparams, dict) and "policy" in hyperparams:
        return {**hyperparams, "policy": policy_path(hyperparams["policy"])}
    return hyperparams


def stored_config_problems(entry: dict[str, Any], directory: Path = LEADERBOARD_DIR) -> list[str]:
    """What the ``config.json`` stored beside each of a trained agent's models (``train_agent`` wrote it)
    says against the entry: the algorithm, the env id and kwargs, the hyperparameters and the total timesteps
    of the entry's agent spec, and a training seed that is the run's own and none of the evaluation seeds.
    Empty for entries without stored models."""
    agent, problems = entry["agent"], []
    for run in entry["runs"]:
        if agent["kind"] not in TRAINED_KINDS or not run.get("model"):
            continue
        path = Path(directory) / run["model"] / "config.json"
        try:
            config = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            problems.append(f"training seed {run['training_seed']}: cannot read {path}: {error}")
            continue
        claims = {"algo": agent.get("algo"), "env_id": entry["env_id"], "env_kwargs": entry["env_kwargs"],
                  "hyperparams": agent.get("hyperparams"), "total_timesteps": agent.get("total_timesteps"),
                  "seed": run["training_seed"]}  # fmt: skip
        for key, claim in claims.items():
            if _same_policy_path(config.get(key)) != _same_policy_path(claim):
                problems.append(f"training seed {run['training_seed']}: {path} has {key} {config.get(key)!r}, the "
                                f"entry {claim!r}")  # fmt: skip
        if config.get("seed") in entry["evaluation_seeds"]:
            problems.append(f"training seed {run['training_seed']}: {path} trained on evaluation seed {config['seed']}")
    return problems


# A re-run on another machine kind than the entry's is CONSISTENT only when every recorded per-episode number
# lies within CROSS_MACHINE_TOLERANCE (absolute) of the re-run's and no number's differences have a direction
# (has_direction). The tolerance is half of the +0.004 per episode that, in a review of --verify, lifted
# constant_t4 above PPO when any string in "machine" made it CONSISTENT: a forger who keeps within it and
# without direction moves an IQM by about the tolerance at most. Differences up to FLOAT_NOISE (the rounding
# of a float32 number of a few units) count as none.
CROSS_MACHINE_TOLERANCE = 0.002
FLOAT_NOISE = 1e-6
# The paired test's level: the score's differences at 5%, the other numbers' at 5% together (Bonferroni).
DIRECTION_ALPHA = 0.05


def has_direction(differences: Sequence[float], alpha: float = DIRECTION_ALPHA) -> bool:
    """Whether paired differences (re-run minus recorded, one per episode) are systematic: the two-sided
    ``1 - alpha`` t-interval of their mean excludes 0. Differences within :data:`FLOAT_NOISE` count as none;
    differences all alike (a uniform shift), or a single episode's, have a direction unless they are none."""
    from scipy import stats

    d = np.asarray(differences, dtype=np.float64)
    if not np.isfinite(d).all():
        return True
    d = np.where(np.abs(d) <= FLOAT_NOISE, 0.0, d)
    if not d.any():
        return False
    if len(d) < 2 or d.std(ddof=1) == 0:
        return True
    half_width = stats.t.ppf(1 - alpha / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return bool(abs(d.mean()) > half_width)


def directed_numbers(paired: dict[str, list[float]], metric: str) -> list[str]:
    """The per-episode numbers (keys) whose differences have a direction (:func:`has_direction`): the score
    ``metric`` at :data:`DIRECTION_ALPHA`, each other number that differs at all at ``DIRECTION_ALPHA`` over
    their count (honest noise touches many numbers at once; a forged ECE, NLL or AURC is one of them)."""
    others = [key for key, d in paired.items() if key != metric and np.any(np.abs(d) > FLOAT_NOISE)]
    directed = [metric] if metric in paired and has_direction(paired[metric]) else []
    return directed + [key for key in others if has_direction(paired[key], DIRECTION_ALPHA / len(others))]


@dataclass
class Verification:
    """What :func:`verify` found. ``problems`` make an entry fail wherever it is replayed (an unsound
    entry, a model or config that is not the recorded one, a score or summary that does not follow from the
    stored episodes, a selection the re-run does not repeat); ``differences`` are recorded numbers the replay
    did not reproduce exactly. A replay is exact on the machine kind that made the entry; on another kind
    (``same_machine_kind`` False) it is ``consistent`` when every difference is within
    :data:`CROSS_MACHINE_TOLERANCE` and none of the numbers' differences has a direction (``directed``,
    :func:`directed_numbers`). The re-run's IQM against the entry's 95% CI is reported, not judged: the
    entry's own CI is not evidence."""

    problems: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    largest_difference: float = 0.0
    largest_difference_at: str = ""
    rerun_iqm: float | None = None
    entry_iqm_ci95: tuple[float, float] | None = None
    same_machine_kind: bool | None = None  # None: the entry does not record its machine kind
    directed: list[str] = field(default_factory=list)
    reran_selection: bool = False
    # What the replay rests on beyond the entry, said whatever the status (a task of your own's factory).
    notes: list[str] = field(default_factory=list)

    @property
    def inside_ci(self) -> bool | None:
        if self.rerun_iqm is None or self.entry_iqm_ci95 is None:
            return None
        return self.entry_iqm_ci95[0] <= self.rerun_iqm <= self.entry_iqm_ci95[1]

    @property
    def status(self) -> str:
        if self.problems:
            return "MISMATCH"
        if not self.differences:
            return "OK"
        small = self.largest_difference <= CROSS_MACHINE_TOLERANCE
        return "CONSISTENT" if self.same_machine_kind is False and small and not self.directed else "MISMATCH"

    def lines(self) -> list[str]:
        out = self.problems + self.differences[:20]
        if self.differences:
            kind = {True: "this machine kind made the entry", False: "another machine kind made the entry",
                    None: "the entry records no machine kind"}[self.same_machine_kind]  # fmt: skip
            direction = f"systematic differences in {', '.join(self.directed)}" if self.directed else \
                "no number's differences have a direction"  # fmt: skip
            iqm = "" if self.rerun_iqm is None else (
                f"; re-run IQM {self.rerun_iqm:.4f}, {'inside' if self.inside_ci else 'outside'} the entry's 95% CI "
                f"[{self.entry_iqm_ci95[0]:.4f}, {self.entry_iqm_ci95[1]:.4f}]")  # fmt: skip
            out.append(f"largest difference {self.largest_difference:.3g} ({self.largest_difference_at}; another "
                       f"machine kind may differ by {CROSS_MACHINE_TOLERANCE:g}); {direction}{iqm}; "
                       f"{kind}")  # fmt: skip
        return out


def _numeric_difference(old: Any, new: Any) -> float:
    if _is_number(old) and _is_number(new):
        gap = abs(float(old) - float(new))
        return gap if np.isfinite(gap) else float("inf")
    return float("inf")


def record_machine(path: str | Path, result: Verification, when: str, commit: str | None) -> bool:
    """Record this machine's kind (:func:`machine_kind`) in an entry that records none, once ``result``
    (:func:`verify` of ``path`` here) is OK: every number replayed exactly, so the entry is exact on this
    kind. ``machine_note`` says how the field was added (``when``, by which command at which ``commit``):
    the entry's maker did not record it. Returns whether the file was changed; an entry that records a
    machine kind, or whose replay was not exact, is left as it is."""
    path = Path(path)
    entry = json.loads(path.read_text())
    if result.status != "OK" or "machine" in entry:
        return False
    entry["machine"] = machine_kind()
    entry["machine_note"] = (f"added {when} by `kd-gym leaderboard --verify --record-machine` at commit "
                             f"{commit or 'unknown'}: every recorded number replayed exactly on this machine kind; "
                             "the entry's maker did not record it")  # fmt: skip
    write_entry(entry, path)
    return True


def verify_entry(path: str | Path, directory: Path = LEADERBOARD_DIR, progress: bool = True) -> list[str]:
    """:func:`verify` as a list: the entry's problems and every recorded number the replay did not
    reproduce exactly (empty when every number matches)."""
    result = verify(path, directory, progress)
    return result.problems + result.differences


def rerun_selection(entry: dict[str, Any], progress: bool = True) -> tuple[float, dict[float, float]] | None:
    """The constant temperature a fixed entry's selection chose, chosen again
    (:func:`agents.common.selection.select_best_constant` with the recorded grid and seeds, on the env kwargs
    the selection records, else the entry's): (temperature, {temperature: validation accuracy}). None for an
    entry without such a selection (``best_constant``'s)."""
    from agents.common.selection import select_best_constant

    selection = entry["agent"].get("selection") or {}
    if entry["agent"]["kind"] != "fixed" or not {"temperature", "validation_accuracy", "seeds"} <= set(selection) \
            or "feature_weight" in selection:  # fmt: skip
        return None
    kwargs = selection.get("env_kwargs", entry["env_kwargs"])
    grid = [float(t) for t in selection.get("grid") or selection["validation_accuracy"]]
    return select_best_constant(entry["env_id"], kwargs, grid, list(selection["seeds"]),
                                kwargs.get("action_scale", 6.0), progress)  # fmt: skip


def _replay(entry: dict[str, Any], directory: Path, progress: bool, threads: int) -> tuple[list[tuple], list[str]]:
    """Each policy's (label, recorded episodes, re-run episodes) on ``threads`` torch threads, and what the
    stored records contradict."""
    env_id, kwargs, seeds = entry["env_id"], entry["env_kwargs"], entry["evaluation_seeds"]
    instances = entry.get("evaluation_instances")
    pairs, mismatches = [], []
    if entry["agent"]["kind"] in ("fixed", "searched"):
        for (label, policy), recorded in zip(entry_policies(entry, directory), _recorded_runs(entry)):
            episodes = evaluate(policy, env_id, kwargs, seeds, progress, description="verifying", instances=instances,
                                threads=threads)  # fmt: skip
            pairs.append((label, recorded, episodes))
    elif entry["agent"]["kind"] == "search":
        for run in entry["runs"]:
            stored = json.loads((stored_model_dir(run, directory) / "search.json").read_text())
            if stored["best"]["architecture"] != run["architecture"]:
                mismatches.append(f"training seed {run['training_seed']}: the entry's architecture is not its "
                                  "search's best")  # fmt: skip
            if kwargs.get("tabular"):  # a search on a table costs microseconds a student: run it again
                config = json.loads((stored_model_dir(run, directory) / "config.json").read_text())
                mismatches += [f"training seed {run['training_seed']}: {m}" for m in
                               _search_differences(stored, replay_search(config))]  # fmt: skip
            with torch_threads(threads):
                episodes = final_evaluation(env_id, kwargs, run["architecture"], seeds, entry["agent"]["final_epochs"],
                                            use_cache=False, progress=progress)  # fmt: skip
            pairs.append((f"training seed {run['training_seed']}", run["episodes"], episodes))
    else:
        for (label, policy), run in zip(entry_policies(entry, directory), entry["runs"]):
            episodes = []
            for setting in entry.get("evaluation_env_kwargs") or [kwargs]:
                episodes += evaluate(policy, env_id, setting, seeds, progress, description="verifying",
                                     instances=instances, threads=threads)  # fmt: skip
            pairs.append((label, run["episodes"], episodes))
    return pairs, mismatches


def _search_differences(stored: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    """Where a search run again differs from its stored ``search.json``: episode count, each student (reward and
    architecture) in order, and the best."""
    found = []
    if stored.get("episodes") != replayed["episodes"]:
        found.append(f"the search ran {replayed['episodes']} episodes again, its search.json records "
                     f"{stored.get('episodes')!r}")  # fmt: skip
    keys = ("reward", "architecture_summary", "student_parameters", "accuracy", "degenerate")
    for old, new in zip(stored.get("history") or [], replayed["history"]):
        differ = [k for k in keys if old.get(k) != new.get(k)]
        if differ:
            found.append(f"episode {new['episode']} run again differs from search.json in {', '.join(differ)}: "
                         f"{ {k: old.get(k) for k in differ} } -> { {k: new.get(k) for k in differ} }")  # fmt: skip
            break
    best = (stored.get("best") or {}).get("architecture")
    if best != (replayed["best"] or {}).get("architecture"):
        found.append("the search run again finds another best student than its search.json")
    return found


def _task_notes(entry: dict[str, Any]) -> list[str]:
    """What a replay of ``entry`` rests on beyond the entry itself: for a task of your own, its factory."""
    notes = []
    for kwargs in [entry["env_kwargs"], *(entry.get("evaluation_env_kwargs") or [])]:
        task = kwargs.get("task") if isinstance(kwargs, dict) else None
        if isinstance(task, str) and ":" in task:
            note = (f"task {task!r} is a task of your own: the entry names its factory, not its data; it was rebuilt "
                    "by importing that factory and checked against the entry's teacher and data sha256")  # fmt: skip
            if note not in notes:
                notes.append(note)
    return notes


def verify(path: str | Path, directory: Path = LEADERBOARD_DIR, progress: bool = True,
           deep: bool = False) -> Verification:  # fmt: skip
    """Re-run an entry's stored policy on its evaluation seeds, on the torch thread count the entry records
    (``torch_threads``; 1 where it records none). Checked first, and an entry that fails is not replayed:
    its soundness (:func:`entry_problems`: schema, metric, selection, the official rule), its task's
    fingerprint, its models' sha256 and the configs stored beside them (:func:`stored_config_problems`).
    ``deep`` also re-runs a recorded selection (:func:`rerun_selection`): its choice must be the entry's and
    its table's numbers are compared like the episodes'. An unreadable file is a problem too, not an error.

    A task of your own is recorded by its factory ``"module:function"`` (:func:`kd_envs.tasks.task_json`): the
    replay imports and calls it, then checks the task's fingerprint as for any other. Where the factory cannot
    be imported or called here, or the entry records a task made without one (which nothing can rebuild), the
    entry is a problem that says so by name and nothing is replayed; ``notes`` say when a replay rested on
    a factory (code outside the entry)."""
    try:
        entry = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return Verification(problems=[f"cannot read the entry: {error}"])
    problems = entry_problems(entry)
    if problems:
        return Verification(problems=problems)
    env_id = entry["env_id"]
    notes = _task_notes(entry)
    recorded_fingerprint = entry.get("task_fingerprint")
    if recorded_fingerprint is not None:
        # The task the entry was scored on (a task set's test split for an agent trained on its train split).
        try:
            here = task_fingerprint(env_id, scored_env_kwargs(entry)) or {}
        except TaskFactoryError as error:  # a task of your own whose factory is missing here, or none recorded
            return Verification(problems=[f"the entry's task cannot be rebuilt here, so nothing was replayed: "
                                          f"{error}"], notes=notes)  # fmt: skip
        except ValueError as error:  # e.g. a device this machine lacks: named by the env's message
            return Verification(problems=[f"cannot make the entry's env here, so nothing was replayed: {error}"],
                                notes=notes)  # fmt: skip
        differ = [k for k in ("teacher_sha256", "dataset_sha256") if here.get(k) != recorded_fingerprint.get(k)]
        if differ:  # the same policy on another teacher or other data: replaying would compare nothing
            return Verification(problems=[f"task {k}: the entry's {recorded_fingerprint.get(k)} differs from this "
                                          f"machine's {here.get(k)}" for k in differ], notes=notes)  # fmt: skip
    damaged = []
    for run in entry["runs"]:
        if not run.get("model"):
            continue
        try:
            stored_model_dir(run, directory)
        except (OSError, ValueError) as error:
            damaged.append(f"training seed {run['training_seed']}: {error}")
    if damaged:  # a model that is not the one the entry records: replaying it would compare nothing
        return Verification(problems=damaged)
    claims = stored_config_problems(entry, directory)
    if claims:  # a model trained otherwise than the entry says: its replay would vouch for the wrong claim
        return Verification(problems=claims)
    threads = entry.get("torch_threads", 1)
    try:
        pairs, mismatches = _replay(entry, directory, progress, threads)
    except TaskFactoryError as error:  # (an entry without a fingerprint meets its task only here)
        return Verification(problems=[f"the entry's task cannot be rebuilt here, so nothing was replayed: {error}"],
                            notes=notes)  # fmt: skip
    with torch_threads(threads):
        selection = rerun_selection(entry, progress) if deep else None
    result = Verification(problems=mismatches, reran_selection=selection is not None, notes=notes)

    def differs(where: str, at: str, key: str, old: Any, new: Any) -> None:
        result.differences.append(f"{where}: {key} {old!r} -> {new!r}")
        gap = _numeric_difference(old, new)
        if gap > result.largest_difference:
            result.largest_difference, result.largest_difference_at = gap, f"{at}, {key}"

    metric = entry["metric"]
    rerun_scores, paired = [], {}
    for label, recorded, rerun in pairs:
        for old, new in zip(recorded, rerun, strict=True):
            for key, value in old.items():
                if _is_number(value) and _is_number(new.get(key)):
                    paired.setdefault(key, []).append(float(new[key]) - float(value))
                if new.get(key) != value:
                    differs(f"{label}, evaluation seed {old['seed']}", label, key, value, new.get(key))
        if entry["agent"]["kind"] == "fixed":  # each episode is a run
            rerun_scores += [float(episode[metric]) for episode in rerun]
        else:
            rerun_scores.append(run_score({"episodes": rerun}, metric))
    if selection is not None:
        chosen, table = selection
        record = entry["agent"]["selection"]
        if chosen != float(record["temperature"]):
            result.problems.append(f"selection: the re-run chose temperature {chosen:g}, the entry "
                                   f"{record['temperature']:g}")  # fmt: skip
        recorded_table = {float(t): value for t, value in record["validation_accuracy"].items()}
        for t, value in table.items():
            if recorded_table.get(t) != value:
                where = f"selection, temperature {t:g}"
                differs(where, where, "validation accuracy", recorded_table.get(t), value)
    if result.differences:
        result.rerun_iqm = aggregate(rerun_scores)["iqm"]
        result.entry_iqm_ci95 = tuple(entry["summary"]["iqm_ci95"])
        recorded_kind = entry.get("machine")
        result.same_machine_kind = None if recorded_kind is None else recorded_kind == machine_kind()
        result.directed = directed_numbers(paired, metric)
    # The stored scores and summary must also follow from the stored episodes (no hand edits).
    for run in entry["runs"]:
        score = run_score(run, metric)
        if run["score"] != score:
            result.problems.append(f"run score {run['score']!r} is not the mean {metric} of its episodes ({score!r})")
    summary = aggregate([run["score"] for run in entry["runs"]])
    for key, value in summary.items():
        if entry["summary"].get(key) != value:
            result.problems.append(f"summary {key} {entry['summary'].get(key)!r} -> recomputed {value!r}")
    return result
