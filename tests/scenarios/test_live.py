"""`--live`: the same scenario over a real planner and real lab processes (ZeroMQ, HTTP, SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.live import run_live
from scenarios.spec import load_scenario
from tests.scenarios.conftest import write_scenario

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
    (metrics,) = run_live(load_scenario(write_scenario(tmp_path, DISRUPTED)), speed=40_000.0, grace_s=10.0)
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


SHORT_OF_PLA = (
    "\n".join(
        f'[[disruptions]]\nkind = "stock_out"\nmaterial = "pla"\nday = 0\nlabs = ["{lab}"]\n'
        for lab in ("north-lab", "south-lab")
    )
    + """
[[demand]]
design = "finger-splint"
kind = "rate"
units_per_day = 80
until_day = 3
due_days = 2
at = { source = "list", points = [{ place = "North hospital", lat = 45.81, lon = 4.86 }] }
"""
)


def test_live_planner_ships_material_to_idle_printers(tmp_path: Path) -> None:
    # The labs near the hospitals lose their PLA for good; the far lab (89 km) keeps its own, and
    # demand is more than its printers make alone: as in the simulated replay
    # (tests/scenarios/test_sim.py), the plan ships PLA, here over the mesh (SHIP, INCOMING, ARRIVED).
    path = write_scenario(tmp_path, "\n" + SHORT_OF_PLA)
    (metrics,) = run_live(load_scenario(path), speed=20_000.0, grace_s=10.0, keep=tmp_path / "kept")
    assert metrics["transfers"] >= 1, metrics
    assert 1 <= metrics["transfers_arrived"] <= metrics["transfers"]
    assert metrics["transfer_km"] >= 80.0 * metrics["transfers"]  # every parcel comes from the far lab
    assert metrics["transfer_tonne_km"] > 0
    assert metrics["transport_tonne_km"] > metrics["transfer_tonne_km"]
    kept = tmp_path / "kept"
    assert (kept / "planner.db").exists() and (kept / "far-lab.log").exists()
    assert "shipped t" in (kept / "far-lab.log").read_text(encoding="utf-8")
    # The scenario's radius reaches the live planner: with 0 it ships nothing.
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "solve_seconds = 2.0", "solve_seconds = 2.0\ntransfer_radius_km = 0"
        ),
        encoding="utf-8",
    )
    (alone,) = run_live(load_scenario(path), speed=20_000.0, grace_s=10.0)
    assert alone["transfers"] == 0 and alone["transfers_refused"] == 0
