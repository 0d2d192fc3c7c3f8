"""The documentation: generated pages are current, the site builds with --strict, the README stays short."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agents.common.docs import BLOCKS, DOCS_DIR, ENV_PAGES, fill_blocks, render_docs, stale_pages

ROOT = Path(__file__).resolve().parent.parent


def test_generated_pages_are_current():
    stale = stale_pages()
    assert not stale, f"stale generated pages (run scripts/docs.py): {[str(p.relative_to(ROOT)) for p in stale]}"


def test_every_registered_env_has_a_page():
    import kd_envs

    assert set(ENV_PAGES) == set(kd_envs.ENVIRONMENTS)
    pages = render_docs()
    for env_id, (_, _, page) in ENV_PAGES.items():
        text = pages[DOCS_DIR / page]
        assert f"# {env_id}\n" in text and "## Arguments" in text
        assert not re.search(r"(?<!`)``(?!`)|:class:`", text)  # reST made Markdown


def test_blocks_are_refilled_and_the_prose_kept(tmp_path):
    board = tmp_path / "leaderboard"
    board.mkdir()
    rendered = "# board\n\n## Env-v0\n\ntable\n\n### Sub\n\n![plot](Env-v0.png)\n\n## Other\n\nx\n"
    (board / "README.md").write_text(rendered)
    page = "prose\n<!-- generated: leaderboard-section Env-v0 -->\nold\n<!-- end generated -->\nmore prose\n"
    filled = fill_blocks(page, "studies/a.md", board)
    assert filled.startswith("prose\n") and filled.endswith("more prose\n")
    assert "old" not in filled and "#### Sub" in filled and "](../leaderboard/Env-v0.png)" in filled
    assert "Other" not in filled
    assert fill_blocks(filled, "studies/a.md", board) == filled
    with pytest.raises(ValueError, match="not one of"):
        fill_blocks("<!-- generated: nonsense -->\n<!-- end generated -->", "a.md", board)
    assert "leaderboard-section" in BLOCKS


def test_mkdocs_build_strict(tmp_path):
    # mkdocs and mkdocs-material come with the dev extra that `make test` installs: no skip.
    before = set(ROOT.iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"), "-d",
         str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "envs" / "temperature-kd" / "index.html").is_file()
    assert (tmp_path / "site" / "leaderboard" / "index.html").is_file()
    assert set(ROOT.iterdir()) == before  # nothing written into the tree


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_bring_your_own_task_page_runs(tmp_path):
    """docs/byo-task.md's example, its python blocks in order saved as the byo_digits.py the page names, runs
    in a fresh interpreter from its own folder: the env on a task of your own, PPO, an entry, verified OK."""
    page = (DOCS_DIR / "byo-task.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(blocks) >= 3 and 'factory="byo_digits:digits_task"' in blocks[0]
    (tmp_path / "byo_digits.py").write_text("\n\n".join(blocks))
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    result = subprocess.run([sys.executable, "byo_digits.py"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": path})  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "spec records task = byo_digits:digits_task" in lines
    assert "OK" in lines and any("rebuilt by importing that factory" in line for line in lines)
    assert (tmp_path / "runs" / "byo_digits" / "leaderboard" / "entries").is_dir()
