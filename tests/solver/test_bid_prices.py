"""Bid prices: a lab's minutes priced against the demand known rates will still bring.

A small lab in the centre (one printer) and a print farm 19 km out (four printers); face shields
take 120 printer minutes, finger splints 25, and both are ordered in the centre.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from protocol.model import Location
from solver.allocation.allocate import solve, solve_small
from solver.allocation.explain import explain_order
from solver.check import check
from solver.large.bid_prices import bid_prices
from solver.model.geo import haversine_km
from solver.model.problem import FutureDemand, LabState, Problem
from tests.solver.factory import CENTRE, FAST, MIDDLE, NEAR, NOW, lab, machine, order, printer, problem

CENTRE_AT = Location(lat=CENTRE[0], lon=CENTRE[1])


def labs() -> list[LabState]:
    """The centre's one-printer lab and the four-printer farm, each with a laser and a bench."""
    tools = [machine("laser", "laser"), machine("bench", "assembly")]
    return [
        lab("centre-lab", NEAR, [printer("p1"), *tools]),
        lab("farm", MIDDLE, [printer(f"p{i}") for i in range(4)] + tools),
    ]


def city(per_day: float) -> Problem:
    """Today's orders (4 shields, 10 splints), and the rates' next five days at `per_day` times
    20 shields and 40 splints a day: 2.4 days of both labs' printers at 1."""
    today = problem(
        labs(), [order("s1", "face-shield", 4, days=3.0), order("f1", "finger-splint", 10, days=3.0)]
    )
    last_due = NOW + timedelta(days=7)
    future = (
        FutureDemand("face-shield", CENTRE_AT, 100 * per_day, last_due),
        FutureDemand("finger-splint", CENTRE_AT, 200 * per_day, last_due),
    )
    return replace(today, future=future)


def units_at(plan_lines: list, order_id: str) -> dict[str, int]:
    return {a.lab_id: a.quantity for a in plan_lines if a.order_id == order_id}


def test_no_prices_without_known_demand_to_come() -> None:
    assert bid_prices(replace(city(1.0), future=())) == {}


def test_no_prices_where_the_lab_nearest_the_demand_has_room_for_it() -> None:
    """The centre's one printer makes today's orders and the next days' (at a tenth of the rates):
    no minute is short, and the plan is the one made without the rates."""
    p = city(0.1)
    assert bid_prices(p) == {}
    plan, alone = solve_small(p, FAST), solve_small(replace(p, future=()), FAST)
    assert check(p, plan, FAST) == []
    assert [(a.order_id, a.lab_id, a.quantity) for a in plan.allocations] == [
        (a.order_id, a.lab_id, a.quantity) for a in alone.allocations
    ]


def test_where_the_city_has_room_but_its_centre_does_not_the_centres_minutes_are_priced() -> None:
    """At a fifth of the rates, both labs together have printers to spare, but the centre's one
    printer cannot make all that is ordered near it: its minutes are worth the farm's trip to the
    units that will have to go there, and the shields, five times a splint's minutes, go first."""
    p = city(0.2)
    prices = bid_prices(p)
    assert set(prices) == {("face-shield", "centre-lab"), ("finger-splint", "centre-lab")}
    assert prices["face-shield", "centre-lab"] > prices["finger-splint", "centre-lab"] > 0
    plan = solve(p, FAST)
    assert check(p, plan, FAST) == []
    assert units_at(plan.allocations, "s1") == {"farm": 4}
    assert units_at(plan.allocations, "f1") == {"centre-lab": 10}


def test_where_the_rates_outrun_the_labs_the_centre_labs_minutes_cost_up_to_the_farms_trip() -> None:
    prices = bid_prices(city(1.0))
    trip = haversine_km(labs()[1].lab.location, CENTRE_AT)
    assert set(prices) == {("face-shield", "centre-lab"), ("finger-splint", "centre-lab")}
    assert all(0 < price <= trip + 1e-9 for price in prices.values())
    # A shield takes five times a splint's minutes: it is the one to print at the farm.
    assert prices["face-shield", "centre-lab"] > prices["finger-splint", "centre-lab"]


def test_seeing_only_today_the_nearest_lab_takes_the_shields() -> None:
    """What the prices change: today's orders alone fit the centre's lab by their due date."""
    plan = solve(replace(city(1.0), future=()), FAST)
    assert units_at(plan.allocations, "s1") == {"centre-lab": 4}


@pytest.mark.parametrize("decompose_above", [10_000, 0], ids=["one-model", "large"])
def test_short_of_printers_the_shields_go_to_the_farm_and_the_splints_stay_in_the_centre(
    decompose_above: int,
) -> None:
    params = replace(FAST, decompose_above=decompose_above)
    p = city(1.0)
    plan = solve(p, params)
    assert check(p, plan, params) == []
    assert units_at(plan.allocations, "s1") == {"farm": 4}
    assert units_at(plan.allocations, "f1") == {"centre-lab": 10}


def test_the_charge_is_a_cost_term_and_the_explanation_says_it() -> None:
    p = city(1.0)
    plan = solve(p, FAST)
    prices = bid_prices(p)
    (splints,) = [a for a in plan.allocations if a.order_id == "f1"]
    assert splints.cost.capacity == pytest.approx(prices["finger-splint", "centre-lab"] * 10)
    assert splints.cost.total == pytest.approx(
        splints.cost.transport + splints.cost.setup + splints.cost.time + splints.cost.capacity
    )
    (chosen,) = [v for v in explain_order(replace(p, bid_prices=prices), plan, "f1", FAST) if v.chosen]
    assert "capacity" in chosen.why


def test_a_future_demand_refuses_negative_units_and_a_naive_date() -> None:
    with pytest.raises(ValueError, match="units must be >= 0"):
        FutureDemand("face-shield", CENTRE_AT, -1.0, NOW)
    with pytest.raises(ValueError, match="time zone"):
        FutureDemand("face-shield", CENTRE_AT, 1.0, NOW.replace(tzinfo=None))
