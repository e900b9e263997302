"""Coarse cells and day windows: the only places and times of a region's demand that leave it.

A cell is a square of `cell_deg` degrees named `"LAT_INDEX:LON_INDEX"`; a window is the whole day
(from the problem's `now`) in which a due date falls. Both lose the exact point and instant.
"""

from __future__ import annotations

import math
from datetime import datetime
from functools import lru_cache

from protocol.model import Location

#: Default cell size in degrees (about 55 km north-south).
CELL_DEG = 0.5


def cell_of(location: Location, cell_deg: float = CELL_DEG) -> str:
    """The name of the cell holding `location`."""
    return f"{math.floor(location.lat / cell_deg)}:{math.floor(location.lon / cell_deg)}"


@lru_cache(maxsize=65_536)
def cell_centre(cell: str, cell_deg: float = CELL_DEG) -> Location:
    """The centre of a cell named by `cell_of`; a clear error on a malformed name."""
    parts = cell.split(":")
    if len(parts) != 2:
        raise ValueError(f"cell: expected 'LAT_INDEX:LON_INDEX', got {cell!r}")
    try:
        i, j = int(parts[0]), int(parts[1])
    except ValueError as error:
        raise ValueError(f"cell: indices must be whole numbers, got {cell!r}") from error
    lat = min(90.0, max(-90.0, (i + 0.5) * cell_deg))
    lon = (j + 0.5) * cell_deg
    lon = ((lon + 180.0) % 360.0) - 180.0
    return Location(lat=lat, lon=lon)


def window_of(now: datetime, due_at: datetime) -> int:
    """The day window of a due date: whole days from `now`, rounded down (0 for anything due within a day)."""
    return max(0, math.floor((due_at - now).total_seconds() / 86_400.0))
