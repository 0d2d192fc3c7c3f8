"""Temperature baselines that are *chosen* rather than learned by an RL agent, on TemperatureKD-v0:

* :func:`select_best_constant`: the constant temperature with the best validation accuracy over a grid;
* :func:`select_env_setting`: the env kwargs (e.g. a feature-distillation weight) with the best
  validation accuracy for a given policy;
* :func:`search_linear_map`: a black-box search (Optuna's TPE) of the four weights of a per-instance
  map T = clip(w₀ + w·observation) (:class:`agents.temperature.policies.LinearMapPolicy`), on validation
  accuracy within a stated budget of episodes. It measures how much room per-instance temperatures
  have on a task: whatever a learned policy gains over the best constant, a 4-parameter map may too.

On a task set (``task_set`` in the env kwargs), :func:`constant_table` scores every constant of the grid
on every instance of a split, from which :func:`single_best_constant` picks the one constant of a split
(the best static configuration, chosen on the train split) and :func:`per_instance_constants` one
constant per instance (the *static oracle*, chosen on each instance's own validation split).

All score a candidate by the student's accuracy on the *validation* split at the end of its episodes
(``student_val_accuracy``), on episodes seeded from the training seeds; the test split and the
evaluation seeds never choose anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from agents.common.episodes import TRAINING_SEEDS, run_episode
from agents.temperature.policies import FixedTemperaturePolicy, LinearMapPolicy

SELECTION_METRIC = "student_val_accuracy"
CONSTANT_GRID: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
SELECTION_SEEDS: tuple[int, ...] = TRAINING_SEEDS[:5]
# The map's search space: bias in the temperature range, one slope per feature (features lie in [0, 1]).
MAP_BIAS_RANGE = (0.5, 9.5)
MAP_SLOPE_RANGE = (-9.0, 9.0)


def _mean_validation_accuracy(env: gym.Env, policy, seeds: Sequence[int], instance: int | None = None) -> float:
    return float(np.mean([run_episode(env, policy, seed, instance)[SELECTION_METRIC] for seed in seeds]))


def constant_table(
    env_id: str,
    env_kwargs: dict[str, Any],
    grid: Sequence[float] = CONSTANT_GRID,
    seeds: Sequence[int] = SELECTION_SEEDS[:3],
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Mean validation accuracy of every constant temperature of ``grid`` on every instance of the task set
    and split that ``env_kwargs`` name, over episodes on ``seeds``: {instance name: {str(T): accuracy}}."""
    env = gym.make(env_id, **env_kwargs)
    instances = env.unwrapped.instances
    action = env_kwargs.get("action", "temperature")
    scale = env_kwargs.get("action_scale", 6.0)
    table: dict[str, dict[str, float]] = {}
    bar = tqdm(total=len(instances) * len(grid), desc="constants per instance (validation)", unit="T",
               disable=not progress)  # fmt: skip
    for position, instance in enumerate(instances):
        table[instance.name] = {}
        for t in grid:
            policy = FixedTemperaturePolicy(f"t{t:g}", float(t), scale, action=action)
            table[instance.name][f"{float(t):g}"] = _mean_validation_accuracy(env, policy, seeds, position)
            bar.update()
    bar.close()
    env.close()
    return table


def single_best_constant(table: dict[str, dict[str, float]]) -> float:
    """The constant with the best validation accuracy averaged over a split's instances (ties: the first)."""
    keys = list(next(iter(table.values())))
    mean = {k: float(np.mean([row[k] for row in table.values()])) for k in keys}
    return float(max(keys, key=lambda k: (mean[k], -keys.index(k))))


