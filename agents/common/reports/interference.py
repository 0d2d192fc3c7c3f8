"""The interference studies' runs and reports (``scripts/interference_study.py``,
``scripts/iq_selection.py``): one measured training run and its record (:func:`train_interference_run`
writes ``interference.json``), the run's summary (:func:`summarise_run`, with the paper's metric
:func:`training_return_auc`), and the study's figures and tables from the records of many runs
(:func:`report`, :func:`markdown_tables`, :func:`context_matrix_figure`, :func:`selection_row`).
The measurements themselves are :mod:`agents.common.interference`'s."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from agents.common.figures import save_figure
from agents.common.interference import (
    CURVE_EVALUATION_SEEDS,
    ContextEvaluationCallback,
    ContextInterferenceCallback,
    InterferenceCallback,
    evaluation_contexts,
    forgetting,
)
from agents.common.training import train_agent


def train_interference_run(
    algo: str,
    env_id: str,
    seed: int,
    out_dir: str | Path,
    env_kwargs: Mapping[str, Any],
    total_timesteps: int | None = None,
    hyperparams: dict[str, Any] | None = None,
    eval_freq: int = 2500,
    eval_seeds: Sequence[int] = CURVE_EVALUATION_SEEDS,
    aei_samples: int = 256,
    aei_every: int = 1,
    context_matrix_every: int | None = None,
    context_matrix_eval_size: int = 512,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Train one agent with :func:`agents.common.training.train_agent` while measuring AEI, per-context
    training returns, greedy return curves, the context × phase matrix and, every
    ``context_matrix_every`` steps, the context-interference matrix (:class:`ContextInterferenceCallback`);
    writes them, with their summary (:func:`summarise_run`), to ``out_dir/interference.json`` beside
    ``model.zip``. AEI is measured on one training call in ``aei_every`` (each costs four forward
    passes on the sample)."""

    out_dir = Path(out_dir)
    interference = InterferenceCallback(n_samples=aei_samples, every=aei_every)
    evaluation = ContextEvaluationCallback(env_id, env_kwargs, eval_freq, eval_seeds,
                                           evaluation_contexts(env_id, env_kwargs))  # fmt: skip
    callbacks: list[BaseCallback] = [interference, evaluation]
    matrix = (ContextInterferenceCallback(context_matrix_every, eval_size=context_matrix_eval_size, seed=seed)
              if context_matrix_every else None)  # fmt: skip
    if matrix is not None:
        callbacks.append(matrix)
    train_agent(algo, env_id, seed, out_dir, total_timesteps, dict(env_kwargs), hyperparams,
                progress_bar=progress_bar, callbacks=callbacks)  # fmt: skip
    record = {**interference.record(), **evaluation.record()}
    if matrix is not None:
        record["context_interference"] = matrix.record()
    record["summary"] = summarise_run(record)
    # Compact: a run's record holds every AEI value and training episode (hundreds of kB indented).
    (out_dir / "interference.json").write_text(json.dumps(record, separators=(",", ":")))
    return record


def training_return_auc(episodes: Sequence[Sequence[float]], windows: int = 20) -> float | None:
    """The paper's metric, the area under the training-return curve: training is cut into ``windows``
    equal spans of env steps (up to the last episode's end), each scored by the mean return of the
    training episodes that ended in it (a span with none keeps the previous score), and the spans'
    scores are averaged. ``episodes`` are (timesteps at the end, context, return) rows."""
    if not episodes:
        return None
    ends = np.array([e[0] for e in episodes], dtype=np.float64)
    returns = np.array([e[2] for e in episodes], dtype=np.float64)
    edges = np.linspace(0.0, ends.max(), windows + 1)
    scores, last = [], float(returns[0])
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (ends > low) & (ends <= high) if low > 0 else (ends >= low) & (ends <= high)
        last = float(returns[inside].mean()) if inside.any() else last
        scores.append(last)
    return float(np.mean(scores))


