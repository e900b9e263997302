"""Great-circle distances: known values, symmetry, and the matrix agreeing with the scalar version."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.model import Location
from solver.model.geo import distances_km, haversine_km

PARIS = Location(lat=48.8566, lon=2.3522)
LONDON = Location(lat=51.5074, lon=-0.1278)
SYDNEY = Location(lat=-33.8688, lon=151.2093)


def test_paris_london_is_about_344_km() -> None:
    assert haversine_km(PARIS, LONDON) == pytest.approx(343.6, abs=1.0)


def test_distance_is_symmetric_and_zero_to_itself() -> None:
    assert haversine_km(PARIS, SYDNEY) == pytest.approx(haversine_km(SYDNEY, PARIS))
    assert haversine_km(PARIS, PARIS) == 0.0


def test_antipodes_are_half_the_circumference() -> None:
    a, b = Location(lat=0.0, lon=0.0), Location(lat=0.0, lon=180.0)
    assert haversine_km(a, b) == pytest.approx(np.pi * 6371.0088)


def test_matrix_matches_scalar() -> None:
    points = [PARIS, LONDON, SYDNEY]
    other = [LONDON, SYDNEY]
    matrix = distances_km(
        [p.lat for p in points], [p.lon for p in points], [o.lat for o in other], [o.lon for o in other]
    )
    assert matrix.shape == (3, 2)
    for i, p in enumerate(points):
        for j, o in enumerate(other):
            assert matrix[i, j] == pytest.approx(haversine_km(p, o))
