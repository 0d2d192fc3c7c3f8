"""The interference study in one command: IQ against DQN and QR-DQN on InterferenceCartPole-v0, plain
and under a cyclic context drift, over 5 training seeds, plus an IQ-RE / DQN smoke run on
InterferenceAtari-v0; then the leaderboard entries and the report.

    python scripts/interference_study.py                 # everything (about 1 h 40 min on 2 cores)
    python scripts/interference_study.py --report-only   # entries + plots from finished runs
    python scripts/interference_study.py --seeds 0 --timesteps 6000 --no-atari --tag quick  # a quick look

Every run trains with agents.interference's callbacks (AEI, per-context returns, greedy evaluation
curves, the context x phase matrix at each phase end) and is saved under
runs/interference/<env>/<setting>/<algo>/seed_<s>; finished runs are skipped, so the command resumes.
Entries are scored by greedy episodes on the leaderboard's evaluation seeds: on the plain task, on
context 0; under drift, on every context held fixed. The Atari smoke's entries go to
runs/interference/smoke_leaderboard (its plots to leaderboard/). Writes leaderboard/entries/*, the plots
leaderboard/InterferenceCartPole-v0-study.png, -study-cyclic-forgetting.png and the numbers in
-study.json (the Atari smoke's as InterferenceAtari-v0-smoke*).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from agents.evaluation import EVALUATION_SEEDS, save_entry, trained_agents_entry
from agents.interference import STUDY_SETTINGS, context_env_kwargs, evaluation_contexts, train_interference_run
from agents.leaderboard import LEADERBOARD_DIR, render

CARTPOLE, ATARI = "InterferenceCartPole-v0", "InterferenceAtari-v0"
# The Atari smoke: Breakout's default contexts (two modes, one harder difficulty) cycling every 2,500
# steps; evaluation episodes are capped so that a greedy agent that never serves still ends.
ATARI_KWARGS = {"game": "Breakout", "drift": "cyclic", "phase_length": 2500, "phase_unit": "steps",
                "max_episode_steps": 1000}  # fmt: skip
ATARI_EVALUATION_SEEDS = EVALUATION_SEEDS[:2]


def entry_name(algo: str, setting: str) -> str:
    return algo if setting == "plain" else f"{algo}_{setting}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["dqn", "qrdqn", "iq"])
    parser.add_argument("--settings", nargs="+", default=list(STUDY_SETTINGS), choices=list(STUDY_SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--timesteps", type=int, default=None, help="CartPole budget; default: the YAML's")
    parser.add_argument("--atari-algos", nargs="+", default=["iq_re", "dqn"])
    parser.add_argument("--no-atari", action="store_true")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained in parallel (one core each)")
    parser.add_argument("--tag", default="official")
    parser.add_argument("--runs", type=Path, default=Path("runs/interference"))
    parser.add_argument("--hyperparams", type=json.loads, default={},
                        help="JSON dict overriding the YAML of every CartPole run (quick looks, tests)")
    parser.add_argument("--eval-freq", type=int, default=5000, help="steps between greedy evaluations")
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR)
    parser.add_argument("--report-only", action="store_true", help="skip training; build entries and plots")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    groups = []  # (env id, setting name, env kwargs, algo, evaluation seeds, tag, run dirs)
    for setting in args.settings:
        for algo in args.algos:
            dirs = [args.runs / CARTPOLE / setting / algo / f"seed_{s}" for s in args.seeds]
            groups.append((CARTPOLE, setting, STUDY_SETTINGS[setting], algo, EVALUATION_SEEDS, args.tag, dirs))
    if not args.no_atari:
        for algo in args.atari_algos:
            dirs = [args.runs / ATARI / "cyclic" / algo / f"seed_{args.seeds[0]}"]
            groups.append((ATARI, "cyclic", ATARI_KWARGS, algo, ATARI_EVALUATION_SEEDS, "smoke", dirs))

    jobs = [{"algo": algo, "env_id": env_id, "seed": int(d.name.split("_")[1]), "out_dir": str(d),
             "env_kwargs": kwargs, "total_timesteps": args.timesteps if env_id == CARTPOLE else None,
             "hyperparams": args.hyperparams if env_id == CARTPOLE else None,
             # Atari trains every 4 steps, CartPole every 256: measure AEI every 100 steps on Atari.
             "aei_every": 25 if env_id == ATARI else 1,
             "eval_freq": args.eval_freq, "eval_seeds": (2000, 2001) if env_id == ATARI else (2000, 2001, 2002)}
            for env_id, _, kwargs, algo, _, _, dirs in groups for d in dirs
            if not (d / "interference.json").is_file()]  # fmt: skip
    if jobs and not args.report_only and args.jobs == 1:
        for job in tqdm(jobs, desc="training runs", unit="run"):
            train_interference_run(**job)
    elif jobs and not args.report_only:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=torch.set_num_threads,
                                 initargs=(1,)) as pool:  # fmt: skip
            futures = [pool.submit(train_interference_run, **job) for job in jobs]
            for future in tqdm(as_completed(futures), total=len(futures), desc="training runs", unit="run"):
                future.result()

    records: dict[str, dict[str, list[dict]]] = {}
    for env_id, setting, kwargs, algo, seeds, tag, dirs in groups:
        if not all((d / "interference.json").is_file() for d in dirs):
            print(f"skipping {env_id} {setting} {algo}: not every run has finished")
            continue
        # The Atari smoke proves the pipeline, not a result: its entries (and 28 MB models) stay in runs/.
        board = args.runs / "smoke_leaderboard" if tag == "smoke" else args.leaderboard_dir
        contexts = evaluation_contexts(env_id, kwargs)
        settings = [context_env_kwargs(kwargs, c) for c in contexts] if kwargs.get("drift") else None
        entry = trained_agents_entry(dirs, seeds, tag, entry_name(algo, setting), board,
                                     progress=False, evaluation_env_kwargs=settings,
                                     extra_files=("interference.json",))  # fmt: skip
        runs = [json.loads((d / "interference.json").read_text()) for d in dirs]
        for run, record in zip(entry["runs"], runs):
            run["interference"] = {k: v for k, v in record["summary"].items() if k != "phase_matrix"}
        entry["notes"] = ("greedy evaluation on every context held fixed" if settings else "greedy evaluation") + (
            f"; trained with {json.dumps(kwargs)}")
        path = save_entry(entry, board)
        print(f"{path.name}: IQM {entry['summary']['iqm']:.1f} {entry['summary']['iqm_ci95']}")
        records.setdefault(f"{env_id}/{setting}", {})[algo] = runs
    render(args.leaderboard_dir)
    cartpole = {k.split("/")[1]: v for k, v in records.items() if k.startswith(CARTPOLE)}
    if cartpole:
        report(cartpole, args.leaderboard_dir / f"{CARTPOLE}-study")
    atari = {k.split("/")[1]: v for k, v in records.items() if k.startswith(ATARI)}
    if atari:
        report(atari, args.leaderboard_dir / f"{ATARI}-smoke")


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


def report(records: dict[str, dict[str, list[dict]]], stem: Path) -> None:
    """Plots (return curves and AEI per setting; the context x phase return matrix and the forgetting
    of each algorithm under drift) and a JSON of the numbers, for one env's records
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
                            "curve_std_second_half", "final_forgetting", "max_forgetting")
                if key in summaries[0]
            }  # fmt: skip
        phases = next(iter(records[setting].values()))[0]["phases"]
        for row in phases[:-1]:
            for ax in (curve_ax, aei_ax):
                ax.axvline(row["timesteps"], color="gray", lw=0.5, ls=":")
        curve_ax.set_title(f"{setting}: greedy return (mean over evaluated contexts, ±std over seeds)", fontsize=9)
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
    print(f"wrote {stem}.png, {stem}.json" + "".join(f", {stem}-{s}-forgetting.png" for s in drift))


if __name__ == "__main__":
    main()
