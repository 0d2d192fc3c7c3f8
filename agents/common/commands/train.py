"""Train an agent (SB3 / sb3-contrib, or ours: n2n, random_search) on a KD-Gym env id; saves
model.zip + config.json (and search.json on N2NCompress-v0) and TensorBoard logs.

    kd-gym train --algo ppo --env TemperatureKD-v0 --seed 0 --timesteps 18600 \
        --env-kwargs '{"epochs": 10}' --out runs/ppo/seed_0
    kd-gym train --algo n2n --env N2NCompress-v0 --seed 0
    # policy transfer: start the search on another teacher from a saved N2N policy
    kd-gym train --algo n2n --env N2NCompress-v0 --env-kwargs '{"task": "mnist1d-vgg"}' \
        --init-from runs/N2NCompress-v0/n2n/seed_0/model.zip
    # checkpoints every 10000 steps (and on Ctrl-C) under <out>/checkpoints; then go on from the last one
    kd-gym train --algo dqn --env InterferenceCartPole-v0 --save-freq 10000
    kd-gym train --algo dqn --env InterferenceCartPole-v0 --save-freq 10000 --resume
    # ten training seeds, two at a time (Ray on this machine; --ray-address HOST:6379 for a cluster)
    kd-gym train --algo ppo --env TemperatureKD-v0 --seed 0 --seed 1 ... --seed 9 --workers 2
    # hyperparameter search (rl-zoo3's --optimize; ppo, dqn): Optuna, through Ray Tune with --workers > 1
    kd-gym train --algo dqn --env CartPole-v1 --optimize --n-trials 20 --timesteps 20000 --workers 2

Each training seed is a Ray task of one CPU when ``--workers`` > 1: the same agents as one after the
other. An N2N search is one sequential run (each episode depends on the policy so far); its seeds run
side by side like any other's. ``--optimize`` scores trials on validation episodes (never the
evaluation seeds) and writes <out>/optimize.json (default out: runs/<env>/<algo>/optimize).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from agents.common.evaluation import TRAINING_SEEDS
from agents.common.optimize import SAMPLERS, optimize
from agents.common.parallel import add_worker_arguments, map_tasks
from agents.common.registry import ALGOS
from agents.common.training import train_agent


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=formatter)
    parser.add_argument("--algo", required=True, choices=sorted(ALGOS))
    parser.add_argument("--env", default="TemperatureKD-v0")
    parser.add_argument("--seed", type=int, action="append", help=f"training seed(s); default {TRAINING_SEEDS[0]}")
    parser.add_argument("--timesteps", type=int, default=None, help="budget; default: n_timesteps from the YAML")
    parser.add_argument("--env-kwargs", type=json.loads, default={}, help="JSON dict of gym.make kwargs")
    parser.add_argument("--hyperparams", type=json.loads, default={}, help="JSON dict overriding the YAML")
    parser.add_argument("--out", default=None, help="output folder; default runs/<env>/<algo>/seed_<seed>")
    parser.add_argument("--init-from", default=None,
                        help="a saved model.zip to start from (e.g. an N2N policy trained on another teacher)")
    parser.add_argument("--save-freq", type=int, default=None,
                        help="write a checkpoint every N steps under <out>/checkpoints (Ctrl-C writes one too)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last complete checkpoint in <out>/checkpoints (same settings)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models run fastest on 1)")
    parser.add_argument("--no-progress", action="store_true")
    add_worker_arguments(parser, "training seeds (or --optimize trials)")
    parser.add_argument("--optimize", action="store_true",
                        help=f"search hyperparameters with Optuna instead ({', '.join(sorted(SAMPLERS))})")
    parser.add_argument("--n-trials", type=int, default=20, help="--optimize: trials, one training run each")
    parser.add_argument("--sampler-seed", type=int, default=0, help="--optimize: seed of Optuna's TPE sampler")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seed or [TRAINING_SEEDS[0]]
    for seed in seeds:
        if seed not in TRAINING_SEEDS:
            parser.error(f"--seed {seed}: training seeds are {list(TRAINING_SEEDS)} (evaluation seeds are kept apart)")
    if args.optimize:
        if args.algo not in SAMPLERS or len(seeds) != 1:
            parser.error(f"--optimize: one --seed, and --algo one of {sorted(SAMPLERS)}")
        record = optimize(args.algo, args.env, args.n_trials, args.out or f"runs/{args.env}/{args.algo}/optimize",
                          seeds[0], args.timesteps, args.env_kwargs, args.hyperparams, args.sampler_seed,
                          args.workers, args.ray_address)  # fmt: skip
        best = record["best"]
        print(f"best of {args.n_trials} trials: {record['metric']} {best['score']:.4f} with "
              f"--hyperparams '{json.dumps(best['hyperparams'])}' ({best['model_dir']})")  # fmt: skip
        return
    tasks = []
    for seed in seeds:
        out = args.out if args.out and len(seeds) == 1 else f"{args.out or f'runs/{args.env}/{args.algo}'}/seed_{seed}"
        # An absolute folder: a Ray worker's working directory need not be this one.
        tasks.append({"algo": args.algo, "env_id": args.env, "seed": seed, "out_dir": str(Path(out).resolve()),
                      "total_timesteps": args.timesteps, "env_kwargs": args.env_kwargs,
                      "hyperparams": args.hyperparams, "init_from": args.init_from,
                      "save_freq": args.save_freq, "resume": args.resume,
                      "progress_bar": not args.no_progress and args.workers == 1 and args.ray_address is None})
    serial = args.workers == 1 and args.ray_address is None
    for task, config in zip(tasks, map_tasks(train_config, tasks, args.workers, args.ray_address,
                                             None if serial else "training seeds", "run")):  # fmt: skip
        print(f"saved {args.algo} seed {task['seed']} ({config['total_timesteps']} steps) to {task['out_dir']}")


def train_config(**task) -> dict:
    """:func:`agents.common.training.train_agent`, returning the saved config (a Ray task sends back
    that, not the model)."""
    return train_agent(**task).config


if __name__ == "__main__":
    main()
