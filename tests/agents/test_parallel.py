"""Many seeds on Ray (agents.common.parallel): the serial path without Ray, and 2 Ray workers giving
exactly the serial run's numbers (evaluation episodes, the study job runner)."""

import sys

import pytest

from agents.common.evaluation import evaluate, fixed_policy_entry
from agents.common.jobs import run_jobs
from agents.common.parallel import map_tasks
from agents.temperature.specs import fixed_policy

ENV_ID = "TemperatureKD-v0"
SEEDS = (1000, 1001, 1002, 1003)


def test_one_worker_runs_the_calls_here_in_order_without_ray():
    calls = []
    assert map_tasks(lambda x: calls.append(x) or -x, [{"x": 1}, {"x": 2}, {"x": 3}]) == [-1, -2, -3]
    assert calls == [1, 2, 3]
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    with pytest.raises(ValueError, match="workers=0"):
        map_tasks(pow, [{"base": 1, "exp": 2}], workers=0)


@pytest.fixture(scope="module")
def ray_two_cpus():
    """One local Ray of 2 CPUs for this module's tests (starting Ray takes seconds); map_tasks and
    run_jobs use it rather than starting their own."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow  # Ray's start and two workers importing torch: several seconds on two cores
def test_two_workers_give_the_serial_episodes_exactly(ray_two_cpus, tiny_json_kwargs, fast_bootstrap):
    serial = fixed_policy_entry("constant_t4", ENV_ID, tiny_json_kwargs, SEEDS, tag="test", progress=False)
    parallel = fixed_policy_entry("constant_t4", ENV_ID, tiny_json_kwargs, SEEDS, tag="test", progress=False,
                                  workers=2)  # fmt: skip
    assert parallel["runs"] == serial["runs"]
    assert parallel["summary"] == serial["summary"]
    # A policy drawing from its own seeded generator, too.
    policy = fixed_policy("random_t")
    assert evaluate(policy, ENV_ID, tiny_json_kwargs, SEEDS, False, workers=2) == evaluate(
        policy, ENV_ID, tiny_json_kwargs, SEEDS, False)


@pytest.mark.slow
def test_run_jobs_on_two_workers_returns_the_serial_results_and_keeps_the_order(ray_two_cpus, tmp_path):
    # Functions travel to Ray's workers by pickle: builtins and lambdas (by value), not this test module.
    jobs = [{"base": 3, "exp": 2, "after": ["two"]}, {"base": 2, "exp": 2, "name": "two"}, {"base": 5, "exp": 2}]
    assert run_jobs(pow, jobs, workers=2) == run_jobs(pow, jobs, workers=1) == [9, 4, 25]
    # The first job writes into the folder the second one makes: it fails unless it waits.
    folder = tmp_path / "made"
    run_jobs(lambda make: folder.mkdir() if make else (folder / "x").touch(),
             [{"make": False, "after": ["make"]}, {"make": True, "name": "make"}], workers=2)  # fmt: skip
    assert (folder / "x").is_file()
