"""`--live`: the same scenario over a real planner and real lab processes (ZeroMQ, HTTP, SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.live import run_live
from scenarios.spec import load_scenario

pytestmark = pytest.mark.e2e


def test_tiny_scenario_runs_live_over_real_processes(tiny: Path) -> None:
    (metrics,) = run_live(load_scenario(tiny), speed=40_000.0, grace_s=20.0)
    assert metrics["policy"] == "cosmolocal-live"
    assert metrics["units_demanded"] > 0
    assert metrics["units_delivered"] > 0
    assert metrics["labs_used"] >= 1
    assert metrics["plans"] >= 1
