"""End to end, a real planner and a real lab process: the lab works its jobs earliest leave-by first.

Two orders for the same lab: one due sooner next door, one due later but hours away by road. The
far one must leave first. The planner (in this process, real SQLite and ZeroMQ) sends each ASSIGN
with the road time and the plan's own dates; the lab (a `cosmolocal node join` process with
simulated machines at real speed, so nothing finishes during the test) schedules both, and its
ETAs, as the planner records them, show the far order's units made first. By due date alone (the
rule before) the near order would go first.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from planner.app import PlannerSettings, create_app
from protocol.model import Lab, Location, Machine
from scenarios.demo import _cli, _spawn, free_port_pair, wait_for, write_lab_file

pytestmark = pytest.mark.e2e

LAB = Lab(
    id="lab-lyon",
    name="Lab Lyon",
    location=Location(lat=45.76, lon=4.84, place="Lyon"),
    machines=[
        Machine(id="printer-1", processes=["fdm"], hours_per_day=24, tags={"bed_mm": 250}),
        Machine(id="bench-1", processes=["assembly"], hours_per_day=24),
    ],
    stock={"pla": 5.0},
)
NEAR = {"lat": 45.78, "lon": 4.87, "place": "Villeurbanne"}  # 3 km: leaves about 1 h before due
FAR = {"lat": 48.86, "lon": 2.35, "place": "Paris"}  # 390 km: leaves about 7.5 h before due


@pytest.fixture
def lab_process(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """Where the lab will connect, and its process once started (stopped at the end)."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        yield f"tcp://127.0.0.1:{free_port_pair()}", processes
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.timeout(120)
def test_the_lab_makes_the_job_that_must_leave_first_first(
    tmp_path: Path, lab_process: tuple[str, list[subprocess.Popen[bytes]]]
) -> None:
    endpoint, processes = lab_process
    settings = PlannerSettings(
        db_path=tmp_path / "planner.db",
        mesh_endpoint=endpoint,
        heartbeat_ms=300,
        solve_time_limit_s=1.0,
        solve_in_process=False,
    )
    with TestClient(create_app(settings)) as client:
        placed = []
        # Both orders wait for a lab: the one plan made when it joins sends both ASSIGNs at once.
        for hours, place in ((20, NEAR), (24, FAR)):
            answer = client.post(
                "/orders",
                json={
                    "design": "finger-splint",
                    "quantity": 4,
                    "priority": "routine",
                    "due_at": (datetime.now(UTC) + timedelta(hours=hours)).isoformat(),
                    "delivery": place,
                },
            )
            assert answer.status_code == 201, answer.text
            placed.append(answer.json()["id"])
        near_id, far_id = placed

        lab_file = tmp_path / "lab.toml"
        write_lab_file(LAB, lab_file)
        argv = [*_cli(), "node", "join", str(lab_file), "--planner", endpoint, "--insecure", "--rule-only"]
        processes.append(_spawn(argv, tmp_path / "lab.log"))

        def job(order_id: str) -> dict[str, Any]:
            view = client.get(f"/orders/{order_id}").json()
            return next((a for a in view["allocations"] if a["state"] in ("accepted", "running")), {})

        def etas() -> tuple[datetime, datetime] | None:
            near, far = job(near_id), job(far_id)
            if not near.get("eta") or not far.get("eta"):
                return None
            return datetime.fromisoformat(near["eta"]), datetime.fromisoformat(far["eta"])

        wait_for(lambda: etas() is not None, 60, "the lab to accept both jobs", processes, tmp_path)
        assert job(near_id)["on_time_units"] == 4 and job(far_id)["on_time_units"] == 4
        # The ETA of the job taken first moves when the other is scheduled before its waiting units.
        wait_for(
            lambda: (pair := etas()) is not None and pair[1] < pair[0],
            30,
            "the far order's units to be scheduled before the near order's",
            processes,
            tmp_path,
        )

    # what the lab received, from its journal (it keeps every ASSIGN as it came)
    journal = json.loads((tmp_path / "lab.journal.json").read_text())["state"]
    sent = {entry["assign"]["order_id"]: entry["assign"] for entry in journal["jobs"]}
    assert sent[far_id]["road_hours"] == pytest.approx(1.0 + 390 / 60, abs=0.6)
    assert sent[near_id]["road_hours"] == pytest.approx(1.0, abs=0.1)
    assert sent[far_id]["on_time_units"] == 4
