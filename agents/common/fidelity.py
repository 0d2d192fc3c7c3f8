"""Proxy fidelity on N2NCompress-v0: how well the search proxy (``epochs`` of training, 5 by default) ranks
students the way the final training (``FULL_EPOCHS``) does, against how well it agrees with itself across
training seeds (the noise ceiling: no proxy ranks the final training better than it ranks itself again).

* :func:`proxy_fidelity`: Kendall's τ (τ-b), Spearman's ρ and the top-k precision between proxy and final
  scores, and the proxy-vs-proxy τ and ρ across seeds.
* :func:`students_across_compression`: a sample of students spread evenly over compression levels.
* :func:`measure_fidelity`: the proxy and final scores of a list of students, trained through the env
  (resumable: one JSON line per result), and the fidelity of their accuracies and N2N rewards.
* :func:`table_fidelity`: the same, read off a student table (free once it is built).

``scripts/n2n_fidelity.py`` runs it on the deep default or reads it off a student table.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from scipy import stats
from tqdm.auto import tqdm

import kd_envs  # noqa: F401  (registers the environments)
from agents.common.compression import FULL_EPOCHS
from agents.common.n2n_table import play_student
from kd_envs.envs.n2n_compress import compression_reward
from kd_envs.tasks.architecture import InvalidArchitecture
from kd_envs.tasks.tables import FULL_WIDTH, REMOVED, StudentTable, code_architecture

ENV_ID = "N2NCompress-v0"


def top_k_precision(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """|top k of ``a`` ∩ top k of ``b``| / k, the top k the k highest scores (ties broken by index)."""
    k = min(k, len(a))
    top_a = set(np.argsort(-np.asarray(a), kind="stable")[:k].tolist())
    top_b = set(np.argsort(-np.asarray(b), kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def proxy_fidelity(proxy: Any, final: Any, top: int = 10) -> dict[str, Any]:
    """How the proxy's ranking of N students agrees with the final training's.

    :param proxy: the proxy's scores, shape (S, N) for S training seeds, or (N,) for one.
    :param final: the final training's scores, shape (F, N) for F seeds, or (N,).
    :param top: the k of the top-k precision.
    :return: ``students`` (N), ``proxy_seeds`` (S), ``kendall_tau`` (τ-b, which counts ties as neither
        concordant nor discordant) and ``spearman_rho`` between the mean proxy and the mean final score,
        ``top_precision`` (the share of the final training's k best that are among the proxy's k best) with
        ``top``; with S ≥ 2 the noise ceiling, ``seed_kendall_tau`` and ``seed_spearman_rho``: the mean over
        pairs of proxy seeds of their τ and ρ (None with one seed).
    """
    proxy, final = np.atleast_2d(np.asarray(proxy, dtype=float)), np.atleast_2d(np.asarray(final, dtype=float))
    if proxy.shape[1] != final.shape[1]:
        raise ValueError(f"proxy scores {proxy.shape[1]} students, final {final.shape[1]}; expected the same")
    if proxy.shape[1] < 2:
        raise ValueError(f"{proxy.shape[1]} students; a ranking needs at least 2")
    proxy_mean, final_mean = proxy.mean(axis=0), final.mean(axis=0)
    pairs = list(itertools.combinations(range(len(proxy)), 2))
    return {
        "students": int(proxy.shape[1]),
        "proxy_seeds": int(proxy.shape[0]),
        "kendall_tau": float(stats.kendalltau(proxy_mean, final_mean).statistic),
        "spearman_rho": float(stats.spearmanr(proxy_mean, final_mean).statistic),
        "top": int(min(top, proxy.shape[1])),
        "top_precision": top_k_precision(proxy_mean, final_mean, top),
        "seed_kendall_tau": float(np.mean([stats.kendalltau(proxy[i], proxy[j]).statistic for i, j in pairs]))
        if pairs else None,
        "seed_spearman_rho": float(np.mean([stats.spearmanr(proxy[i], proxy[j]).statistic for i, j in pairs]))
        if pairs else None,
    }  # fmt: skip


def students_across_compression(
    compressions: Sequence[float], n: int, bins: int, rng: np.random.Generator
) -> list[int]:
    """Indices of ``n`` students (all, if fewer) spread over ``bins`` equal-width bins of compression C in
    [0, 1): an equal share from each bin, drawn at random; what a bin lacks is shared among the others, and
    a remainder smaller than the bins left goes one each to bins drawn at random."""
    compressions = np.asarray(compressions, dtype=float)
    which = np.minimum((compressions * bins).astype(int), bins - 1)
    pools = [list(rng.permutation(np.flatnonzero(which == b))) for b in range(bins)]
    target, chosen = min(n, len(compressions)), []
    while len(chosen) < target:
        open_bins = [pool for pool in pools if pool]
        remaining = target - len(chosen)
        if remaining < len(open_bins):
            open_bins = [open_bins[i] for i in rng.choice(len(open_bins), remaining, replace=False)]
        share = remaining // len(open_bins)
        for pool in open_bins:
            chosen += [int(i) for i in pool[:share]]
            del pool[:share]
    return sorted(chosen)


def random_student_codes(env: gym.Env, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct students of the env's subspace that are not degenerate, each layer removed with
    probability 1/2 and otherwise given a factor uniformly (random search's distribution in the joint mode)."""
    n2n = env.unwrapped
    factors = [str(k) for k in range(len(n2n.shrink_factors))]
    seen: set[str] = set()
    for _ in range(100 * n):
        if len(seen) == n:
            break
        code = "".join(
            REMOVED if (i in n2n.removed_layers if n2n.stages == "shrink" else rng.random() < 0.5)
            else (FULL_WIDTH if n2n.stages == "removal" else str(rng.choice(factors)))
            for i in range(n2n.num_layers)
        )  # fmt: skip
        if code in seen or set(code) == {REMOVED}:
            continue
        arch = code_architecture(n2n.teacher_architecture, n2n.shrink_factors, code)
        try:
            arch.layer_shapes()
        except InvalidArchitecture:
            continue
        if arch.num_parameters() < n2n.teacher_parameters:
            seen.add(code)
    return sorted(seen)


