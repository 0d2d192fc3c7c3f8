"""A study's job runner: independent jobs (training runs, searches, evaluations) in spawned worker
processes of one torch thread each, in list order, with dependencies between them."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

import torch as th


class _InThisProcess(Executor):
    """An executor that runs each job as it is submitted: ``n_jobs=1`` takes the pool's path, in order."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the caller through future.result()
            future.set_exception(error)
        return future


def run_jobs(
    function: Callable[..., Any],
    jobs: Sequence[Mapping[str, Any]],
    n_jobs: int = 2,
    description: str = "jobs",
    unit: str = "job",
) -> None:
    """Call ``function(**job)`` for every job, ``n_jobs`` at a time in spawned processes of one torch
    thread each (in this process when ``n_jobs`` is 1), with a progress bar; the first error raises.

    Jobs start in their list order. Two keys are the runner's, not ``function``'s: a job's ``"name"``
    (any hashable) marks it done for the jobs that list it in their ``"after"``; a job with ``"after"``
    starts once those are done, and a free worker takes the first job in the list that is ready.
    """
    if n_jobs < 1:
        raise ValueError(f"run_jobs: n_jobs={n_jobs} must be >= 1")
    from tqdm.auto import tqdm

    pending, done = list(jobs), set()

    def ready(job: Mapping[str, Any]) -> bool:
        return all(name in done for name in job.get("after", ()))

    def arguments(job: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k not in ("name", "after")}

    names: set[Hashable] = {job["name"] for job in jobs if "name" in job}
    waiting = {name for job in jobs for name in job.get("after", ())} - names
    if waiting:
        raise ValueError(f"run_jobs: jobs wait for {sorted(map(str, waiting))}, which no job is named")
    pool = (_InThisProcess() if n_jobs == 1 else
            ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn"), initializer=th.set_num_threads,
                                initargs=(1,)))  # fmt: skip
    with pool, tqdm(total=len(pending), desc=description, unit=unit) as bar:
        running: dict[Future, Mapping[str, Any]] = {}
        while pending or running:
            while len(running) < n_jobs and any(ready(j) for j in pending):
                job = next(j for j in pending if ready(j))
                pending.remove(job)
                running[pool.submit(function, **arguments(job))] = job
            if not running:
                raise ValueError("run_jobs: the jobs left wait for each other")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()
                job = running.pop(future)
                if "name" in job:
                    done.add(job["name"])
                bar.update()
