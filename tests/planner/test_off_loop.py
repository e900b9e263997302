"""What is slow stays off the planner's event loop, so /health answers meanwhile.

No timing here: an explanation that cannot finish until /health has answered proves that /health
was answered while it ran. Were the explanation computed on the event loop, /health would be
answered only after it (when its wait gives up), and the order of events would say so.
"""

from __future__ import annotations

import gc
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

import planner.core
from planner.app import SWITCH_INTERVAL_S, PlannerSettings, create_app

ORDER = {
    "design": "face-shield",
    "quantity": 5,
    "priority": "routine",
    "due_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
    "delivery": {"lat": 48.85, "lon": 2.35},
}


def test_health_is_answered_while_an_explanation_is_being_computed(
    settings: PlannerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, health_answered, finished = threading.Event(), threading.Event(), threading.Event()
    explain = planner.core.explain_order

    def slow_explain(*args: Any, **kwargs: Any) -> Any:
        started.set()
        health_answered.wait(20.0)  # a known-slow explanation: it ends once /health has answered
        try:
            return explain(*args, **kwargs)
        finally:
            finished.set()

    monkeypatch.setattr(planner.core, "explain_order", slow_explain)
    with TestClient(create_app(settings)) as client:
        order_id = client.post("/orders", json=ORDER).json()["id"]
        answers: list[Any] = []
        asking = threading.Thread(
            target=lambda: answers.append(client.get(f"/orders/{order_id}/explanation")), daemon=True
        )
        asking.start()
        assert started.wait(20.0), "the explanation never started"
        health = client.get("/health")
        explanation_still_running = not finished.is_set()
        health_answered.set()
        asking.join(30.0)
    assert health.status_code == 200
    assert explanation_still_running, "/health was answered only after the explanation: it ran on the loop"
    assert answers and answers[0].status_code == 200
    assert isinstance(answers[0].json(), list)


def test_a_planner_process_freezes_its_startup_heap_and_switches_threads_often(
    settings: PlannerSettings,
) -> None:
    """`serve` starts the app with `own_process`: full collections skip the startup objects, and a
    thread that computes lets the event loop have the interpreter lock every millisecond."""
    gc.unfreeze()
    interval = sys.getswitchinterval()
    try:
        with TestClient(create_app(settings, own_process=True)) as client:
            assert client.get("/health").status_code == 200
            assert gc.get_freeze_count() > 10_000
            assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
            assert SWITCH_INTERVAL_S < 0.005  # Python's default
    finally:
        gc.unfreeze()
        sys.setswitchinterval(interval)
