"""Scenario places are real cities, one per place, taken from GeoNames data."""

from __future__ import annotations

import itertools

import pytest

from scenarios.demo import demo_labs, demo_orders
from scenarios.geography import largest_cities
from solver.model.geo import haversine_km


def test_largest_french_cities_are_distinct_places() -> None:
    cities = largest_cities("FR", 12)
    assert cities[0].name == "Paris" and len(cities) == 12
    assert all(not any(ch.isdigit() for ch in c.name) for c in cities)
    for a, b in itertools.combinations(cities, 2):
        assert haversine_km(a.location, b.location) >= 40.0
    assert [c.name for c in largest_cities("FR", 3, skip=2)] == [c.name for c in cities[2:5]]
    with pytest.raises(ValueError, match="cities in"):
        largest_cities("VA", 5)


def test_city_slugs_are_identifiers() -> None:
    assert {c.slug for c in largest_cities("FR", 40)} >= {"paris", "saint-etienne"}


def test_demo_is_seeded_and_includes_an_emergency() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 5, 1, tzinfo=UTC)
    assert demo_labs(8, seed=7) == demo_labs(8, seed=7)
    orders = demo_orders(8, seed=7, now=now)
    assert orders == demo_orders(8, seed=7, now=now)
    assert any(o["priority"] == "emergency" for o in orders)
    labs = demo_labs(8, seed=7)
    assert any("sla" in m.processes for lab in labs for m in lab.machines)  # someone can make the valve
