"""`cosmolocal chaos`: a seeded fault schedule over a real local mesh, then its invariants."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cosmolocal.console import err, fail, out


def chaos(
    labs: Annotated[int, typer.Option(min=2, max=12, help="Lab processes to start.")] = 4,
    orders: Annotated[int, typer.Option(min=1, max=80, help="Orders to place.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of the labs, orders, fault schedule and link.")] = 1,
    faults: Annotated[
        int, typer.Option(min=1, max=40, help="Faults to inject (each kind at least once when room).")
    ] = 7,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="Run the mesh with CurveZMQ and add a stranger's key to the faults (no lossy proxy: "
            "nothing can sit in the middle of CurveZMQ).",
        ),
    ] = False,
    loss: Annotated[
        float, typer.Option(help="Share of frames the proxy drops, and duplicates, and reorders.")
    ] = 0.05,
    speed: Annotated[
        float, typer.Option(min=1.0, help="How many times faster than real time labs work.")
    ] = 1500.0,
    timeout: Annotated[
        float, typer.Option(min=10.0, help="Give up waiting for the orders after this.")
    ] = 150.0,
    fault_gap: Annotated[
        tuple[float, float],
        typer.Option(help="Seconds between two faults: drawn between these two (low, high)."),
    ] = (0.5, 2.0),
    workdir: Annotated[
        Path | None,
        typer.Option(help="Keep logs, journals and the ledger here [default: a temporary folder]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Break a real local mesh on purpose and check that nothing was lost or made twice.

    Starts a planner and labs as processes, places orders, and injects a seeded schedule of faults:
    kill -9 of labs and of the planner, SIGSTOP/SIGCONT of labs, 10,000 garbage frames, an impostor,
    repeated POSTs, and a lossy link that drops, duplicates and reorders frames and, for a while,
    loses all of one lab's frames to the planner (but not the planner's to it). Then checks, from
    the planner's ledger and the labs' journals: no accepted order lost, no unit made twice, capacity
    and stock kept, labs agreeing with the planner, /health answering within 1 s throughout.

    Exit status 1 if any invariant fails.

    Example:

      [bold]cosmolocal chaos --labs 4 --orders 6 --seed 1 --json[/]
    """
    from scenarios.faults.chaos import ChaosError, ChaosOptions, run_chaos

    if not 0.0 <= loss < 1 / 3:
        fail(f"--loss {loss}: must be at least 0 and below 0.33")
    if not 0.0 <= fault_gap[0] <= fault_gap[1] <= 60.0:
        fail(f"--fault-gap {fault_gap[0]:g} {fault_gap[1]:g}: must be two seconds, low then high, 0 to 60")
    options = ChaosOptions(
        labs=labs,
        orders=orders,
        seed=seed,
        faults=faults,
        secure=secure,
        loss=loss,
        speed=speed,
        timeout_s=timeout,
        fault_gap_s=fault_gap,
        workdir=workdir,
    )
    try:
        report = run_chaos(
            options, say=(lambda line: None) if as_json else (lambda line: err.print(line, highlight=False))
        )
    except ChaosError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": str(exc)}))
        fail(str(exc), code=1)
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        verdicts = Table("invariant", "held", "found", title=f"chaos, seed {seed}: {report.wall_s:.0f} s")
        for v in report.verdicts:
            verdicts.add_row(v.name, "[green]yes[/]" if v.ok else "[bold red]NO[/]", v.detail)
        out.print(verdicts)
        counts = Table("count", "value", title="what happened")
        for name, value in report.counts.items():
            counts.add_row(
                name.replace("_", " "), json.dumps(value) if isinstance(value, dict | list) else str(value)
            )
        out.print(counts)
    raise typer.Exit(0 if report.ok else 1)
