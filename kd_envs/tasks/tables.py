"""Student tables: tabular benchmarks of N2NCompress-v0, the way NAS-Bench-201 ships one. A table holds every
student of a subspace of the env (one teacher, its stages and shrink factors), each scored by the env's own
proxy on several training seeds and by the final training on evaluation seeds, so that a search on the table
costs microseconds per student instead of seconds. ``gym.make("N2NCompress-v0", tabular=True)`` answers from
:data:`DEFAULT_TABLE`.

A table is data (``tables/<name>.json``), read only if its sha256 is the one recorded in :data:`TABLES` beside
the spec it was built from; the file records how it was made (command, commit, versions, the machine and the
core-seconds spent). ``scripts/n2n_table.py`` builds it from its :class:`TableSpec`
(:func:`agents.common.n2n_table.build_table`). A changed table is a new name, never an edit of an old one.

A student is named by its **code**, one character per teacher layer: ``-`` removed, ``+`` kept at full width
(``stages="removal"``), otherwise the index of the layer's factor in ``shrink_factors``. With the factors
(0.5, 1.0), ``1-0-11`` keeps layers 0, 2, 4 and 5, layer 2 at half its width. Codes can make the same
network (removing either of two layers that end up alike, as NAS-Bench-201's cells can be isomorphic); a
result depends on the network alone (the student cache's key), so they share it and it is trained once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from kd_envs.tasks.architecture import Architecture

TABLES_DIR = Path(__file__).parent / "tables"
FORMAT = 1
# The N2NCompress-v0 kwargs that decide a student's score: a table fixes them all.
TABLE_KWARGS = ("task", "shrink_factors", "stages", "removed_layers", "epochs", "batch_size", "optimizer", "lr",
                "kd_weight", "ce_weight")  # fmt: skip
REMOVED, FULL_WIDTH = "-", "+"
# What each per-seed entry of a student's "proxy" and "final" holds.
RESULT_FIELDS = ("val_accuracy", "test_accuracy", "train_seconds")


@dataclass(frozen=True)
class TableSpec:
    """What a table holds and how it is built.

    :param description: the subspace in words, and why it was chosen.
    :param env_kwargs: the N2NCompress-v0 kwargs of the subspace and the proxy (a name in :data:`TABLE_KWARGS`
        left out takes the env's default, written into the file when it is built).
    :param proxy_seeds: the training seeds every student is scored on by the env's proxy.
    :param final_epochs: the final training's epochs (``agents.common.compression.FULL_EPOCHS``).
    :param final_seeds: the final training's seeds (the studies' evaluation seeds).
    :param final_every: how many of ``final_seeds`` (the first ones) every valid student is trained on.
    :param final_top: the students ranked best by each of :data:`TOP_RANKINGS` (mean proxy score) get all of
        ``final_seeds``.
    :param parameter_budget: the budget of the ``"budget"`` ranking, a fraction of the teacher's parameters.
    :param sha256: of the built file; None until it is built.
    """

    description: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    proxy_seeds: tuple[int, ...] = (0, 1)
    final_epochs: int = 30
    final_seeds: tuple[int, ...] = (1000, 1001, 1002)
    final_every: int = 1
    final_top: int = 20
    parameter_budget: float = 0.1
    sha256: str | None = None

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> ValueError:
            return ValueError(f"TableSpec.{name}={getattr(self, name)!r}; expected {allowed}")

        unknown = set(self.env_kwargs) - set(TABLE_KWARGS)
        if unknown:
            raise bad("env_kwargs", f"N2NCompress-v0 kwargs among {TABLE_KWARGS} (not {sorted(unknown)})")
        for name in ("proxy_seeds", "final_seeds"):
            seeds = getattr(self, name)
            if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and s >= 0 for s in seeds):
                raise bad(name, "distinct non-negative integers, at least one")
        if set(self.proxy_seeds) & set(self.final_seeds):
            raise bad("final_seeds", f"seeds other than the proxy's {self.proxy_seeds}")
        if not isinstance(self.final_epochs, int) or self.final_epochs < 1:
            raise bad("final_epochs", "a positive integer")
        if not isinstance(self.final_every, int) or not 0 <= self.final_every <= len(self.final_seeds):
            raise bad("final_every", f"an integer in [0, {len(self.final_seeds)}]")
        if not isinstance(self.final_top, int) or self.final_top < 0:
            raise bad("final_top", "a non-negative integer")
        if not 0 < self.parameter_budget <= 1:
            raise bad("parameter_budget", "a number in (0, 1]")


# The rankings whose best students get every final seed (see TableSpec.final_top).
TOP_RANKINGS = ("n2n", "budget")

# name -> spec; the sha256 is filled in once the table is built (scripts/n2n_table.py prints it).
TABLES: dict[str, TableSpec] = {
    "n2n-vgg-v0": TableSpec(
        description=(
            "Every student of N2NCompress-v0's VGG-style teacher (mnist1d-vgg, shipped: 6 convs in 3 pooled "
            "stages, 24,954 parameters) in the joint mode with the shrink factors 0.5 and 1: each layer removed, "
            "halved or kept whole, 3^6 - 1 = 728 students (one, the teacher itself, degenerate), 621 distinct "
            "networks, 88 students (58 networks) within a 10% parameter budget. Chosen by measurement: the deep "
            "default's removal-only space has 8,191 students at 3.6-9.5 s per proxy training, some 30 "
            "core-hours for two proxy seeds alone; here a proxy training takes 2.3 s and a final one 12 s on "
            "average (a random sample, one loaded core), so two proxy seeds for all, the final training of all "
            "on one seed and of the best on three fit about 4 core-hours, and an episode still decides both "
            "stages."
        ),
        env_kwargs={
            "task": "mnist1d-vgg",
            "stages": "both",
            "shrink_factors": (0.5, 1.0),
            "removed_layers": (),
            "epochs": 5,
            "batch_size": 256,
            "optimizer": "adam",
            "lr": 1e-2,
            "kd_weight": 1.0,
            "ce_weight": 1.0,
        },
        sha256="86f6ad774688202decbe795398638b5a1039ee3e4ee22569da5eca62c65870af",
    ),
}
DEFAULT_TABLE = "n2n-vgg-v0"


@dataclass(frozen=True)
class TableStudent:
    """One row: the student's ``code``, ``parameters``, why it is ``degenerate`` ("" if not), and its
    ``proxy`` and ``final`` results, seed -> (validation accuracy, test accuracy, training seconds)."""

    code: str
    parameters: int
    degenerate: str
    proxy: dict[int, tuple[float, float, float]]
    final: dict[int, tuple[float, float, float]]


@dataclass(frozen=True)
class StudentTable:
    """A loaded table (:func:`load_table`): its spec's fields as built, the teacher, the record of how it was
    made, and its students by code."""

    name: str
    description: str
    env_kwargs: dict[str, Any]
    teacher: dict[str, Any]
    proxy_seeds: tuple[int, ...]
    final_epochs: int
    final_seeds: tuple[int, ...]
    made: dict[str, Any]
    students: dict[str, TableStudent]

    def proxy(self, code: str, seed: int) -> dict[str, float]:
        """The proxy's result for ``code`` on training seed ``seed``: ``val_accuracy``, ``test_accuracy``,
        ``train_seconds`` (what the build's training took) and ``parameters``."""
        return self._result(code, seed, "proxy")

    def final(self, code: str, seed: int) -> dict[str, float]:
        """The final training's result for ``code`` on evaluation seed ``seed`` (as :meth:`proxy`)."""
        return self._result(code, seed, "final")

    def architecture(self, code: str) -> Architecture:
        """The student ``code`` names (:func:`code_architecture` of the table's teacher)."""
        teacher = Architecture.from_dict(self.teacher["architecture"])
        return code_architecture(teacher, self.env_kwargs["shrink_factors"], code)

    def code_of(self, architecture: Architecture) -> str:
        """The code of the table's student that is ``architecture`` (the first, where several codes make the
        same network: they share its results); KeyError if none is."""
        key = json.dumps(architecture.to_dict(), sort_keys=True)
        if key not in self._codes:
            raise KeyError(f"table {self.name}: no student is {architecture.describe()!r}")
        return self._codes[key]

    @cached_property
    def _codes(self) -> dict[str, str]:
        codes: dict[str, str] = {}
        for code in self.students:
            codes.setdefault(json.dumps(self.architecture(code).to_dict(), sort_keys=True), code)
        return codes

    def _result(self, code: str, seed: int, kind: str) -> dict[str, float]:
        student = self.students.get(code)
        if student is None:
            raise KeyError(f"table {self.name}: no student {code!r}")
        results = student.proxy if kind == "proxy" else student.final
        if seed not in results:
            have = sorted(results) or "none"
            raise KeyError(f"table {self.name}: student {code!r} has no {kind} result for seed {seed} ({have})")
        return {**dict(zip(RESULT_FIELDS, results[seed])), "parameters": student.parameters}


def code_architecture(teacher: Architecture, shrink_factors: Sequence[float], code: str) -> Architecture:
    """The student ``code`` names: the env's two edits of ``teacher``, removal, then shrinkage by the factors."""
    if len(code) != len(teacher.layers):
        raise ValueError(f"code {code!r} has {len(code)} characters for {len(teacher.layers)} teacher layers")
    keep = [c != REMOVED for c in code]
    widths = [1.0 if c == FULL_WIDTH else float(shrink_factors[int(c)]) for c in code if c != REMOVED]
    return teacher.remove_layers(keep).shrink(widths)


def table_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_table(name: str, path: str | Path | None = None) -> StudentTable:
    """The table ``name`` (one of :data:`TABLES`), from ``path`` (default ``TABLES_DIR/<name>.json``) after
    checking its sha256 against the one recorded for it."""
    if not isinstance(name, str) or name not in TABLES:
        raise ValueError(f"table={name!r}; expected one of {sorted(TABLES)}")
    spec = TABLES[name]
    path = Path(path) if path is not None else TABLES_DIR / f"{name}.json"
    if spec.sha256 is None:
        raise ValueError(f"table {name} is not built yet (no sha256 recorded in kd_envs.tasks.tables.TABLES): build "
                         f"it with scripts/n2n_table.py --table {name}, then record the sha256 it prints")  # fmt: skip
    if not path.is_file():
        raise ValueError(f"table {name}: no file {path}; build it with scripts/n2n_table.py --table {name}")
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    if sha != spec.sha256:
        raise ValueError(f"table file {path}: sha256 {sha} is not the recorded {spec.sha256}; the file is damaged "
                         "or edited (a changed table is a new version with a new name)")  # fmt: skip
    data = json.loads(raw)
    if data.get("format") != FORMAT or data.get("name") != name:
        raise ValueError(f"table file {path}: format {data.get('format')!r} of {data.get('name')!r}; expected "
                         f"format {FORMAT} of {name!r}")  # fmt: skip

    def results(d: dict[str, list[float]]) -> dict[int, tuple[float, float, float]]:
        return {int(seed): tuple(values) for seed, values in d.items()}

    students = {
        row["code"]: TableStudent(
            row["code"], row["parameters"], row["degenerate"], results(row["proxy"]), results(row["final"])
        )
        for row in data["students"]
    }
    return StudentTable(name, data["description"], data["env_kwargs"], data["teacher"], tuple(data["proxy_seeds"]),
                        data["final_epochs"], tuple(data["final_seeds"]), data["made"], students)  # fmt: skip
