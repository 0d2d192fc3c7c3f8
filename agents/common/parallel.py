"""Many seeds at once on Ray: independent tasks (training runs, evaluation episodes, searches) as Ray
tasks of one CPU and one torch thread each, on this machine or on a cluster.

Every task is a call ``function(**kwargs)`` fully determined by its arguments (seeds included), so Ray
runs the same numbers as the serial loop, only elsewhere and at the same time. ``workers=1`` without an
address is the serial path: the calls run here, in order, and Ray is not imported.

    map_tasks(run_one, [{"seed": 0}, {"seed": 1}], workers=2)                   # Ray on this machine
    map_tasks(run_one, [{"seed": 0}, {"seed": 1}], address="10.0.0.1:6379")    # a running Ray cluster

Its users: :func:`agents.common.evaluation.evaluate` and the entries (a task per evaluation episode),
``kd-gym train`` (a task per training seed), :func:`agents.common.jobs.run_jobs` (the studies' jobs,
with their dependencies) and :mod:`agents.common.optimize` (Ray Tune trials). One training run, and
one N2N search, stays one task: each episode depends on the policy learnt so far.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, as_completed
from typing import Any


class InThisProcess(Executor):
    """An executor that runs each call as it is submitted: the serial path, in submission order."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the caller through future.result()
            future.set_exception(error)
        return future


def _one_thread_call(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    """A Ray task's body: one torch thread (the task holds one CPU; tiny models run fastest on one, and
    the serial path runs on one), then the call."""
    import torch

    torch.set_num_threads(1)
    return fn(*args, **kwargs)


def start_ray(workers: int = 2, address: str | None = None) -> bool:
    """Start Ray on this machine with ``workers`` CPUs, or connect to the cluster at ``address``
    (``ray start --head`` printed it; ``"auto"`` finds one on this machine), unless Ray is already
    initialised in this process (a test's fixture, a user's own ``ray.init``), which is then used as it
    is. Returns whether it started one (the caller shuts down what it started)."""
    try:
        import ray
    except ImportError as error:
        raise ImportError("workers > 1 and a Ray address need Ray: pip install 'kd-gym[ray]'") from error
    if ray.is_initialized():
        return False
    # Workers' output stays in Ray's logs (/tmp/ray/session_latest/logs); their errors reach the caller.
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        # Ray lowers its workers' priority (nice 15) by default: beside other jobs they would then get
        # less than the serial run's one core each. They run at the caller's priority instead.
        ray.init(num_cpus=workers, _system_config={"worker_niceness": 0}, **options)
    else:
        ray.init(address=address, **options)
    return True


class RayExecutor(Executor):
    """An executor whose calls are Ray tasks of one CPU and one torch thread each, on this machine
    (``workers`` CPUs) or on the cluster at ``address`` (:func:`start_ray`); ``submit`` returns a
    :class:`concurrent.futures.Future`, so callers wait on it as on any pool's. Shuts down the Ray it
    started."""

    def __init__(self, workers: int = 2, address: str | None = None) -> None:
        import ray

        self._started = start_ray(workers, address)
        self._ray = ray
        self._task = ray.remote(num_cpus=1)(_one_thread_call)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return self._task.remote(fn, args, kwargs).future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False


def check_workers(workers: int, address: str | None = None) -> None:
    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    if address is not None and not address:
        raise ValueError("address='' : give a Ray cluster's address (host:port, or 'auto'), or None")


def executor(workers: int = 1, address: str | None = None) -> Executor:
    """:class:`InThisProcess` for ``workers=1`` without an address (Ray is not imported), else a
    :class:`RayExecutor`. Use it as a context manager: leaving it shuts down the Ray it started."""
    check_workers(workers, address)
    return InThisProcess() if workers == 1 and address is None else RayExecutor(workers, address)


def _workers(text: str) -> int:
    workers = int(text)
    if workers < 1:
        raise ValueError(f"--workers {workers}: expected >= 1")
    return workers


def add_worker_arguments(parser, what: str, default: int = 1, aliases: Sequence[str] = ()) -> None:
    """``--workers`` (and its ``aliases``) and ``--ray-address``, as every command and study script
    spells them."""
    parser.add_argument("--workers", *aliases, dest="workers", type=_workers, default=default,
                        help=f"{what} run at once as Ray tasks of one CPU each (default {default}; 1: one after "
                             "the other, without Ray)")  # fmt: skip
    parser.add_argument("--ray-address", default=None,
                        help="a running Ray cluster (host:port from `ray start --head`, or 'auto') to run them on")


def map_tasks(
    function: Callable[..., Any],
    tasks: Sequence[Mapping[str, Any]],
    workers: int = 1,
    address: str | None = None,
    description: str | None = None,
    unit: str = "task",
) -> list[Any]:
    """``[function(**task) for task in tasks]``, the calls spread over ``workers`` Ray workers on this
    machine (or over the cluster at ``address``), one CPU and one torch thread each; results in the
    order of ``tasks``, the first error raised. ``workers=1`` without an address runs the calls here,
    one after the other, without Ray. With a ``description``, a progress bar counts finished tasks.

    ``function`` and every task's arguments are sent to the workers (pickled with cloudpickle): pass
    what rebuilds a thing (a model's folder, a policy's name, env kwargs), and keep each task fully
    determined by its arguments (seed included) so that the results do not depend on where it ran."""
    from tqdm.auto import tqdm

    check_workers(workers, address)
    with tqdm(total=len(tasks), desc=description, unit=unit, disable=description is None) as bar:
        if workers == 1 and address is None:
            results = []
            for task in tasks:
                results.append(function(**task))
                bar.update()
            return results
        with RayExecutor(workers, address) as pool:
            futures = [pool.submit(function, **task) for task in tasks]
            for future in as_completed(futures):
                future.result()  # the first error raises here, before the rest have finished
                bar.update()
            return [future.result() for future in futures]
