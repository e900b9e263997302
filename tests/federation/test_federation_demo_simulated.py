"""`cosmolocal federation demo --simulated-labs --json`: each region's labs in one process, the figures.

The planners are real processes as in the plain demo; each region's labs are real DEALER sockets with
their own admitted keys, run many to a worker process. The run's JSON is checked against itself and
against what the planners' ledgers hold.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cosmolocal.cli import app

pytestmark = pytest.mark.e2e
REGIONS = ("lombardy", "rhone-alpes", "switzerland")
LABS, ORDERS = 12, 20


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    workdir = tmp_path_factory.mktemp("federation-demo-simulated")
    command = [
        sys.executable, "-m", "cosmolocal", "federation", "demo", "--simulated-labs", "--json",
        "--labs", str(LABS), "--orders", str(ORDERS), "--speed", "40000", "--timeout", "240",
        "--workdir", str(workdir),
    ]  # fmt: skip
    env = os.environ | {"COLUMNS": "160"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=320, env=env)
    return result, workdir


def _figures(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(360)
def test_every_region_delivers_what_it_ordered_with_work_moved_out_of_the_surge(run) -> None:
    result, _ = run
    figures = _figures(result)
    assert figures["ok"] and figures["settled"]
    assert figures["simulated_labs"] and figures["labs_per_region"] == LABS
    assert set(figures["phases"]) == {"start_s", "orders_s", "own_plans_s", "rounds_s", "settle_s"}
    assert 0 < figures["rounds_committed"] <= figures["rounds"] <= 10
    for region in REGIONS:
        delivered = figures["delivered"][region]
        assert delivered["orders"] == delivered["orders_done"] == ORDERS, (region, delivered)
        assert delivered["units_made"] == delivered["units_ordered"], (region, delivered)
    flows = figures["flows"]
    assert flows and all(f["units_done"] == f["units"] for f in flows), flows
    assert figures["units_made_for_peers"] == figures["units_leased"] > 0
    made_abroad = sum(figures["delivered"][r]["made_abroad"] for r in REGIONS)
    made_for_peers = sum(figures["delivered"][r]["made_for_peers"] for r in REGIONS)
    assert made_abroad == made_for_peers == figures["units_leased"]
    assert figures["delivered"]["lombardy"]["made_abroad"] > 0, "the surge got nothing from its peers"


def test_the_simulated_labs_joined_each_planner_with_their_own_keys(run) -> None:
    _, workdir = run
    for region in REGIONS:
        admitted = sorted(p.stem for p in (workdir / region / "keys" / "admitted").glob("*.key"))
        assert len(admitted) == LABS, (region, admitted)
        with sqlite3.connect(workdir / region / "planner.db") as db:
            labs = {lab for (lab,) in db.execute("SELECT DISTINCT lab_id FROM assignments")}
        assert labs and labs <= set(admitted), (region, labs)


def test_more_than_a_handful_of_lab_processes_asks_for_simulated_labs() -> None:
    result = CliRunner().invoke(app, ["federation", "demo", "--labs", "50"])
    assert result.exit_code == 2
    assert "--labs" in result.output and "--simulated-labs" in result.output
    result = CliRunner().invoke(app, ["federation", "demo", "--orders", "500"])
    assert result.exit_code == 2
    assert "--orders" in result.output and "--simulated-labs" in result.output
