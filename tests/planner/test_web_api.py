"""The web pages and the operator's job-decision API, against a running planner app.

The lab is introduced to the planner's core directly (no node process): the decision API's checks
are the subject here; `tests/web` drives real processes through a real browser.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from planner.app import PlannerSettings
from planner.auth import TokenStore
from protocol.model import Lab, Location, Machine

LAB = Lab(
    id="fablab-lyon",
    name="Fablab Lyon",
    location=Location(lat=45.75, lon=4.85, place="Lyon"),
    machines=[
        Machine(id="printer-1", processes=["fdm"], tags={"bed_mm": 250}),
        Machine(id="bench-1", processes=["assembly"]),
    ],
    stock={"pla": 2.0},
)
ORDER = {
    "design": "finger-splint",
    "quantity": 5,
    "priority": "urgent",
    "delivery": {"lat": 45.76, "lon": 4.84, "place": "Lyon"},
}


def _order() -> dict[str, Any]:
    return ORDER | {"due_at": (datetime.now(UTC) + timedelta(days=3)).isoformat()}


@pytest.fixture
def offered(client: TestClient, settings: PlannerSettings) -> dict[str, Any]:
    """A lab known to the planner, an order planned onto it (awaiting the lab's answer), a token."""
    planner = client.app.state.planner  # type: ignore[attr-defined]
    planner.core.lab_hello(LAB, {})
    order = client.post("/orders", json=_order()).json()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not planner.core.awaiting_answer(LAB.id):
        time.sleep(0.05)
    [job] = planner.core.awaiting_answer(LAB.id)
    sent: list[tuple[str, str, bool, str]] = []
    planner.mesh.send_decision = lambda *args: sent.append(args) or True
    store = TokenStore(settings.db_path)
    return {
        "order": order,
        "job": job,
        "sent": sent,
        "token": store.create("operator", LAB.id),
        "other": store.create("operator", "fablab-lille"),
        "requester": store.create("requester"),
    }


def _decide(client: TestClient, token: str | None, job_id: str, **body: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(f"/labs/{LAB.id}/jobs/{job_id}/decision", json=body, headers=headers)


def test_decisions_need_this_labs_operator_token(client: TestClient, offered: dict[str, Any]) -> None:
    job = offered["job"].id
    missing = _decide(client, None, job, accept=True)
    assert missing.status_code == 401 and "operator token" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert _decide(client, "clt_wrong", job, accept=True).status_code == 401
    other = _decide(client, offered["other"], job, accept=True)
    assert other.status_code == 403 and "fablab-lille" in other.json()["detail"]
    assert _decide(client, offered["requester"], job, accept=True).status_code == 403
    assert client.get(f"/labs/{LAB.id}/jobs").status_code == 401
    assert offered["sent"] == []


def test_a_decision_is_forwarded_once_the_checks_pass(client: TestClient, offered: dict[str, Any]) -> None:
    job = offered["job"]
    jobs = client.get(f"/labs/{LAB.id}/jobs", headers={"Authorization": f"Bearer {offered['token']}"})
    assert jobs.status_code == 200
    [listed] = jobs.json()["jobs"]
    assert listed["id"] == job.id and listed["awaiting_decision"] and listed["design"] == "finger-splint"
    assert "planner's view" in jobs.json()["schedule"]["note"]

    no_reason = _decide(client, offered["token"], job.id, accept=False, reason="  ")
    assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["loc"] == ["body", "reason"]
    assert _decide(client, offered["token"], "o-unknown-a1", accept=True).status_code == 404

    refused = _decide(client, offered["token"], job.id, accept=False, reason="printer under repair")
    assert refused.status_code == 202, refused.text
    assert offered["sent"] == [(LAB.id, job.id, False, "printer under repair")]


def test_only_a_job_awaiting_an_answer_can_be_decided(client: TestClient, offered: dict[str, Any]) -> None:
    planner = client.app.state.planner  # type: ignore[attr-defined]
    job = offered["job"]
    planner.core.job_update(LAB.id, job.id, "accepted")
    late = _decide(client, offered["token"], job.id, accept=False, reason="too late")
    assert late.status_code == 409 and "already accepted" in late.json()["detail"]
    assert offered["sent"] == []


def test_a_lost_lab_cannot_be_sent_a_decision(client: TestClient, offered: dict[str, Any]) -> None:
    planner = client.app.state.planner  # type: ignore[attr-defined]
    planner.core.labs[LAB.id].live = False
    answer = _decide(client, offered["token"], offered["job"].id, accept=True)
    assert answer.status_code == 409 and "not connected" in answer.json()["detail"]


def test_pages_are_served_without_any_cdn(client: TestClient, offered: dict[str, Any]) -> None:
    order_id = offered["order"]["id"]
    for path in ("/", "/order", f"/order/{order_id}", f"/lab/{LAB.id}", "/network"):
        page = client.get(path)
        assert page.status_code == 200, path
        text = page.text
        assert (
            '<html lang="en">' in text and "http://" not in text and "https://" not in text.split("<main")[0]
        )
        assert 'class="skip"' in text
    form = client.get("/order").text
    for field in ("design", "quantity", "due_at", "priority", "place", "lat", "lon"):
        assert f'<label for="{field}">' in form
        assert f'aria-describedby="{field}-error' in form
    assert "CC-BY-4.0" in form  # the design picker shows each design's licence
    assert client.get("/order/o-nope").status_code == 404
    assert client.get("/lab/nope").status_code == 404
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    world = client.get("/static/world_110m.json")
    assert world.status_code == 200 and '"countries"' in world.text
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/README.md").status_code == 404


def test_network_stats_state_their_co2_source(client: TestClient, offered: dict[str, Any]) -> None:
    stats = client.get("/network/stats").json()
    assert stats["plan"]["version"] >= 1 and "bound" in stats["plan"]
    assert stats["transport"]["co2_factor_kg_per_tonne_km"] == 0.70978
    assert "Defra" in stats["transport"]["co2_source"]
    assert stats["units_ordered"] == 5 and stats["fill_rate"] == 0
    assert stats["fill_rate_over_time"][-1]["ordered"] == 5
