"""Convert N2N model folders saved before N2NAgent was an SB3 BaseAlgorithm (``model.zip`` in the
``n2n-agent/1`` format) to SB3 acting zips (the logic: agents.n2n.n2n.convert_legacy_zip).

    python scripts/convert_legacy_n2n.py leaderboard/models/N2NCompress-v0__n2n__official/seed_* --to /tmp/new

Each MODEL_DIR (``model.zip`` + ``config.json``) is written to ``TO/<parent name>/<name>/`` with its other
files copied. The env of ``config.json`` supplies the observation space (its teacher is built or read
from the task cache)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import gymnasium as gym

import kd_envs  # noqa: F401  (registers the environments)
from agents.n2n import convert_legacy_zip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dirs", nargs="+", type=Path)
    parser.add_argument("--to", type=Path, required=True, help="the root folder of the converted copies")
    args = parser.parse_args(argv)
    for source in args.model_dirs:
        config = json.loads((source / "config.json").read_text())
        target = args.to / source.resolve().parent.name / source.name
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("model.zip"))
        env = gym.make(config["env_id"], **config["env_kwargs"])
        convert_legacy_zip(source / "model.zip", target / "model.zip", env)
        print(f"{source} -> {target / 'model.zip'}")


if __name__ == "__main__":
    main()
