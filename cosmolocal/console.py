"""The command line's two consoles, its one way to stop on bad input (a readable error, exit 2), and a
guard that keeps standard output for JSON only."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console

#: Results: tables and summaries (standard output).
out = Console()
#: Progress, warnings and errors (standard error), so that standard output stays clean for scripts.
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error the user can act on, without a traceback, and exit with `code`."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def stdout_to_stderr(active: bool) -> Iterator[None]:
    """Send anything written to file descriptor 1 (native solver libraries too) to stderr meanwhile.

    With --json, standard output must hold only the JSON lines a script reads.
    """
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
