"""`cosmolocal scenario sweep`: one scenario over many seeds, every policy, the spread of each metric."""

from __future__ import annotations

import json
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cosmolocal.console import err, fail, out, stdout_to_stderr
from cosmolocal.executor_options import ExecutorOption, WorkersOption, checked_choice, cli_executor
from scenarios.spec import LoadedScenario, ScenarioError, find_scenario, load_scenario
from solver.model.objective import Objective

if TYPE_CHECKING:
    from scenarios.run import Replay
    from scenarios.sweep import SweepResult


def sweep_command(
    scenario: Annotated[str, typer.Argument(help="A built-in scenario name or a scenario TOML file.")],
    seeds: Annotated[
        str,
        typer.Option(help="Seeds to replay: a range 1-20, a list 1,4,9, or both (1-5,9). Required."),
    ],
    objective: Annotated[
        Objective | None,
        typer.Option(help="What Cosmolocal weighs: on-time, balanced or km \\[default: the file's]."),
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(help="Sweep only this policy (repeatable) \\[default: the file's list]."),
    ] = None,
    executor: ExecutorOption = "process",
    workers: WorkersOption = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON object per policy: min, median, max and worst seed per metric."
        ),
    ] = False,
) -> None:
    """Replay a scenario for every seed under every policy, and show how each metric spreads.

    Each (seed, policy) replay is an independent task, run on a process pool or a Dask cluster.

    Per policy and metric: the minimum, the median, the maximum, and the worst seed to replay alone.

    Examples:

      [bold]cosmolocal scenario sweep visor-surge-fr --seeds 1-20[/]
      [bold]cosmolocal scenario sweep my-city.toml --seeds 1-8 --executor dask --json[/]
      [bold]cosmolocal scenario sweep churn --seeds 1-50 --executor tcp://10.0.0.5:8786[/]

    Exits 2 on bad seeds, a bad scenario file, or an executor that cannot start, naming the flag.
    """
    from scenarios.sweep import parse_seeds, sweep_policies

    try:
        seed_list = parse_seeds(seeds)
    except ValueError as exc:
        fail(f"--seeds {seeds!r}: {exc}")
    choice = checked_choice(executor, workers)
    try:
        loaded = load_scenario(find_scenario(scenario)).variant(objective=objective)
        names = sweep_policies(loaded, policy)
    except ScenarioError as exc:
        fail(str(exc))
    try:
        with stdout_to_stderr(as_json), cli_executor(choice, workers) as engine:  # workers inherit fd 1
            result = _sweep_with_bar(loaded, seed_list, names, engine, as_json)
    except ScenarioError as exc:
        fail(str(exc))
    summaries = result.spread()
    if as_json:
        for summary in summaries:
            print(json.dumps(summary, sort_keys=True))
        return
    for summary in summaries:
        out.print(_spread_table(summary, f"{loaded.scenario.title} — {summary['policy']}, seeds {seeds}"))
    out.print(
        f"{len(result.rows)} replays ({len(seed_list)} seeds × {len(names)} policies) in "
        f"{result.wall_seconds:.1f} s on {choice.address or choice.kind}",
        highlight=False,
    )


def _sweep_with_bar(
    loaded: LoadedScenario, seeds: list[int], names: list[str], engine: Executor, as_json: bool
) -> SweepResult:
    """The sweep, with one bar over all its replays naming the last one back."""
    from scenarios.sweep import sweep

    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("replays"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=as_json,
    ) as progress:
        bar = progress.add_task(f"{len(seeds)} seeds × {len(names)} policies", total=len(seeds) * len(names))

        def done(task: Replay, _metrics: dict[str, Any]) -> None:
            progress.update(bar, advance=1, description=f"seed {task.loaded.scenario.seed} {task.policy}")

        return sweep(loaded, seeds, engine, names, on_done=done)


def _spread_table(summary: dict[str, Any], title: str) -> Table:
    from scenarios.report import METRIC_ROWS, format_metric

    table = Table("metric", "min", "median", "max", "worst seed", title=title)
    for key, label, pattern in METRIC_ROWS:
        spread = summary["metrics"][key]
        worst = spread["worst_seed"]
        table.add_row(
            label,
            format_metric(spread["min"], pattern),
            format_metric(spread["median"], pattern),
            format_metric(spread["max"], pattern),
            "-" if worst is None else str(worst),
        )
    return table
