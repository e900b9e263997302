"""Small labs and designs for the node tests: quick steps so simulated jobs end in a second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from protocol.messages import Assign
from protocol.model import Design, Lab, Location, Machine, Step

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def part(minutes: float = 10.0, petg: float = 0.1, fdm_bed_mm: int | None = None) -> Design:
    """A two-step part: printed (fdm, petg), then assembled."""
    requires = {"bed_mm": fdm_bed_mm} if fdm_bed_mm is not None else {}
    return Design(
        id="test-part",
        name="Test part",
        licence="CC0-1.0",
        source="https://example.org/test-part",
        steps=[
            Step(process="fdm", minutes=minutes, materials={"petg": petg}, requires=requires),
            Step(process="assembly", minutes=2.0),
        ],
    )


def lab(stock: dict[str, float] | None = None, lab_id: str = "fablab-test") -> Lab:
    """A lab with one printer and one bench."""
    return Lab(
        id=lab_id,
        name="Fablab Test",
        location=Location(lat=45.75, lon=4.85, place="Lyon"),
        machines=[
            Machine(id="prusa-1", processes=["fdm"], speed=1.0, hours_per_day=10, tags={"bed_mm": 250}),
            Machine(id="bench", processes=["assembly"], hours_per_day=8),
        ],
        stock={"petg": 5.0} if stock is None else stock,
    )


def assign(
    assignment_id: str = "a-1",
    quantity: int = 3,
    design: Design | None = None,
    priority: str = "routine",
    due_in_hours: float = 24.0,
) -> Assign:
    """An ASSIGN body for `lab()`."""
    return Assign(
        assignment_id=assignment_id,
        order_id="o-1",
        design=design or part(),
        quantity=quantity,
        due_at=T0 + timedelta(hours=due_in_hours),
        delivery=Location(lat=45.76, lon=4.84, place="Hôpital Edouard Herriot"),
        priority=priority,
    )
