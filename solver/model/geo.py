"""Great-circle distances between points on Earth, one at a time or as a numpy matrix.

Candidate labs are ranked by the distance their units travel to the delivery place; the sphere is
close enough to the ellipsoid for that ranking and for the unit-km transport cost.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from protocol.model import Location

#: Mean Earth radius (IUGG), in km.
EARTH_RADIUS_KM = 6371.0088


def haversine_km(a: Location, b: Location) -> float:
    """Great-circle distance in km between two locations (haversine formula)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


def distances_km(
    lats1: ArrayLike, lons1: ArrayLike, lats2: ArrayLike, lons2: ArrayLike
) -> NDArray[np.float64]:
    """Matrix of great-circle distances in km: row i is point i of the first set, column j of the second.

    Degrees in, shape (len(lats1), len(lats2)) out; the same formula as `haversine_km`, vectorised.
    """
    lat1 = np.radians(np.asarray(lats1, dtype=np.float64))[:, None]
    lon1 = np.radians(np.asarray(lons1, dtype=np.float64))[:, None]
    lat2 = np.radians(np.asarray(lats2, dtype=np.float64))[None, :]
    lon2 = np.radians(np.asarray(lons2, dtype=np.float64))[None, :]
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(1.0, h)))
