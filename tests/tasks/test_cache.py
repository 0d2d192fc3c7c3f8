"""Cache primitives: files written with a sha256 sidecar, read back only when it vouches for them, and
built once under a lock."""

import hashlib
import re
import warnings

import pytest

from kd_envs.tasks.cache import (
    CorruptCacheError,
    CorruptCacheWarning,
    UnverifiedCacheError,
    load_or_build,
    lock_path,
    read_verified,
    sidecar_path,
    write_verified,
)

DATA = b'{"test_accuracy": 0.98, "weights_sha256": "abc"}'


def test_write_verified_round_trips_with_a_sha256sum_sidecar(tmp_path):
    path = tmp_path / "sub" / "record.json"
    write_verified(path, DATA)
    assert path.read_bytes() == DATA
    # sha256sum's own format: `sha256sum -c record.json.sha256` checks it by hand
    assert sidecar_path(path).read_text() == f"{hashlib.sha256(DATA).hexdigest()}  record.json\n"
    assert read_verified(path) == DATA
    assert sorted(p.name for p in path.parent.iterdir()) == ["record.json", "record.json.sha256"]  # no temp files


def test_nothing_written_reads_as_none(tmp_path):
    assert read_verified(tmp_path / "never.npz") is None


def _damage(path, how):
    if how == "file missing":
        path.unlink()
    elif how == "no sidecar":
        sidecar_path(path).unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(DATA[:10])
    elif how == "altered":
        path.write_bytes(DATA.replace(b"0.98", b"0.99"))
    elif how == "sidecar unreadable":
        sidecar_path(path).write_text("not a hash\n")


@pytest.mark.parametrize(
    ("how", "problem"),
    [
        ("file missing", "missing \\(its checksum record.json.sha256 exists\\)"),
        ("no sidecar", "no checksum record.json.sha256"),
        ("empty", "empty \\(0 bytes\\)"),
        ("truncated", "sha256 [0-9a-f]{64} of its 10 bytes differs from [0-9a-f]{64} in record.json.sha256: truncated"),
        ("altered", "sha256 .* of its 48 bytes differs from .* truncated or altered"),
        ("sidecar unreadable", "its checksum record.json.sha256 is unreadable"),
    ],
)
def test_every_damage_is_reported_with_the_path_and_the_problem(tmp_path, how, problem):
    path = tmp_path / "record.json"
    write_verified(path, DATA)
    _damage(path, how)
    with pytest.raises(CorruptCacheError, match=f"^cache file {re.escape(str(path))}: {problem}") as error:
        read_verified(path)
    assert error.value.path == path
    assert isinstance(error.value, UnverifiedCacheError) == (how == "no sidecar")


def test_load_or_build_loads_a_sound_file_and_rebuilds_a_damaged_one_with_a_warning(tmp_path):
    path = tmp_path / "result.json"
    builds = []

    def build():
        builds.append(1)
        write_verified(path, DATA)
        return DATA

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a first build is no problem to report
        assert load_or_build(path, lambda: read_verified(path), build) == DATA
        assert load_or_build(path, lambda: read_verified(path), build) == DATA
    assert len(builds) == 1
    assert lock_path(path).name == "result.json.lock"

    path.write_bytes(DATA[:5])
    problem = "sha256 .* truncated or altered; not used, rebuilding it"
    with pytest.warns(CorruptCacheWarning, match=f"{re.escape(str(path))}: {problem}"):
        assert load_or_build(path, lambda: read_verified(path), build) == DATA
    assert len(builds) == 2 and read_verified(path) == DATA
