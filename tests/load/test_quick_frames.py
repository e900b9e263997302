"""The simulated labs' quick frames are the codec's own bytes (the load benchmark measures the
planner with exactly what real labs send)."""

from __future__ import annotations

import pytest

from protocol.codec import decode, encode
from protocol.messages import Capacity, Envelope, Heartbeat
from scenarios.faults.load_labs import quick_frame


@pytest.mark.parametrize(
    "body",
    [
        Heartbeat(),
        Heartbeat(active=["o-1-a1"], ended=["o-2-a1"], heard=7, promise={"o-1-a1": 3}),
        Capacity(backlog_minutes={}),
        Capacity(backlog_minutes={"p1": 12.5, "l1": 0.0}),
    ],
)
def test_a_quick_frame_is_what_the_codec_makes(body: Heartbeat | Capacity) -> None:
    frame = quick_frame("load-00001", 42, body)
    assert frame == encode(Envelope(sender="load-00001", seq=42, body=body))
    assert decode(frame).body == body
