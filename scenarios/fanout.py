"""The one seam through which independent solves fan out: a `concurrent.futures.Executor`.

Sweeps over seeds, the trade-off between km and days, and the policies of one replay are independent
solves. They all go through `open_executor` (which engine runs them) and `fan_out` (submit, gather in
order, report each as it finishes), so a new engine is one branch here and nothing else changes.

- `process` (the default): a local process pool started with `spawn` (OR-Tools and ZeroMQ do not
  survive a `fork`).
- `dask`: a Dask distributed LocalCluster on this machine, through `client.get_executor()`.
- `tcp://HOST:PORT`: an existing Dask scheduler and its workers. Every worker needs cosmolocal
  installed, and the files a scenario names (lab lists) readable at the same paths.

Tasks carry plain data (validated scenarios, seeds, solver settings) and build their models in the
worker: OR-Tools objects do not pickle. Dask is an optional extra (`pip install 'cosmolocal[dask]'`),
imported only when asked for. It is a tool for one operator's own machines: between sovereign regions
the federation stays a data-only protocol, never a shared cluster.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")
R = TypeVar("R")

#: The engines `open_executor` knows, as the command line names them.
EXECUTOR_CHOICES = "process, dask or tcp://HOST:PORT"
#: The pip command that adds the Dask engine.
DASK_EXTRA = "pip install 'cosmolocal[dask]'"
#: How long to wait for an existing Dask scheduler to answer before giving up.
CONNECT_TIMEOUT_S = 5.0


class FanoutError(ValueError):
    """An engine that cannot be used: unknown name, bad address, missing extra, unreachable scheduler."""


@dataclass(frozen=True)
class ExecutorChoice:
    """Which engine runs the tasks: a local process pool, a local Dask cluster, or a Dask scheduler."""

    kind: Literal["process", "dask", "scheduler"]
    #: The scheduler's address (`tcp://HOST:PORT`), for `scheduler` only.
    address: str = ""


def parse_executor(text: str) -> ExecutorChoice:
    """`process`, `dask` or `tcp://HOST:PORT` as an `ExecutorChoice`; `FanoutError` saying why not."""
    value = text.strip()
    if value in ("process", "dask"):
        return ExecutorChoice(value)  # type: ignore[arg-type]
    if not value.startswith("tcp://"):
        raise FanoutError(f"unknown executor; use {EXECUTOR_CHOICES}")
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise FanoutError("the port must be a number from 1 to 65535") from None
    if not parts.hostname or port is None or port == 0:
        raise FanoutError("a scheduler address is tcp://HOST:PORT, for example tcp://127.0.0.1:8786")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise FanoutError("a scheduler address is only tcp://HOST:PORT, with nothing after the port")
    return ExecutorChoice("scheduler", f"tcp://{parts.netloc}")


def default_workers() -> int:
    """Workers when none are asked for: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def open_executor(
    choice: ExecutorChoice | str,
    workers: int | None = None,
    *,
    dask_processes: bool = True,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    initializer: Callable[..., object] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[Executor]:
    """An executor for `choice` with `workers` workers (default: one per core), shut down on exit.

    `dask_processes=False` runs a local Dask cluster's workers as threads of this process (light, for
    tests); with an existing scheduler its own workers run the tasks, so `workers` must be None.
    `initializer(*initargs)` runs once in each worker of a process pool as it starts (state that
    every task of the pool reads, such as the federation's region models); Dask has no such hook.
    On an error inside the block, tasks not yet started are cancelled rather than waited for.
    """
    if isinstance(choice, str):
        choice = parse_executor(choice)
    if workers is not None and workers < 1:
        raise FanoutError(f"workers must be at least 1, not {workers}")
    if initializer is not None and choice.kind != "process":
        raise FanoutError("a worker initializer needs the process executor")
    if choice.kind == "process":
        pool = ProcessPoolExecutor(
            max_workers=workers or default_workers(),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=initializer,
            initargs=initargs,
        )
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    if choice.kind == "scheduler" and workers is not None:
        raise FanoutError(f"{choice.address} is an existing scheduler: its own workers run the tasks")
    distributed = _import_distributed()
    with _dask_client(distributed, choice, workers, dask_processes, connect_timeout_s) as client:
        executor = client.get_executor()
        try:
            yield executor
        finally:
            executor.shutdown(wait=False)


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise FanoutError(f"Dask is not installed ({exc}); add it with: {DASK_EXTRA}") from None
    return distributed


@contextmanager
def _dask_client(
    distributed: Any, choice: ExecutorChoice, workers: int | None, processes: bool, timeout_s: float
) -> Iterator[Any]:
    if choice.kind == "scheduler":
        try:
            client = distributed.Client(choice.address, timeout=f"{timeout_s}s")
        except (OSError, TimeoutError) as exc:
            raise FanoutError(
                f"no Dask scheduler answered within {timeout_s:g} s ({exc}); start one with "
                "`dask scheduler` and `dask worker`, or use --executor process"
            ) from None
        with client:
            try:  # a scheduler without workers would leave every task waiting, silently
                client.wait_for_workers(1, timeout=timeout_s)
            except TimeoutError:
                raise FanoutError(
                    f"the scheduler answered but has no workers after {timeout_s:g} s; start some with "
                    f"`dask worker {choice.address}`"
                ) from None
            yield client
        return
    # Worker processes talk over loopback TCP; threads in this process talk in-process.
    where = {"host": "127.0.0.1"} if processes else {}
    cluster = distributed.LocalCluster(
        n_workers=workers or default_workers(),
        threads_per_worker=1,
        processes=processes,
        dashboard_address=None,
        # The scheduler serves HTTP even without a dashboard: loopback, any free port, not 8787.
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.ERROR,  # not the nanny's routine warnings on a busy machine's shutdown
        **where,
    )
    with cluster, distributed.Client(cluster) as client:
        yield client


def fan_out(
    executor: Executor,
    task: Callable[[T], R],
    items: Sequence[T],
    on_done: Callable[[T, R], None] | None = None,
) -> list[R]:
    """`task(item)` for every item on `executor`, results in the order of `items`.

    `on_done(item, result)` is called in this process as each one finishes (for a progress bar). The
    first task that raises stops the gathering: the rest are cancelled and its error is raised here.
    """
    futures: dict[Future[R], int] = {executor.submit(task, item): i for i, item in enumerate(items)}
    results: list[Any] = [None] * len(items)
    try:
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            if on_done is not None:
                on_done(items[index], results[index])
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return results
