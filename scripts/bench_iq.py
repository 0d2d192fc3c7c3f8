"""`kd-gym bench iq` from a checkout (the logic: agents.common.benchmarks.iq)."""

import sys

from agents.common.benchmarks.iq import main

if __name__ == "__main__":
    sys.exit(main())
