"""Who may read and write what over HTTP when the planner asks for tokens (planner.access)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from planner.app import PlannerSettings, create_app
from planner.auth import TokenStore
from tests.planner.test_web_api import LAB, _order


@pytest.fixture
def closed(settings: PlannerSettings) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A planner that asks for tokens, a lab planned onto, and a requester and an operator token."""
    store = TokenStore(settings.db_path)
    tokens = {"requester": store.create("requester"), "operator": store.create("operator", LAB.id)}
    store.close()
    with TestClient(create_app(replace(settings, require_tokens=True))) as client:
        client.portal.call(client.app.state.planner.core.lab_hello, LAB, {})  # type: ignore[attr-defined,union-attr]
        yield client, tokens


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _sse_events(client: TestClient, path: str, headers: dict[str, str], count: int) -> list[dict[str, Any]]:
    """The first `count` events of a stream, replayed from the ledger (Last-Event-ID 0)."""
    events: list[dict[str, Any]] = []
    with client.stream("GET", path, headers={"Last-Event-ID": "0"} | headers) as response:
        assert response.status_code == 200
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith("event:"):
                event["event"] = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                event["data"] = line.split(":", 1)[1].strip()
            elif not line and event:
                events.append(event)
                event = {}
                if len(events) == count:
                    break
    return events


def test_ordering_and_reading_everything_need_a_token(closed: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = closed
    refused = client.post("/orders", json=_order())
    assert refused.status_code == 401 and "requester token" in refused.json()["detail"]
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert client.post("/orders", json=_order(), headers=_bearer("not-a-token")).status_code == 401
    assert client.post("/orders", json={}).status_code == 401  # no hint of the order's shape either
    assert client.get("/orders").json() == {
        "detail": refused.json()["detail"].replace("place an order", "list the orders")
    }
    for path in ("/orders", "/plan", "/events"):
        assert client.get(path).status_code == 401, path
    placed = client.post("/orders", json=_order(), headers=_bearer(tokens["requester"]))
    assert placed.status_code == 201
    assert [o["id"] for o in client.get("/orders", headers=_bearer(tokens["operator"])).json()] == [
        placed.json()["id"]
    ]
    assert client.get("/plan", headers=_bearer(tokens["requester"])).status_code == 200


def test_an_order_is_readable_by_its_id_and_nothing_else_names_it(
    closed: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = closed
    order_id = client.post("/orders", json=_order(), headers=_bearer(tokens["requester"])).json()["id"]
    planner = client.app.state.planner  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while not planner.core.awaiting_answer(LAB.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get(f"/orders/{order_id}").json()["id"] == order_id  # the capability URL
    assert client.get(f"/orders/{order_id}/explanation").status_code == 200
    # Public reads carry no order id: labs without their jobs, the map grouped by place.
    public = [
        client.get(path).text for path in ("/labs", f"/labs/{LAB.id}", "/network/map", "/network/stats")
    ]
    assert all(order_id not in text for text in public)
    assert "jobs" not in client.get(f"/labs/{LAB.id}").json()
    assert client.get(f"/labs/{LAB.id}").json()["jobs_running"] == 0
    assert client.get(f"/labs/{LAB.id}", headers=_bearer(tokens["requester"])).json()["jobs"]
    deliveries = client.get("/network/map").json()["deliveries"]
    assert deliveries == [
        {"lat": 45.76, "lon": 4.84, "place": "Lyon", "orders": 1, "units": 5, "made": 0, "open": True}
    ]
    # The order's own stream: its creation and its job; the public stream: kinds without content.
    mine = _sse_events(client, f"/orders/{order_id}/events", {}, 2)
    assert mine[0]["event"] == "order.created"
    assert {e["event"] for e in mine} <= {"order.created", "job.assigned", "order.state", "plan.committed"}
    assert all(order_id in e["data"] or e["data"] == "{}" for e in mine)
    anyone = _sse_events(client, "/network/events", {}, 3)
    assert anyone and all(e["data"] == "{}" for e in anyone)
    everything = _sse_events(client, f"/events?token={tokens['requester']}", {}, 2)
    assert any(order_id in e["data"] for e in everything)


def test_an_open_planner_asks_for_no_token(client: TestClient) -> None:
    assert client.post("/orders", json=_order()).status_code == 201
    assert client.get("/orders").status_code == 200 and client.get("/plan").status_code == 200
