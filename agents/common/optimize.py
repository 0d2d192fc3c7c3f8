"""Hyperparameter search as rl-zoo3's ``--optimize`` does it: Optuna samples an algorithm's
hyperparameters from a small per-algorithm space (:data:`SAMPLERS`), each trial trains one agent on a
training seed and is scored on *validation* episodes; the evaluation seeds never choose anything.

    kd-gym train --algo ppo --env TemperatureKD-v0 --optimize --n-trials 20 --timesteps 6000
    kd-gym train --algo dqn --env CartPole-v1 --optimize --n-trials 40 --workers 4    # Ray Tune

A trial's score is the mean over :data:`VALIDATION_SEEDS` (episodes seeded from the training seeds, as
:mod:`agents.common.selection` chooses its baselines) of :func:`selection_metric`: on TemperatureKD-v0
the student's accuracy on the validation split (``student_val_accuracy``; the test split stays for the
leaderboard), elsewhere the episode's return. With one worker the trials run here, one after the other,
with Optuna's TPE sampler; with ``workers`` > 1 (or a Ray cluster's address) they run as Ray Tune trials
of one CPU each, suggested by Tune's :class:`~ray.tune.search.optuna.OptunaSearch` with the same sampler
and space. TPE suggests from the trials finished so far, so the parallel search is not the serial one
trial for trial (each trial, given its hyperparameters, is: it is seeded).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from agents.common.evaluation import TRAINING_SEEDS, evaluate
from agents.common.parallel import check_workers, start_ray
from agents.common.selection import SELECTION_METRIC
from agents.common.training import train_agent

# Validation episodes: seeded from the training seeds (never EVALUATION_SEEDS).
VALIDATION_SEEDS: tuple[int, ...] = TRAINING_SEEDS[:3]


def sample_ppo_params(trial) -> dict[str, Any]:
    """PPO's space, rl-zoo3's ``sample_ppo_params`` without the rollout and batch sizes (an env's YAML
    fixes them: TemperatureKD-v0's rollouts are a third of an episode) or the network."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "n_epochs": trial.suggest_categorical("n_epochs", [1, 5, 10, 20]),
        "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999]),
        "gae_lambda": trial.suggest_categorical("gae_lambda", [0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0]),
        "clip_range": trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3, 0.4]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "max_grad_norm": trial.suggest_categorical("max_grad_norm", [0.3, 0.5, 1.0, 2.0, 5.0]),
    }


def sample_dqn_params(trial) -> dict[str, Any]:
    """DQN's space, rl-zoo3's ``sample_dqn_params`` without the buffer size and the network: gradient
    steps follow the training frequency (``train_freq // subsample_steps``), as there."""
    train_freq = trial.suggest_categorical("train_freq", [1, 4, 8, 16, 128, 256])
    subsample_steps = trial.suggest_categorical("subsample_steps", [1, 2, 4, 8])
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64, 128, 256]),
        "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999]),
        "exploration_fraction": trial.suggest_float("exploration_fraction", 0.0, 0.5),
        "exploration_final_eps": trial.suggest_float("exploration_final_eps", 0.0, 0.2),
        "target_update_interval": trial.suggest_categorical("target_update_interval", [1, 10, 100, 1000, 5000]),
        "learning_starts": trial.suggest_categorical("learning_starts", [0, 100, 1000]),
        "train_freq": train_freq,
        "gradient_steps": max(train_freq // subsample_steps, 1),
    }


# algo -> a function of an Optuna trial that suggests the space's values and returns the hyperparameters.
SAMPLERS: dict[str, Callable[[Any], dict[str, Any]]] = {"ppo": sample_ppo_params, "dqn": sample_dqn_params}


def selection_metric(env_id: str) -> str:
    """What a trial is scored by: the validation accuracy on TemperatureKD-v0, else the return."""
    return SELECTION_METRIC if env_id == "TemperatureKD-v0" else "return"


def trial_score(
    algo: str,
    env_id: str,
    params: dict[str, Any],
    out_dir: str | Path,
    seed: int = TRAINING_SEEDS[0],
    total_timesteps: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    hyperparams: dict[str, Any] | None = None,
    validation_seeds: Sequence[int] = VALIDATION_SEEDS,
) -> float:
    """One trial: train ``algo`` with the sampled ``params`` (the space's suggestions, by name) over
    the fixed ``hyperparams`` and the YAML's, save it in ``out_dir``, and return its mean
    :func:`selection_metric` over the validation episodes."""
    import optuna

    sampled = SAMPLERS[algo](optuna.trial.FixedTrial(params))
    trained = train_agent(algo, env_id, seed, out_dir, total_timesteps, env_kwargs, {**(hyperparams or {}), **sampled},
                          progress_bar=False, tensorboard=False)  # fmt: skip
    episodes = evaluate(trained.model, env_id, env_kwargs or {}, validation_seeds, progress=False)
    return float(np.mean([episode[selection_metric(env_id)] for episode in episodes]))


