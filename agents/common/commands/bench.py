"""Run one of KD-Gym's benchmarks, or all of them (each prints ratios measured in one process; absolute
times are not comparable across machines):

    kd-gym bench temperature_kd --epochs 5 --repeats 3   # TemperatureKD-v0 against a plain distillation loop
    kd-gym bench n2n                                      # N2NCompress-v0: an episode, and a cached repeat
    kd-gym bench iq --steps 3000 --repeats 1             # IQ against SB3's DQN; the drift wrapper's overhead
    kd-gym bench parallel                                 # the 10-seed evaluation serial vs on 2 Ray workers
    kd-gym bench device --device cuda                     # one full-scale CIFAR episode on a GPU: steps/s
    kd-gym bench all                                      # every one at its default size, then the summary

``kd-gym bench all`` runs each benchmark in a fresh process and ends with one line per figure,
``name: ratio = X (target >= T)`` or ``<= T`` (:func:`agents.common.benchmarks.parse_summary` reads them
back), and writes them with the machine, the date and the load average to ``--record`` (default
``leaderboard/benchmarks.json``), from which ``docs/benchmarks.md``'s table is generated
(``python scripts/docs.py``).
``kd-gym bench <name> --help`` lists a benchmark's options.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agents.common.benchmarks import Figure, benchmark_record, fresh_process_env
from agents.common.leaderboard import LEADERBOARD_DIR

BENCHMARKS = {
    "temperature_kd": "agents.common.benchmarks.temperature_kd",
    "n2n": "agents.common.benchmarks.n2n",
    "iq": "agents.common.benchmarks.iq",
    "parallel": "agents.common.benchmarks.parallel",
    "device": "agents.common.benchmarks.device",
}
RECORD = LEADERBOARD_DIR / "benchmarks.json"
# Left out of `bench all`: a full-scale CIFAR episode on a GPU, which this benchmark's machines lack.
NOT_IN_ALL = ("device",)


# A benchmark's main in a fresh process: its figures come back as JSON in the file named last.
_IN_A_FRESH_PROCESS = """
import dataclasses, importlib, json, sys
module, prog, out = sys.argv[1:]
figures = importlib.import_module(module).main([], prog=prog)
with open(out, "w") as file:
    json.dump([dataclasses.asdict(figure) for figure in figures], file)
"""


def run_in_a_fresh_process(name: str, module: str) -> list[Figure]:
    """``module.main([])`` in a fresh Python process (its output goes where this one's goes), so that no
    benchmark runs in a process that earlier ones filled with their envs, models and caches, and each
    figure is what ``kd-gym bench <name>`` alone measures; returns its figures."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "figures.json"
        subprocess.run([sys.executable, "-c", _IN_A_FRESH_PROCESS, module, f"kd-gym bench {name}", str(out)],
                       check=True, env=fresh_process_env())  # fmt: skip
        return [Figure(**{**f, "repeats": tuple(f["repeats"])}) for f in json.loads(out.read_text())]


def run_all(record: Path | None) -> list:
    """Every benchmark at its default size, one after the other, each in a fresh process; prints the
    summary lines and writes the record (unless ``record`` is None). Returns the figures."""
    load, start, figures = os.getloadavg()[0], time.perf_counter(), []
    for name, module in BENCHMARKS.items():
        if name in NOT_IN_ALL:
            continue
        print(f"\n== kd-gym bench {name}", flush=True)
        figures += run_in_a_fresh_process(name, module)
    met = sum(f.met for f in figures)
    print(f"\nsummary: {met} of {len(figures)} targets met; load average before {load:.2f}, "
          f"after {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")  # fmt: skip
    for figure in figures:
        print(figure.line())
    if record is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(benchmark_record(figures, load, time.perf_counter() - start), indent=1) + "\n")
    return figures


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    # No -h of its own: `bench <name> --help` is the benchmark's help; `bench --help` is this one.
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=formatter, add_help=False)
    parser.add_argument("benchmark", nargs="?", choices=[*sorted(BENCHMARKS), "all"])
    args, rest = parser.parse_known_args(argv)
    if args.benchmark is None:
        if {"-h", "--help"} & set(rest):
            parser.print_help()
            return 0
        parser.error("the benchmark to run is required")
    if args.benchmark == "all":
        options = argparse.ArgumentParser(prog=f"{parser.prog} all", description="every benchmark at its default "
                                          "size, then one summary line per figure")  # fmt: skip
        options.add_argument("--record", type=Path, default=RECORD, help="where to write the figures (default "
                             "%(default)s; docs/benchmarks.md is generated from it)")  # fmt: skip
        options.add_argument("--no-record", dest="record", action="store_const", const=None,
                             help="print the summary only")  # fmt: skip
        run_all(options.parse_args(rest).record)
        return 0
    module = importlib.import_module(BENCHMARKS[args.benchmark])
    module.main(rest, prog=f"{parser.prog} {args.benchmark}")
    return 0
