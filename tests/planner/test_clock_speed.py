"""A replay's planner on a compressed clock (PlannerSettings.clock_speed): its time and its windows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from planner.app import PlannerSettings, create_app


def test_the_planner_reads_the_compressed_frame_and_stretches_its_windows(settings: PlannerSettings) -> None:
    anchor = datetime.now(UTC) - timedelta(seconds=30)
    plain = replace(settings, db_path=settings.db_path.with_name("plain.db"))
    with TestClient(create_app(plain)) as client:
        core = client.app.state.planner.core  # type: ignore[attr-defined]
        windows = (core.answer_window_s, core.lease_grace_min_s, core.doubt_s)
        assert abs(core.clock() - datetime.now(UTC)) < timedelta(seconds=5)
    fast = replace(settings, clock_speed=1000.0, clock_anchor=anchor)
    with TestClient(create_app(fast)) as client:
        core = client.app.state.planner.core  # type: ignore[attr-defined]
        # 30 wall seconds after the anchor at 1000x: more than 8 hours on
        assert core.clock() >= anchor + timedelta(seconds=30_000)
        stretched = (core.answer_window_s, core.lease_grace_min_s, core.doubt_s)
        assert stretched == tuple(1000.0 * w for w in windows)
        # an order is taken in that frame: due in two days of it
        due = core.clock() + timedelta(days=2)
        answer = client.post(
            "/orders",
            json={
                "design": "finger-splint",
                "quantity": 2,
                "due_at": due.isoformat(),
                "delivery": {"lat": 45.78, "lon": 4.87, "place": "Villeurbanne"},
            },
        )
        assert answer.status_code == 201, answer.text
        created = datetime.fromisoformat(answer.json()["created_at"])
        assert created >= anchor + timedelta(seconds=30_000)
