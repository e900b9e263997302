"""`cosmolocal federation ...`: the federation of regional planners, run for real on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

federation_app = typer.Typer(
    name="federation",
    help="Regional planners as peers (SPEC.md section 10): a demo with real processes.",
    no_args_is_help=True,
)


@federation_app.command("demo")
def demo(
    regions: Annotated[int, typer.Option(min=3, max=8, help="Regional planners to start.")] = 3,
    labs: Annotated[int, typer.Option(min=1, max=10, help="Lab processes per region.")] = 3,
    orders: Annotated[int, typer.Option(min=1, max=100, help="Orders per region.")] = 8,
    speed: Annotated[
        float, typer.Option(min=1.0, help="How many times faster than real time labs work.")
    ] = 10_000.0,
    timeout: Annotated[float, typer.Option(min=20.0, help="Give up after this many seconds.")] = 110.0,
    seed: Annotated[int, typer.Option(help="Seed of the labs and orders.")] = 3,
    workdir: Annotated[
        Path | None, typer.Option(help="Where ledgers, keys and logs go [default: a temporary folder].")
    ] = None,
) -> None:
    """Start regional planners (Lombardy, Rhône-Alpes, Switzerland, ...) with their labs as real
    processes, send a surge into the first region, and print what moved between regions and what
    each delivered. Every process it starts is stopped at the end."""
    from cosmolocal.logs import setup_logging
    from scenarios.federation_demo import FederationDemoOptions, run_federation_demo

    setup_logging("warning", "federation-demo")
    options = FederationDemoOptions(
        regions=regions,
        labs_per_region=labs,
        orders_per_region=orders,
        speed=speed,
        timeout_s=timeout,
        seed=seed,
        workdir=workdir,
    )
    if not run_federation_demo(options):
        raise typer.Exit(1)
