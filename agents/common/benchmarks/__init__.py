"""Benchmarks that print speed ratios measured in one process (``kd-gym bench <name>``): an env's
episode against the same work as a plain training loop, and an agent against its SB3 reference.

Each benchmark's ``main`` returns its :class:`Figure` s, the ratios that have a target; ``kd-gym bench
all`` runs them all, ends with one :meth:`Figure.line` per figure and writes them, with the machine,
the date and the load, to a record (:func:`benchmark_record`) that ``docs/benchmarks.md`` is
generated from.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

# name: ratio = X (target >= T), as Figure.line writes it
SUMMARY_LINE = re.compile(r"^(?P<name>[^:]+): ratio = (?P<ratio>[-+0-9.eE]+|nan) \(target (?P<sense>>=|<=) "
                          r"(?P<target>[-+0-9.eE]+)\)$")  # fmt: skip


@dataclass(frozen=True)
class Figure:
    """One measured ratio and the target it is held to.

    :param name: what the ratio compares, e.g. ``"iq: IQ / DQN training steps/s"`` (no colon)
    :param ratio: the measured ratio (a median over repeats, measured in one process)
    :param target: the bound it should meet
    :param at_least: True when the ratio should be >= target (a speed-up), False for <= (an overhead)
    :param repeats: the ratio of each repeat, where the benchmark pairs its two sides run by run
        (:meth:`of_repeats`; ``ratio`` is then their median); empty for a single measurement
    """

    name: str
    ratio: float
    target: float
    at_least: bool
    repeats: tuple[float, ...] = field(default=(), compare=False)

    @classmethod
    def of_repeats(cls, name: str, repeats: Sequence[float], target: float, at_least: bool) -> Figure:
        """The figure of paired repeats: each the ratio of the two sides run one right after the other
        (in alternating order), so that the machine's slow drifts cancel within a pair; ``ratio`` is
        their median."""
        if not repeats:
            raise ValueError(f"Figure.of_repeats: {name!r} has no repeats")
        return cls(name, float(statistics.median(repeats)), target, at_least, tuple(float(r) for r in repeats))

    @property
    def spread(self) -> tuple[float, float] | None:
        """The middle half of the repeats' ratios (quartiles, inclusive); None without repeats."""
        if len(self.repeats) < 2:
            return None
        q1, _, q3 = statistics.quantiles(self.repeats, n=4, method="inclusive")
        return q1, q3

    def __post_init__(self) -> None:
        if ":" in self.name or "\n" in self.name:
            raise ValueError(f"Figure: name={self.name!r}; expected one line without ':' (the summary splits on it)")

    @property
    def met(self) -> bool:
        return self.ratio >= self.target if self.at_least else self.ratio <= self.target

    def line(self) -> str:
        """``name: ratio = X (target >= T)``, the summary line a script reads back with :func:`parse_summary`."""
        return f"{self.name}: ratio = {self.ratio:.3f} (target {'>=' if self.at_least else '<='} {self.target:g})"


def fresh_process_env() -> dict[str, str]:
    """The environment for a fresh Python process that imports what this one does: this process's
    ``sys.path`` as its ``PYTHONPATH`` (a checkout run without installing, a test's stand-ins)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def parse_summary(text: str) -> list[Figure]:
    """The figures in ``kd-gym bench all``'s output (its summary lines; other lines are skipped)."""
    figures = []
    for line in text.splitlines():
        match = SUMMARY_LINE.match(line.strip())
        if match:
            figures.append(Figure(match["name"], float(match["ratio"]), float(match["target"]),
                                  match["sense"] == ">="))  # fmt: skip
    return figures


def benchmark_record(figures: list[Figure], load_before: float, seconds: float) -> dict[str, Any]:
    """What ``kd-gym bench all`` writes: the figures, where and when they were measured (machine, cores,
    date, commit) and the 1-minute load average before and after (other jobs take cores from a run)."""
    from agents.common.leaderboard import git_commit, machine_kind

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_kind(),
        "cores": os.cpu_count(),
        "commit": git_commit(),
        "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "seconds": round(seconds),
        "figures": [{**asdict(f), "repeats": [round(r, 4) for r in f.repeats], "met": f.met} for f in figures],
    }
