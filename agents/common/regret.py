"""Searchers ranked on a student table (:mod:`kd_envs.tasks.tables`), the protocol NAS-Bench-201 made possible:
because a student costs microseconds, every searcher runs hundreds of searches and its regret against the
table's exact optimum is measured at every budget.

* :func:`landscape`: the objective on the table under a ``reward`` option: every feasible valid student's
  search reward on each of the table's proxy seeds (played through the tabular env, so it is the env's own
  reward), its mean over the proxy seeds (the **value** a search tries to find), and the same reward with
  the final training's test accuracy on the table's first final seed (the **final** value: what the found
  student is worth once retrained); the optimum of each.
* :func:`table_search`: one seeded search of ``n_students`` students by a registered searcher, with its YAML
  settings (``agents/hyperparams``), on the tabular env; the table code and reward of every student in order.
  A search draws its proxy seed from its seed (``training_seed=None``) and keeps it, as a live search with a
  fixed training seed does: it sees one noisy draw of the value, never the value itself.
* :func:`regret_curves`: each search's **regret** after b students, optimum − value of its incumbent (the
  student with the best reward it saw; the first of equal ones), for value and final value, at every budget.
  A search of 500 students gives every shorter budget as its prefix (the searchers' settings do not depend
  on the budget).
* :func:`compare`: per budget and searcher the mean regret with a 95% bootstrap CI over searches, and
  rliable's probability of improvement of every pair (lower regret is better), with its 95% CI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, StopTrainingOnMaxEpisodes

import kd_envs  # noqa: F401  (registers the environments)
from agents.common.n2n_table import play_code, student_codes
from agents.common.training import build_agent
from kd_envs.envs.n2n_compress import DEFAULT_PARAMETER_BUDGET, student_reward
from kd_envs.tasks.architecture import Architecture
from kd_envs.tasks.tables import DEFAULT_TABLE

ENV_ID = "N2NCompress-v0"
SEARCHERS = ("random_search", "evolution", "hill_climbing", "n2n", "maskable_ppo")
BUDGETS = (25, 50, 100, 200, 500)
BOOTSTRAP_REPS = 2000


def table_env_kwargs(table: str = DEFAULT_TABLE, reward: str = "n2n",
                     parameter_budget: float = DEFAULT_PARAMETER_BUDGET) -> dict[str, Any]:  # fmt: skip
    """The tabular env's kwargs of a protocol: the table, the reward and (for the rewards that use one) the
    budget; the training seed left to each search's seed."""
    kwargs: dict[str, Any] = {"tabular": table, "reward": reward}
    if reward in ("budget", "constrained"):
        kwargs["parameter_budget"] = parameter_budget
    return kwargs


@dataclass(frozen=True)
class Landscape:
    """The objective of a table under one reward option (:func:`landscape`).

    :param proxy: code -> {proxy seed: the search reward on that seed}, every feasible valid student.
    :param value: code -> mean of ``proxy`` over the seeds.
    :param final: code -> the reward with the final training's test accuracy on ``final_seed``.
    """

    table: str
    env_kwargs: dict[str, Any]
    final_seed: int
    proxy: dict[str, dict[int, float]]
    value: dict[str, float]
    final: dict[str, float]

    @property
    def best_value(self) -> float:
        return max(self.value.values())

    @property
    def best_final(self) -> float:
        return max(self.final.values())

    def optimum(self, kind: str = "value") -> str:
        """The code of the best student by ``kind`` ("value" or "final"; the first of equal ones)."""
        scores = self.value if kind == "value" else self.final
        return max(scores, key=scores.__getitem__)