def per_instance_constants(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each instance's constant with the best validation accuracy on that instance (ties: the first)."""
    best = {}
    for name, row in table.items():
        keys = list(row)
        best[name] = float(max(keys, key=lambda k: (row[k], -keys.index(k))))
    return best


def select_best_constant(
    env_id: str,
    env_kwargs: dict[str, Any],
    grid: Sequence[float] = CONSTANT_GRID,
    seeds: Sequence[int] = SELECTION_SEEDS,
    action_scale: float = 6.0,
    progress: bool = True,
) -> tuple[float, dict[str, float]]:
    """The temperature of ``grid`` whose episodes on ``seeds`` reach the best mean validation accuracy
    (ties: the first). Returns (temperature, {temperature: mean validation accuracy})."""
    env = gym.make(env_id, **env_kwargs)
    table = {}
    for t in tqdm(grid, desc="best constant T (validation)", unit="T", disable=not progress):
        table[float(t)] = _mean_validation_accuracy(env, FixedTemperaturePolicy(f"t{t:g}", float(t), action_scale),
                                                    seeds)  # fmt: skip
    env.close()
    best = max(table, key=lambda t: (table[t], -grid.index(t)))
    return best, table


def select_env_setting(
    env_id: str,
    candidates: dict[str, dict[str, Any]],
    policy,
    seeds: Sequence[int] = SELECTION_SEEDS[:3],
    progress: bool = True,
) -> tuple[str, dict[str, float]]:
    """The candidate env kwargs (by name) under which ``policy``'s episodes on ``seeds`` reach the best
    mean validation accuracy (ties: the first): e.g. a feature-distillation weight. Returns (name,
    {name: mean validation accuracy})."""
    table = {}
    for name, kwargs in tqdm(candidates.items(), desc="env setting (validation)", unit="setting", disable=not progress):
        env = gym.make(env_id, **kwargs)
        table[name] = _mean_validation_accuracy(env, policy, seeds)
        env.close()
    names = list(candidates)
    return max(table, key=lambda n: (table[n], -names.index(n))), table


# The weight map's search space: w = clip(v0 + v·x, 0, 1), so a bias in [-1, 2] reaches "always 0" and "always 1".
WEIGHT_BIAS_RANGE = (-1.0, 2.0)
WEIGHT_SLOPE_RANGE = (-2.0, 2.0)


def search_linear_map(
    env_id: str,
    env_kwargs: dict[str, Any],
    search_seed: int,
    n_trials: int,
    episode_seeds: Sequence[int],
    start_temperature: float | None = None,
    action_scale: float = 6.0,
    progress: bool = True,
    features: int = 3,
    weight_map: bool = False,
    instances: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Search the weights of a :class:`LinearMapPolicy` on the observation's first ``features`` columns
    (and, with ``weight_map``, its distillation-weight map) with Optuna's TPE sampler (seeded by
    ``search_seed``) for ``n_trials`` trials of ``len(episode_seeds)`` episodes each, on each of a task
    set's ``instances`` if given; a trial's score is the mean validation accuracy. ``start_temperature``
    enqueues the constant map T = start (weights 1) as the first trial (the search then starts from the
    best constant). Returns {"weights", "weight_map" (None without one), "value", "history"}."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    env = gym.make(env_id, **env_kwargs)
    action = env_kwargs.get("action", "temperature")
    sampler = optuna.samplers.TPESampler(seed=search_seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    if start_temperature is not None:
        start = {"w0": start_temperature, **{f"w{i}": 0.0 for i in range(1, features + 1)}}
        if weight_map:
            start |= {"v0": 1.0, **{f"v{i}": 0.0 for i in range(1, features + 1)}}
        study.enqueue_trial(start)
    bar = tqdm(total=n_trials, desc=f"map search {search_seed}", unit="trial", disable=not progress)
    values: list[float] = []
    plan = [(seed, instance) for instance in (instances if instances is not None else [None]) for seed in episode_seeds]

    def policy_of(params: dict[str, float]) -> LinearMapPolicy:
        weights = [params[f"w{i}"] for i in range(features + 1)]
        weights_map = [params[f"v{i}"] for i in range(features + 1)] if weight_map else None
        return LinearMapPolicy("trial", weights, action_scale=action_scale, action=action, weight_map=weights_map)

    def objective(trial) -> float:
        params = {"w0": trial.suggest_float("w0", *MAP_BIAS_RANGE)}
        params |= {f"w{i}": trial.suggest_float(f"w{i}", *MAP_SLOPE_RANGE) for i in range(1, features + 1)}
        if weight_map:
            params["v0"] = trial.suggest_float("v0", *WEIGHT_BIAS_RANGE)
            params |= {f"v{i}": trial.suggest_float(f"v{i}", *WEIGHT_SLOPE_RANGE) for i in range(1, features + 1)}
        policy = policy_of(params)
        value = float(np.mean([run_episode(env, policy, seed, instance)[SELECTION_METRIC] for seed, instance in plan]))
        values.append(value)
        bar.update()
        bar.set_postfix(best=f"{max(values):.4f}")
        return value

    study.optimize(objective, n_trials=n_trials)
    bar.close()
    env.close()
    best = policy_of(study.best_trial.params)
    return {"weights": best.weights, "weight_map": best.weight_map, "value": study.best_trial.value, "history": values}
