"""Compressed time shared by a replay's processes: one frame, `speed` times faster than the wall.

A live replay runs a planner and its labs as real processes with time compressed `speed` times. For
the planner's due dates, plans and hours account to mean what they mean for the labs, both read
the same compressed clock: at wall instant `w`, the frame reads `anchor + (w - anchor) * speed`.
Every process given the same anchor and speed agrees on the time, whenever it started.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from protocol.model import utcnow


def compressed(anchor: datetime, speed: float, wall: datetime | None = None) -> datetime:
    """The frame's time at wall instant `wall` (default: now). Raises ValueError on a naive anchor or
    a speed that is not positive."""
    if anchor.tzinfo is None:
        raise ValueError("the clock anchor must carry a time zone (UTC)")
    if not speed > 0:
        raise ValueError(f"the clock speed must be positive, got {speed}")
    return anchor + ((utcnow() if wall is None else wall) - anchor) * speed


def compressed_clock(anchor: datetime, speed: float) -> Callable[[], datetime]:
    """A clock reading the frame (see `compressed`); checks its arguments at once."""
    compressed(anchor, speed, anchor)
    return lambda: compressed(anchor, speed)
