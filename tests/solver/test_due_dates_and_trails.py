"""Due dates, lateness, the licence gate and trails in the allocation, each checked by the validator."""

from __future__ import annotations

from dataclasses import replace

import pytest

from protocol.model import Plan
from solver.allocation.allocate import solve
from solver.check import check
from solver.model.candidates import find_candidates
from solver.model.problem import Problem, SolveParams
from solver.model.trail_strength import problem_trail_strengths
from solver.model.trails import TrailRules
from tests.solver.factory import (
    FAR,
    INSTANT,
    NEAR,
    SHIELD_FLOW_DAYS,
    lab,
    machine,
    order,
    printer,
    problem,
    units_by_lab,
)

#: A late window of 5 days: units that miss their due date may still be planned, at a price.
LATE_OK = SolveParams(time_limit_s=2.0, workers=1, late_window_days=5.0, **INSTANT)


def shield_lab(id: str, at: tuple[float, float], hours: float = 8.0) -> object:
    """A lab whose printer makes 4 face shields a day (480 min / 120 min)."""
    return lab(id, at, [printer(hours=hours), machine("laser", "laser"), machine("bench", "assembly")])


def solved(p: Problem, params: SolveParams) -> Plan:
    plan = solve(p, params)
    assert check(p, plan, params) == []
    assert plan.bound <= plan.objective + 1e-6
    return plan


def late_units(plan: Plan, order_id: str) -> int:
    return sum(a.late_units for a in plan.allocations if a.order_id == order_id)


def test_units_beyond_the_due_date_are_planned_late_not_dropped() -> None:
    p = problem([shield_lab("only", NEAR)], [order("o1", "face-shield", 6, days=1 + SHIELD_FLOW_DAYS)])
    plan = solved(p, LATE_OK)
    assert units_by_lab(plan, "o1") == {"only": 6}
    assert late_units(plan, "o1") == 2
    [a] = plan.allocations
    assert a.cost.lateness == pytest.approx(LATE_OK.lateness_penalty["routine"] * 2)
    assert plan.shortages == []


def test_a_farther_lab_on_time_beats_a_near_lab_late() -> None:
    labs = [shield_lab("near", NEAR), shield_lab("far", FAR)]
    plan = solved(problem(labs, [order("o1", "face-shield", 8, days=1 + SHIELD_FLOW_DAYS)]), LATE_OK)
    assert units_by_lab(plan, "o1") == {"near": 4, "far": 4}
    assert late_units(plan, "o1") == 0


def test_an_early_order_gets_the_capacity_before_its_due_date() -> None:
    # One lab, 4 shields a day. The early order (due in 1 day) needs 4 by tomorrow; the later one
    # (due in 3 days) fits after it. Without buckets both would compete for the same 3 days.
    orders = [
        order("late-due", "face-shield", 8, days=3 + SHIELD_FLOW_DAYS),
        order("early-due", "face-shield", 4, days=1 + SHIELD_FLOW_DAYS),
    ]
    plan = solved(problem([shield_lab("only", NEAR)], orders), LATE_OK)
    assert units_by_lab(plan, "early-due") == {"only": 4}
    assert late_units(plan, "early-due") == 0
    assert late_units(plan, "late-due") == 0


def test_check_rejects_on_time_units_that_do_not_fit_before_their_due_date() -> None:
    p = problem([shield_lab("only", NEAR)], [order("o1", "face-shield", 6, days=1)])
    plan = solved(p, LATE_OK)
    [a] = plan.allocations
    cheating = plan.model_copy(update={"allocations": [a.model_copy(update={"late_units": 0})]})
    assert any("capacity exceeded within 1.00 days" in v for v in check(p, cheating, LATE_OK))


def test_licence_gate_leaves_the_order_short_with_the_reason() -> None:
    gated = order("o1", "finger-splint", 3).model_copy(update={"accepts_licences": ["CERN-OHL-S-2.0"]})
    plan = solved(problem([lab("a", NEAR)], [gated]), LATE_OK)
    assert plan.allocations == []
    [s] = plan.shortages
    assert s.reason.startswith("licence gate") and "CC-BY-4.0" in s.reason


def test_accepted_licence_passes_the_gate() -> None:
    ok = order("o1", "finger-splint", 3).model_copy(update={"accepts_licences": ["CC-BY-4.0"]})
    plan = solved(problem([lab("a", NEAR)], [ok]), LATE_OK)
    assert units_by_lab(plan, "o1") == {"a": 3}


def with_trails(p: Problem, trails: dict[tuple[str, str], float]) -> Problem:
    return Problem(p.now, p.designs, p.labs, p.demands, trails=trails)


#: Labs able to make splints, far from Barcelona (Girona), with no trail: beside them, one strong trail
#: leads the mean trail of the labs able to make splints by most of the span (`trail_strength`).
BYSTANDERS = [lab(f"bystander-{i}", (FAR[0] + 0.01 * i, FAR[1])) for i in range(6)]


def strength_of(p: Problem, key: tuple[str, str]) -> float:
    return problem_trail_strengths(p)[key]


