"""`kd-gym bench n2n` from a checkout (the logic: agents.common.benchmarks.n2n)."""

import sys

from agents.common.benchmarks.n2n import main

if __name__ == "__main__":
    sys.exit(main())
