"""`cosmolocal bench gap`: published GAP instances through solver.gap.assignment,
beside plain CP-SAT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

#: Published optima of the instances in ../shared/benchmarks/gap (see its README).
KNOWN_OPTIMA: dict[str, float] = {
    "gap12#1": 1451,
    "gap12#2": 1449,
    "gap12#3": 1433,
    "gap12#4": 1447,
    "gap12#5": 1446,
    "d05100": 6353,
    "e05100": 12681,
    # Types D and E with 10 and 20 agents x 100 jobs (Yagiura's collection; optima from the literature),
    # used when their files are given (they are not in the shared folder).
    "d10100": 6347,
    "d20100": 6185,
    "e10100": 11577,
    "e20100": 8436,
}


def gap_pct(objective: float | None, reference: float | None, sense: str) -> float | None:
    """How far `objective` is from `reference`, in percent, worse counted positive."""
    if objective is None or reference is None or reference == 0:
        return None
    worse = objective - reference if sense == "min" else reference - objective
    return round(100.0 * worse / abs(reference), 4)


def parse_generate(text: str) -> tuple[str, int, int, int]:
    """`KIND:AGENTS:JOBS:SEED` (e.g. `d:20:100:7`) as (kind, agents, jobs, seed); ValueError says why."""
    parts = text.split(":")
    if len(parts) != 4 or parts[0] not in ("d", "e"):
        raise ValueError(f"--generate: expected KIND:AGENTS:JOBS:SEED with KIND d or e, got {text!r}")
    try:
        agents, jobs, seed = (int(p) for p in parts[1:])
    except ValueError:
        raise ValueError(f"--generate: AGENTS, JOBS and SEED must be integers, got {text!r}") from None
    if agents < 1 or jobs < 1:
        raise ValueError(f"--generate: AGENTS and JOBS must be positive, got {text!r}")
    return parts[0], agents, jobs, seed


def gap(
    file: Annotated[
        Path | None, typer.Argument(help="OR-Library gapN.txt (several instances) or a Yagiura file.")
    ] = None,
    generate: Annotated[
        list[str] | None,
        typer.Option(
            help="Instead of FILE: draw a type D or E instance as the published generators do, "
            "KIND:AGENTS:JOBS:SEED (e.g. d:20:100:7); repeatable. Its optimum is unknown: the gap is "
            "then to the best bound of the two solvers (bound_gap_pct)."
        ),
    ] = None,
    best_known: Annotated[
        float | None, typer.Option(help="Best-known objective (single-instance files) [default: table].")
    ] = None,
    time_limit: Annotated[float, typer.Option(min=0.1, help="Seconds per instance, per solver.")] = 10.0,
    workers: Annotated[int, typer.Option(min=1, help="CP-SAT workers (both solvers).")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed of both solvers.")] = 0,
    deterministic: Annotated[
        bool,
        typer.Option(
            help="Budgets in CP-SAT's deterministic time, so a second run gives the same answers on any "
            "machine (the time limit still caps each solve); --no-deterministic spends wall-clock time."
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per instance per line.")] = False,
) -> None:
    """Solve each GAP instance with solver.gap.assignment's solver and with plain CP-SAT, side by side.

    Prints objective, bound, gap to best-known, gap to the bound, seconds and feasibility (recomputed
    from the file). Example: [bold]cosmolocal bench gap ../shared/benchmarks/gap/d05100 --time-limit 10[/]
    or [bold]cosmolocal bench gap --generate d:20:100:1 --generate e:10:100:1[/]
    """
    from solver.gap.assignment import (
        GapFormatError,
        evaluate,
        read_gap_file,
        solve_gap,
        solve_textbook,
    )
    from solver.gap.assignment import generate as generate_instance
    from solver.gap.exchange import compile_ahead

    console = Console(stderr=True)
    if (file is None) == (not generate):
        console.print("[red]error:[/] give either FILE or --generate (one or more), not both nor neither")
        raise typer.Exit(2)
    try:
        if file is not None:
            instances = read_gap_file(file)
        else:
            instances = [generate_instance(*parse_generate(text)) for text in generate or []]  # type: ignore[arg-type]
    except (GapFormatError, ValueError) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    label = file.name if file is not None else "generated"
    if best_known is not None and len(instances) != 1:
        console.print(
            f"[red]error:[/] --best-known needs a single-instance file; {file} holds {len(instances)}"
        )
        raise typer.Exit(2)
    table = Table(
        title=f"GAP {label}: solver.gap.assignment vs plain CP-SAT, {time_limit:g} s, {workers} workers"
    )
    for column in (
        "instance",
        "sense",
        "solver.gap.assignment",
        "bound",
        "best known",
        "gap %",
        "bound gap %",
        "s",
        "feasible",
        "plain CP-SAT",
        "plain gap %",
    ):
        table.add_column(column, justify="right")
    compile_ahead()  # once per machine, then read from the cache: the clock times the search only
    for instance in instances:
        reference = best_known if best_known is not None else KNOWN_OPTIMA.get(instance.name)
        if not as_json:
            console.print(f"solving {instance.name} ({instance.agents} x {instance.jobs}) ...")
        core = solve_gap(instance, time_limit, workers, seed, deterministic)
        plain = solve_textbook(instance, time_limit, workers, seed, deterministic)
        problems = evaluate(instance, core.agent_of)[1] if core.agent_of is not None else ["no solution"]
        bounds = [b for b in (core.bound, plain.bound) if b is not None]
        bound = (max(bounds) if instance.sense == "min" else min(bounds)) if bounds else None
        row = {
            "instance": instance.name,
            "objective": core.objective,
            "bound": core.bound,
            "best_known": reference,
            "gap_pct": gap_pct(core.objective, reference, instance.sense),
            "bound_gap_pct": gap_pct(core.objective, bound, instance.sense),
            "seconds": round(core.seconds, 3),
            "feasible": not problems,
            "baseline_objective": plain.objective,
            "baseline_gap_pct": gap_pct(plain.objective, reference, instance.sense),
            "baseline_bound_gap_pct": gap_pct(plain.objective, bound, instance.sense),
            "sense": instance.sense,
            "status": core.status,
        }
        if as_json:
            print(json.dumps(row), flush=True)
            continue
        table.add_row(
            instance.name,
            instance.sense,
            _num(core.objective),
            _num(core.bound),
            _num(reference),
            _num(row["gap_pct"]),
            _num(row["bound_gap_pct"]),
            f"{core.seconds:.2f}",
            "yes" if not problems else "NO: " + "; ".join(problems[:2]),
            _num(plain.objective),
            _num(row["baseline_gap_pct"]),
        )
    if not as_json:
        Console().print(table)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