def test_a_strong_trail_can_win_against_a_little_distance_and_shows_in_the_cost() -> None:
    labs = [lab("near", NEAR), lab("trusted", (41.4018, 2.17))]  # about 1.4 and 1.6 km from the centre
    base = problem(labs, [order("o1", "finger-splint", 5)])
    assert units_by_lab(solved(base, LATE_OK), "o1") == {"near": 5}
    trailed = with_trails(base, {("finger-splint", "trusted"): 5.0})
    plan = solved(trailed, LATE_OK)
    assert units_by_lab(plan, "o1") == {"trusted": 5}
    [a] = plan.allocations
    # On a trip this short the discount is its share of the trip, not the 25 km of a long one.
    strength = strength_of(trailed, ("finger-splint", "trusted"))
    assert strength == pytest.approx(0.5)  # 5.0 against a mean of 3.0, over a span of 4
    assert a.cost.trail == pytest.approx(-LATE_OK.trail_trip_share * strength * a.cost.km * 5)


def test_a_strong_trail_never_wins_against_a_lab_at_half_the_distance() -> None:
    # A city's trips are a few km: a discount of 25 km would send every unit to the first lab whose
    # trail grew, and each on-time delivery would strengthen it again.
    labs = [lab("near", NEAR), lab("middle", (41.42, 2.17)), *BYSTANDERS]  # about 1.4 and 3.6 km away
    trailed = with_trails(
        problem(labs, [order("o1", "finger-splint", 5)]), {("finger-splint", "middle"): 5.0}
    )
    assert strength_of(trailed, ("finger-splint", "middle")) > 0.85
    assert units_by_lab(solved(trailed, LATE_OK), "o1") == {"near": 5}
    whole_trip = replace(LATE_OK, trail_trip_share=1.0)  # the discount may then take the whole trip
    assert units_by_lab(solved(trailed, whole_trip), "o1") == {"middle": 5}


def test_a_long_trip_takes_the_whole_cap_in_km() -> None:
    # The trusted lab about 85 km away, another lab able to make splints, unknown, farther still.
    labs = [lab("trusted", FAR), lab("unknown", (FAR[0] + 1.0, FAR[1]))]
    trailed = with_trails(
        problem(labs, [order("o1", "finger-splint", 5)]), {("finger-splint", "trusted"): 5.0}
    )
    plan = solved(trailed, LATE_OK)
    [a] = plan.allocations
    assert a.lab_id == "trusted"
    assert a.cost.km * LATE_OK.trail_trip_share > LATE_OK.trail_discount_km
    strength = strength_of(trailed, ("finger-splint", "trusted"))
    assert a.cost.trail == pytest.approx(-LATE_OK.trail_discount_km * strength * 5)


def test_a_trail_as_strong_as_every_able_labs_earns_nothing() -> None:
    # Every lab able to make splints has delivered as well: none is better known, and a discount for
    # all of them would only make distance cheaper.
    labs = [lab("near", NEAR), lab("trusted", (41.4018, 2.17))]
    everyone = {("finger-splint", "near"): 5.0, ("finger-splint", "trusted"): 5.0}
    plan = solved(with_trails(problem(labs, [order("o1", "finger-splint", 5)]), everyone), LATE_OK)
    assert units_by_lab(plan, "o1") == {"near": 5}
    assert all(a.cost.trail == 0 for a in plan.allocations)


def test_strong_trails_add_candidates_beyond_the_nearest() -> None:
    labs = [lab("near", NEAR), lab("far", FAR), *BYSTANDERS[:2]]
    p = with_trails(problem(labs, [order("o1", "finger-splint", 2)]), {("finger-splint", "far"): 5.0})
    far = next(j for j, s in enumerate(p.labs) if s.lab.id == "far")
    days = 10.0
    [with_trail] = find_candidates(p, 1, days, by_trail=1).edges
    [without] = find_candidates(p, 1, days, by_trail=0).edges
    assert [j for j, _ in without] == [0]  # the nearest only
    assert [j for j, _ in with_trail] == [0, far]
    no_lead = with_trails(p, {("finger-splint", s.lab.id): 5.0 for s in labs})  # everyone as strong
    [same] = find_candidates(no_lead, 1, days, by_trail=1).edges
    assert [j for j, _ in same] == [0]
    # Strengths are read under the solve's rules: where neutral is above the trail, it earns nothing.
    above = TrailRules(neutral=6.0, maximum=8.0)
    [under_other_rules] = find_candidates(p, 1, days, by_trail=1, rules=above).edges
    assert [j for j, _ in under_other_rules] == [0]


def test_warm_start_from_the_previous_plan_gives_the_same_plan() -> None:
    p = problem([shield_lab("a", NEAR), shield_lab("b", FAR)], [order("o1", "face-shield", 6, days=2)])
    first = solved(p, LATE_OK)
    second = solve(p, LATE_OK, warm_start=first)
    assert check(p, second, LATE_OK) == []
    assert second.objective == pytest.approx(first.objective)


def test_a_lab_that_refused_an_order_is_not_offered_it_again() -> None:
    base = problem([lab("near", NEAR), lab("far", FAR)], [order("o1", "finger-splint", 3)])
    assert units_by_lab(solved(base, LATE_OK), "o1") == {"near": 3}
    refused = Problem(base.now, base.designs, base.labs, base.demands, excluded=frozenset({("o1", "near")}))
    assert units_by_lab(solved(refused, LATE_OK), "o1") == {"far": 3}


@pytest.mark.parametrize("days", [1.0, 2.9612345678, 0.3333333333, 6.123456789])
def test_units_that_fit_before_an_uneven_due_date_are_planned_on_time(days: float) -> None:
    plan = solved(problem([lab("a", NEAR)], [order("o1", "finger-splint", 2, days=days)]), LATE_OK)
    assert units_by_lab(plan, "o1") == {"a": 2}
    assert late_units(plan, "o1") == 0
