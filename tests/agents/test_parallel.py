"""Many seeds on Ray (agents.common.parallel): the serial path without Ray, and 2 Ray workers giving
exactly the serial run's numbers (evaluation episodes, training seeds, the study job runner); the
hyperparameter search with Optuna and through Ray Tune."""

import json
import os
import subprocess
import sys

import pytest
import torch

from agents.common.commands import train
from agents.common.evaluation import EVALUATION_SEEDS, evaluate, fixed_policy_entry, trained_agents_entry
from agents.common.jobs import run_jobs
from agents.common.optimize import optimize
from agents.common.parallel import map_tasks
from agents.common.training import load_agent
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


# Functions travel to Ray's workers by pickle: lambdas by value, not this test module's functions.
_append_and_count = lambda items, x: items.append(x) or len(items)  # noqa: E731
_fail_on = lambda x, bad: x if x != bad else {}[f"call {x} failed"]  # noqa: E731


def test_two_workers_here_are_this_process_and_one_ray_worker_each_taking_the_next_call(ray_two_cpus, tmp_path):
    # The first call runs here and waits until the second has started, which only the Ray worker can then
    # take (once it has warmed up); the rest go to whichever is free. The results keep the calls' order.
    def call(x, folder=str(tmp_path)):
        import os
        import time

        if x == 1:
            open(os.path.join(folder, "second started"), "w").close()
        deadline = time.monotonic() + 120
        while x == 0 and not os.path.exists(os.path.join(folder, "second started")) and time.monotonic() < deadline:
            time.sleep(0.02)
        return x, os.getpid()

    results = map_tasks(call, [{"x": x} for x in range(4)], workers=2)
    assert [x for x, _ in results] == list(range(4))
    assert results[0][1] == os.getpid() and results[1][1] != os.getpid()


def test_every_call_gets_its_own_copy_of_its_arguments_wherever_it_runs(ray_two_cpus):
    # The same list goes to every call: each call appends to its own copy, here as on Ray (as Ray sends
    # them, pickled when submitted), so every count is 1 and the caller's list stays empty.
    items = []
    assert map_tasks(_append_and_count, [{"items": items, "x": x} for x in range(4)], workers=2) == [1, 1, 1, 1]
    assert items == []


def test_a_failed_call_raises_its_error_in_the_caller_and_the_caller_keeps_its_torch_threads(ray_two_cpus):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for bad in (0, 1):  # the first call runs here, the second on Ray (or here, if Ray is slower)
            with pytest.raises(KeyError, match=f"call {bad} failed"):
                map_tasks(_fail_on, [{"x": x, "bad": bad} for x in range(4)], workers=2)
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


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
        policy, ENV_ID, tiny_json_kwargs, SEEDS, False
    )


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


@pytest.mark.slow
def test_train_and_evaluate_on_two_workers_give_the_serial_agents(ray_two_cpus, tmp_path, tiny_json_kwargs,
                                                                  tiny_ppo_hyperparams, fast_bootstrap):  # fmt: skip
    argv = ["--algo", "ppo", "--seed", "0", "--seed", "1", "--timesteps", "32", "--no-progress", "--env-kwargs",
            json.dumps(tiny_json_kwargs), "--hyperparams", json.dumps(tiny_ppo_hyperparams)]  # fmt: skip
    train.main([*argv, "--out", str(tmp_path / "serial")])
    train.main([*argv, "--out", str(tmp_path / "ray"), "--workers", "2"])
    for seed in (0, 1):
        serial = load_agent(tmp_path / "serial" / f"seed_{seed}").model.policy.state_dict()
        parallel = load_agent(tmp_path / "ray" / f"seed_{seed}").model.policy.state_dict()
        assert serial.keys() == parallel.keys()
        assert all(torch.equal(serial[k], parallel[k]) for k in serial)
    # Their evaluation: each (model, seed) a task that loads the model from its folder.
    dirs = [tmp_path / "serial" / f"seed_{seed}" for seed in (0, 1)]
    one = trained_agents_entry(dirs, SEEDS[:2], "test", directory=tmp_path / "board", progress=False)
    two = trained_agents_entry(dirs, SEEDS[:2], "test", directory=tmp_path / "board", progress=False, workers=2)
    assert two["runs"] == one["runs"]


