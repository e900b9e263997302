"""The HTTP API: orders are durable before 201, bad input gets 422 naming the field, nothing else changes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from planner.app import PlannerSettings


def _order(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "design": "face-shield",
        "quantity": 20,
        "due_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        "delivery": {"lat": 45.76, "lon": 4.84, "place": "Lyon"},
        "priority": "urgent",
    }
    body.update(changes)
    return body


def test_order_is_on_disk_before_201(client: TestClient, settings: PlannerSettings) -> None:
    response = client.post("/orders", json=_order())
    assert response.status_code == 201
    order = response.json()
    assert response.headers["location"] == f"/orders/{order['id']}"
    assert order["state"] == "open" and order["quantity"] == 20 and order["units_made"] == 0
    with sqlite3.connect(settings.db_path) as raw:  # a second connection sees the committed row
        rows = raw.execute("SELECT id, state FROM orders").fetchall()
    assert rows == [(order["id"], "open")]
    assert client.get(f"/orders/{order['id']}").json()["id"] == order["id"]
    assert [o["id"] for o in client.get("/orders").json()] == [order["id"]]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"design": "warp-drive"}, "design", "unknown design"),
        ({"quantity": 0}, "quantity", "greater than 0"),
        ({"quantity": -3}, "quantity", "greater than 0"),
        ({"due_at": "2030-01-01T00:00:00"}, "due_at", "time zone"),
        ({"delivery": {"lat": 91, "lon": 0}}, "lat", "less than or equal to 90"),
        ({"delivery": {"lat": 0, "lon": -181}}, "lon", "greater than or equal to -180"),
        ({"priority": "whenever"}, "priority", "routine"),
        ({"patient_name": "J. Doe"}, "patient_name", "Extra inputs"),
    ],
)
def test_bad_order_is_422_naming_the_field_and_changes_nothing(
    client: TestClient, changes: dict[str, Any], field: str, words: str
) -> None:
    kept = client.post("/orders", json=_order()).json()["id"]
    response = client.post("/orders", json=_order(**changes))
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert any(p["loc"][-1] == field and words in p["msg"] for p in problems), problems
    assert [o["id"] for o in client.get("/orders").json()] == [kept]


def test_dates_at_the_ends_of_the_calendar_are_answered_not_refused(client: TestClient) -> None:
    # Valid ISO 8601, but their instants fall past what a date holds in UTC: kept as its ends.
    late = client.post("/orders", json=_order(due_at="9999-12-31T23:30:00-01:00"))
    assert late.status_code == 201
    order_id = late.json()["id"]
    assert late.json()["due_at"].startswith("9999-12-31T23:59:59")
    assert client.get(f"/orders/{order_id}").status_code == 200
    assert client.get(f"/orders/{order_id}/explanation").status_code == 200
    early = client.post("/orders", json=_order(due_at="0001-01-01T01:00:00+01:02"))
    assert early.status_code == 409 and early.json()["detail"].startswith("due_at:")


def test_an_order_due_in_the_past_is_409_naming_the_field_and_changes_nothing(client: TestClient) -> None:
    kept = client.post("/orders", json=_order()).json()["id"]
    response = client.post(
        "/orders", json=_order(due_at=(datetime.now(UTC) - timedelta(hours=1)).isoformat())
    )
    assert response.status_code == 409
    assert (
        response.json()["detail"].startswith("due_at:") and "not in the future" in response.json()["detail"]
    )
    assert [o["id"] for o in client.get("/orders").json()] == [kept]


def test_ids_that_could_not_be_ids_are_422_before_any_lookup(client: TestClient) -> None:
    for path in ("/orders/NOT-AN-ID", "/orders/a%20b/explanation", "/labs/%C3%A9", "/labs/-x/trails"):
        response = client.get(path)
        assert response.status_code == 422, path
        assert response.json()["detail"][0]["loc"][0] == "path"


def test_reads(client: TestClient) -> None:
    designs = {d["id"]: d for d in client.get("/designs").json()}
    assert {"face-shield", "charlotte-valve", "finger-splint"} <= set(designs)
    assert all(d["licence"] and d["source"] and d["steps"] for d in designs.values())
    assert client.get("/labs").json() == []
    assert client.get("/labs/nowhere").status_code == 404
    assert client.get("/orders/o-missing").status_code == 404
    assert client.get("/orders/o-missing/explanation").status_code == 404
    assert client.get("/labs/nowhere/trails").status_code == 404
    assert client.get("/plan").json()["version"] == 0
    assert client.get("/plan").json()["totals"] == {
        "plans": 0,
        "objective": 0.0,
        "bound": 0.0,
        "all_optimal": True,
        "bound_scope": "all",
    }
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["epoch"] == 1


def test_api_docs_need_no_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert client.get("/openapi.json").json()["paths"]["/orders"]["post"]


def test_a_retried_post_with_the_same_idempotency_key_orders_once(client: TestClient) -> None:
    body = _order()
    first = client.post("/orders", json=body, headers={"Idempotency-Key": "ward-7-2026-11-23-a"})
    assert first.status_code == 201
    again = client.post("/orders", json=body, headers={"Idempotency-Key": "ward-7-2026-11-23-a"})
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(client.get("/orders").json()) == 1
    other = client.post(
        "/orders", json=_order(quantity=5), headers={"Idempotency-Key": "ward-7-2026-11-23-a"}
    )
    assert other.status_code == 409
    assert other.json()["detail"] == "Idempotency-Key: was used before for a different order"
    empty = client.post("/orders", json=body, headers={"Idempotency-Key": ""})
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
    assert len(client.get("/orders").json()) == 1
    assert client.post("/orders", json=_order()).status_code == 201  # no key: a new order each time


def test_an_oversized_request_is_413_and_counted(client: TestClient) -> None:
    body = b'{"design": "face-shield", "pad": "' + b"x" * 70_000 + b'"}'
    response = client.post("/orders", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "exceeds the limit" in response.json()["detail"]
    assert client.get("/health").json()["requests_too_large"] == 1
    assert client.get("/orders").json() == []
