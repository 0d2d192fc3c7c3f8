"""The interference study in one command: IQ against DQN and QR-DQN on the paper's single-task
problems (CartPole-v1, Acrobot-v1, with the context-interference matrix) and on a cyclic drift between
InterferenceCartPole-v0's conflicting contexts (context visible and hidden), plus IQ-RE against DQN on
two MinAtar games; then the leaderboard entries and the report.

    python scripts/interference_study.py                      # everything (see docs/studies/ for the budget)
    python scripts/interference_study.py --settings cartpole --no-minatar --seeds 0 1 2 3 4
    python scripts/interference_study.py --report-only        # entries + plots from finished runs
    python scripts/interference_study.py --seeds 0 --timesteps 6000 --no-minatar --tag quick  # a quick look

Every run trains with agents.common.interference's callbacks (AEI, per-context training returns, greedy
evaluation curves, the context x phase matrix at each phase end, and on the single-task settings the
context-interference matrix every tenth of the budget) and is saved under
runs/interference/<setting>/<algo>/seed_<s>; finished runs are skipped, so the command resumes.
Entries are scored by greedy episodes on the leaderboard's evaluation seeds (under drift, on every
context held fixed); beside them the study reports the paper's metric, the area under the
training-return curve. MinAtar runs (3 seeds, fewer than an official entry needs) are tagged
"minatar". Writes leaderboard/entries/*, leaderboard/Interference-study.{png,json},
-<setting>-forgetting.png for the drift settings and Interference-context-matrices.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from agents.common.evaluation import EVALUATION_SEEDS, save_entry, trained_agents_entry
from agents.common.interference import STUDY_SETTINGS, context_env_kwargs, evaluation_contexts, run_interference_jobs
from agents.common.leaderboard import LEADERBOARD_DIR, aggregate, render
from agents.common.registry import load_hyperparams

DEFAULT_SETTINGS = ("cartpole", "acrobot", "conflict_visible", "conflict_hidden")
# Settings on which the context-interference matrix is measured: the paper's single-task problems.
MATRIX_SETTINGS = ("cartpole", "acrobot")
MINATAR_GAMES = ("Breakout", "SpaceInvaders")


def entry_name(algo: str, setting: str) -> str:
    """The entry's name: the algorithm on a plain env (CartPole-v1, Acrobot-v1, MinAtar), else
    ``<algo>_<setting>``."""
    return f"{algo}_{setting}" if STUDY_SETTINGS.get(setting, {}).get("env_id") == "InterferenceCartPole-v0" else algo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["dqn", "qrdqn", "iq"])
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), choices=list(STUDY_SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--timesteps", type=int, default=None, help="budget of every setting; default: the YAML's")
    parser.add_argument("--minatar-algos", nargs="+", default=["iq_re", "dqn"])
    parser.add_argument("--minatar-games", nargs="+", default=list(MINATAR_GAMES))
    parser.add_argument("--minatar-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--minatar-timesteps", type=int, default=None, help="default: the YAML's")
    parser.add_argument("--no-minatar", action="store_true")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained in parallel (one core each)")
    parser.add_argument("--tag", default="official")
    parser.add_argument("--runs", type=Path, default=Path("runs/interference"))
    parser.add_argument("--hyperparams", type=json.loads, default={},
                        help="JSON dict overriding the YAML of every non-MinAtar run (quick looks, tests)")
    parser.add_argument("--eval-freq", type=int, default=5000, help="steps between greedy evaluations")
    parser.add_argument("--matrix-eval-size", type=int, default=512,
                        help="transitions per context on which the context-interference matrix measures the TD loss")
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR)
    parser.add_argument("--report-only", action="store_true", help="skip training; build entries and plots")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    groups = []  # (setting, env id, env kwargs, algo, tag, run dirs)
    for setting in args.settings:
        env_id, kwargs = STUDY_SETTINGS[setting]["env_id"], STUDY_SETTINGS[setting]["env_kwargs"]
        for algo in args.algos:
            dirs = [args.runs / setting / algo / f"seed_{s}" for s in args.seeds]
            groups.append((setting, env_id, kwargs, algo, args.tag, dirs))
    if not args.no_minatar:
        for game in args.minatar_games:
            for algo in args.minatar_algos:
                dirs = [args.runs / f"minatar_{game.lower()}" / algo / f"seed_{s}" for s in args.minatar_seeds]
                groups.append((f"minatar_{game.lower()}", f"MinAtar-{game}-v1", {}, algo, "minatar", dirs))

    jobs = []
    for setting, env_id, kwargs, algo, _, dirs in groups:
        minatar = env_id.startswith("MinAtar")
        budget = args.minatar_timesteps if minatar else args.timesteps
        for d in dirs:
            if (d / "interference.json").is_file():
                continue
            steps = budget or int(load_hyperparams(algo, env_id)["n_timesteps"])
            jobs.append({"algo": algo, "env_id": env_id, "seed": int(d.name.split("_")[1]), "out_dir": str(d),
                         "env_kwargs": kwargs, "total_timesteps": budget,
                         "hyperparams": None if minatar else args.hyperparams,
                         # MinAtar trains every 4 steps: measure AEI every 100 steps.
                         "aei_every": 25 if minatar else 1, "eval_freq": args.eval_freq * (2 if minatar else 1),
                         "context_matrix_every": steps // 10 if setting in MATRIX_SETTINGS else None,
                         "context_matrix_eval_size": args.matrix_eval_size,
                         "eval_seeds": (2000, 2001, 2002)})  # fmt: skip
    # The longest first, so the two workers finish together.
    jobs.sort(key=lambda job: (job["algo"] == "iq_re", job["env_id"].startswith("MinAtar")), reverse=True)
    if jobs and not args.report_only:
        run_interference_jobs(jobs, args.jobs)

    records: dict[str, dict[str, list[dict]]] = {}
    scores: dict[str, dict[str, dict]] = {}
    for setting, env_id, kwargs, algo, tag, dirs in groups:
        if not all((d / "interference.json").is_file() for d in dirs):
            print(f"skipping {setting} {algo}: not every run has finished")
            continue
        contexts = evaluation_contexts(env_id, kwargs)
        settings = [context_env_kwargs(kwargs, c) for c in contexts] if kwargs.get("drift") else None
        entry = trained_agents_entry(dirs, EVALUATION_SEEDS, tag, entry_name(algo, setting), args.leaderboard_dir,
                                     progress=False, evaluation_env_kwargs=settings,
                                     extra_files=("interference.json",))  # fmt: skip
        runs = [json.loads((d / "interference.json").read_text()) for d in dirs]
        for run, record in zip(entry["runs"], runs):
            run["interference"] = {k: v for k, v in record["summary"].items() if k != "phase_matrix"}
        auc = [r["summary"]["training_return_auc"] for r in runs]
        entry["training_return_auc"] = aggregate(auc)
        entry["notes"] = ("greedy evaluation on every context held fixed" if settings else "greedy evaluation") + (
            f"; trained with {json.dumps(kwargs)}; training_return_auc: the paper's metric (area under the "
            "training-return curve, agents.common.interference.training_return_auc)")
        path = save_entry(entry, args.leaderboard_dir)
        summary = entry["summary"]
        print(f"{path.name}: IQM {summary['iqm']:.1f} {summary['iqm_ci95']}; AUC IQM "
              f"{entry['training_return_auc']['iqm']:.1f} {entry['training_return_auc']['iqm_ci95']}")  # fmt: skip
        records.setdefault(setting, {})[algo] = runs
        scores.setdefault(setting, {})[algo] = {"greedy": summary, "training_return_auc": entry["training_return_auc"],
                                                "entry": path.name}  # fmt: skip
    render(args.leaderboard_dir)
    if records:
        report(records, args.leaderboard_dir / "Interference-study", scores)
        matrices = {s: r for s, r in records.items() if s in MATRIX_SETTINGS}
        if matrices:
            context_matrix_figure(matrices, args.leaderboard_dir / "Interference-context-matrices.png")


def _mean_curve(runs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
            t, mean, std = _mean_curve(runs, "curve")
            curve_ax.plot(t, mean, label=f"{algo} ({len(runs)} seeds)")
            curve_ax.fill_between(t, mean - std, mean + std, alpha=0.2)
            t, mean, _ = _mean_curve(runs, "aei")
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
    fig.savefig(f"{stem}.png", dpi=110)
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
        fig.savefig(f"{stem}-{setting}-forgetting.png", dpi=110)
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
