"""Building a student table of N2NCompress-v0 (:mod:`kd_envs.tasks.tables`), the way NAS-Bench-201 was built:
every student of the table's subspace scored by the env's own proxy, each played as an episode through the
live env (one env per proxy seed, ``training_seed`` fixed), then retrained with the final budget.

The build runs in three passes over the subspace's students, visited in a fixed random order (a partial
build is then a uniform sample of the subspace, and its mean times estimate the rest): the proxy on every
proxy seed, then the final training of every valid student on the first ``final_every`` evaluation seeds
(both student by student, so a partial build holds whole students), then, once every proxy score exists,
the final training of the best ``final_top`` students of each ranking on the remaining evaluation seeds.
Every result is appended to ``<work_dir>/records-<i>-of-<n>.jsonl`` as soon as it exists and a rerun skips
what is recorded there, so the build resumes; shards (``shard=(i, n)``, students dealt in turn) run in
parallel processes on one work folder. The student cache of the env (``<cache_dir>/students``) also keeps
every training's result. When everything is recorded the table is written (:func:`assemble_table`) with a
record of how it was made.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

import kd_envs  # noqa: F401  (registers the environments)
from kd_envs.envs.n2n_compress import REMOVE, N2NCompressEnv, compression_reward
from kd_envs.tasks import atomic_write
from kd_envs.tasks.architecture import Architecture, InvalidArchitecture
from kd_envs.tasks.tables import (
    FORMAT,
    FULL_WIDTH,
    REMOVED,
    TABLE_KWARGS,
    TABLES,
    TOP_RANKINGS,
    TableSpec,
    code_architecture,
)
from kd_envs.tasks.task import TaskConfig

ENV_ID = "N2NCompress-v0"


def student_codes(env: gym.Env) -> list[str]:
    """Every student of the env's subspace (its teacher, ``stages``, ``removed_layers`` and ``shrink_factors``)
    as table codes, in the order the build visits them: each layer removed (``-``) or at each factor's index
    (``+``, full width, with ``stages="removal"``); the student with every layer removed is left out."""
    n2n = env.unwrapped
    factors = [str(k) for k in range(len(n2n.shrink_factors))]
    if n2n.stages == "shrink":
        choices = [[REMOVED] if i in n2n.removed_layers else factors for i in range(n2n.num_layers)]
    else:
        choices = [[REMOVED, *(factors if n2n.stages == "both" else [FULL_WIDTH])]] * n2n.num_layers
    return ["".join(c) for c in itertools.product(*choices) if set(c) != {REMOVED}]


def code_actions(code: str, stages: str) -> list[int]:
    """The actions of the episode that makes student ``code`` (keep 0 / remove 1, then factor indices)."""
    removal = [REMOVE if c == REMOVED else 0 for c in code]
    shrink = [int(c) for c in code if c not in (REMOVED, FULL_WIDTH)]
    return {"both": removal + shrink, "removal": removal, "shrink": shrink}[stages]


def table_env_kwargs(spec: TableSpec) -> dict[str, Any]:
    """The spec's env kwargs, every one of :data:`~kd_envs.tasks.tables.TABLE_KWARGS` given (the env's default
    where the spec has none), as JSON stores them."""
    defaults = {k: p.default for k, p in inspect.signature(N2NCompressEnv.__init__).parameters.items()}
    kwargs = {name: spec.env_kwargs.get(name, defaults[name]) for name in TABLE_KWARGS}
    if isinstance(kwargs["task"], TaskConfig):
        kwargs["task"] = kwargs["task"].to_dict()
    return json.loads(json.dumps(kwargs))


def play_code(env: gym.Env, code: str) -> tuple[float, dict[str, Any]]:
    """Play the actions that make ``code`` (the env's masks may clip them to another student: check
    ``env.unwrapped.student_code()``); the episode's last reward and info."""
    env.reset(seed=0)  # the training seed is the env's fixed one; the reset seed draws nothing else
    for action in code_actions(code, env.unwrapped.stages):
        _, reward, terminated, _, info = env.step(np.int64(action))
        if terminated:
            break
    return float(reward), info


def play_student(env: gym.Env, code: str) -> dict[str, Any]:
    """Play the episode that makes ``code``; its last info."""
    _, info = play_code(env, code)
    if env.unwrapped.student_code() != code:
        raise RuntimeError(f"the episode made {env.unwrapped.student_code()!r}, not {code!r}")
    return info


