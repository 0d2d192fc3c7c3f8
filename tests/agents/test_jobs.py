"""The studies' job runner: list order, dependencies, errors, and the same path with worker processes."""

from pathlib import Path

import pytest

from agents.common.jobs import run_jobs


def test_jobs_run_in_list_order_once_what_they_wait_for_is_done():
    calls = []
    jobs = [{"x": "final a", "after": ["a"]}, {"x": "a", "name": "a"}, {"x": "b", "name": "b", "after": ["a"]},
            {"x": "c"}]  # fmt: skip
    run_jobs(lambda x: calls.append(x), jobs, n_jobs=1)
    # The first job waits for the second; a free worker takes the first job that is ready.
    assert calls == ["a", "final a", "b", "c"]


def test_a_job_error_is_raised_and_bad_dependencies_are_refused():
    def fail(x):
        raise RuntimeError(f"job {x}")

    with pytest.raises(RuntimeError, match="job 1"):
        run_jobs(fail, [{"x": 1}], n_jobs=1)
    with pytest.raises(ValueError, match="no job is named"):
        run_jobs(print, [{"after": ["nowhere"]}], n_jobs=1)
    with pytest.raises(ValueError, match="wait for each other"):
        run_jobs(print, [{"name": "a", "after": ["b"]}, {"name": "b", "after": ["a"]}], n_jobs=1)
    with pytest.raises(ValueError, match="n_jobs=0"):
        run_jobs(print, [], n_jobs=0)


@pytest.mark.slow  # two spawned workers import torch: a few seconds on two cores
def test_worker_processes_run_every_job(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    # Path.touch(self=...) is importable in a spawned worker, unlike a function defined in a test.
    run_jobs(Path.touch, [{"self": second, "after": ["first"]}, {"self": first, "name": "first"}], n_jobs=2)
    assert first.is_file() and second.is_file()
