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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from planner.app import create_app
from tests.e2e.mesh import LabProcesses, lyon_lab

pytestmark = pytest.mark.e2e

LAB = lyon_lab(hours_per_day=24)
NEAR = {"lat": 45.78, "lon": 4.87, "place": "Villeurbanne"}  # 3 km: leaves about 1 h before due
FAR = {"lat": 48.86, "lon": 2.35, "place": "Paris"}  # 390 km: leaves about 7.5 h before due


@pytest.mark.timeout(120)
def test_the_lab_makes_the_job_that_must_leave_first_first(
    tmp_path: Path, lab_processes: LabProcesses
) -> None:
    with TestClient(create_app(lab_processes.planner_settings())) as client:
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

        lab_processes.join(LAB, "--rule-only")

        def job(order_id: str) -> dict[str, Any]:
            view = client.get(f"/orders/{order_id}").json()
            return next((a for a in view["allocations"] if a["state"] in ("accepted", "running")), {})

        def etas() -> tuple[datetime, datetime] | None:
            near, far = job(near_id), job(far_id)
            if not near.get("eta") or not far.get("eta"):
                return None
            return datetime.fromisoformat(near["eta"]), datetime.fromisoformat(far["eta"])

        lab_processes.wait_for(lambda: etas() is not None, 60, "the lab to accept both jobs")
        assert job(near_id)["on_time_units"] == 4 and job(far_id)["on_time_units"] == 4
        # The ETA of the job taken first moves when the other is scheduled before its waiting units.
        lab_processes.wait_for(
            lambda: (pair := etas()) is not None and pair[1] < pair[0],
            30,
            "the far order's units to be scheduled before the near order's",
        )

    # what the lab received, from its journal (it keeps every ASSIGN as it came)
    journal = json.loads((tmp_path / f"{LAB.id}.journal.json").read_text())["state"]
    sent = {entry["assign"]["order_id"]: entry["assign"] for entry in journal["jobs"]}
    assert sent[far_id]["road_hours"] == pytest.approx(1.0 + 390 / 60, abs=0.6)
    assert sent[near_id]["road_hours"] == pytest.approx(1.0, abs=0.1)
    assert sent[far_id]["on_time_units"] == 4
