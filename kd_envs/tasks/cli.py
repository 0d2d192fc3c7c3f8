"""Pre-train (or look up) a task's teacher: ``kd-pretrain-teacher --task mnist1d``."""

from __future__ import annotations

import argparse
import json

from kd_envs.tasks.task import TASKS, default_cache_dir, make_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="mnist1d", choices=sorted(TASKS))
    parser.add_argument("--cache-dir", default=None, help=f"default: {default_cache_dir()}")
    parser.add_argument("--data-root", default=None, help="folder holding CIFAR's python-format files")
    parser.add_argument("--device", default="cpu", help="where a teacher trains: cpu, cuda, cuda:<n> or mps")
    args = parser.parse_args(argv)
    task = make_task(args.task, cache_dir=args.cache_dir, data_root=args.data_root, progress=True, device=args.device)
    print(json.dumps(task.teacher_record, indent=2))


if __name__ == "__main__":
    main()