def measure_fidelity(
    env_kwargs: dict[str, Any],
    codes: Sequence[str],
    records_path: str | Path,
    proxy_seeds: Sequence[int] = (0, 1),
    final_seeds: Sequence[int] = (1000,),
    final_epochs: int = FULL_EPOCHS,
    top: int = 10,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``codes`` by the env's proxy on each of ``proxy_seeds`` (an episode per student and seed, the
    training seed fixed) and by the final training on ``final_seeds``, appending each result to
    ``records_path`` (a rerun skips the recorded ones), then :func:`proxy_fidelity` of the validation
    accuracy (proxy) against the test accuracy (final), and of the N2N reward C(2 − C) · A / A_teacher on
    each side (the search's reward against an entry's ``final_reward``)."""
    records_path = Path(records_path)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if records_path.is_file():
        for line in records_path.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:  # torn by an interrupt: measured again
                continue
            done[(r["kind"], r["code"], r["seed"])] = r
    envs = {seed: gym.make(ENV_ID, **env_kwargs, training_seed=seed) for seed in proxy_seeds}
    n2n = envs[proxy_seeds[0]].unwrapped
    final_config = replace(n2n.distill_config, training=replace(n2n.distill_config.training, epochs=final_epochs))
    jobs = [("proxy", c, s) for c in codes for s in proxy_seeds] + [("final", c, s) for c in codes for s in final_seeds]
    if records_path.is_file() and records_path.read_bytes()[-1:] not in (b"", b"\n"):
        with records_path.open("a") as f:  # end a torn line, so that the next record starts its own
            f.write("\n")
    with records_path.open("a") as out:
        for kind, code, seed in tqdm(jobs, desc="fidelity", unit="result", disable=not progress):
            if (kind, code, seed) in done:
                continue
            if kind == "proxy":
                info = play_student(envs[seed], code)
                if info["degenerate"]:
                    raise ValueError(f"student {code} is degenerate ({info['degenerate']}); expected valid students")
                result = {"val_accuracy": info["accuracy"], "parameters": info["student_parameters"]}
            else:
                arch = code_architecture(n2n.teacher_architecture, n2n.shrink_factors, code)
                trained = n2n.evaluator.evaluate(arch, final_config, seed)
                result = {"test_accuracy": trained["test_accuracy"], "parameters": trained["parameters"]}
            record = {"kind": kind, "code": code, "seed": seed, **result}
            out.write(json.dumps(record) + "\n")
            out.flush()
            done[(kind, code, seed)] = record
    parameters = np.array([done[("proxy", c, proxy_seeds[0])]["parameters"] for c in codes])
    compression = 1.0 - parameters / n2n.teacher_parameters
    proxy = np.array([[done[("proxy", c, s)]["val_accuracy"] for c in codes] for s in proxy_seeds])
    final = np.array([[done[("final", c, s)]["test_accuracy"] for c in codes] for s in final_seeds])
    report = _fidelity_report(proxy, final, compression, n2n.teacher_accuracy, n2n.task.teacher_test_accuracy, top)
    return {"students": list(codes), "compression": compression.tolist(), **report}


def table_fidelity(table: StudentTable, top: int = 10) -> dict[str, Any]:
    """:func:`measure_fidelity`'s report for every valid network of ``table`` (one code each) with a final result
    on each of the final seeds every such student has: the proxy's validation accuracy on the table's proxy seeds
    against the final training's test accuracy."""
    # One code per network (codes that make the same network share its results: counting them twice would
    # add ties that agree by construction).
    valid = [s for s in table.students.values() if not s.degenerate and s.final
             and table.code_of(table.architecture(s.code)) == s.code]  # fmt: skip
    seeds = [seed for seed in table.final_seeds if all(seed in s.final for s in valid)]
    proxy = np.array([[s.proxy[seed][0] for s in valid] for seed in table.proxy_seeds])
    final = np.array([[s.final[seed][1] for s in valid] for seed in seeds])
    compression = 1.0 - np.array([s.parameters for s in valid]) / table.teacher["parameters"]
    report = _fidelity_report(proxy, final, compression, table.teacher["val_accuracy"],
                              table.teacher["test_accuracy"], top)  # fmt: skip
    return {"students": [s.code for s in valid], "final_seeds": seeds, **report}


def _fidelity_report(proxy: np.ndarray, final: np.ndarray, compression: np.ndarray, teacher_val: float,
                     teacher_test: float, top: int) -> dict[str, Any]:  # fmt: skip
    def rewards(accuracies: np.ndarray, teacher: float) -> np.ndarray:
        return np.array([[compression_reward(c, a, teacher) for c, a in zip(compression, row)] for row in accuracies])

    return {
        "accuracy": proxy_fidelity(proxy, final, top),
        "n2n_reward": proxy_fidelity(rewards(proxy, teacher_val), rewards(final, teacher_test), top),
    }
