"""`kd-gym evaluate` from a checkout (the logic: agents.common.commands.evaluate)."""

import sys

from agents.common.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
