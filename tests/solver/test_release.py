"""Demand released later (a rate's forecast): planned within the horizon, never made before its release."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from protocol.model import Allocation, CostTerms, Plan
from solver.allocation.allocate import solve_small
from solver.check import check
from solver.large.path import solve_large
from solver.model.problem import Demand, Problem
from tests.solver.factory import FAST, NEAR, NOW, lab, order, problem

PARAMS = replace(FAST, late_window_days=3.0)


def with_forecast(release_days: float) -> Problem:
    """One lab; an order placed now and a forecast of the same size released in `release_days`."""
    placed = order("placed", "face-shield", 4, days=5.0)
    # Urgent: without its release, the forecast would take the first day's hours from the order.
    ahead = order("rate-1-d2", "face-shield", 4, days=release_days + 2.0, priority="urgent")
    base = problem([lab("near", NEAR)], [placed])
    return Problem(
        now=base.now,
        designs=base.designs,
        labs=base.labs,
        demands=[*base.demands, Demand(ahead, 4, release_at=NOW + timedelta(days=release_days))],
    )


@pytest.mark.parametrize("solve", [solve_small, solve_large], ids=["one-model", "large"])
def test_a_forecast_is_planned_but_nothing_of_it_is_made_before_its_release(solve: object) -> None:
    p = with_forecast(2.0)
    plan = solve(p, PARAMS)  # type: ignore[operator]
    assert check(p, plan, PARAMS) == []
    lines = {a.order_id: a for a in plan.allocations}
    assert lines["rate-1-d2"].quantity == 4  # planned: the plan leaves room for it
    assert lines["rate-1-d2"].early_units == 0  # none of it is work to start now
    assert lines["rate-1-d2"].arrive_by is not None
    assert lines["rate-1-d2"].arrive_by >= NOW + timedelta(days=2.0)
    assert lines["placed"].early_units > 0  # today's order takes today's hours


def test_the_validator_refuses_a_forecast_made_before_its_release() -> None:
    p = with_forecast(2.0)
    cost = CostTerms(km=1.0, transport=4.0)
    early = Allocation(order_id="rate-1-d2", lab_id="near", quantity=4, cost=cost, early_units=4)
    rest = Allocation(order_id="placed", lab_id="near", quantity=4, cost=cost)
    plan = Plan(
        version=1, allocations=[early, rest], objective=8.0, bound=0.0, status="FEASIBLE", solve_seconds=0.0
    )
    found = check(p, plan, PARAMS)
    assert any("may be made only in 3.00 days" in v for v in found), found


def test_a_release_needs_a_time_zone() -> None:
    ahead = order("rate-1-d2", "face-shield", 4)
    with pytest.raises(ValueError, match="release_at must carry a time zone"):
        Demand(ahead, 4, release_at=NOW.replace(tzinfo=None))


@pytest.mark.parametrize("release", [0.5, 1.0], ids=["half-a-day-ahead", "a-day-ahead"])
@pytest.mark.parametrize("solve", [solve_small, solve_large], ids=["one-model", "large"])
def test_a_forecast_takes_none_of_todays_hours(solve: object, release: float) -> None:
    # Released within the first day or at its end: made a commit window later, never today.
    p = with_forecast(release)
    plan = solve(p, PARAMS)  # type: ignore[operator]
    assert check(p, plan, PARAMS) == []
    lines = {a.order_id: a for a in plan.allocations}
    assert lines["rate-1-d2"].early_units == 0
    assert lines["placed"].early_units == 4  # the lab's first day goes to the order placed now
