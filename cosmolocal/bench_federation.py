"""`cosmolocal bench federation`: one synthetic federation solved federated, isolated and global."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

#: The keys every run prints, in this order (the issue's list), before the detailed figures.
KEYS = (
    "cost_ratio",
    "isolated_ratio",
    "rounds",
    "rounds_to_1pct",
    "messages",
    "bytes",
    "orders_exposed_share",
    "certified_gap_pct",
    "seconds",
    "valid",
)


def federation(
    regions: Annotated[int, typer.Option(min=2, help="Regions (each with its own planner).")] = 4,
    orders_per_region: Annotated[int, typer.Option(min=1, help="Orders of each region.")] = 300,
    labs_per_region: Annotated[int, typer.Option(min=1, help="Labs of each region.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the instance.")] = 1,
    case: Annotated[
        str,
        typer.Option(
            help="surge: the first region at 2x its capacity, peers at 60 %; tight: all at 90-100 %."
        ),
    ] = "surge",
    time_limit: Annotated[
        float, typer.Option(min=0.1, help="Seconds for each region's integer plan.")
    ] = 10.0,
    global_plan: Annotated[
        bool, typer.Option(help="Also solve the merged problem as one integer plan (for certified_gap_pct).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on one line.")] = False,
) -> None:
    """Solve a seeded federation federated, isolated and as one global planner; print the figures.

    Example: [bold]cosmolocal bench federation --regions 4 --orders-per-region 300
    --labs-per-region 50 --case surge --json[/]
    """
    from scenarios.federation import CASES
    from scenarios.federation_bench import BenchParams, bench_federation

    console = Console(stderr=True)
    if case not in CASES:
        console.print(f"[red]error:[/] --case must be one of {', '.join(CASES)}, got {case!r}")
        raise typer.Exit(2)
    bench = BenchParams(regions, orders_per_region, labs_per_region, seed, case, time_limit, global_plan)  # type: ignore[arg-type]
    try:
        with console.status("running the federation ...", spinner="dots"):
            figures = bench_federation(bench)
    except ValueError as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    ordered = {key: figures[key] for key in KEYS} | {k: v for k, v in figures.items() if k not in KEYS}
    if as_json:
        print(json.dumps(ordered))
        return
    table = Table(
        title=f"federation: {regions} regions x {orders_per_region} orders x {labs_per_region} labs, {case}"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in ordered.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    Console().print(table)
