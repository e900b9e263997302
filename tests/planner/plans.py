"""Hand-made plans for the planner's tests: one order's units on one lab, all to start now."""

from __future__ import annotations

from protocol.model import Allocation, CostTerms, Plan


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
