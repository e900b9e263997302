"""`cosmolocal bench load`: a real planner under 1,000 simulated labs, orders and event streams."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console


def load(
    labs: Annotated[int, typer.Option(min=1, help="Simulated labs (real DEALER sockets, CurveZMQ).")] = 1000,
    seconds: Annotated[
        float, typer.Option(min=2.0, help="Length of the orders phase (rising rates).")
    ] = 60.0,
    rates: Annotated[
        str, typer.Option(help="Orders a second the requesters rise through, comma-separated.")
    ] = "50,100,200,300",
    subscribers: Annotated[int, typer.Option(min=0, help="Clients following /events.")] = 200,
    lab_processes: Annotated[int, typer.Option(min=1, help="Processes the labs are spread over.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the labs and orders.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on one line.")] = False,
) -> None:
    """Start a planner process and simulated labs; measure ingest against bare pyzmq + msgpack, orders
    a second with their latency, /health latency, event-stream lag, frames dropped, the planner's
    peak memory and orders lost. Only loopback addresses are used.

    Example: [bold]cosmolocal bench load --labs 1000 --seconds 60 --json[/]
    """
    from scenarios.faults.load import LoadOptions, run_load, to_json

    console = Console(stderr=True)
    try:
        steps = tuple(float(r) for r in rates.split(",") if r.strip())
    except ValueError:
        console.print(
            f"[red]error:[/] --rates {rates!r}: expected numbers separated by commas, e.g. 50,100,200"
        )
        raise typer.Exit(2) from None
    if not steps or any(r <= 0 for r in steps):
        console.print(f"[red]error:[/] --rates {rates!r}: every rate must be above 0")
        raise typer.Exit(2)
    options = LoadOptions(
        labs=labs,
        seconds=seconds,
        rates=steps,
        subscribers=subscribers,
        lab_processes=lab_processes,
        seed=seed,
        log=lambda text: console.print(f"[dim]{text}[/]"),
    )
    result = run_load(options)
    if as_json:
        typer.echo(to_json(result))
        return
    for key, value in result.items():
        console.print(f"{key:>22}  {value}")
