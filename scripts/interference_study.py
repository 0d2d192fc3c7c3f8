"""The interference study in one command: IQ against DQN and QR-DQN on the paper's single-task
problems (CartPole-v1, Acrobot-v1, with the context-interference matrix) and on a cyclic drift between
InterferenceCartPole-v0's conflicting contexts (context visible and hidden), plus IQ-RE against DQN on
two MinAtar games; then the leaderboard entries and the report.

    python scripts/interference_study.py                      # everything (see docs/studies/ for the budget)
    python scripts/interference_study.py --settings cartpole --no-minatar --seeds 0 1 2 3 4
    python scripts/interference_study.py --report-only        # entries + plots from finished runs
    python scripts/interference_study.py --seeds 0 --timesteps 6000 --no-minatar --tag quick  # a quick look
    python scripts/interference_study.py --workers 16 --ray-address HOST:6379   # on a Ray cluster
    python scripts/interference_study.py --reuse-entries dqn qrdqn iq_re   # retrain IQ only, the rest from the board

Every run trains with agents.common.interference's callbacks (AEI, per-context training returns, greedy
evaluation curves, the context x phase matrix at each phase end, and on the single-task settings the
context-interference matrix every tenth of the budget) and is saved under
runs/interference/<setting>/<algo>/seed_<s>; finished runs are skipped, so the command resumes.
``--reuse-entries ALGO ...`` fills those algorithms' run folders from their committed entries instead of
training them: each entry stores every run's model.zip, config.json and interference.json
(leaderboard/models/<sha256>/, checked against the entry's model_sha256), which is all the report and a
new entry need; the re-made entries then replay the stored models, so they must equal the committed
ones (a check of the board). Use it when a change touches one algorithm only.

Entries are scored by greedy episodes on the leaderboard's evaluation seeds (under drift, on every
context held fixed); beside them the study reports the paper's metric, the area under the
training-return curve. MinAtar runs (3 seeds, fewer than an official entry needs) are tagged
"minatar". Writes leaderboard/entries/*, leaderboard/Interference-study.{png,json},
-<setting>-forgetting.png for the drift settings and Interference-context-matrices.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from agents.common.evaluation import EVALUATION_SEEDS, save_entry, stored_model_dir, trained_agents_entry
from agents.common.interference import STUDY_SETTINGS, context_env_kwargs, evaluation_contexts
from agents.common.jobs import run_jobs
from agents.common.leaderboard import LEADERBOARD_DIR, aggregate, entry_path, render
from agents.common.parallel import add_worker_arguments, ray_workers, start_ray
from agents.common.registry import load_hyperparams
from agents.common.reports.interference import context_matrix_figure, report, train_interference_run

DEFAULT_SETTINGS = ("cartpole", "acrobot", "conflict_visible", "conflict_hidden")
# Settings on which the context-interference matrix is measured: the paper's single-task problems.
MATRIX_SETTINGS = ("cartpole", "acrobot")
MINATAR_GAMES = ("Breakout", "SpaceInvaders")


def entry_name(algo: str, setting: str) -> str:
    """The entry's name: the algorithm on a plain env (CartPole-v1, Acrobot-v1, MinAtar), else
    ``<algo>_<setting>``."""
    return f"{algo}_{setting}" if STUDY_SETTINGS.get(setting, {}).get("env_id") == "InterferenceCartPole-v0" else algo


RUN_FILES = ("model.zip", "config.json", "interference.json")


def restore_runs(env_id: str, name: str, tag: str, dirs: list[Path], directory: Path) -> int:
    """Fill the unfinished run folders ``dirs`` (``.../seed_<s>``) from the stored models of the committed
    entry ``name`` (tag ``tag``) in the leaderboard ``directory``; returns how many were filled. Fails,
    naming the entry, when it is missing or lacks one of the seeds."""
    path = entry_path(env_id, name, tag, directory)
    if not path.is_file():
        raise FileNotFoundError(f"--reuse-entries: no entry {path} to take {name}'s runs from")
    runs = {run["training_seed"]: run for run in json.loads(path.read_text())["runs"]}
    filled = 0
    for d in dirs:
        if (d / "interference.json").is_file():
            continue
        seed = int(d.name.split("_")[1])
        if seed not in runs:
            raise ValueError(f"--reuse-entries: {path} has no run of training seed {seed}")
        source = stored_model_dir(runs[seed], directory)  # checks the model against the entry's sha256
        d.mkdir(parents=True, exist_ok=True)
        for file in RUN_FILES:
            shutil.copy2(source / file, d / file)
        filled += 1
    return filled


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
    add_worker_arguments(parser, "training runs", default=2, aliases=["--jobs"])
    parser.add_argument("--tag", default="official")
    parser.add_argument("--runs", type=Path, default=Path("runs/interference"))
    parser.add_argument("--hyperparams", type=json.loads, default={},
                        help="JSON dict overriding the YAML of every non-MinAtar run (quick looks, tests)")
    parser.add_argument("--eval-freq", type=int, default=5000, help="steps between greedy evaluations")
    parser.add_argument("--matrix-eval-size", type=int, default=512,
                        help="transitions per context on which the context-interference matrix measures the TD loss")
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR)
    parser.add_argument("--report-only", action="store_true", help="skip training; build entries and plots")
    parser.add_argument("--reuse-entries", nargs="+", default=[], metavar="ALGO",
                        help="take these algorithms' runs from their committed entries' stored models, not training")
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

    for setting, env_id, _kwargs, algo, tag, dirs in groups:
        if algo in args.reuse_entries:
            filled = restore_runs(env_id, entry_name(algo, setting), tag, dirs, args.leaderboard_dir)
            if filled:
                print(f"{setting} {algo}: {filled} runs taken from the committed entry")
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
    if args.workers > 1 or args.ray_address:
        # One Ray for the training runs and every entry's episodes (on this machine, this process is a worker too).
        start_ray(ray_workers(args.workers, args.ray_address), args.ray_address)
    if jobs and not args.report_only:
        run_jobs(train_interference_run, jobs, args.workers, "training runs", "run", args.ray_address)

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
                                     extra_files=("interference.json",), workers=args.workers,
                                     address=args.ray_address)  # fmt: skip
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


if __name__ == "__main__":
    main()
