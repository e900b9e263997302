"""End to end, plan against reality: a real planner and a real lab process; the lab reports its units
after their due date, and the API and the pages show them as planned on time, arrived late, and why.

The planner runs in this process on real SQLite and real ZeroMQ sockets, with a clock the test moves
(three days pass in an instant); the lab is a real `cosmolocal node join --by-hand` process whose
operator reports the units made through the planner's HTTP API, as in tests/e2e/test_by_hand_e2e.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from planner.app import create_app
from planner.auth import TokenStore
from tests.e2e.mesh import LabProcesses, lyon_lab

pytestmark = pytest.mark.e2e

LAB = lyon_lab(hours_per_day=10)


class MovingClock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.mark.timeout(180)
def test_units_planned_on_time_that_arrive_late_are_shown_with_why(lab_processes: LabProcesses) -> None:
    settings = lab_processes.planner_settings()
    tokens = TokenStore(settings.db_path)
    operator = {"Authorization": "Bearer " + tokens.create("operator", LAB.id)}
    tokens.close()
    clock = MovingClock()
    with TestClient(create_app(settings, clock)) as client:
        # Leases long enough that the three days the clock moves do not end the job first.
        # A lease renewed by the lab's answer runs to its ETA plus a grace: both long here, or the
        # expiry check could end the job between the clock's move and the lab's report.
        client.app.state.planner.core.answer_window_s = 10 * 86_400.0  # type: ignore[attr-defined]
        client.app.state.planner.core.lease_grace_min_s = 10 * 86_400.0  # type: ignore[attr-defined]
        lab_processes.join(LAB, "--by-hand")
        lab_processes.wait_for(lambda: client.get(f"/labs/{LAB.id}").status_code == 200, 60, "the lab")
        due = clock() + timedelta(days=2)
        order = client.post(
            "/orders",
            json={
                "design": "finger-splint",
                "quantity": 3,
                "due_at": due.isoformat(),
                "delivery": {"lat": 45.78, "lon": 4.87, "place": "Villeurbanne"},
            },
        ).json()

        def view() -> dict[str, Any]:
            return client.get(f"/orders/{order['id']}").json()  # type: ignore[no-any-return]

        def job() -> dict[str, Any]:
            return next((a for a in view()["allocations"] if a["state"] in ("accepted", "running")), {})

        lab_processes.wait_for(lambda: bool(job()), 60, "the lab to accept the job")
        planned = job()
        assert planned["on_time_units"] == 3  # the plan counts every unit on time ...
        assert datetime.fromisoformat(planned["arrive_by"]) <= due  # ... arriving by the due date
        assert view()["reality"]["units_planned_on_time_arrived_late"] == 0

        clock.offset = timedelta(days=3)  # the lab reports its units a day after the due date
        path = f"/labs/{LAB.id}/jobs/{planned['id']}/report"
        report = client.post(path, json={"made": 3}, headers=operator)
        assert report.status_code == 202, report.text
        lab_processes.wait_for(lambda: view()["state"] == "done", 60, "the order to be done")

        done = next(a for a in view()["allocations"] if a["id"] == planned["id"])
        assert done["units_planned_on_time_arrived_late"] == 3
        assert datetime.fromisoformat(done["arrived_at"]) > due
        assert datetime.fromisoformat(done["finished_at"]) > datetime.fromisoformat(done["arrive_by"])
        assert done["late_cause"].startswith("lab fell behind")
        reality = view()["reality"]
        assert reality["units_planned_on_time"] == 3 and reality["units_planned_on_time_arrived"] == 3
        assert reality["units_planned_on_time_arrived_late"] == 3
        assert reality["late_by_cause"] == {"lab fell behind": 3}
        network = client.get("/network/stats").json()["reality"]
        assert network["units_planned_on_time_arrived_late"] == 3
        assert network["late_by_cause"] == {"lab fell behind": 3}
        assert 'id="reality-lines"' in client.get(f"/order/{order['id']}").text
        assert 'id="reality"' in client.get("/network").text
