"""`--live`: the same scenario over a real planner and real lab processes (ZeroMQ, HTTP, SQLite)."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rich.console import Console

from scenarios.live import run_live
from scenarios.spec import load_scenario
from scenarios.world import build_world
from tests.scenarios.conftest import TINY, write_scenario

pytestmark = pytest.mark.e2e

DISRUPTED = """
[[disruptions]]
kind = "machine_down"
process = "fdm"
day = 1
until_day = 2
labs = ["north-lab"]

[[disruptions]]
kind = "stock_out"
material = "pla"
day = 1.5
until_day = 2.5
labs = ["south-lab"]
"""


def test_tiny_scenario_runs_live_with_supply_and_disruptions(tmp_path: Path) -> None:
    loaded = load_scenario(write_scenario(tmp_path, DISRUPTED))
    (metrics,) = run_live(loaded, speed=40_000.0, grace_s=10.0, keep=tmp_path / "kept")
    assert metrics["policy"] == "cosmolocal-live"
    assert metrics["units_demanded"] > 0
    assert 0 < metrics["units_on_time"] <= metrics["units_delivered"] <= metrics["units_demanded"]
    assert metrics["on_time_rate"] == round(metrics["units_on_time"] / metrics["units_demanded"], 4)
    assert 0 < metrics["lead_time_mean_h"] <= metrics["lead_time_p95_h"]
    assert metrics["labs_used"] >= 1 and metrics["plans"] >= 1
    hours = metrics["solve_seconds_max"] * 40_000.0 / 3600.0
    assert metrics["solve_sim_hours_max"] == pytest.approx(hours, abs=0.02)
    # 8 rounds of pla to 3 labs, but none to south-lab in the 2 rounds of its stock-out; a machine
    # down and back, a stock-out: every request answered
    assert metrics["control_requests"] == 8 * 3 - 2 + 3 and metrics["control_unanswered"] == 0
    assert {"lab_stalls", "lab_holds", "labs_lost", "labs_left"} <= set(metrics)
    # the planner was told the scenario's rates, one per delivery point, to plan for and not release
    with sqlite3.connect(tmp_path / "kept" / "planner.db") as db:
        rates = [json.loads(record) for (record,) in db.execute("SELECT record FROM rates")]
        released = db.execute("SELECT count(*) FROM orders WHERE id LIKE 'r-%'").fetchone()[0]
    points = sum(len(stream.points) for stream in build_world(loaded).streams)
    assert len(rates) == points > 0 and not any(rate["release"] for rate in rates) and released == 0


#: The simulated transfer test's world (tests/scenarios/test_sim.py) made smaller: the lab by the
#: hospitals loses its PLA for good, the far lab (89 km) keeps its own, and demand is more than the far
#: lab's printers make alone; one day of orders, due the next. A day is enough for a parcel to leave,
#: arrive and be used, and two labs start quickly: the replays here take a few seconds each.
SHORT_OF_PLA = (
    TINY.replace("days = 4", "days = 1")
    .replace("due_days = 2", "due_days = 1")
    .replace('  { place = "South lab", lat = 45.70, lon = 4.85 },\n', "")
    + """
[[disruptions]]
kind = "stock_out"
material = "pla"
day = 0
labs = ["north-lab"]

[[demand]]
design = "finger-splint"
kind = "rate"
units_per_day = 80
until_day = 1
due_days = 1
at = { source = "list", points = [{ place = "North hospital", lat = 45.81, lon = 4.86 }] }
"""
)


def test_live_planner_ships_material_to_idle_printers(tmp_path: Path) -> None:
    # As in the simulated replay, the plan ships PLA from the far lab, here over the mesh (SHIP,
    # INCOMING, ARRIVED), and the parcels arrive. The scenario's radius reaches the live planner:
    # with 0 the same world ships nothing. The two meshes run side by side (most of a replay is
    # waiting for the compressed clock), each with its own ports, folder and console.
    shipping = tmp_path / "short-of-pla.toml"
    shipping.write_text(SHORT_OF_PLA, encoding="utf-8")
    alone_path = tmp_path / "no-radius.toml"
    alone_path.write_text(
        SHORT_OF_PLA.replace("solve_seconds = 2.0", "solve_seconds = 2.0\ntransfer_radius_km = 0"),
        encoding="utf-8",
    )
    assert load_scenario(alone_path).scenario.transfer_radius_km == 0
    kept = tmp_path / "kept"
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(run_live, load_scenario(shipping), 20_000.0, Console(quiet=True), 5.0, kept)
        second = pool.submit(run_live, load_scenario(alone_path), 20_000.0, Console(quiet=True), 5.0)
        ((metrics,), (alone,)) = first.result(), second.result()
    assert metrics["transfers"] >= 1, metrics
    assert 1 <= metrics["transfers_arrived"] <= metrics["transfers"]
    assert metrics["transfer_km"] >= 80.0 * metrics["transfers"]  # every parcel comes from the far lab
    assert metrics["transfer_tonne_km"] > 0
    assert metrics["transport_tonne_km"] > metrics["transfer_tonne_km"]
    assert (kept / "planner.db").exists() and (kept / "far-lab.log").exists()
    assert "shipped t" in (kept / "far-lab.log").read_text(encoding="utf-8")
    assert alone["transfers"] == 0 and alone["transfers_refused"] == 0, alone
    assert alone["units_delivered"] >= 1  # the mesh ran and made units; it only shipped no material
