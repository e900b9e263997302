"""`cosmolocal bench scale`: a seeded synthetic instance solved, validated and, if asked, dumped."""

from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from solver.model.objective import Objective, objective_weights

#: Version of the dump schema written by --dump (documented in docs/scale-dump.md).
DUMP_SCHEMA = "cosmolocal.scale/1"


def scale(
    orders: Annotated[int, typer.Option(min=1, help="Orders in the synthetic instance.")] = 1000,
    labs: Annotated[int, typer.Option(min=1, help="Labs, at the most populous European cities.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the instance.")] = 1,
    time_limit: Annotated[float, typer.Option(min=0.1, help="Seconds for the solver.")] = 30.0,
    workers: Annotated[int, typer.Option(min=1, help="CP-SAT workers.")] = 2,
    decompose_above: Annotated[
        int | None,
        typer.Option(min=0, help="Demands above which the whole-problem relaxation path is taken."),
    ] = None,
    deterministic: Annotated[
        bool,
        typer.Option(
            help="Budgets counted in LP solves and simplex iterations, so the same seed gives the same "
            "plan on any machine (the time limit still caps it, and a plan it cut says so in its "
            "status); --no-deterministic spends the time limit instead."
        ),
    ] = True,
    objective: Annotated[
        Objective,
        typer.Option(
            help="The weighting of a day against a km (solver/model/objective.py). The scale targets are set "
            "on km; balanced, the planner's default, shows the large path's current gap there."
        ),
    ] = "km",
    dump: Annotated[
        Path | None,
        typer.Option(help="Folder to write problem.json and plan.json into (schema in the docs)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on one line.")] = False,
) -> None:
    """Generate a seeded instance, solve it, validate the plan independently, report time and memory.

    Example: [bold]cosmolocal bench scale --orders 1000 --labs 200 --seed 1 --time-limit 10[/]
    """
    from scenarios.scale import synthetic_problem
    from solver.allocation.allocate import solve
    from solver.check import check
    from solver.model.problem import SolveParams

    console = Console(stderr=True)
    started = time.perf_counter()
    try:
        problem = synthetic_problem(orders, labs, seed)
    except ValueError as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    generated = time.perf_counter()
    params = SolveParams(
        time_limit_s=time_limit,
        workers=workers,
        seed=seed,
        deterministic=deterministic,
        time_weight=objective_weights(objective),
    )
    if decompose_above is not None:
        params = replace(params, decompose_above=decompose_above)
    with console.status(f"solving {orders} orders x {labs} labs ...", spinner="dots"):
        plan = solve(problem, params)
    solved = time.perf_counter()
    violations = check(problem, plan, params)
    checked = time.perf_counter()
    row = {
        "instance": f"scale-{orders}x{labs}-s{seed}",
        "objective": plan.objective,
        "bound": plan.bound,
        "bound_scope": plan.bound_scope,
        "best_known": None,
        "gap_pct": round(100.0 * plan.gap, 4),
        "seconds": round(solved - generated, 3),
        "feasible": not violations,
        "status": plan.status,
        "path": "relaxation" if len(problem.demands) > params.decompose_above else "relaxation + model",
        "units": sum(d.quantity for d in problem.demands),
        "units_short": sum(s.quantity for s in plan.shortages),
        "units_late": sum(a.late_units for a in plan.allocations),
        "generate_seconds": round(generated - started, 3),
        "check_seconds": round(checked - solved, 3),
        "deterministic": deterministic,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if dump is not None:
        write_dump(dump, problem, plan, params)
    if as_json:
        print(json.dumps(row))
    else:
        table = Table(title=f"synthetic instance {row['instance']}")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, value in row.items():
            table.add_row(key, str(value))
        Console().print(table)
        for line in violations[:10]:
            console.print(f"[red]violation:[/] {line}")
    raise typer.Exit(0 if not violations else 1)


def write_dump(folder: Path, problem: object, plan: object, params: object) -> None:
    """Write problem.json and plan.json (schema DUMP_SCHEMA) so anyone can check the plan on their own."""
    from solver.model.problem import Problem, SolveParams
    from solver.model.setup_cost import network_setup_cost

    assert isinstance(problem, Problem) and isinstance(params, SolveParams)
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "schema": DUMP_SCHEMA,
        "now": problem.now.isoformat(),
        "horizon": {
            "late_window_days": params.late_window_days,
            "max_horizon_days": params.max_horizon_days,
        },
        "designs": {k: d.model_dump(mode="json") for k, d in problem.designs.items()},
        "labs": [
            {
                "lab": s.lab.model_dump(mode="json"),
                "backlog_minutes": s.backlog_minutes,
                "stock": s.stock,
                "live": s.live,
            }
            for s in problem.labs
        ],
        "demands": [
            {"order": d.order.model_dump(mode="json"), "quantity": d.quantity} for d in problem.demands
        ],
        "weights": {
            "km_weight": params.km_weight,
            "setup_cost": network_setup_cost(problem, params.setup_cost)
            if params.scale_setup
            else params.setup_cost,  # as the solve charged it
            "shortage_penalty": params.shortage_penalty,
            "lateness_penalty": params.lateness_penalty,
            "time_weight": params.time_weight,
            "transport_kmh": params.transport_kmh,
            "handling_hours": params.handling_hours,
            "time_checkpoints_days": list(params.time_checkpoints_days),
        },
    }
    (folder / "problem.json").write_text(json.dumps(document, indent=1))
    (folder / "plan.json").write_text(plan.model_dump_json(indent=1))  # type: ignore[attr-defined]