@pytest.mark.slow  # Tune's start: ~20 s on two cores
def test_optimize_scores_trials_on_validation_episodes_with_optuna_and_ray_tune(ray_two_cpus, tmp_path):
    kwargs = {"total_timesteps": 300, "sampler_seed": 0}
    serial = optimize("dqn", "CartPole-v1", 2, tmp_path / "optuna", **kwargs)
    tuned = optimize("dqn", "CartPole-v1", 2, tmp_path / "tune", workers=2, **kwargs)
    assert (serial["runner"], tuned["runner"]) == ("optuna", "ray.tune+OptunaSearch")
    assert not set(serial["validation_seeds"]) & set(EVALUATION_SEEDS)
    assert json.loads((tmp_path / "tune" / "optimize.json").read_text())["best"] == tuned["best"]
    # TPE's first trials are random draws from the seeded sampler, and each trial is seeded: Tune's
    # trials are the serial ones (later trials would differ: TPE then reads the trials finished so far).
    key = lambda t: t["params"]["learning_rate"]  # noqa: E731
    for mine, theirs in zip(sorted(serial["trials"], key=key), sorted(tuned["trials"], key=key), strict=True):
        assert (mine["hyperparams"], mine["score"]) == (theirs["hyperparams"], theirs["score"])


# What an evaluation task of a fixed policy must not make its worker import (the training harness's
# algorithms, plotting, Ray Tune and its data frames): each costs every worker of every command.
NOT_FOR_AN_EPISODE = ("sklearn", "matplotlib", "ray", "stable_baselines3", "sb3_contrib", "optuna", "pandas",
                      "tensorboard")  # fmt: skip


def test_an_evaluation_task_imports_only_what_its_episode_needs(monkeypatch, tmp_path):
    """The call evaluate() sends to a worker, unpickled and run in a fresh process (as a Ray worker runs
    it), on the default task: it gives the serial episode and leaves the heavy packages unimported."""
    import pickle
    import subprocess
    from pathlib import Path

    import agents.common.evaluation

    sent = {}

    def capture(function, tasks, *args, **kwargs):
        sent.update(function=function, tasks=tasks)
        return []

    monkeypatch.setattr(agents.common.evaluation, "map_tasks", capture)
    policy, env_kwargs = fixed_policy("constant_t4"), {"epochs": 1}
    evaluate(policy, ENV_ID, env_kwargs, SEEDS[:1], False, workers=2)
    (tmp_path / "task.pkl").write_bytes(pickle.dumps((sent["function"], sent["tasks"][0])))
    child = ("import json, pickle, sys\n"
             "function, task = pickle.loads(open(sys.argv[1], 'rb').read())\n"
             "result = function(**task)\n"
             "modules = sorted({m.split('.')[0] for m in sys.modules})\n"
             "print(json.dumps({'result': result, 'modules': modules}))")  # fmt: skip
    root = Path(agents.common.evaluation.__file__).parents[2]
    out = subprocess.run([sys.executable, "-c", child, str(tmp_path / "task.pkl")], capture_output=True, text=True,
                         check=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}).stdout  # fmt: skip
    report = json.loads(out.splitlines()[-1])
    assert not set(NOT_FOR_AN_EPISODE) & set(report["modules"])
    monkeypatch.undo()
    assert [report["result"]] == evaluate(policy, ENV_ID, env_kwargs, SEEDS[:1], False)


@pytest.mark.slow  # a Ray of its own, in a fresh process: ~10 s on two cores
def test_a_command_that_starts_its_own_ray_ends_cleanly_while_the_ray_worker_still_warms_up():
    """Two quick calls on 2 workers: this process runs both before the fresh Ray worker has imported
    torch; leaving the executor ends that warm-up and shuts Ray down without the process dying (Ray
    kills a process that waits on a Ray it has shut down)."""
    from pathlib import Path

    import agents.common.parallel

    root = Path(agents.common.parallel.__file__).parents[2]
    child = ("import ray\n"
             "from agents.common.parallel import map_tasks\n"
             "print(map_tasks(lambda x: -x, [{'x': -1}, {'x': -2}], workers=2), ray.is_initialized())")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=root, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(root)})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == "[1, 2] False"
