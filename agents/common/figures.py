"""Figures as small PNG files: the leaderboard's and the studies' plots are committed, and a plot's
flat colours need no more than a 256-colour palette (about a third of the bytes of matplotlib's RGBA)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

PALETTE_COLOURS = 256


def compact_png(data: bytes | str | Path, path: str | Path) -> Path:
    """Write the PNG ``data`` (bytes, or a PNG file's path) to ``path`` with a 256-colour palette
    (median cut) and zlib's best compression; the pixels' size and the text stay as they are."""
    image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    dpi = image.info.get("dpi")
    rgb = image.convert("RGB")  # (a plot's background is opaque)
    compact = rgb.quantize(PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    compact.save(out, "PNG", optimize=True, **({"dpi": dpi} if dpi else {}))
    Path(path).write_bytes(out.getvalue())
    return Path(path)


def save_figure(fig, path: str | Path, dpi: int) -> Path:
    """``fig.savefig(path, dpi=dpi)`` as a compact PNG (:func:`compact_png`)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return compact_png(buffer.getvalue(), path)
