"""TemperatureKD-v0 on a task set: per-instance scores of entries scored on a split, the headroom of each
instance (static oracle − single best constant) and the *closed gap* of a policy,

    closed gap = Σ_i (policy_i − single best_i) / Σ_i (static oracle_i − single best_i),

per run, over the split's instances i: the run's mean test accuracy on instance i minus the single best
constant's mean there, summed, over the split's total headroom (the two references' means over the same
evaluation seeds). 0 is the single best constant, 1 the static oracle; a policy that does what no constant
can (e.g. switching the KD term off where the teacher is wrong) may pass 1. The gap is normalised by the
split's total headroom rather than instance by instance because an instance where every constant scores
the same (headroom ≈ 0, within seed noise) would make its own ratio unbounded. Aggregated over runs as
every entry is: IQM with a 95% stratified-bootstrap CI (rliable), beside the mean ± std. Raw accuracy is
reported beside it, as the IQM of the (runs × instances) matrix (instances as the bootstrap's strata).

A fixed policy's runs are its evaluation seeds; a trained agent's, its training seeds.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from agents.common.leaderboard import BOOTSTRAP_REPS, aggregate

METRIC = "student_test_accuracy"


def per_instance_scores(entry: dict[str, Any]) -> tuple[list[int], np.ndarray]:
    """(instances, matrix runs × instances) of the entry's mean score per run and instance. A fixed
    policy's runs are its evaluation seeds (one episode each)."""
    instances = entry["evaluation_instances"]
    if entry["agent"]["kind"] == "fixed":
        episodes = [e for run in entry["runs"] for e in run["episodes"]]
        by_instance = {i: [e[METRIC] for e in episodes if e["instance"] == i] for i in instances}
        return instances, np.array([by_instance[i] for i in instances], dtype=np.float64).T
    rows = [[float(np.mean([e[METRIC] for e in run["episodes"] if e["instance"] == i])) for i in instances]
            for run in entry["runs"]]  # fmt: skip
    return instances, np.array(rows, dtype=np.float64)


def instance_names(entry: dict[str, Any]) -> dict[int, str]:
    """Position in the split -> instance name, from the entry's task fingerprint (episodes keep numbers only)."""
    names = (entry.get("task_fingerprint") or {}).get("instances") or []
    return {i: names[i] if i < len(names) else str(i) for i in entry["evaluation_instances"]}


def headroom(single_best: dict[str, Any], oracle: dict[str, Any]) -> dict[int, dict[str, float]]:
    """Per instance: the single best constant's and the static oracle's mean score and their difference."""
    instances, single = per_instance_scores(single_best)
    _, best = per_instance_scores(oracle)
    return {i: {"single_best": float(single[:, k].mean()), "static_oracle": float(best[:, k].mean()),
                "headroom": float(best[:, k].mean() - single[:, k].mean())}
            for k, i in enumerate(instances)}  # fmt: skip


def closed_gaps(entry: dict[str, Any], single_best: dict[str, Any], oracle: dict[str, Any]) -> np.ndarray:
    """The closed gap of each run of ``entry`` (see the module docstring)."""
    instances, scores = per_instance_scores(entry)
    room = headroom(single_best, oracle)
    if set(instances) != set(room):
        raise ValueError(f"{entry['agent']['name']} is scored on instances {instances}; the references on "
                         f"{sorted(room)}")  # fmt: skip
    low = np.array([room[i]["single_best"] for i in instances])
    total = sum(room[i]["headroom"] for i in instances)
    if total <= 0:
        raise ValueError(f"no headroom on the split: the static oracle does not beat the single best constant "
                         f"(total {total:+.4f}), so a closed gap is undefined")  # fmt: skip
    return (scores - low).sum(axis=1) / total


def iqm_ci(matrix: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """IQM of a (runs × instances) matrix with its 95% stratified-bootstrap CI (rliable), mean and std."""
    from rliable import library as rly
    from rliable import metrics

    state = np.random.get_state()
    np.random.seed(seed)  # rliable 1.2 resamples with NumPy's global generator (see leaderboard.aggregate)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
            points, intervals = rly.get_interval_estimates(
                {"x": matrix}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=BOOTSTRAP_REPS,
                random_state=np.random.RandomState(seed))  # fmt: skip
    finally:
        np.random.set_state(state)
    return {"iqm": float(points["x"][0]), "iqm_ci95": [float(intervals["x"][0, 0]), float(intervals["x"][1, 0])],
            "mean": float(matrix.mean()), "std": float(matrix.std(ddof=1)) if matrix.size > 1 else 0.0}  # fmt: skip


def headroom_lines(single_best: dict[str, Any], oracle: dict[str, Any]) -> list[str]:
    """The headroom table (Markdown): per test instance, the two references and their difference."""
    names = instance_names(oracle)
    temperatures = oracle["agent"]["policy"]["temperatures"]
    t_single = single_best["agent"]["policy"]["temperature"]
    lines = [f"| instance | single best (T = {t_single:g}) | static oracle (its T) | headroom |", "|---|---|---|---|"]
    for i, row in headroom(single_best, oracle).items():
        lines.append(f"| `{names[i]}` | {row['single_best']:.4f} | {row['static_oracle']:.4f} "
                     f"(T = {temperatures[names[i]]:g}) | {row['headroom']:+.4f} |")  # fmt: skip
    return lines


def closed_gap_lines(entries: list[dict[str, Any]], single_best: dict[str, Any], oracle: dict[str, Any]) -> list[str]:
    """The table of entries on a split: raw accuracy (IQM over runs × instances) and closed gap, best first."""
    rows = []
    for entry in entries:
        _, scores = per_instance_scores(entry)
        raw, gap = iqm_ci(scores), aggregate(list(closed_gaps(entry, single_best, oracle)))
        runs = f"{scores.shape[0]} {'evaluation seeds' if entry['agent']['kind'] == 'fixed' else 'training seeds'}"
        rows.append((gap["iqm"], f"| `{entry['agent']['name']}` | {runs} × {scores.shape[1]} instances "
                     f"| {raw['iqm']:.4f} [{raw['iqm_ci95'][0]:.4f}, {raw['iqm_ci95'][1]:.4f}] "
                     f"| {gap['iqm']:.2f} [{gap['iqm_ci95'][0]:.2f}, {gap['iqm_ci95'][1]:.2f}] "
                     f"| {gap['mean']:.2f} ± {gap['std']:.2f} |"))  # fmt: skip
    rows.sort(key=lambda r: -r[0])
    return ["| entry | runs | test accuracy IQM [95% CI] | closed gap IQM [95% CI] | closed gap mean ± std |",
            "|---|---|---|---|---|", *[line for _, line in rows]]  # fmt: skip