def landscape(env_kwargs: Mapping[str, Any]) -> Landscape:
    """The objective of the tabular env ``env_kwargs`` (:func:`table_env_kwargs`): every student of the table
    played once per proxy seed. A student the env's budget masks forbid (the episode is clipped to another) is
    infeasible and left out, as are degenerate ones (no valid network, or not smaller than the teacher)."""
    kwargs = dict(env_kwargs)
    if kwargs.get("reward") == "constrained":
        raise ValueError(
            "landscape: reward='constrained' scores a student by when it comes in a search (its "
            "penalty fades with the episodes), so it has no landscape; use 'budget' for a hard budget"
        )
    envs = {}
    probe = gym.make(ENV_ID, **kwargs)
    table = probe.unwrapped.table
    if table is None:
        raise ValueError(f"landscape: env_kwargs {kwargs!r} are not a tabular env's (tabular=True or a table name)")
    for seed in table.proxy_seeds:
        envs[seed] = gym.make(ENV_ID, **{**kwargs, "training_seed": seed})
    final_seed = table.final_seeds[0]
    teacher_test = table.teacher["test_accuracy"]
    proxy: dict[str, dict[int, float]] = {}
    final: dict[str, float] = {}
    reward = probe.unwrapped.reward
    for code in student_codes(probe):
        if table.students[code].degenerate:
            continue
        scores = {}
        for seed, env in envs.items():
            played = _play(env, code)
            if played is None:  # clipped by the budget's masks, or degenerate: not a student the env ends with
                break
            scores[seed] = played
        if len(scores) != len(envs):
            continue
        proxy[code] = scores
        result = table.final(code, final_seed)
        final[code] = student_reward(reward, result["test_accuracy"], result["parameters"], teacher_test,
                                     probe.unwrapped.teacher_parameters)  # fmt: skip
    for env in (probe, *envs.values()):
        env.close()
    if not proxy:
        raise ValueError(f"landscape: no feasible valid student in {table.name} with {kwargs!r}")
    value = {code: float(np.mean(list(s.values()))) for code, s in proxy.items()}
    return Landscape(table.name, kwargs, final_seed, proxy, value, final)


def _play(env: gym.Env, code: str) -> float | None:
    """The reward of the episode that makes ``code``; None if the env makes another student (its budget's
    masks clip a decision) or a degenerate one."""
    reward, info = play_code(env, code)
    if env.unwrapped.student_code() != code or info["degenerate"]:
        return None
    return reward


class StudentLog(BaseCallback):
    """Every finished episode of a search on a tabular env: the table code of its student (None for a
    degenerate one without a network of the table) and its reward."""

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.codes: list[str | None] = []
        self.rewards: list[float] = []
        self.training_seeds: set[int] = set()

    def _on_step(self) -> bool:
        for done, info, reward in zip(self.locals["dones"], self.locals["infos"], self.locals["rewards"]):
            if done and "architecture" in info:
                arch = info["architecture"]
                code = None
                if arch is not None and not info["degenerate"]:
                    code = self.table.code_of(Architecture.from_dict(arch))
                self.codes.append(code)
                self.rewards.append(float(reward))
                self.training_seeds.add(int(info["training_seed"]))
        return True


