"""The N2N paper's two-stage protocol as two searches: a removal search, then a shrink search on its best."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import kd_envs  # noqa: F401  (registers the environments)
from agents.common.training import load_agent, train_agent
from kd_envs.tasks import atomic_write


def two_stage_search(
    algo: str,
    seed: int,
    out_dir: str | Path,
    n_students: int,
    env_kwargs: dict[str, Any] | None = None,
    hyperparams: dict[str, Any] | None = None,
    removal_share: float = 0.5,
    progress_bar: bool = False,
    save_freq: int | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """The paper's two-stage protocol as two searches on N2NCompress-v0 (the authors run ``run.py
    removal``, then ``run.py shrinkage`` on the stage-1 model): ``removal_share`` of the budget searches
    with ``stages="removal"``; its best student (by search reward) becomes the parent, whose layers a
    second search with ``stages="shrink"`` shrinks for the rest of the budget. Each stage starts a fresh
    agent (the authors train one controller per stage) seeded with ``seed``.

    Where the authors' code (anubhavashok/N2N: ``run.py``, ``rl.py``, ``architecture.py``) differs:
    they choose the stage-1 model by hand (no code ranks the saved students; here the best by validation
    search reward); stage 2 measures C against the stage-1 model, accuracy against its test accuracy,
    and distils from it (here: the task's teacher throughout, so that every stage and mode shares one
    scale); each stage runs 100 updates of 5 rollouts (here: the budget is split); they never remove
    the first layer, stride-2 convs or linear layers and shrink several attributes of a layer from an
    11-entry lookup (here: any layer, its width, the env's factors).

    Writes ``stage1/`` and ``stage2/`` (each a :func:`agents.common.training.train_agent` run) and, in
    ``out_dir``, ``search.json`` (both stages' students in order, the best of either) with ``model.zip``
    (stage 2's agent) and ``config.json``, so that the run reads like a single search. Returns the summary.
    ``save_freq`` and ``resume`` go to each stage's :func:`~agents.common.training.train_agent`; resuming,
    a finished stage 1 (its ``search.json`` written) is kept."""

    if not 0 < removal_share < 1:
        raise ValueError(f"removal_share={removal_share}: expected a number in (0, 1)")
    out_dir = Path(out_dir)
    base = {k: v for k, v in (env_kwargs or {}).items() if k not in ("stages", "removed_layers")}
    first = max(1, round(n_students * removal_share))
    if resume and (out_dir / "stage1" / "search.json").is_file() and (out_dir / "stage1" / "config.json").is_file():
        stage1 = load_agent(out_dir / "stage1")
    else:
        stage1 = train_agent(algo, "N2NCompress-v0", seed, out_dir / "stage1", env_kwargs={**base, "stages": "removal"},
                             hyperparams={**(hyperparams or {}), "n_students": first},
                             progress_bar=progress_bar, save_freq=save_freq, resume=resume)  # fmt: skip
    summary1 = json.loads((out_dir / "stage1" / "search.json").read_text())
    if summary1["best"] is None:
        raise ValueError(f"the removal search in {out_dir / 'stage1'} found no valid student")
    removed = summary1["best"]["removed_layers"]
    stage2 = train_agent(algo, "N2NCompress-v0", seed, out_dir / "stage2",
                         env_kwargs={**base, "stages": "shrink", "removed_layers": removed},
                         hyperparams={**(hyperparams or {}), "n_students": n_students - first},
                         progress_bar=progress_bar, save_freq=save_freq, resume=resume)  # fmt: skip
    summary2 = json.loads((out_dir / "stage2" / "search.json").read_text())
    history = [{**ep, "stage": "removal"} for ep in summary1["history"]]
    history += [{**ep, "episode": len(summary1["history"]) + ep["episode"], "stage": "shrink"}
                for ep in summary2["history"]]  # fmt: skip
    candidates = [b for b in (summary1["best"], summary2["best"]) if b is not None]
    best = max(candidates, key=lambda b: b["reward"])
    # The stages' students overlap only in the parent itself (stage 2 with every factor 1.0).
    summary = {"episodes": len(history), "unique_students": summary1["unique_students"] + summary2["unique_students"],
               "best": best, "history": history, "protocol": "two-stage", "parent_removed_layers": removed}  # fmt: skip
    atomic_write(out_dir / "search.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    shutil.copyfile(out_dir / "stage2" / "model.zip", out_dir / "model.zip")
    config = copy.deepcopy(stage2.config)
    config.update(env_kwargs=base, total_timesteps=stage1.config["total_timesteps"] + stage2.config["total_timesteps"],
                  protocol={"stages": "two-stage", "removal_students": first, "shrink_students": n_students - first,
                            "parent_removed_layers": removed})  # fmt: skip
    config["hyperparams"] = {**config["hyperparams"], "n_students": n_students}
    atomic_write(out_dir / "config.json", lambda f: f.write(json.dumps(config, indent=2, default=str).encode()))
    return summary
