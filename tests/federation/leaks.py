"""What must never leave a region, as a check over message bodies (SPEC.md section 10.3)."""

from __future__ import annotations

from typing import Any

from scenarios.federation import Region


def private_values(regions: list[Region]) -> tuple[set[str], set[float]]:
    """Every order id and lab id, and every exact coordinate of orders and labs, of all regions."""
    ids: set[str] = set()
    coordinates: set[float] = set()
    for region in regions:
        for d in region.problem.demands:
            ids.add(d.order.id)
            coordinates |= {d.order.delivery.lat, d.order.delivery.lon}
        for s in region.problem.labs:
            ids.add(s.lab.id)
            coordinates |= {s.lab.location.lat, s.lab.location.lon}
    return ids, coordinates


def leaks(value: Any, ids: set[str], coordinates: set[float]) -> list[str]:
    """Each private value found anywhere inside `value` (maps, lists, strings, numbers)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += leaks(key, ids, coordinates) + leaks(item, ids, coordinates)
    elif isinstance(value, list | tuple):
        for item in value:
            found += leaks(item, ids, coordinates)
    elif isinstance(value, str | bytes):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        found += [f"id {i!r} in {text!r}" for i in ids if i in text]
    elif isinstance(value, float) and value in coordinates:
        found.append(f"exact coordinate {value}")
    return found