def table_search(algo: str, seed: int, n_students: int, env_kwargs: Mapping[str, Any],
                 hyperparams: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """One search of ``n_students`` students by ``algo`` (:data:`SEARCHERS`, or any registered search algo)
    with training seed ``seed`` on the tabular env ``env_kwargs``, with its YAML settings (``hyperparams``
    overrides them): its students' table codes and rewards in order, and the proxy seed it drew."""
    params = {**(hyperparams or {}), "n_students": n_students}
    model, _ = build_agent(algo, ENV_ID, seed, dict(env_kwargs), params)
    env = model.get_env()
    table = env.get_attr("table")[0]
    if table is None:
        raise ValueError(f"table_search: env_kwargs {dict(env_kwargs)!r} are not a tabular env's")
    log = StudentLog(table)
    # An episode takes at most two steps per teacher layer: the step count never binds first.
    steps = n_students * 2 * int(env.get_attr("num_layers")[0])
    model.learn(steps, callback=[log, StopTrainingOnMaxEpisodes(n_students)])
    if len(log.codes) != n_students:
        raise RuntimeError(f"table_search: {algo} seed {seed} ended after {len(log.codes)} of {n_students} students")
    (training_seed,) = log.training_seeds
    return {"algo": algo, "seed": seed, "n_students": n_students, "env_kwargs": dict(env_kwargs),
            "hyperparams": dict(hyperparams or {}), "training_seed": training_seed, "codes": log.codes,
            "rewards": log.rewards}  # fmt: skip


def incumbents(codes: Sequence[str | None], rewards: Sequence[float]) -> list[str | None]:
    """After each student, the best one seen so far by its reward (the first of equal rewards; None until a
    valid student is seen)."""
    best, best_reward, out = None, -np.inf, []
    for code, reward in zip(codes, rewards):
        if code is not None and reward > best_reward:
            best, best_reward = code, reward
        out.append(best)
    return out


def regret_curve(search: Mapping[str, Any], land: Landscape, kind: str = "value") -> np.ndarray:
    """A search's regret after 1, 2, ... students: the optimum's ``kind`` ("value" or "final") minus its
    incumbent's (before any valid student, the optimum minus the worst student's)."""
    scores = land.value if kind == "value" else land.final
    best, worst = max(scores.values()), min(scores.values())
    unknown = {c for c in search["codes"] if c is not None} - set(scores)
    if unknown:
        raise ValueError(f"regret_curve: {search['algo']} seed {search['seed']} found students outside the "
                         f"landscape (infeasible or degenerate): {sorted(unknown)[:5]}")  # fmt: skip
    found = incumbents(search["codes"], search["rewards"])
    return np.array([best - (worst if c is None else scores[c]) for c in found])


def regret_curves(searches: Sequence[Mapping[str, Any]], land: Landscape, kind: str = "value") -> dict[str, np.ndarray]:
    """Per searcher, its searches' regret curves stacked (searches × students), searches in seed order."""
    by_algo: dict[str, list] = {}
    for search in sorted(searches, key=lambda s: (s["algo"], s["seed"])):
        by_algo.setdefault(search["algo"], []).append(regret_curve(search, land, kind))
    return {algo: np.stack(curves) for algo, curves in by_algo.items()}


def _bootstrap_mean_ci(values: np.ndarray, rng: np.random.Generator, reps: int) -> tuple[float, float]:
    idx = rng.integers(0, len(values), size=(reps, len(values)))
    means = values[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                               reps: int = BOOTSTRAP_REPS) -> dict[str, Any]:  # fmt: skip
    """rliable's probability of improvement P(X > Y) of two runs' scores on one task (``metrics.
    probability_of_improvement``: the Mann-Whitney U statistic over all pairs of runs, ties counting half) with
    its 95% percentile-bootstrap CI, resampling runs as rliable's ``get_interval_estimates`` does for a pair
    (one task: the same run indices for both arrays, as arch's bootstrap draws for several arrays), vectorised
    here: rliable's loop takes about 7 ms a resample, hours for a study's pairs and budgets."""
    from rliable import metrics

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"probability_of_improvement: expected two 1-D arrays of one shape, not {x.shape}, {y.shape}")
    point = float(metrics.probability_of_improvement(x[:, None], y[:, None]))
    idx = rng.integers(0, len(x), size=(reps, len(x)))
    xs, ys = x[idx][:, :, None], y[idx][:, None, :]
    resampled = (xs > ys).mean(axis=(1, 2)) + 0.5 * (xs == ys).mean(axis=(1, 2))
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {"p": point, "ci95": [float(low), float(high)]}


def compare(curves: Mapping[str, np.ndarray], budgets: Sequence[int] = BUDGETS, reps: int = BOOTSTRAP_REPS,
            seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """At each budget: every searcher's mean regret with a 95% percentile-bootstrap CI over its searches, and
    for every ordered pair (X, Y) rliable's probability of improvement P(X's regret < Y's), ties counting
    half, with its 95% stratified-bootstrap CI. Budgets longer than the searches are left out."""
    rng = np.random.default_rng(seed)
    algos = list(curves)
    out: dict[str, Any] = {"budgets": [], "searches": {a: int(len(c)) for a, c in curves.items()}}
    for budget in budgets:
        if any(c.shape[1] < budget for c in curves.values()):
            continue
        at = {a: curves[a][:, budget - 1] for a in algos}
        row: dict[str, Any] = {"budget": budget, "regret": {}, "probability_of_improvement": {}}
        for a in algos:
            row["regret"][a] = {
                "mean": float(at[a].mean()),
                "ci95": list(_bootstrap_mean_ci(at[a], rng, reps)),
                "median": float(np.median(at[a])),
                "found_optimum": float(np.mean(at[a] <= 0)),
            }
        for x in algos:
            for y in algos:
                if x != y:
                    row["probability_of_improvement"][f"{x},{y}"] = probability_of_improvement(
                        -at[x], -at[y], rng, reps
                    )
        out["budgets"].append(row)
    return out


def separated(comparison: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every (budget, better, worse) whose mean-regret CIs do not overlap: better's upper bound below worse's
    lower bound."""
    found = []
    for row in comparison["budgets"]:
        regret = row["regret"]
        for x in regret:
            for y in regret:
                if x != y and regret[x]["ci95"][1] < regret[y]["ci95"][0]:
                    found.append({"budget": row["budget"], "better": x, "worse": y})
    return found
