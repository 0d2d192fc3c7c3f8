"""`kd-gym bench temperature_kd` from a checkout (the logic: agents.common.benchmarks.temperature_kd)."""

import sys

from agents.common.benchmarks.temperature_kd import main

if __name__ == "__main__":
    sys.exit(main())
