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

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, as_completed
from concurrent.futures import wait as futures_wait
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


def start_ray(workers: int = 2, address: str | None = None) -> bool:
    """Start Ray on this machine with ``workers`` CPUs, or connect to the cluster at ``address``
    (``ray start --head`` printed it; ``"auto"`` finds one on this machine), unless Ray is already
    initialised in this process (a test's fixture, a user's own ``ray.init``), which is then used as it
    is. Returns whether it started one (the caller shuts down what it started)."""
    ray = _import_ray()
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


def _import_ray():
    try:
        import ray
    except ImportError as error:
        raise ImportError("workers > 1 and a Ray address need Ray: pip install 'kd-gym[ray]'") from error
    return ray


def ray_workers(workers: int, address: str | None = None) -> int:
    """How many of ``workers`` are Ray's workers: on a cluster (``address``) all of them; on this machine
    one fewer, since the calling process runs tasks too (it would otherwise wait on its workers' results,
    and it starts warm: its imports done, its task loaded)."""
    return workers if address is not None else workers - 1


class RayExecutor(Executor):
    """An executor whose calls run on ``workers`` workers at once, one CPU and one torch thread each: Ray
    tasks on the cluster at ``address``, or on this machine the calling process and ``workers - 1`` Ray
    workers (:func:`ray_workers`). Every call gets its own copy of its function and arguments, taken when
    it is submitted (cloudpickle, as Ray sends them), wherever it runs; ``submit`` returns a
    :class:`concurrent.futures.Future`, so callers wait on it as on any pool's.

    Each worker is a thread of this process that takes the next call in submission order as soon as its
    last one is done: one runs calls here, the others each keep one Ray task in flight, once their Ray
    worker has warmed up (torch imported, a first optimizer step taken), so that a cold worker never
    holds the last call while the others wait. A slow worker therefore takes fewer calls, and none
    waits while calls are left. Ray starts (:func:`start_ray`, with ``workers - 1`` CPUs) at the first
    ``submit``, while the calling process already runs that call. Leaving the executor waits for the
    calls (on an error: drops those not started), ends the warm-ups and tasks of a Ray it started, and
    shuts that Ray down."""

    def __init__(self, workers: int = 2, address: str | None = None) -> None:
        import cloudpickle  # Ray's serialiser (and Gymnasium's)

        check_workers(workers, address)
        self._ray, self._pickle = _import_ray(), cloudpickle
        self._workers, self._address = workers, address
        self._pending: deque[tuple[Future, bytes]] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._started = False
        self._threads: list[threading.Thread] = []
        self._futures: list[Future] = []
        self._in_flight: set = set()  # the Ray tasks being waited on (warm-ups and calls)
        self._warm_ups: set = set()
        self._threads_before: int | None = None
        if address is None:  # the calling process's worker, started now: it begins with the first call
            import torch

            self._threads_before = torch.get_num_threads()
            self._start_worker(_unpickled_call, "here")

    # -- the workers ------------------------------------------------------------------------------
    def _start_worker(self, target: Callable[[bytes], Any], name: str, warm_up=None) -> None:
        thread = threading.Thread(target=self._work, args=(target, warm_up), name=f"kd-gym worker {name}",
                                  daemon=True)  # fmt: skip
        thread.start()
        self._threads.append(thread)

    def _next_call(self) -> tuple[Future, bytes] | None:
        with self._ready:
            while True:
                while self._pending:
                    future, payload = self._pending.popleft()
                    if future.set_running_or_notify_cancel():
                        return future, payload
                if self._closed:
                    return None
                self._ready.wait()

    def _work(self, target: Callable[[bytes], Any], warm_up=None) -> None:
        if warm_up is not None:
            self._warm_up_ray_worker(warm_up)
        while (call := self._next_call()) is not None:
            future, payload = call
            try:
                result = target(payload)
            except BaseException as error:  # noqa: BLE001 - handed to the caller through future.result()
                future.set_exception(error)
            else:
                future.set_result(result)

    def _run_on_ray(self, payload: bytes) -> Any:
        return self._ray_get(self._task.remote(payload))

    def _start_ray_workers(self) -> None:
        self._started = start_ray(ray_workers(self._workers, self._address), self._address)
        self._task = self._ray.remote(num_cpus=1)(_unpickled_call)
        warm_up = self._ray.remote(num_cpus=1)(_warm_up)
        for i in range(ray_workers(self._workers, self._address)):
            self._start_worker(self._run_on_ray, f"ray {i}", warm_up)

    def _warm_up_ray_worker(self, warm_up) -> None:
        """Wait until a Ray worker has done what every first call pays for (Python's start, torch's
        import and first optimizer), so that this worker takes calls only once it can run them at once:
        a call a cold worker held would keep the command waiting after the others had run out of
        calls. A failure here is left to the calls to report."""
        ref = warm_up.remote()
        with self._ready:
            self._warm_ups.add(ref)
        try:
            self._ray_get(ref)
        except Exception:  # noqa: BLE001 - cancelled, or the worker cannot import torch: the calls say so
            pass

    def _ray_get(self, ref) -> Any:
        """``ray.get(ref)``, the task cancellable by :meth:`shutdown` meanwhile."""
        with self._ready:
            self._in_flight.add(ref)
        try:
            return self._ray.get(ref)
        finally:
            with self._ready:
                self._in_flight.discard(ref)

    # -- Executor ---------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._closed:
            raise RuntimeError("RayExecutor: submit after shutdown")
        future: Future = Future()
        payload = self._pickle.dumps((fn, args, kwargs))
        with self._ready:
            self._pending.append((future, payload))
            self._futures.append(future)
            self._ready.notify()
        if len(self._threads) < self._workers:
            self._start_ray_workers()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls (``cancel_futures``: drop those not started). With ``wait``: wait for the
        submitted calls, end a Ray worker's warm-up that no call needs any more (on the Ray this executor
        started), wait for the workers' threads (Ray's process must not be shut down while a thread
        waits on it), shut down the Ray this executor started and give the caller its torch threads."""
        with self._ready:
            self._closed = True
            if cancel_futures:
                while self._pending:
                    self._pending.popleft()[0].cancel()
            self._ready.notify_all()
        if not wait:
            return
        futures_wait(self._futures)
        self._end_ray_workers()

    def _end_ray_workers(self, calls_too: bool = False) -> None:
        """Cancel what Ray still runs for this executor (warm-ups; with ``calls_too`` the calls as well),
        when this executor started Ray, then join the workers' threads and shut that Ray down."""
        if self._started:
            with self._ready:
                in_flight = list(self._in_flight)
            for ref in in_flight:
                if calls_too or ref in self._warm_ups:
                    self._ray.cancel(ref, force=True)
        for thread in self._threads:
            thread.join()
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def __exit__(self, exc_type, exc_val, exc_tb) -> bool:
        if exc_type is None:
            self.shutdown(wait=True)
        else:
            # Leaving on an error (the first failed call, a Ctrl-C): the calls not started are dropped and
            # the Ray tasks of a Ray this executor started are ended; the call running here ends first.
            self.shutdown(wait=False, cancel_futures=True)
            self._end_ray_workers(calls_too=True)
        return False


def _warm_up() -> None:
    """A Ray worker's warm-up: torch's import, one thread, and a first optimizer step (torch imports
    torch._dynamo on an optimizer's first use: a second or two in a fresh process)."""
    import torch

    torch.set_num_threads(1)
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([weight])
    weight.sum().backward()
    optimizer.step()


def _unpickled_call(payload: bytes) -> Any:
    """A worker's call (a Ray task's body, or run here): the call that :meth:`RayExecutor.submit`
    pickled, unpickled into a copy of its own, on one torch thread (a worker holds one CPU; tiny models
    run fastest on one, and the serial path runs on one)."""
    import cloudpickle
    import torch

    fn, args, kwargs = cloudpickle.loads(payload)
    torch.set_num_threads(1)
    return fn(*args, **kwargs)


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
