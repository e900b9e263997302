"""Hand-made worlds for the planner's tests: one lab with one machine, and plans that give it work."""

from __future__ import annotations

from datetime import UTC, datetime

from protocol.model import Allocation, CostTerms, Lab, Location, Machine, Plan

NOW = datetime(2026, 5, 1, 8, tzinfo=UTC)
#: One machine, so the solver's backlog for it is the whole account; a finger splint is 28 minutes.
ONE_MACHINE_LAB = Lab(
    id="lab-a",
    name="Lab A",
    location=Location(lat=45.0, lon=5.0),
    machines=[Machine(id="p1", processes=["fdm", "assembly"], tags={"bed_mm": 250})],
    stock={"pla": 1.0},
)


def one_lab_plan(order_id: str, quantity: int, lab_id: str = "lab-a") -> Plan:
    """A plan that gives all `quantity` units of `order_id` to `lab_id`, 60 km away, to start now."""
    return Plan(
        version=0,
        objective=1,
        bound=1,
        status="OPTIMAL",
        solve_seconds=0.01,
        allocations=[
            Allocation(
                order_id=order_id,
                lab_id=lab_id,
                quantity=quantity,
                cost=CostTerms(km=60, transport=600 * quantity),
                early_units=quantity,
            )
        ],
    )
