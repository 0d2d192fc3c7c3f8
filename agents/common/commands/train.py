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
"""

from __future__ import annotations

import argparse
import json

import torch

from agents.common.evaluation import TRAINING_SEEDS
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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seed or [TRAINING_SEEDS[0]]
    for seed in seeds:
        if seed not in TRAINING_SEEDS:
            parser.error(f"--seed {seed}: training seeds are {list(TRAINING_SEEDS)} (evaluation seeds are kept apart)")
        out = args.out if args.out and len(seeds) == 1 else f"{args.out or f'runs/{args.env}/{args.algo}'}/seed_{seed}"
        trained = train_agent(args.algo, args.env, seed, out, args.timesteps, args.env_kwargs, args.hyperparams,
                              progress_bar=not args.no_progress, init_from=args.init_from, save_freq=args.save_freq,
                              resume=args.resume)  # fmt: skip
        print(f"saved {args.algo} seed {seed} ({trained.config['total_timesteps']} steps) to {out}")


if __name__ == "__main__":
    main()
