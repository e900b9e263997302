"""The objective's time term and arrivals: what a day sooner is worth, and on time meaning *arrived*.

Every plan is checked by the independent validator; each situation is solved by both paths (one
model, and the whole network's relaxation) so that they agree on what the weights mean.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from protocol.model import Plan
from solver.allocation.allocate import solve
from solver.check import check
from solver.model.objective import (
    LATE_DAY_FACTOR,
    objective_weights,
    overdue_weight,
    time_weights,
    transit_days,
)
from solver.model.problem import Problem, SolveParams
from tests.solver.factory import (
    CENTRE,
    FAR,
    INSTANT,
    NEAR,
    NOW,
    SHIELD_FLOW_DAYS,
    lab,
    machine,
    order,
    printer,
    problem,
    units_by_lab,
)

SMALL = SolveParams(time_limit_s=2.0, workers=1, late_window_days=5.0)
LARGE = replace(SMALL, decompose_above=0)
PATHS = pytest.mark.parametrize("params", [SMALL, LARGE], ids=["one-model", "relaxation"])


def shield_lab(id: str, at: tuple[float, float], backlog_minutes: float = 0.0) -> object:
    """A lab whose printer makes 4 face shields a day (480 min / 120 min), maybe already booked."""
    machines = [printer(), machine("laser", "laser"), machine("bench", "assembly")]
    return lab(id, at, machines, backlog={"printer": backlog_minutes})


def solved(p: Problem, params: SolveParams) -> Plan:
    plan = solve(p, params)
    assert check(p, plan, params) == []
    assert plan.bound <= plan.objective + 1e-6 * max(1.0, plan.objective)
    return plan


@PATHS
def test_a_lab_free_today_beats_a_nearer_one_booked_for_days(params: SolveParams) -> None:
    # near: 1.5 km, booked for 3 days; far: 85 km, free. Four shields due in 6 days fit at either.
    labs = [shield_lab("near", NEAR, backlog_minutes=3 * 480), shield_lab("far", FAR)]
    p = problem(labs, [order("o1", "face-shield", 4, days=6, priority="urgent")])
    balanced = solved(p, params)
    assert units_by_lab(balanced, "o1") == {"far": 4}  # 3 days sooner are worth far more than 83 km
    km_only = solved(p, replace(params, time_weight=time_weights(0.0)))
    assert units_by_lab(km_only, "o1") == {"near": 4}  # distance only: the nearest lab with room


@PATHS
def test_on_time_means_arrived_by_the_due_date_not_made_by_it(params: SolveParams) -> None:
    # One day of printing for 4 shields due in exactly 1 day and their flow time, 85 km away: the 4th
    # is made at the due date itself, and an hour of handling and 85 km of road (2.4 h in all) make
    # it arrive late.
    p = problem([shield_lab("far", FAR)], [order("o1", "face-shield", 4, days=1 + SHIELD_FLOW_DAYS)])
    plan = solved(p, params)
    [allocation] = plan.allocations
    assert allocation.quantity == 4 and allocation.late_units == 1  # the 4th would arrive 2.4 h late
    instant = solved(p, replace(params, **INSTANT))
    assert instant.allocations[0].late_units == 0  # made by the due date counts when delivery is instant


@PATHS
def test_the_time_term_is_in_the_terms_and_the_objective(params: SolveParams) -> None:
    p = problem([shield_lab("near", NEAR), shield_lab("far", FAR)], [order("o1", "face-shield", 6, days=3)])
    plan = solved(p, params)
    assert plan.shortages == []
    total = sum(a.cost.total for a in plan.allocations)
    assert plan.objective == pytest.approx(total, rel=1e-9)
    for a in plan.allocations:
        assert a.cost.time > 0
        assert a.arrive_by is not None and NOW < a.arrive_by <= NOW + timedelta(days=3)
        assert 0 <= a.early_units <= a.quantity
    # 4 shields a day at each lab: at least some are made by the first day's checkpoint.
    assert sum(a.early_units for a in plan.allocations) >= 1


def test_a_unit_a_lab_makes_later_is_worth_less_the_longer_it_waits() -> None:
    # One lab, 8 shields due in 5 days; only 4 a day. With a time weight, the plan says when they
    # arrive: the last no sooner than the second day.
    p = problem([shield_lab("only", CENTRE)], [order("o1", "face-shield", 8, days=5)])
    plan = solved(p, SMALL)
    [a] = plan.allocations
    assert a.arrive_by is not None and a.arrive_by >= NOW + timedelta(days=2)
    assert a.early_units == 4


def test_named_objectives_scale_one_set_of_weights() -> None:
    balanced = objective_weights("balanced")
    on_time, km = objective_weights("on-time"), objective_weights("km")
    for weights in (balanced, on_time, km):
        assert weights["routine"] < weights["urgent"] < weights["emergency"]
    for priority in balanced:  # each named weighting weighs a day no less than the one after it
        assert on_time[priority] >= balanced[priority] > km[priority] > 0
    assert on_time["routine"] > balanced["routine"]  # they differ on routine work only
    for priority in ("urgent", "emergency"):
        assert on_time[priority] == balanced[priority]
    assert time_weights(1.0) == balanced and time_weights(0.0) == dict.fromkeys(balanced, 0.0)
    balanced["routine"] = -1.0  # a copy: the named weightings cannot be changed through it
    assert objective_weights("balanced")["routine"] > 0
    with pytest.raises(ValueError, match="unknown objective 'fastest'; known: on-time, balanced, km"):
        objective_weights("fastest")
    with pytest.raises(ValueError, match="time_weight needs a value for every priority"):
        SolveParams(time_weight={"routine": 1.0})


def test_transit_days_count_handling_and_the_road() -> None:
    assert transit_days(0.0) == pytest.approx(1 / 24)
    assert transit_days(120.0, kmh=60.0, handling_hours=0.0) == pytest.approx(2 / 24)


ACROSS_TOWN = (41.43, 2.12)  # about 6 km from the centre


@pytest.mark.parametrize("priority", ["routine", "urgent"])
def test_routine_work_goes_to_the_nearer_lab_when_it_is_still_on_time(priority: str) -> None:
    # near: 1.5 km, booked for 2 days; across town: about 6 km, free. Four shields due in 8 days are on
    # time at either. The first stage sends them across town (2 days sooner are worth 50 km of routine
    # work); the second stage moves routine work back to the nearer lab, where it is still on time,
    # and leaves urgent work where it arrives soonest.
    labs = [shield_lab("near", NEAR, backlog_minutes=2 * 480), shield_lab("across", ACROSS_TOWN)]
    p = problem(labs, [order("o1", "face-shield", 4, days=8, priority=priority)])
    plan = solved(p, SMALL)
    assert plan.allocations[0].late_units == 0
    assert units_by_lab(plan, "o1") == ({"near": 4} if priority == "routine" else {"across": 4})


def test_the_on_time_weighting_keeps_routine_work_where_it_arrives_soonest() -> None:
    labs = [shield_lab("near", NEAR, backlog_minutes=2 * 480), shield_lab("across", ACROSS_TOWN)]
    p = problem(labs, [order("o1", "face-shield", 4, days=8)])
    plan = solved(p, replace(SMALL, time_weight=objective_weights("on-time")))
    assert units_by_lab(plan, "o1") == {"across": 4}


def test_the_second_stage_keeps_every_unit_on_time_and_placed() -> None:
    # Twelve routine shields due in 3 days: the near lab (booked for 2 days) can make only 4 of them
    # on time, so the second stage may move no more than those, and none becomes late or short.
    labs = [shield_lab("near", NEAR, backlog_minutes=2 * 480), shield_lab("across", ACROSS_TOWN)]
    p = problem(labs, [order("o1", "face-shield", 12, days=3)])
    plan = solved(p, SMALL)
    assert plan.shortages == []
    assert sum(a.late_units for a in plan.allocations) == 0
    assert sum(units_by_lab(plan, "o1").values()) == 12
    assert units_by_lab(plan, "o1").get("near", 0) <= 4


@PATHS
def test_late_emergency_work_goes_where_it_arrives_soonest(
    params: SolveParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four emergency shields due in an hour: late anywhere. "near" (1.5 km) is booked for a day;
    # "far" (about 800 km, 13 hours of road) is free. Each day past the due date counts three times.
    far_away = (NEAR[0] + 7.2, NEAR[1])
    labs = [shield_lab("near", NEAR, backlog_minutes=480), shield_lab("far", far_away)]
    p = problem(labs, [order("o1", "face-shield", 4, days=0.05, priority="emergency")])
    daily = replace(params, time_checkpoints_days=(1.0, 2.0, 3.0))
    plan = solved(p, daily)
    assert units_by_lab(plan, "o1") == {"far": 4}
    (line,) = plan.allocations
    assert line.late_units == 4
    weight = daily.time_weight["emergency"]
    past_due = (line.arrive_by - p.demands[0].order.due_at) / timedelta(days=1)
    # the explanation's time term holds the days past due at the extra weight
    assert line.cost.time == pytest.approx(
        4 * weight * ((line.arrive_by - NOW) / timedelta(days=1))
        + 4 * overdue_weight(daily.time_weight, "emergency") * past_due,
        rel=1e-6,
    )
    # A day counted once, late or not: the units would wait a day at the nearest lab.
    monkeypatch.setitem(LATE_DAY_FACTOR, "emergency", 1.0)
    assert units_by_lab(solved(p, daily), "o1") == {"near": 4}