def _read_records(work_dir: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    records = {}
    for path in sorted(work_dir.glob("records-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line torn by an interrupt: its job runs again
                continue
            records[(record["kind"], record["code"], record["seed"])] = record
    return records


def _rankings(records: dict, codes: Sequence[str], spec: TableSpec, teacher: dict[str, Any]) -> dict[str, list]:
    """Each of TOP_RANKINGS' valid students, best first, by the mean over the proxy seeds: one code per network
    (the first), as codes that make the same network share its results."""
    scores: dict[str, list[tuple[float, str]]] = {name: [] for name in TOP_RANKINGS}
    seen = set()
    for code in codes:
        rows = [records[("proxy", code, seed)] for seed in spec.proxy_seeds]
        network = json.dumps(rows[0]["architecture"], sort_keys=True)
        if rows[0]["degenerate"] or network in seen:
            continue
        seen.add(network)
        accuracy = float(np.mean([r["val_accuracy"] for r in rows]))
        compression = 1.0 - rows[0]["parameters"] / teacher["parameters"]
        scores["n2n"].append((compression_reward(compression, accuracy, teacher["val_accuracy"]), code))
        if rows[0]["parameters"] <= spec.parameter_budget * teacher["parameters"]:
            scores["budget"].append((accuracy / teacher["val_accuracy"], code))
    return {name: [code for _, code in sorted(s, key=lambda x: (-x[0], x[1]))] for name, s in scores.items()}


def build_table(
    name: str,
    work_dir: str | Path,
    out_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    shard: tuple[int, int] = (0, 1),
    limit: int | None = None,
    made: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build (or go on building) the table ``name`` of :data:`~kd_envs.tasks.tables.TABLES` in ``work_dir``;
    when every result is recorded, write it to ``out_path`` (default ``TABLES_DIR/<name>.json``).

    :param cache_dir: the env's teacher and student cache (default: the env's).
    :param shard: ``(i, n)``: this process builds the students whose index is i mod n (n processes share one
        ``work_dir``); the table is written by whichever finds everything recorded.
    :param limit: stop after training this many results (a timing run); None: go on to the end.
    :param made: what the caller adds to the table's record of how it was made (the command, the commit).
    :return: ``recorded`` and ``total`` results, ``seconds`` (mean training seconds of a ``proxy`` and of a
        ``final`` result so far; a final one is estimated from the proxy's by the epochs until one exists),
        ``core_seconds_so_far``, ``estimate_core_seconds`` and ``estimate_core_hours`` (training the rest would
        take at those means), and, once written, ``table`` (its path) and ``sha256``.
    """
    from kd_envs.tasks.tables import TABLES_DIR, table_sha256

    spec = TABLES[name]
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard={shard!r}: expected (i, n) with 0 <= i < n")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    env_kwargs = table_env_kwargs(spec)
    envs = {seed: gym.make(ENV_ID, **env_kwargs, training_seed=seed, cache_dir=cache_dir) for seed in spec.proxy_seeds}
    n2n = envs[spec.proxy_seeds[0]].unwrapped
    teacher = {
        "architecture": n2n.teacher_architecture.to_dict(),
        "parameters": n2n.teacher_parameters,
        "val_accuracy": n2n.teacher_accuracy,
        "test_accuracy": n2n.task.teacher_test_accuracy,
        "key": n2n.task.teacher_record.get("key"),
        "task": n2n.task.config.to_dict(),
    }
    codes = student_codes(envs[spec.proxy_seeds[0]])
    # Visited in a fixed random order: a partial build is a uniform sample, and its timing an unbiased estimate.
    visit = [codes[i] for i in np.random.default_rng(0).permutation(len(codes))]
    mine = [code for i, code in enumerate(visit) if i % count == index]
    final_config = replace(n2n.distill_config, training=replace(n2n.distill_config.training, epochs=spec.final_epochs))
    records = _read_records(work_dir)
    early_seeds, late_seeds = spec.final_seeds[: spec.final_every], spec.final_seeds[spec.final_every :]

    def jobs_before_top() -> list[tuple[str, str, int]]:
        return [job for code in mine for job in [("proxy", code, seed) for seed in spec.proxy_seeds]
                + [("final", code, seed) for seed in early_seeds]]  # fmt: skip

    def degenerate(code: str) -> bool:  # such a student has no final training (known from its proxy record)
        return bool(records[("proxy", code, spec.proxy_seeds[0])]["degenerate"])

    def top_jobs() -> list[tuple[str, str, int]] | None:
        if not all(("proxy", c, s) in records for c in codes for s in spec.proxy_seeds):
            return None  # the rankings need every proxy score
        rankings = _rankings(records, codes, spec, teacher)
        best = sorted({c for ranked in rankings.values() for c in ranked[: spec.final_top]}, key=codes.index)
        return [("final", c, s) for i, c in enumerate(best) if i % count == index for s in late_seeds]

    def run(job: tuple[str, str, int]) -> dict[str, Any]:
        kind, code, seed = job
        if kind == "proxy":
            info = play_student(envs[seed], code)
            record = {"parameters": info["student_parameters"], "degenerate": info["degenerate"],
                      "architecture": info["architecture"]}  # fmt: skip
            if info["degenerate"]:
                return {**record, "val_accuracy": None, "test_accuracy": None, "train_seconds": 0.0, "cached": True}
            # The env's own result, read back from its evaluator for the test accuracy the info leaves out.
            played = envs[seed].unwrapped
            result = played.evaluator.cached(Architecture.from_dict(info["architecture"]), played.distill_config, seed)
        else:
            arch = Architecture.from_dict(records[("proxy", code, spec.proxy_seeds[0])]["architecture"])
            record = {"parameters": arch.num_parameters(), "degenerate": ""}
            result = n2n.evaluator.evaluate(arch, final_config, seed)
        cached = info["cached"] if kind == "proxy" else result["cached"]  # a network trained before: no cost
        return {**record, "val_accuracy": result["val_accuracy"], "test_accuracy": result["test_accuracy"],
                "train_seconds": result["train_seconds"], "cached": cached}  # fmt: skip

    path = work_dir / f"records-{index}-of-{count}.jsonl"
    if path.is_file() and path.read_bytes()[-1:] not in (b"", b"\n"):
        with path.open("a") as f:  # end a line torn by an interrupt, so that the next record starts its own
            f.write("\n")
    trained = 0
    with path.open("a") as out, tqdm(desc=f"table {name}", unit="result", disable=not progress) as bar:

        def work(jobs: list[tuple[str, str, int]]) -> bool:
            nonlocal trained
            bar.total = (bar.total or 0) + len(jobs)
            for job in jobs:
                if job in records or (job[0] == "final" and degenerate(job[1])):
                    bar.update()
                    continue
                if limit is not None and trained >= limit:
                    return False
                record = {"kind": job[0], "code": job[1], "seed": job[2], **run(job), "time": time.time()}
                out.write(json.dumps(record) + "\n")
                out.flush()
                os.fsync(out.fileno())
                records[job] = record
                trained += not record["cached"]
                bar.update()
                bar.set_postfix(_mean_seconds(records), refresh=False)
            return True

        tops = top_jobs() if work(jobs_before_top()) else None
        if tops is not None:
            work(tops)
    records = _read_records(work_dir)  # the other shards' too
    summary = _summary(records, codes, spec, teacher)
    if summary["recorded"] == summary["total"]:
        out_path = Path(out_path) if out_path is not None else TABLES_DIR / f"{name}.json"
        assemble_table(name, spec, env_kwargs, teacher, codes, records, out_path, made or {})
        summary.update(table=str(out_path), sha256=table_sha256(out_path))
    return summary


def _trained(record: dict[str, Any]) -> bool:
    return not record.get("cached", record["degenerate"] != "")


def _mean_seconds(records: dict) -> dict[str, float]:
    means = {}
    for kind in ("proxy", "final"):
        seconds = [r["train_seconds"] for r in records.values() if r["kind"] == kind and _trained(r)]
        if seconds:
            means[kind] = round(float(np.mean(seconds)), 3)
    return means


def _summary(records: dict, codes: Sequence[str], spec: TableSpec, teacher: dict[str, Any]) -> dict[str, Any]:
    """How far the build is, across shards, and what the rest would cost at the mean training times so far
    (counting each network once and no degenerate student: neither is trained)."""
    teacher_arch, factors = Architecture.from_dict(teacher["architecture"]), table_env_kwargs(spec)["shrink_factors"]
    network, degenerate = {}, set()
    for code in codes:
        arch = code_architecture(teacher_arch, factors, code)
        network[code] = json.dumps(arch.to_dict(), sort_keys=True)
        try:
            arch.layer_shapes()
        except InvalidArchitecture:
            degenerate.add(code)
        if arch.num_parameters() >= teacher["parameters"]:
            degenerate.add(code)
    proxy_jobs = [("proxy", c, s) for c in codes for s in spec.proxy_seeds]
    valid = [c for c in codes if c not in degenerate]
    early = [("final", c, s) for c in valid for s in spec.final_seeds[: spec.final_every]]
    late_seeds = spec.final_seeds[spec.final_every :]
    if all(job in records for job in proxy_jobs):
        best = {c for ranked in _rankings(records, codes, spec, teacher).values() for c in ranked[: spec.final_top]}
        late = [("final", c, s) for c in best for s in late_seeds]
    else:  # the rankings are not known yet: count their most
        late = [("final", f"top{i}", s) for i in range(min(len(valid), spec.final_top * len(TOP_RANKINGS)))
                for s in late_seeds]  # fmt: skip
        network.update({f"top{i}": f"top{i}" for i in range(len(late))})
    done = {(kind, network[code], seed) for kind, code, seed in records}
    pending = {(kind, network[code], seed) for kind, code, seed in proxy_jobs + early + late
               if (kind, code, seed) not in records and code not in degenerate} - done  # fmt: skip
    means = _mean_seconds(records)
    proxy_mean = means.get("proxy", 0.0)
    final_mean = means.get("final", proxy_mean * spec.final_epochs / table_env_kwargs(spec)["epochs"])
    estimate = sum(proxy_mean if kind == "proxy" else final_mean for kind, _, _ in pending)
    total = len(proxy_jobs) + len(early) + len(late)
    return {
        "recorded": sum(job in records for job in proxy_jobs + early + late),
        "total": total,
        "seconds": means,
        "core_seconds_so_far": round(sum(r["train_seconds"] for r in records.values() if _trained(r)), 1),
        "estimate_core_seconds": round(estimate, 1),
        "estimate_core_hours": round(estimate / 3600, 2),
    }


def assemble_table(
    name: str,
    spec: TableSpec,
    env_kwargs: dict[str, Any],
    teacher: dict[str, Any],
    codes: Sequence[str],
    records: dict,
    out_path: Path,
    made: dict[str, Any],
) -> None:
    """Write the table file: the spec as built, the teacher, how it was made, then one line per student
    (code, parameters, degenerate, proxy and final results as seed -> [val, test, seconds]); codes that make
    the same network get all of its final results."""

    def network(code: str) -> str:
        return json.dumps(records[("proxy", code, spec.proxy_seeds[0])]["architecture"], sort_keys=True)

    finals: dict[str, dict[int, dict[str, Any]]] = {}
    for (kind, code, seed), record in sorted(records.items(), key=lambda item: codes.index(item[0][1])):
        if kind == "final":
            finals.setdefault(network(code), {}).setdefault(seed, record)
    rows = []
    for code in codes:
        proxy = {s: records[("proxy", code, s)] for s in spec.proxy_seeds}
        final = {s: finals.get(network(code), {})[s] for s in spec.final_seeds if s in finals.get(network(code), {})}
        first = proxy[spec.proxy_seeds[0]]

        def results(by_seed: dict[int, dict]) -> dict[str, list]:
            return {str(s): [r["val_accuracy"], r["test_accuracy"], r["train_seconds"]] for s, r in by_seed.items()}

        rows.append({"code": code, "parameters": first["parameters"], "degenerate": first["degenerate"],
                     "proxy": {} if first["degenerate"] else results(proxy), "final": results(final)})  # fmt: skip
    times = [r["time"] for r in records.values()]
    header = {
        "format": FORMAT,
        "name": name,
        "description": spec.description,
        "env_kwargs": env_kwargs,
        "teacher": teacher,
        "proxy_seeds": list(spec.proxy_seeds),
        "final_epochs": spec.final_epochs,
        "final_seeds": list(spec.final_seeds),
        "code": "one character per teacher layer: '-' removed, '+' kept at full width (stages='removal'), "
        "else the index of the layer's factor in env_kwargs.shrink_factors",
        "fields": "proxy and final: training seed -> [validation accuracy, test accuracy, training seconds]",
        "made": {
            **made,
            "spec": {k: v for k, v in asdict(spec).items() if k != "sha256"},
            "first_result": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(min(times))),
            "last_result": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(times))),
            # The trainings this build ran (a network's repeats and results found in the student cache cost none).
            "core_seconds": {kind: round(sum(r["train_seconds"] for r in records.values()
                                             if r["kind"] == kind and _trained(r)), 1)
                             for kind in ("proxy", "final")},  # fmt: skip
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
        },
    }
    head = json.dumps(header, indent=1)
    body = ",\n".join("  " + json.dumps(row, separators=(",", ":")) for row in rows)
    text = head[:-2] + ',\n "students": [\n' + body + "\n ]\n}\n"
    atomic_write(out_path, lambda f: f.write(text), mode="w")
