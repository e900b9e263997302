"""The subscribers' reading of event bytes: the creation instant, compact JSON or not."""

from __future__ import annotations

from datetime import UTC, datetime

from planner.streams import FrameCache
from scenarios.faults.load_clients import _created_at


def test_the_creation_instant_is_read_from_the_planners_own_event_bytes() -> None:
    created = datetime(2026, 12, 4, 10, 0, 0, 123456, tzinfo=UTC)
    data = {"id": "o-1", "design": "face-shield", "created_at": created.isoformat(), "quantity": 3}
    frame = FrameCache().frame(7, "order.created", data, "all").rstrip(b"\n")
    assert _created_at(frame) == created
    spaced = b'id: 7\nevent: order.created\ndata: {"id": "o-1", "created_at": "'
    spaced += created.isoformat().encode()
    assert _created_at(spaced + b'"}') == created
