"""Regenerate the documentation's generated pages (env pages from docstrings, results blocks from the
leaderboard), or check that the committed ones are current.

python scripts/docs.py            # rewrite the stale generated pages under docs/
python scripts/docs.py --check    # list the stale pages; exit 1 if any
mkdocs build --strict -d /tmp/kd-gym-site   # then build the site (or: make docs)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.common.docs import DOCS_DIR, stale_pages, write_docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only list stale pages; exit 1 if any")
    parser.add_argument("--docs-dir", type=Path, default=DOCS_DIR, help="default: %(default)s")
    parser.add_argument("--leaderboard-dir", type=Path, default=None,
                        help="holds entries/ and the rendered README.md (default: the repo's)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages(args.docs_dir, args.leaderboard_dir)
        print("\n".join(f"stale: {path}" for path in stale) or "every generated page is current")
        return 1 if stale else 0
    written = write_docs(args.docs_dir, args.leaderboard_dir)
    print("\n".join(f"wrote {path}" for path in written) or "every generated page is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
