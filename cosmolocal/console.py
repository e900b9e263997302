"""The command line's two consoles and its one way to stop on bad input: a readable error, exit 2."""

from __future__ import annotations

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
