"""The studies' job runner: list order, dependencies, errors (on Ray workers: tests/agents/test_parallel.py)."""

import pytest

from agents.common.jobs import run_jobs


def test_jobs_run_in_list_order_once_what_they_wait_for_is_done():
    calls = []
    jobs = [{"x": "final a", "after": ["a"]}, {"x": "a", "name": "a"}, {"x": "b", "name": "b", "after": ["a"]},
            {"x": "c"}]  # fmt: skip
    run_jobs(lambda x: calls.append(x), jobs, workers=1)
    # The first job waits for the second; a free worker takes the first job that is ready.
    assert calls == ["a", "final a", "b", "c"]


def test_a_job_error_is_raised_and_bad_dependencies_are_refused():
    def fail(x):
        raise RuntimeError(f"job {x}")

    with pytest.raises(RuntimeError, match="job 1"):
        run_jobs(fail, [{"x": 1}], workers=1)
    with pytest.raises(ValueError, match="no job is named"):
        run_jobs(print, [{"after": ["nowhere"]}], workers=1)
    with pytest.raises(ValueError, match="wait for each other"):
        run_jobs(print, [{"name": "a", "after": ["b"]}, {"name": "b", "after": ["a"]}], workers=1)
    with pytest.raises(ValueError, match="workers=0"):
        run_jobs(print, [], workers=0)
