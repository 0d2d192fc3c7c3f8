"""Run one of KD-Gym's benchmarks (each prints ratios measured in one process; absolute times are not
comparable across machines):

    kd-gym bench temperature_kd --epochs 5 --repeats 3   # TemperatureKD-v0 against a plain distillation loop
    kd-gym bench n2n                                      # N2NCompress-v0: an episode, and a cached repeat
    kd-gym bench iq --steps 3000 --repeats 1             # IQ against SB3's DQN; the drift wrapper's overhead
    kd-gym bench parallel                                 # the 10-seed evaluation serial vs on 2 Ray workers
    kd-gym bench device --device cuda                     # one full-scale CIFAR episode on a GPU: steps/s

``kd-gym bench <name> --help`` lists a benchmark's options.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = {
    "temperature_kd": "agents.common.benchmarks.temperature_kd",
    "n2n": "agents.common.benchmarks.n2n",
    "iq": "agents.common.benchmarks.iq",
    "parallel": "agents.common.benchmarks.parallel",
    "device": "agents.common.benchmarks.device",
}


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    # No -h of its own: `bench <name> --help` is the benchmark's help; `bench --help` is this one.
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=formatter, add_help=False)
    parser.add_argument("benchmark", nargs="?", choices=sorted(BENCHMARKS))
    args, rest = parser.parse_known_args(argv)
    if args.benchmark is None:
        if {"-h", "--help"} & set(rest):
            parser.print_help()
            return 0
        parser.error("the benchmark to run is required")
    module = importlib.import_module(BENCHMARKS[args.benchmark])
    module.main(rest, prog=f"{parser.prog} {args.benchmark}")
    return 0
