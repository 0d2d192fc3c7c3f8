"""``kd-gym``: one command with subcommands, as rl-zoo3's ``rl_zoo3`` command has.

    kd-gym train --algo ppo --env TemperatureKD-v0 --seed 0 --timesteps 2000
    kd-gym evaluate --models runs/TemperatureKD-v0/ppo/seed_* --tag quick
    kd-gym leaderboard                       # render leaderboard/README.md and the plots from the entries
    kd-gym leaderboard --verify leaderboard/entries/*.json
    kd-gym bench temperature_kd --epochs 5

``kd-gym <command> --help`` lists a command's options. Installed by ``pip install kd-gym`` (the
hyperparameter YAMLs and the shipped teachers come with the package); the folders it reads and writes
(``runs/``, ``leaderboard/``) are relative to the working directory unless given.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module with main(argv, prog), one line of help)
COMMANDS = {
    "train": ("agents.common.commands.train", "train an agent on a KD-Gym env (saves model.zip, config.json)"),
    "evaluate": ("agents.common.commands.evaluate", "evaluate trained agents or a fixed policy into an entry"),
    "leaderboard": ("agents.common.commands.leaderboard", "render the leaderboard, or --verify entries"),
    "bench": ("agents.common.commands.bench", "run a speed benchmark (temperature_kd, n2n, iq, parallel)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kd-gym", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (_, help_text) in COMMANDS.items():
        # The command's own parser reads the rest (its --help included).
        commands.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    status = module.main(rest, prog=f"kd-gym {args.command}")
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
