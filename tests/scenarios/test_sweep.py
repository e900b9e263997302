"""Sweeps over seeds: the same metrics wherever the replays run, the spread, and the command's errors."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cosmolocal.cli import app
from scenarios.fanout import open_executor
from scenarios.metrics import BETTER, WALL_TIME_KEYS
from scenarios.run import run_scenario
from scenarios.spec import load_scenario
from scenarios.sweep import SweepResult, metric_spread, parse_seeds, sweep

runner = CliRunner()
SEEDS = [1, 2]


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the keys that measure the machine (solve seconds)."""
    return [{k: v for k, v in row.items() if k not in WALL_TIME_KEYS} for row in rows]


def _reference_rows(path: Path, seeds: list[int], policies: list[str] | None = None) -> list[dict[str, Any]]:
    """The metrics of the same replays run one after another in this process, seeds in order."""
    rows = []
    for seed in seeds:
        rows.extend(run_scenario(load_scenario(path, seed), policies).metrics)
    return rows


@pytest.fixture(scope="module")
def dask_scheduler() -> Iterator[str]:
    """An existing Dask scheduler on loopback TCP with 2 workers (threads of this process, to stay light)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
    ) as cluster:
        yield cluster.scheduler_address


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("1-5", [1, 2, 3, 4, 5]), ("7", [7]), ("0-2, 9,1-3", [0, 1, 2, 3, 9]), ("4-4", [4])],
)
def test_seed_ranges_parse(text: str, seeds: list[int]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("20-1", "runs backwards"),
        ("", "no seeds given"),
        ("1-x", "not a seed or a range"),
        ("1..5", "not a seed or a range"),
        ("1,,3", "not a seed or a range"),
        ("-3", "not a seed or a range"),
        ("0-20001", "more than 10,000 seeds"),
    ],
)
def test_bad_seed_ranges_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_seeds(text)


def test_the_spread_names_the_worst_seed_by_the_metrics_direction() -> None:
    fill = metric_spread({1: 0.9, 2: 0.7, 3: 1.0, 4: 0.7}, "higher")
    assert (fill["min"], fill["median"], fill["max"], fill["worst_seed"]) == (0.7, 0.8, 1.0, 2)
    lead = metric_spread({1: 30.0, 2: 12.0, 3: 41.5}, "lower")
    assert (lead["min"], lead["median"], lead["max"], lead["worst_seed"]) == (12.0, 30.0, 41.5, 3)
    assert metric_spread({1: 5, 2: 9}, None)["worst_seed"] is None  # no better direction
    assert metric_spread({1: 1.0, 2: 1.0}, "higher")["worst_seed"] is None  # every seed alike
    empty = metric_spread({1: None, 2: 4.0}, "lower")
    assert empty["missing"] == 1 and empty["min"] == empty["max"] == 4.0


def test_every_numeric_metric_has_a_direction_for_the_worst_seed(tiny: Path) -> None:
    metrics = run_scenario(load_scenario(tiny), ["cosmolocal"]).metrics[0]
    numeric = {k for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    constants = {"seed", "co2_factor_kg_per_tonne_km"}  # the sweep's own key, and one stated factor
    assert numeric - constants == set(BETTER), "a new metric needs its direction in metrics.BETTER"


def test_a_process_pool_and_a_dask_cluster_give_the_same_metrics_as_a_plain_loop(tiny: Path) -> None:
    pytest.importorskip("distributed")
    loaded = load_scenario(tiny)
    with open_executor("process", 2) as pool:
        on_pool = sweep(loaded, SEEDS, pool)
    with open_executor("dask", 2, dask_processes=False) as cluster:
        on_dask = sweep(loaded, SEEDS, cluster)
    reference = _comparable(_reference_rows(tiny, SEEDS))
    assert _comparable(on_pool.rows) == reference
    assert _comparable(on_dask.rows) == reference
    assert [(r["seed"], r["policy"]) for r in on_dask.rows] == [
        (seed, policy) for seed in SEEDS for policy in loaded.scenario.policies
    ]
    by_seed = {seed: [r for r in reference if r["seed"] == seed] for seed in SEEDS}
    assert by_seed[1] != [{**r, "seed": 1} for r in by_seed[2]], "the seeds must draw different worlds"


def test_sweep_json_over_an_existing_scheduler_gives_the_spread_of_the_plain_loop(
    tiny: Path, dask_scheduler: str
) -> None:
    flags = ["--executor", dask_scheduler, "--json", "--policy", "cosmolocal", "--policy", "board"]
    result = runner.invoke(
        app, ["scenario", "sweep", str(tiny), "--seeds", "1-2", *flags, "--objective", "km"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["policy"] for line in lines] == ["cosmolocal", "board"]
    chosen = load_scenario(tiny).variant(objective="km")
    reference = []
    for seed in SEEDS:
        reference.extend(run_scenario(chosen.variant(seed=seed), ["cosmolocal", "board"]).metrics)
    expected = SweepResult("tiny", SEEDS, ["cosmolocal", "board"], reference, 0.0).spread()
    for line, want in zip(lines, expected, strict=True):
        assert line["seeds"] == SEEDS
        for key in WALL_TIME_KEYS:
            del line["metrics"][key], want["metrics"][key]
        assert line == want


def test_scenario_run_fans_its_policies_out_with_the_same_metrics(tiny: Path, dask_scheduler: str) -> None:
    result = runner.invoke(
        app, ["scenario", "run", str(tiny), "--seed", "3", "--executor", dask_scheduler, "--json"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert _comparable(lines) == _comparable(_reference_rows(tiny, [3]))


def test_sweep_table_on_the_default_process_pool(tiny: Path) -> None:
    result = runner.invoke(
        app, ["scenario", "sweep", str(tiny), "--seeds", "1-2", "--policy", "board", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "board, seeds 1-2" in result.stdout and "worst seed" in result.stdout
    assert "2 replays (2 seeds × 1 policies)" in result.stdout and "on process" in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--seeds", "9-3"], ["--seeds '9-3'", "runs backwards"]),
        (["--seeds", "one"], ["--seeds 'one'", "not a seed"]),
        (["--seeds", "1-2", "--executor", "ray"], ["--executor 'ray'", "unknown executor"]),
        (["--seeds", "1-2", "--executor", "tcp://127.0.0.1:8786", "--workers", "2"], ["--workers"]),
        (["--seeds", "1-2", "--policy", "cheapest"], ["unknown policies cheapest"]),
    ],
)
def test_bad_sweep_flags_exit_2_naming_the_flag(tiny: Path, args: list[str], words: list[str]) -> None:
    result = runner.invoke(app, ["scenario", "sweep", str(tiny), *args])
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.output


def test_an_unreachable_scheduler_exits_2_naming_the_flag(tiny: Path) -> None:
    pytest.importorskip("distributed")
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{closed.getsockname()[1]}"
        result = runner.invoke(app, ["scenario", "sweep", str(tiny), "--seeds", "1", "--executor", address])
    assert result.exit_code == 2, result.output
    assert f"--executor {address}" in result.stderr and "no Dask scheduler answered" in result.stderr
    assert "Traceback" not in result.output


def test_sweep_on_a_local_dask_cluster_of_worker_processes(tiny: Path) -> None:
    pytest.importorskip("distributed")
    flags = ["--policy", "board", "--executor", "dask", "--workers", "1", "--json"]
    result = runner.invoke(app, ["scenario", "sweep", str(tiny), "--seeds", "2", *flags])
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(text) for text in result.stdout.splitlines()]
    (reference,) = _reference_rows(tiny, [2], ["board"])
    assert line["policy"] == "board" and line["seeds"] == [2]
    assert all(line["metrics"][key]["min"] == reference[key] for key in ("km_per_unit", "units_delivered"))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--workers", "2"], ["--workers", "only with --executor"]),
        (["--live", "--executor", "process"], ["--executor", "--live"]),
        (["--executor", "tcp://127.0.0.1"], ["--executor 'tcp://127.0.0.1'", "tcp://HOST:PORT"]),
    ],
)
def test_scenario_run_executor_flags_that_do_not_fit_exit_2(
    tiny: Path, args: list[str], words: list[str]
) -> None:
    result = runner.invoke(app, ["scenario", "run", str(tiny), *args])
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.stderr
