"""A study's job runner: independent jobs (training runs, searches, evaluations) as Ray tasks of one CPU
and one torch thread each (:mod:`agents.common.parallel`), in list order, with dependencies between them."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from agents.common.parallel import executor


def run_jobs(
    function: Callable[..., Any],
    jobs: Sequence[Mapping[str, Any]],
    workers: int = 2,
    description: str = "jobs",
    unit: str = "job",
    address: str | None = None,
) -> list[Any]:
    """Call ``function(**job)`` for every job, ``workers`` at a time as Ray tasks of one CPU and one
    torch thread each (in this process, without Ray, when ``workers`` is 1; on the Ray cluster at
    ``address`` when given), with a progress bar; the first error raises.

    Jobs start in their list order. Two keys are the runner's, not ``function``'s: a job's ``"name"``
    (any hashable) marks it done for the jobs that list it in their ``"after"``; a job with ``"after"``
    starts once those are done, and a free worker takes the first job in the list that is ready.
    Returns what the calls returned, in the jobs' order.
    """
    if workers < 1:
        raise ValueError(f"run_jobs: workers={workers} must be >= 1")
    from tqdm.auto import tqdm

    pending, done = list(range(len(jobs))), set()
    results: list[Any] = [None] * len(jobs)

    def ready(job: Mapping[str, Any]) -> bool:
        return all(name in done for name in job.get("after", ()))

    def arguments(job: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k not in ("name", "after")}

    names: set[Hashable] = {job["name"] for job in jobs if "name" in job}
    waiting = {name for job in jobs for name in job.get("after", ())} - names
    if waiting:
        raise ValueError(f"run_jobs: jobs wait for {sorted(map(str, waiting))}, which no job is named")
    with executor(workers, address) as pool, tqdm(total=len(pending), desc=description, unit=unit) as bar:
        running: dict[Future, int] = {}
        while pending or running:
            while len(running) < workers and any(ready(jobs[i]) for i in pending):
                i = next(i for i in pending if ready(jobs[i]))
                pending.remove(i)
                running[pool.submit(function, **arguments(jobs[i]))] = i
            if not running:
                raise ValueError("run_jobs: the jobs left wait for each other")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                i = running.pop(future)
                results[i] = future.result()
                if "name" in jobs[i]:
                    done.add(jobs[i]["name"])
                bar.update()
    return results
