"""Independent tasks (the trainings of folds, seeds, permutations) on this machine's cores or a Dask cluster.

Every training of a run goes through `run_tasks`: one joblib `Parallel` call whose backend the run's
`scheduler` selects. "" uses loky (`n_jobs` processes on this machine; this process for one); "local"
starts a Dask `LocalCluster` of `n_jobs` one-thread workers for the call and closes it after;
`tcp://host:port` connects to a running Dask scheduler, whose workers must each have one thread. A task
runs on one thread and seeds itself from its arguments, so its result does not depend on the backend or
on the number of workers. On Dask a task that raises is retried `RETRIES` times, and the scheduler reruns
elsewhere the task of a worker that died (up to its `distributed.scheduler.allowed-failures`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from joblib import Parallel, delayed, effective_n_jobs, parallel_config
from threadpoolctl import threadpool_limits

from lpmlib.constraints import Options, Pattern, check

LOCAL = "local"
RETRIES = 1  # further attempts of a task that raised on a Dask worker (a transient error gets one more go)
SCHEDULER = (
    Options(("", LOCAL)),
    Pattern(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):[0-9]{1,5}", "an address tcp://host:port"),
)


class SchedulerError(RuntimeError):
    """A Dask cluster that cannot run the tasks reproducibly (a worker with more than one thread)."""


def n_workers(n_jobs: int, n_tasks: int) -> int:
    """Processes for `n_tasks` independent tasks: joblib's reading of `n_jobs` (-1: every core), at most
    one per task."""
    return max(1, min(effective_n_jobs(n_jobs), n_tasks))


def runs_here(n_jobs: int, n_tasks: int, scheduler: str = "") -> bool:
    """Whether `run_tasks` runs these tasks one after the other in this process (one worker, no cluster
    named), where a task may log as it goes."""
    return scheduler in ("", LOCAL) and n_workers(n_jobs, n_tasks) == 1


def check_scheduler(scheduler: str) -> None:
    """A clear one-line error unless `scheduler` is "", "local" or `tcp://host:port`."""
    check({"scheduler": scheduler}, {"scheduler": SCHEDULER}, "parameter")


def run_tasks(
    function: Callable[..., Any], arguments: Sequence[tuple], n_jobs: int = 1, scheduler: str = ""
) -> list[Any]:
    """`function(*args)` for each `args` of `arguments`, side by side, results in submission order.

    `n_jobs` (-1: every core) sets the loky processes or the workers of a local Dask cluster; one runs
    the tasks one after the other in this process. A remote cluster runs as many tasks at once as it has
    workers (with one worker joblib runs them in this process). A task's exception is raised here, as
    itself.
    """
    check_scheduler(scheduler)
    if runs_here(n_jobs, len(arguments), scheduler):
        return [one_thread(function, *args) for args in arguments]
    n_jobs = n_workers(n_jobs, len(arguments))
    calls = [delayed(one_thread)(function, *args) for args in arguments]
    with shared_scheduler(scheduler, n_jobs) as address, joblib_backend(address):
        return Parallel(n_jobs=n_jobs, batch_size=1)(calls)


def one_thread(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` with torch, every BLAS or OpenMP pool and any joblib call inside on one thread:
    the same rounding in a loky process, a Dask worker or this process, and no task sent on from a worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1), parallel_config(backend="sequential"):
            return function(*args)
    finally:
        torch.set_num_threads(threads)


@contextmanager
def shared_scheduler(scheduler: str, n_jobs: int) -> Iterator[str]:
    """The scheduler's address for the duration of the block: for "local" a `LocalCluster` of `n_jobs`
    one-thread workers started here and closed after (none for one worker: the tasks run in this process,
    as joblib runs any single-slot backend); any other value unchanged. Several `run_tasks` calls in the
    block (the sizes of a learning curve) share the cluster."""
    check_scheduler(scheduler)
    workers = effective_n_jobs(n_jobs)
    if scheduler != LOCAL or workers == 1:
        yield "" if scheduler == LOCAL else scheduler
        return
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.WARNING,
    ) as cluster:
        yield cluster.scheduler_address


@contextmanager
def joblib_backend(address: str) -> Iterator[None]:
    """joblib's loky backend ("") or its Dask backend on a client of the scheduler at `address`."""
    if not address:
        with parallel_config(backend="loky"):
            yield
        return
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        check_one_thread_workers(client)
        with parallel_config(backend="dask", client=client, retries=RETRIES):
            yield


def check_one_thread_workers(client) -> None:
    """Trainings seed torch's global generator, so two in one worker process would interleave their draws."""
    threads = client.nthreads()
    shared = sorted(address for address, n in threads.items() if n > 1)
    if shared:
        raise SchedulerError(
            f"Dask workers {', '.join(shared)} run more than one thread; start every worker with "
            "`dask worker <scheduler> --nthreads 1` so that each training's seeds give the same model"
        )
