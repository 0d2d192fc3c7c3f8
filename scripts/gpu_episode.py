"""`kd-gym bench device` from a checkout: one full-scale CIFAR episode of TemperatureKD-v0 on a GPU, timed (the
logic: agents.common.benchmarks.device)."""

import sys

from agents.common.benchmarks.device import main

if __name__ == "__main__":
    sys.exit(main(prog="gpu_episode.py"))
