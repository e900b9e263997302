"""`cosmolocal federation ...`: the federation of regional planners, run for real on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

#: Labs and orders per region: as one process per lab, and with --simulated-labs.
MOST_LAB_PROCESSES = 10
MOST_ORDERS = 100
MOST_SIMULATED_LABS = 1_000
MOST_SIMULATED_ORDERS = 5_000

federation_app = typer.Typer(
    name="federation",
    help="Regional planners as peers (SPEC.md section 10): a demo with real processes.",
    no_args_is_help=True,
)


@federation_app.command("demo")
def demo(
    regions: Annotated[int, typer.Option(min=3, max=8, help="Regional planners to start.")] = 3,
    labs: Annotated[
        int,
        typer.Option(
            min=1,
            max=MOST_SIMULATED_LABS,
            help=f"Labs per region: at most {MOST_LAB_PROCESSES} as processes, "
            f"{MOST_SIMULATED_LABS} with --simulated-labs.",
        ),
    ] = 3,
    orders: Annotated[
        int,
        typer.Option(
            min=1,
            max=MOST_SIMULATED_ORDERS,
            help=f"Orders per region: at most {MOST_ORDERS}, {MOST_SIMULATED_ORDERS} with --simulated-labs.",
        ),
    ] = 8,
    simulated_labs: Annotated[
        bool,
        typer.Option(
            help="Run each region's labs in one process (real sockets and keys, every assignment made "
            "at once): a network of hundreds of labs per region, where the run measures the planners "
            "and the rounds between them."
        ),
    ] = False,
    speed: Annotated[
        float, typer.Option(min=1.0, help="How many times faster than real time labs work.")
    ] = 10_000.0,
    timeout: Annotated[float, typer.Option(min=20.0, help="Give up after this many seconds.")] = 110.0,
    seed: Annotated[int, typer.Option(help="Seed of the labs and orders.")] = 3,
    workdir: Annotated[
        Path | None, typer.Option(help="Where ledgers, keys and logs go [default: a temporary folder].")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the run's figures as one JSON object (seconds by phase, rounds, what moved, "
            "what each region delivered) after the tables, which go to stderr.",
        ),
    ] = False,
) -> None:
    """Start regional planners (Lombardy, Rhône-Alpes, Switzerland, ...) with their labs as real
    processes, send a surge into the first region, and print what moved between regions and what
    each delivered. Every process it starts is stopped at the end.

    Examples:

      cosmolocal federation demo

      cosmolocal federation demo --regions 4 --labs 400 --orders 2500 --simulated-labs --timeout 900 --json
    """
    from rich.console import Console

    from cosmolocal.logs import setup_logging
    from scenarios.federation_demo import FederationDemoOptions, run_federation_demo

    if not simulated_labs and labs > MOST_LAB_PROCESSES:
        raise typer.BadParameter(
            f"at most {MOST_LAB_PROCESSES} lab processes per region; add --simulated-labs for more",
            param_hint="--labs",
        )
    if not simulated_labs and orders > MOST_ORDERS:
        raise typer.BadParameter(
            f"at most {MOST_ORDERS} orders per region with lab processes; add --simulated-labs for more",
            param_hint="--orders",
        )
    setup_logging("warning", "federation-demo")
    figures: dict[str, Any] = {}
    options = FederationDemoOptions(
        regions=regions,
        labs_per_region=labs,
        orders_per_region=orders,
        speed=speed,
        timeout_s=timeout,
        seed=seed,
        workdir=workdir,
        simulated_labs=simulated_labs,
        figures=figures,
    )
    console = Console(stderr=True) if as_json else Console()
    try:
        ok = run_federation_demo(options, console)
    except (RuntimeError, TimeoutError) as error:  # a planner that failed, or did not answer in time
        console.print(f"[red]federation demo failed:[/] {error}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(figures | {"ok": ok}))
    if not ok:
        raise typer.Exit(1)
