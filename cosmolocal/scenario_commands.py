"""`cosmolocal scenario ...`: list the built-in scenarios, run one (or a file) against the baselines."""

from __future__ import annotations

import json
import tomllib
from concurrent.futures import Executor
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cosmolocal.console import err, fail, out, stdout_to_stderr
from cosmolocal.executor_options import WorkersOption, checked_choice, cli_executor
from cosmolocal.scenario_sweep import sweep_command
from scenarios.live import DEFAULT_SPEED, LIGHT_UNITS_PER_DAY, MIN_DEFAULT_SPEED
from scenarios.spec import LoadedScenario, ScenarioError, builtin_scenarios, find_scenario, load_scenario
from solver.model.objective import Objective

if TYPE_CHECKING:
    from scenarios.run import ScenarioResult

scenario_app = typer.Typer(
    name="scenario",
    help="Replay real situations (built-in or from a TOML file) and compare Cosmolocal with baselines.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
scenario_app.command("sweep")(sweep_command)


@scenario_app.command("list")
def list_scenarios() -> None:
    """The built-in scenarios, with their titles."""
    table = Table("name", "title", "days", title="built-in scenarios")
    for name, path in builtin_scenarios().items():
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        table.add_row(name, raw.get("title", ""), f"{raw.get('days', '')}")
    out.print(table)


@scenario_app.command("run")
def run(
    scenario: Annotated[str, typer.Argument(help="A built-in scenario name or a scenario TOML file.")],
    seed: Annotated[
        int | None, typer.Option(help="Seed of every random choice [default: the file's].")
    ] = None,
    country: Annotated[
        str | None,
        typer.Option(
            help="Replay the same situation in another country (ISO code such as DE): labs and delivery "
            "points drawn from cities are drawn from its cities [default: the file's]."
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write a self-contained HTML report (opens offline) to this file.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the metrics per policy, one JSON object per line.")
    ] = False,
    policy: Annotated[
        list[str] | None, typer.Option(help="Run only this policy (repeatable) [default: the file's list].")
    ] = None,
    live: Annotated[
        bool,
        typer.Option("--live", help="Run over real processes and the real mesh instead of simulated time."),
    ] = False,
    speed: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            help=f"--live: how many times faster than real time \\[default: from the scenario's size, "
            f"{DEFAULT_SPEED:,.0f}x up to {LIGHT_UNITS_PER_DAY:,.0f} units demanded a day, halved for each "
            f"doubling beyond, at least {MIN_DEFAULT_SPEED:,.0f}x, so that the planner's largest solve stays "
            "small against the simulated day; see docs/live-vs-sim.md].",
        ),
    ] = None,
    keep: Annotated[
        Path | None,
        typer.Option(help="--live: copy the mesh's logs and the planner's ledger to this folder."),
    ] = None,
    trade: Annotated[
        bool,
        typer.Option(
            "--trade",
            help="Also replay Cosmolocal under 5 weightings of a day against a km (in parallel) and "
            "chart km per unit against the on-time share in the report; with --json, one line each.",
        ),
    ] = False,
    objective: Annotated[
        Objective | None,
        typer.Option(
            help="What Cosmolocal weighs: on-time (a day sooner is worth 100-1,000 km), balanced "
            "(25 km for routine work, as on-time for urgent) or km (distance only; due dates still "
            "count) [default: the file's, else "
            "balanced]."
        ),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor",
            help="Replay the policies (and --trade's weightings) side by side on: process (a local "
            "process pool), dask (a Dask LocalCluster here) or tcp://HOST:PORT (an existing Dask "
            "scheduler) \\[default: the policies one after another here, with a bar per round; --trade "
            "on a process pool]. Dask needs: pip install 'cosmolocal\\[dask]'.",
        ),
    ] = None,
    workers: WorkersOption = None,
    forecast_days: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=30.0,
            help="Days ahead in which Cosmolocal plans the orders the scenario's known rates will "
            "bring (0: only the orders placed) [default: the file's].",
        ),
    ] = None,
    bid_prices: Annotated[
        bool | None,
        typer.Option(
            "--bid-prices/--no-bid-prices",
            help="Price each lab's minutes against what the known rates will release within a lead "
            "time, where the labs near it are short (solver.large.bid_prices) [default: the file's, on].",
        ),
    ] = None,
) -> None:
    """Replay a scenario under Cosmolocal and the baselines, side by side; print the metrics.

    Examples:

      [bold]cosmolocal scenario run visor-surge-fr --report visors.html[/]
      [bold]cosmolocal scenario run my-city.toml --seed 3 --json[/]

    Exits 2 on a bad scenario file, naming the file, the field and the reason.
    """
    choice = None if executor is None else checked_choice(executor, workers)
    if choice is None and workers is not None:
        fail("--workers: applies only with --executor (the replays run one after another without it)")
    try:
        loaded = load_scenario(find_scenario(scenario), seed).variant(objective=objective, country=country)
    except ScenarioError as exc:
        fail(str(exc))
    if live and choice is not None:
        fail("--executor: --live runs one live mesh of real processes; it does not fan out")
    if not live and (speed is not None or keep is not None):
        fail(f"{'--speed' if speed is not None else '--keep'}: applies only with --live")
    if forecast_days is not None:
        loaded = loaded.model_copy(
            update={"scenario": loaded.scenario.model_copy(update={"forecast_days": forecast_days})}
        )
    if bid_prices is not None:
        loaded = loaded.model_copy(
            update={"scenario": loaded.scenario.model_copy(update={"bid_prices": bid_prices})}
        )
    if live:
        from scenarios.live import run_live

        try:
            with stdout_to_stderr(as_json):
                metrics = run_live(loaded, speed=speed, console=err if as_json else out, keep=keep)
        except ScenarioError as exc:
            fail(str(exc))
        _print(metrics, as_json, loaded.scenario.title)
        return
    try:
        with ExitStack() as stack:
            stack.enter_context(stdout_to_stderr(as_json))  # worker processes inherit it too
            engine = None if choice is None else stack.enter_context(cli_executor(choice, workers))
            result = _replay(loaded, policy, as_json, engine)
            if trade:
                from scenarios.trade import trade_off

                with err.status("replaying Cosmolocal under 5 weightings of time against km..."):
                    result.trade = trade_off(loaded, executor=engine)
    except ScenarioError as exc:
        fail(str(exc))
    _print(result.metrics, as_json, loaded.scenario.title)
    for note in result.world.notes:  # what the draw changed or passed over, on stderr either way
        err.print(f"[yellow]note[/] {note}", highlight=False)
    if trade and as_json:
        for row in result.trade:
            line = {"scenario": loaded.scenario.name, "policy": "cosmolocal-trade", **row}
            print(json.dumps(line, sort_keys=True))
    elif trade:
        table = Table(
            "time weight ×", "fill", "on time", "km per unit", "lead time (h)", title="km against days"
        )
        for row in result.trade:
            table.add_row(
                f"{row['time_weight_scale']:g}",
                f"{row['fill_rate']:.1%}",
                f"{row['on_time_rate']:.1%}",
                f"{row['km_per_unit']:,.1f}",
                f"{row['lead_time_mean_h']:,.1f}",
            )
        out.print(table)
    if not as_json:
        out.print(f"[dim]{result.metrics[0]['co2_source']}[/]", highlight=False)
        out.print(f"replayed in {result.wall_seconds:.1f} s", highlight=False)
    if report is not None:
        from scenarios.report import write_report

        try:
            write_report(result, report)
        except OSError as exc:
            fail(f"{report}: cannot write the report: {exc.strerror or exc}")
        (err if as_json else out).print(f"[bold green]report[/] written to {report}", highlight=False)


def _replay(
    loaded: LoadedScenario, policies: list[str] | None, as_json: bool, engine: Executor | None
) -> ScenarioResult:
    """Every policy's replay, with a progress bar per policy (per round when they run here)."""
    from scenarios.run import run_scenario

    with Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rounds"),
        TimeElapsedColumn(),
        console=err,
        transient=as_json,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done)

        return run_scenario(loaded, policies, progress=advance, executor=engine)


def _print(metrics: list[dict[str, object]], as_json: bool, title: str) -> None:
    if as_json:
        for line in metrics:
            print(json.dumps(line, sort_keys=True))
        return
    table = Table("metric", *[str(m["policy"]) for m in metrics], title=title)
    from scenarios.report import METRIC_ROWS, format_metric

    for key, label, pattern in METRIC_ROWS:
        table.add_row(label, *[format_metric(m.get(key), pattern) for m in metrics])
    out.print(table)