def optimize(
    algo: str,
    env_id: str,
    n_trials: int,
    out_dir: str | Path,
    seed: int = TRAINING_SEEDS[0],
    total_timesteps: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    hyperparams: dict[str, Any] | None = None,
    sampler_seed: int = 0,
    workers: int = 1,
    address: str | None = None,
) -> dict[str, Any]:
    """Search ``algo``'s hyperparameters with ``n_trials`` trials (:func:`trial_score`, each saved under
    ``out_dir/trial_<n>``); writes and returns ``out_dir/optimize.json``: every trial's suggested
    values, hyperparameters and score, and the best (its ``hyperparams`` go to ``kd-gym train
    --hyperparams``). See the module docstring for the serial and the Ray Tune path."""
    if algo not in SAMPLERS:
        raise ValueError(f"algo={algo!r}: --optimize has a search space for {sorted(SAMPLERS)}")
    if n_trials < 1:
        raise ValueError(f"n_trials={n_trials} must be >= 1")
    if seed not in TRAINING_SEEDS:
        raise ValueError(f"seed={seed}: a trial trains on a training seed, one of {list(TRAINING_SEEDS)}")
    check_workers(workers, address)
    out_dir = Path(out_dir).resolve()
    fixed = {"algo": algo, "env_id": env_id, "seed": seed, "total_timesteps": total_timesteps,
             "env_kwargs": env_kwargs or {}, "hyperparams": hyperparams or {}}  # fmt: skip
    if workers == 1 and address is None:
        trials = _optuna_trials(fixed, n_trials, out_dir, sampler_seed)
    else:
        trials = _tune_trials(fixed, n_trials, out_dir, sampler_seed, workers, address)
    best = max(trials, key=lambda t: t["score"])
    record = {**fixed, "metric": selection_metric(env_id), "validation_seeds": list(VALIDATION_SEEDS),
              "n_trials": n_trials, "sampler_seed": sampler_seed, "runner": "optuna" if workers == 1 and address
              is None else "ray.tune+OptunaSearch", "trials": trials, "best": best}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "optimize.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _trial_record(number: int, params: dict[str, Any], algo: str, score: float, model_dir: Path) -> dict[str, Any]:
    import optuna

    return {"number": number, "params": params, "hyperparams": SAMPLERS[algo](optuna.trial.FixedTrial(params)),
            "score": score, "model_dir": str(model_dir)}  # fmt: skip


def _optuna_trials(fixed: dict[str, Any], n_trials: int, out_dir: Path, sampler_seed: int) -> list[dict[str, Any]]:
    import optuna

    def objective(trial) -> float:
        SAMPLERS[fixed["algo"]](trial)
        return trial_score(params=trial.params, out_dir=out_dir / f"trial_{trial.number}", **fixed)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=sampler_seed))
    study.optimize(objective, n_trials=n_trials)
    return [_trial_record(t.number, t.params, fixed["algo"], t.value, out_dir / f"trial_{t.number}")
            for t in study.trials]  # fmt: skip


def _suggest(algo: str, trial) -> None:
    """Tune's define-by-run space (a picklable function: Tune saves its searcher): its config then
    holds the suggested values by name, which :func:`trial_score` turns into hyperparameters."""
    SAMPLERS[algo](trial)


def _tune_trials(
    fixed: dict[str, Any], n_trials: int, out_dir: Path, sampler_seed: int, workers: int, address: str | None
) -> list[dict[str, Any]]:
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    algo = fixed["algo"]
    def trainable(config: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(1)
        trial_id = tune.get_context().get_trial_id()
        tune.report({"score": trial_score(params=config, out_dir=out_dir / f"trial_{trial_id}", **fixed)})

    started = start_ray(workers, address)
    try:
        searcher = OptunaSearch(space=partial(_suggest, algo), metric="score", mode="max", seed=sampler_seed)
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=n_trials, max_concurrent_trials=workers),
            run_config=tune.RunConfig(name="optimize", storage_path=str(out_dir / "tune"), verbose=0),
        )
        results = tuner.fit()
        if results.errors:
            raise RuntimeError(f"{len(results.errors)} Tune trial(s) failed; the first: {results.errors[0]}")
        # The result grid lists the trials as Tune created them.
        return [_trial_record(i, r.config, algo, r.metrics["score"], out_dir / f"trial_{r.metrics['trial_id']}")
                for i, r in enumerate(results)]  # fmt: skip
    finally:
        if started:
            ray.shutdown()