def summarise_run(record: Mapping[str, Any]) -> dict[str, Any]:
    """A run's interference numbers: mean AEI (whole run and its second half), the last greedy
    evaluation's mean return, the std of the curve's second half (how steady it is), the area under
    the training-return curve (:func:`training_return_auc`), the context × phase matrix R and the
    forgetting at the end, mean over contexts of max_p R[p, c] − R[last, c], and the
    context-interference matrix's mean off-diagonal entry where it was measured."""
    aei = np.array([a for _, a in record["aei"]], dtype=np.float64)
    curve = np.array([np.mean(point["returns"]) for point in record["curve"]], dtype=np.float64)
    matrix = np.array([row["returns"] for row in record["phases"]], dtype=np.float64)
    summary: dict[str, Any] = {
        "aei_mean": float(aei.mean()) if aei.size else None,
        "aei_mean_second_half": float(aei[aei.size // 2 :].mean()) if aei.size else None,
        "final_eval_return": float(curve[-1]) if curve.size else None,
        "curve_mean_second_half": float(curve[curve.size // 2 :].mean()) if curve.size else None,
        "curve_std_second_half": float(curve[curve.size // 2 :].std()) if curve.size else None,
        "training_return_auc": training_return_auc(record.get("training_episodes", [])),
    }
    context_interference = record.get("context_interference") or {}
    if "interference" in context_interference:
        summary.update(context_interference=context_interference["interference"],
                       context_self=context_interference["self"],
                       context_matrix=context_interference["matrix"])  # fmt: skip
    if matrix.size:
        drops = forgetting(matrix)
        summary.update(phase_matrix=matrix.tolist(), phase_contexts=[row["context"] for row in record["phases"]])
        summary.update(final_forgetting=float(drops[-1].mean()), max_forgetting=float(drops.max(axis=0).mean()))
    return summary


def mean_curve(runs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Timesteps, mean and std over runs of a per-run series (eval curve or AEI), cut to the shortest."""
    if key == "curve":
        series = [[(p["timesteps"], float(np.mean(p["returns"]))) for p in r["curve"]] for r in runs]
    else:
        series = [r["aei"] for r in runs]
    n = min(len(s) for s in series)
    t = np.array([x for x, _ in series[0][:n]], dtype=float)
    values = np.array([[v for _, v in s[:n]] for s in series], dtype=float)
    return t, values.mean(axis=0), values.std(axis=0)


def report(records: dict[str, dict[str, list[dict]]], stem: Path, scores: dict | None = None) -> None:
    """Plots (return curves and AEI per setting; the context x phase return matrix and the forgetting
    of each algorithm under drift) and a JSON of the numbers (per seed, and the entries' IQM [95% CI]
    of the greedy score and of the training-return AUC in ``scores``), for the records
    {setting: {algo: [interference.json per seed]}}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(records)
    fig, axes = plt.subplots(2, len(settings), figsize=(6 * len(settings), 7), squeeze=False)
    numbers: dict[str, dict] = {}
    for col, setting in enumerate(settings):
        curve_ax, aei_ax = axes[0, col], axes[1, col]
        for algo, runs in records[setting].items():
            t, mean, std = mean_curve(runs, "curve")
            curve_ax.plot(t, mean, label=f"{algo} ({len(runs)} seeds)")
            curve_ax.fill_between(t, mean - std, mean + std, alpha=0.2)
            t, mean, _ = mean_curve(runs, "aei")
            window = max(1, len(mean) // 20)
            smooth = np.convolve(mean, np.ones(window) / window, mode="valid")
            aei_ax.plot(t[window - 1 :], smooth, label=algo)
            summaries = [r["summary"] for r in runs]
            numbers.setdefault(setting, {})[algo] = {
                key: [s[key] for s in summaries]
                for key in ("aei_mean", "aei_mean_second_half", "final_eval_return", "curve_mean_second_half",
                            "curve_std_second_half", "training_return_auc", "context_interference", "context_self",
                            "final_forgetting", "max_forgetting")
                if key in summaries[0]
            }  # fmt: skip
            if scores and algo in scores.get(setting, {}):
                numbers[setting][algo]["entry"] = scores[setting][algo]
        phases = next(iter(records[setting].values()))[0]["phases"]
        for row in phases[:-1]:
            for ax in (curve_ax, aei_ax):
                ax.axvline(row["timesteps"], color="gray", lw=0.5, ls=":")
        curve_ax.set_title(f"{setting}: greedy return (mean over contexts, ±std over seeds)", fontsize=9)
        curve_ax.set_xlabel("training steps")
        curve_ax.legend(fontsize=8)
        aei_ax.axhline(0, color="black", lw=0.5)
        aei_ax.set_title(f"{setting}: AEI per update (mean over seeds, moving average)", fontsize=9)
        aei_ax.set_xlabel("training steps")
        aei_ax.set_yscale("symlog", linthresh=1e-2)
        aei_ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, f"{stem}.png", dpi=110)
    plt.close(fig)

    drift = [s for s in settings if len(next(iter(records[s].values()))[0]["phases"]) > 1]
    for setting in drift:
        algos = list(records[setting])
        fig, axes = plt.subplots(1, len(algos), figsize=(4.2 * len(algos), 3.8), squeeze=False)
        means = {}
        for algo in algos:
            matrices = [np.array(r["summary"]["phase_matrix"]) for r in records[setting][algo]]
            n = min(len(m) for m in matrices)
            means[algo] = np.mean([m[:n] for m in matrices], axis=0)
        # One colour scale for every panel, so the algorithms compare by colour too.
        low, high = min(m.min() for m in means.values()), max(m.max() for m in means.values())
        for ax, algo in zip(axes[0], algos):
            matrix = means[algo]
            n = len(matrix)
            contexts = records[setting][algo][0]["summary"]["phase_contexts"][:n]
            image = ax.imshow(matrix.T, aspect="auto", cmap="viridis", vmin=low, vmax=high)
            for p in range(matrix.shape[0]):
                for c in range(matrix.shape[1]):
                    ax.text(p, c, f"{matrix[p, c]:.0f}", ha="center", va="center", fontsize=7, color="white")
            ax.set_xticks(range(n), [f"{p}\n(ctx {c})" for p, c in enumerate(contexts)], fontsize=7)
            ax.set_yticks(range(matrix.shape[1]))
            ax.set_xlabel("end of phase (context trained)")
            ax.set_ylabel("context evaluated")
            forgetting = np.mean([r["summary"]["final_forgetting"] for r in records[setting][algo]])
            ax.set_title(f"{algo}: final forgetting {forgetting:.0f}", fontsize=9)
            fig.colorbar(image, ax=ax)
        fig.suptitle(f"{setting}: greedy return per context at each phase end (mean over seeds)", fontsize=10)
        fig.tight_layout()
        save_figure(fig, f"{stem}-{setting}-forgetting.png", dpi=110)
        plt.close(fig)
    Path(f"{stem}.json").write_text(json.dumps(numbers, indent=1))
    if scores:
        Path(f"{stem}.md").write_text(markdown_tables(numbers))
    print(f"wrote {stem}.png, {stem}.json" + "".join(f", {stem}-{s}-forgetting.png" for s in drift))


def _interval(aggregate_: dict) -> str:
    low, high = aggregate_["iqm_ci95"]
    return f"{aggregate_['iqm']:.1f} [{low:.1f}, {high:.1f}]"


def markdown_tables(numbers: dict[str, dict[str, dict]]) -> str:
    """The study's table (one row per setting and algorithm): the greedy score's and the training-return
    AUC's IQM [95% CI] and mean ± std from the entries, and the mean context interference (off-diagonal
    of the context-interference matrix) and forgetting where measured."""
    lines = ["| setting | agent | greedy return, IQM [95% CI] | mean ± std | training-return AUC, IQM [95% CI] |"
             " mean ± std | context interference | final forgetting |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for setting, algos in numbers.items():
        for algo, values in algos.items():
            entry = values.get("entry")
            if not entry:
                continue
            greedy, auc = entry["greedy"], entry["training_return_auc"]
            interference = values.get("context_interference")
            forgetting_ = values.get("final_forgetting")
            lines.append(
                f"| {setting} | {algo} | {_interval(greedy)} | {greedy['mean']:.1f} ± {greedy['std']:.1f} "
                f"| {_interval(auc)} | {auc['mean']:.1f} ± {auc['std']:.1f} "
                f"| {f'{np.mean(interference):+.3f}' if interference else '–'} "
                f"| {f'{np.mean(forgetting_):.0f}' if forgetting_ and setting.startswith('conflict') else '–'} |"
            )
    return "\n".join(lines) + "\n"


def context_matrix_figure(records: dict[str, dict[str, list[dict]]], path: Path) -> None:
    """The context-interference matrices (mean over measurements and seeds) of every algorithm (columns)
    on every single-task setting (rows): M[i, j], the relative change of context j's Huber TD loss
    after training on context i. One colour scale, centred on 0 (red: interference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(records)
    algos = sorted({a for r in records.values() for a in r})
    fig, axes = plt.subplots(len(settings), len(algos), figsize=(3.6 * len(algos), 3.2 * len(settings)),
                             squeeze=False)  # fmt: skip
    means = {}
    for setting in settings:
        for algo, runs in records[setting].items():
            mats = [r["context_interference"]["matrix"] for r in runs
                    if r.get("context_interference", {}).get("matrix")]  # fmt: skip
            if mats:
                means[setting, algo] = np.mean(np.asarray(mats), axis=0)
    limit = max((np.abs(m).max() for m in means.values()), default=1.0)
    for row, setting in enumerate(settings):
        for col, algo in enumerate(algos):
            ax = axes[row, col]
            if (setting, algo) not in means:
                ax.axis("off")
                continue
            matrix = means[setting, algo]
            image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit)
            for i in range(len(matrix)):
                for j in range(len(matrix)):
                    ax.text(j, i, f"{matrix[i, j]:+.2f}", ha="center", va="center", fontsize=8)
            off = matrix[~np.eye(len(matrix), dtype=bool)].mean()
            ax.set_title(f"{setting} · {algo}: off-diagonal {off:+.3f}", fontsize=9)
            ax.set_xlabel("context whose TD loss is measured (j)")
            ax.set_ylabel("context trained on (i)")
            ax.set_xticks(range(len(matrix)))
            ax.set_yticks(range(len(matrix)))
            fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle("Context-interference matrix: relative change of the Huber TD loss (mean over seeds)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def selection_row(params: Mapping[str, Any], summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One candidate's row of a selection on validation seeds (``scripts/iq_selection.py``) from its runs'
    summaries (:func:`summarise_run`): the score, the mean greedy return across the second half of
    training, per seed and on average, beside the training-return AUC and the final greedy return."""
    score = [s["curve_mean_second_half"] for s in summaries]
    auc = [s["training_return_auc"] for s in summaries]
    return {"params": params, "score": float(np.mean(score)), "score_per_seed": score,
            "training_return_auc": float(np.mean(auc)), "final_eval_return":
            float(np.mean([s["final_eval_return"] for s in summaries]))}  # fmt: skip
