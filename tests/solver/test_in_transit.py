"""Material on its way to a lab (`LabState.incoming`): the solver uses it only from its arrival, and
the validator holds plans to that (nothing spent before it arrives, quantities conserve)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from protocol.model import Allocation, CostTerms, Plan
from solver.allocation.allocate import solve
from solver.check import check
from solver.model.problem import InTransit, Problem, transit
from tests.solver.factory import FAST, NEAR, NOW, lab, machine, order, printer, problem

SPLINT_PLA = 0.006
NO_SHIPPING = replace(FAST, transfer_radius_km=0.0)


def waiting_lab(arrives_in_days: float, due_days: float, pla: float = 20 * SPLINT_PLA) -> Problem:
    """A lab by the hospital with free machines, no PLA of its own, and PLA on its way."""
    state = lab("near", NEAR, [printer(), machine("bench", "assembly")], stock={})
    parcel = InTransit("pla", pla, NOW + timedelta(days=arrives_in_days))
    return problem([replace(state, incoming=(parcel,))], [order("o1", "finger-splint", 20, days=due_days)])


def test_material_in_transit_makes_units_after_it_arrives() -> None:
    p = waiting_lab(arrives_in_days=0.4, due_days=3)
    plan = solve(p, NO_SHIPPING)
    assert check(p, plan, NO_SHIPPING) == []
    assert plan.transfers == []  # nothing new shipped: the parcel on its way is what it uses
    [line] = plan.allocations
    assert (line.lab_id, line.quantity, line.late_units) == ("near", 20, 0)
    assert line.received == {"pla": pytest.approx(20 * SPLINT_PLA)}
    assert plan.bound_scope == "model"  # the large path's bound does not cover plans using it
    assert plan.bound <= plan.objective


def test_without_the_parcel_the_same_demand_is_short() -> None:
    p = waiting_lab(arrives_in_days=0.4, due_days=3)
    bare = replace(p, labs=[replace(p.labs[0], incoming=())])
    plan = solve(bare, NO_SHIPPING)
    assert sum(s.quantity for s in plan.shortages) == 20


def test_material_arriving_after_the_due_date_gives_no_unit_on_time() -> None:
    p = waiting_lab(arrives_in_days=2.0, due_days=1.0)
    params = replace(NO_SHIPPING, late_window_days=5.0)
    plan = solve(p, params)
    assert check(p, plan, params) == []
    on_time = sum(a.quantity - a.late_units for a in plan.allocations)
    assert on_time == 0


def test_units_waiting_for_a_parcel_fit_the_hours_after_it_arrives() -> None:
    """A printer of 8 h a day makes a 25-minute splint every 75 minutes of the day. The PLA comes at
    half a day and the order must leave by about 0.96 days: 0.46 days after the parcel, 8 splints;
    the hours before it came were idle for want of PLA and must not count."""
    p = waiting_lab(arrives_in_days=0.5, due_days=1.0)
    params = replace(NO_SHIPPING, late_window_days=5.0)
    plan = solve(p, params)
    assert check(p, plan, params) == []
    on_time = sum(a.quantity - a.late_units for a in plan.allocations)
    after_parcel_minutes = (1.0 - transit(params, 1.5) - 0.5) * 8 * 60
    assert 1 <= on_time <= after_parcel_minutes // 25
    assert sum(a.quantity for a in plan.allocations) == 20  # the rest is planned late, not dropped


def _line(received: dict[str, float]) -> Allocation:
    return Allocation(
        order_id="o1",
        lab_id="near",
        quantity=20,
        cost=CostTerms(km=1.5, transport=30.0),
        received=received,
    )


def _plan(line: Allocation) -> Plan:
    return Plan(version=1, allocations=[line], objective=100.0, bound=0.0, status="FEASIBLE", solve_seconds=0)


def test_validator_refuses_material_in_transit_spent_before_it_arrives() -> None:
    # Due in 6 hours; the parcel arrives in 2 days: the units would have to be made from it before then.
    p = waiting_lab(arrives_in_days=2.0, due_days=0.25)
    violations = check(p, _plan(_line({"pla": 20 * SPLINT_PLA})), FAST)
    assert any("material spent before it arrives" in v for v in violations), violations


def test_validator_refuses_a_line_receiving_more_than_is_on_its_way() -> None:
    p = waiting_lab(arrives_in_days=0.2, due_days=3, pla=10 * SPLINT_PLA)
    violations = check(p, _plan(_line({"pla": 20 * SPLINT_PLA})), FAST)
    assert any("quantities must conserve" in v for v in violations), violations
    assert any("over stock" in v for v in violations), violations


def test_in_transit_needs_a_time_zone_and_a_positive_amount() -> None:
    with pytest.raises(ValueError, match="quantity must be positive"):
        InTransit("pla", 0.0, NOW)
    with pytest.raises(ValueError, match="time zone"):
        InTransit("pla", 1.0, NOW.replace(tzinfo=None))
