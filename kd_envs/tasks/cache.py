"""Cache files that cannot poison a run: written atomically with their sha256, checked on every load,
and built once when several processes want them at the same time.

Every cached file ``<name>`` has a sidecar ``<name>.sha256`` holding the sha256 of its bytes in
``sha256sum``'s format (``sha256sum -c <name>.sha256`` checks it by hand). :func:`read_verified` returns
the bytes only when they match it; any other state of the pair (a file missing, empty, truncated or
altered, its sidecar missing or unreadable) raises :class:`CorruptCacheError` naming the file and the
problem. :func:`load_or_build` turns such an error into a :class:`CorruptCacheWarning` and a rebuild, under
a :class:`filelock.FileLock` on ``<name>.lock``: of two processes that need the same artifact, one builds
it while the other waits, then finds it and loads it.

The file is written before its sidecar, so an interrupt between the two leaves a file without a sidecar
(reported, and rebuilt), never a sidecar vouching for a partial file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".sha256"
LOCK_SUFFIX = ".lock"
T = TypeVar("T")


class CorruptCacheError(ValueError):
    """A cached (or shipped) file that must not be used: ``path`` names it, ``problem`` says why."""

    def __init__(self, path: str | Path, problem: str, what: str = "cache file"):
        self.path, self.problem, self.what = Path(path), problem, what
        super().__init__(f"{what} {path}: {problem}")


class UnverifiedCacheError(CorruptCacheError):
    """A cached file without its sha256 sidecar: written before checksums existed, or interrupted
    between the file and its sidecar. A loader that can verify the content another way may adopt it."""


class CorruptCacheWarning(UserWarning):
    """A cached file was found missing, truncated, altered or unverifiable, and is being rebuilt."""


def atomic_write(path: Path, write, mode: str = "wb") -> None:
    """Write ``path`` through ``write(file)`` (a file opened with ``mode``) into a temporary file, then
    rename it: a reader, or an interrupt, never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


def write_sidecar(path: Path, data: bytes) -> None:
    """Record the sha256 of ``data`` (the bytes of ``path``) beside it."""
    line = f"{hashlib.sha256(data).hexdigest()}  {path.name}\n"
    atomic_write(sidecar_path(path), lambda f: f.write(line.encode()))


def write_verified(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, then its sha256 sidecar."""
    atomic_write(path, lambda f: f.write(data))
    write_sidecar(path, data)


def read_verified(path: Path) -> bytes | None:
    """The bytes of ``path`` if its sidecar vouches for them; None if neither exists (never built).

    Raises :class:`UnverifiedCacheError` for a file without a sidecar and :class:`CorruptCacheError`
    for every other problem, each naming ``path``."""
    path = Path(path)
    sidecar = sidecar_path(path)
    if not path.is_file():
        if sidecar.is_file():
            raise CorruptCacheError(path, f"missing (its checksum {sidecar.name} exists)")
        return None
    if not sidecar.is_file():
        raise UnverifiedCacheError(path, f"no checksum {sidecar.name} (written before checksums, or interrupted)")
    expected = sidecar.read_text(errors="replace").split()
    if not expected or len(expected[0]) != 64 or any(c not in "0123456789abcdef" for c in expected[0]):
        raise CorruptCacheError(path, f"its checksum {sidecar.name} is unreadable ({sidecar.read_bytes()[:80]!r})")
    data = path.read_bytes()
    if not data:
        raise CorruptCacheError(path, "empty (0 bytes)")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected[0]:
        raise CorruptCacheError(
            path, f"sha256 {actual} of its {len(data)} bytes differs from {expected[0]} in {sidecar.name}: "
            "truncated or altered"
        )  # fmt: skip
    return data


def load_or_build(path: Path, load: Callable[[], T | None], build: Callable[[], T]) -> T:
    """``load()`` if it finds a sound artifact at ``path``, else ``build()`` (which writes it), once.

    ``load`` returns None when the artifact was never built and raises :class:`CorruptCacheError` when
    it must not be used. A first ``load`` runs without the lock (the common case: the artifact is there);
    if it finds nothing sound, the lock on ``<path>.lock`` is taken and ``load`` runs again, since another
    process may have built it meanwhile; only then is a problem reported (a :class:`CorruptCacheWarning`
    naming the file) and the artifact built.
    """
    try:
        found = load()
    except CorruptCacheError:
        found = None
    if found is not None:
        return found
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path(path)):
        try:
            found = load()
        except CorruptCacheError as error:
            warnings.warn(f"{error}; not used, rebuilding it", CorruptCacheWarning, stacklevel=3)
            found = None
        if found is not None:
            return found
        return build()
