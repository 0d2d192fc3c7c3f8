"""`kd-gym train` from a checkout (the logic: agents.common.commands.train)."""

import sys

from agents.common.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
