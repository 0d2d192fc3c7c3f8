"""mkdocs hook: serve the leaderboard folder's rendered page, figures and entries under ``leaderboard/``
in the site, read from where ``kd-gym leaderboard`` writes them, so docs/ holds no copies."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ("README.md", "*.png", "entries/*.json")


def on_files(files: Files, config) -> Files:
    for pattern in PATTERNS:
        for path in sorted((ROOT / "leaderboard").glob(pattern)):
            uri = path.relative_to(ROOT).as_posix()
            files.append(File(uri, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
