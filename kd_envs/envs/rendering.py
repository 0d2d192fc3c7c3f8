"""The ``rgb_array`` frames of the KD-Gym envs that draw a chart (TemperatureKD-v0, N2NCompress-v0)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def chart_frame(draw: Callable[[Any], None]) -> np.ndarray:
    """``draw(axes)`` on one matplotlib Axes, returned as an RGB array of shape (240, 320, 3), uint8.
    No pyplot: no global figure state, so envs in one process never share a figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.2, 2.4), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    draw(axes)
    axes.tick_params(labelsize=7)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
