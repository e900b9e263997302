"""`cosmolocal bench fjsp FILE`: a flexible job-shop instance (Brandimarte format), lab scheduler.

The solver that sequences a lab's jobs (solver.jobshop.fjsp: CP-SAT, with a tabu search beside it for the
makespan) minimises the makespan of a standard instance; the schedule is checked by the independent
validator and the makespan compared with the best-known value from the literature, so the gap is
measured against a number nobody here chose.
"""

from __future__ import annotations

import json as json_module
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cosmolocal.console import err, fail, out
from solver.jobshop.brandimarte import parse_brandimarte
from solver.jobshop.fjsp import check_schedule, solve
from solver.jobshop.tabu import compile_ahead

#: Best-known makespans of Brandimarte's instances as published, by file stem.
BEST_KNOWN: dict[str, float] = {
    "mk01": 40,
    "mk02": 26,
    "mk03": 204,
    "mk04": 60,
    "mk05": 172,
    "mk06": 57,
    "mk07": 139,
    "mk08": 523,
    "mk09": 307,
    "mk10": 197,
}


def fjsp(
    file: Annotated[Path, typer.Argument(help="Instance in Brandimarte format (.txt or .fjs).")],
    best_known: Annotated[
        float | None,
        typer.Option(
            "--best-known", help="Best-known makespan (default: known values of mk01-mk10 by name)."
        ),
    ] = None,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Time limit in seconds.")] = 10.0,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Threads: a tabu search and CP-SAT beside it up to 60 operations, tabu searches beyond.",
        ),
    ] = 2,
    json: Annotated[
        bool, typer.Option("--json", help="One JSON object per instance on its own line.")
    ] = False,
) -> None:
    """Solve a flexible job-shop instance (minimum makespan) and compare it with the best-known value."""
    if not time_limit > 0:
        fail(f"--time-limit must be positive, got {time_limit}")
    if workers < 1:
        fail(f"--workers must be at least 1, got {workers}")
    try:
        instance = parse_brandimarte(file)
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    except ValueError as exc:
        fail(f"{file}: {exc}")
    known = best_known if best_known is not None else BEST_KNOWN.get(file.stem.lower())
    compile_ahead()  # once per machine, then read from the cache: the clock times the search only
    began = time.perf_counter()
    result = solve(instance, "makespan", time_limit_s=time_limit, workers=workers)
    seconds = time.perf_counter() - began
    problems = check_schedule(instance, result)
    gap = None if not known else round(100.0 * (result.objective - known) / known, 3)
    row = {
        "instance": file.stem,
        "objective": result.objective,
        "bound": result.bound,
        "best_known": known,
        "gap_pct": gap,
        "seconds": round(seconds, 3),
        "feasible": not problems,
    }
    if json:
        print(json_module.dumps(row), flush=True)
    else:
        table = Table(
            "instance",
            "makespan",
            "bound",
            "best-known",
            "gap %",
            "seconds",
            "feasible",
            title="flexible job-shop",
        )
        table.add_row(
            row["instance"],
            str(result.objective),
            str(result.bound),
            "-" if known is None else f"{known:g}",
            "-" if gap is None else f"{gap:.2f}",
            f"{seconds:.2f}",
            "yes" if not problems else "[bold red]NO[/]",
        )
        out.print(table)
        for problem in problems:
            err.print(f"[red]invalid schedule:[/] {problem}", highlight=False)
    if problems:
        raise typer.Exit(1)
