"""`kd-gym leaderboard` from a checkout (the logic: agents.common.commands.leaderboard)."""

import sys

from agents.common.commands.leaderboard import main

if __name__ == "__main__":
    sys.exit(main())
