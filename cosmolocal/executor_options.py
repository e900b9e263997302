"""`--executor` and `--workers`, shared by the commands that fan out independent solves.

They pick the engine of `scenarios.fanout` and turn its errors into readable ones naming the flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager
from typing import Annotated

import typer

from cosmolocal.console import fail
from scenarios.fanout import EXECUTOR_CHOICES, ExecutorChoice, FanoutError, open_executor, parse_executor

EXECUTOR_HELP = (
    f"Where the independent replays run: {EXECUTOR_CHOICES}. process is a local process pool; dask "
    "starts a Dask LocalCluster here; tcp://HOST:PORT sends them to an existing Dask scheduler (whose "
    "workers need cosmolocal installed). Dask needs: pip install 'cosmolocal\\[dask]'."
)
WORKERS_HELP = "Worker processes for process or dask \\[default: one per core]; not for tcp://."

ExecutorOption = Annotated[str, typer.Option("--executor", help=EXECUTOR_HELP)]
WorkersOption = Annotated[int | None, typer.Option("--workers", min=1, help=WORKERS_HELP)]


def checked_choice(executor: str, workers: int | None) -> ExecutorChoice:
    """The parsed `--executor`, or exit 2 naming the flag that is wrong and why."""
    try:
        choice = parse_executor(executor)
    except FanoutError as exc:
        fail(f"--executor {executor!r}: {exc}")
    if choice.kind == "scheduler" and workers is not None:
        fail(f"--workers: does not apply to --executor {choice.address}; its own workers run the tasks")
    return choice


@contextmanager
def cli_executor(choice: ExecutorChoice, workers: int | None) -> Iterator[Executor]:
    """The executor for a checked choice; exit 2 naming --executor if it cannot start or connect."""
    with ExitStack() as stack:
        try:
            executor = stack.enter_context(open_executor(choice, workers))
        except FanoutError as exc:
            fail(f"--executor {choice.address or choice.kind}: {exc}")
        yield executor
