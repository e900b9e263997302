"""The compressed clock a replay's planner and labs share (protocol.timeframe)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from protocol.timeframe import compressed, compressed_clock

ANCHOR = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)


def test_the_frame_reads_the_anchor_then_runs_speed_times_faster() -> None:
    assert compressed(ANCHOR, 2000.0, ANCHOR) == ANCHOR
    assert compressed(ANCHOR, 2000.0, ANCHOR + timedelta(seconds=1.5)) == ANCHOR + timedelta(seconds=3000)
    # whoever reads it, whenever they started: one frame for the same anchor and speed
    late_joiner = compressed(ANCHOR, 2000.0, ANCHOR + timedelta(seconds=40))
    assert late_joiner - compressed(ANCHOR, 2000.0, ANCHOR + timedelta(seconds=39)) == timedelta(seconds=2000)


def test_a_clock_of_the_frame_reads_it_now() -> None:
    anchor = datetime.now(UTC) - timedelta(seconds=10)
    read = compressed_clock(anchor, 100.0)()
    assert anchor + timedelta(seconds=1000) <= read <= anchor + timedelta(seconds=100 * 70)


@pytest.mark.parametrize(
    ("anchor", "speed", "words"),
    [(datetime(2026, 12, 3), 10.0, "time zone"), (ANCHOR, 0.0, "speed must be positive")],
)
def test_a_bad_anchor_or_speed_is_refused_at_once(anchor: datetime, speed: float, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        compressed_clock(anchor, speed)
