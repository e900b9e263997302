"""The large path (solver.large.path): valid plans, and a bound that no valid plan beats."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.model import Design, Step
from scenarios.scale import synthetic_problem
from solver.allocation.allocate import solve, solve_small
from solver.check import check
from solver.large.aggregate import _least_by_key, aggregate_prices
from solver.large.beyond import beyond_cost, priced_beyond
from solver.large.bound import best_bound, lagrangian_bound, suffix_sums
from solver.large.far import place_far
from solver.large.network import build_network, design_lab_pairs, key_starts, machine_sets
from solver.large.path import CONVERGED, STALLED, TIMED_OUT, UNCONVERGED, _plan
from solver.large.rounding import Rows, round_units
from solver.model.candidates import find_candidates, with_pairs
from solver.model.geo import distances_km
from solver.model.objective import objective_weights
from solver.model.problem import Demand, Problem, SolveParams, horizon_days
from solver.model.trail_strength import problem_trail_strengths
from solver.model.trails import DEFAULT_RULES
from tests.solver.factory import CENTRE, FAR, INSTANT, MIDDLE, NEAR, lab, machine, order, printer, problem
from tests.solver.test_property import SETTINGS, problems

#: Every problem takes the large path.
LARGE = SolveParams(time_limit_s=5.0, workers=1, decompose_above=0)
#: What a plan of the large path may say when not proven optimal (solver.large.path).
STATUSES = (CONVERGED, STALLED, UNCONVERGED, TIMED_OUT)
#: The same problem as one CP-SAT model.
SMALL = replace(LARGE, decompose_above=1_000_000)


def solved(p: Problem, params: SolveParams = LARGE):
    plan = solve(p, params)
    assert check(p, plan, params) == []
    assert plan.status in ("OPTIMAL", *STATUSES)
    assert plan.bound <= plan.objective
    return plan


@SETTINGS
@given(p=problems(), k=st.integers(1, 6))
def test_large_path_plans_pass_check_and_bound_the_small_path(p: Problem, k: int) -> None:
    # Random labs with machines sharing processes, backlogs, scarce stock, lost labs, past-due
    # orders: the plan is valid, and each path's bound is below the other path's valid plan. The
    # large path plans no material transfer, so its bound covers the plans without (radius 0).
    large, small = replace(LARGE, k_nearest=k), replace(SMALL, k_nearest=k, transfer_radius_km=0.0)
    plan = solved(p, large)
    other = solve(p, small)
    model_only = solve_small(p, small, certify=False)  # the CP-SAT model's own plan
    assert check(p, other, small) == [] and check(p, model_only, small) == []
    assert plan.bound_scope == "all"  # the Lagrangian bound holds for every plan, on any lab
    tolerance = 1e-6 * max(1.0, abs(other.objective))
    assert plan.bound <= min(other.objective, model_only.objective) + tolerance
    assert other.bound <= plan.objective + tolerance


@pytest.mark.parametrize("seed", [1, 2])
def test_synthetic_instance_is_planned_whole_within_a_small_gap(seed: int) -> None:
    p = synthetic_problem(600, 120, seed)
    plan = solved(p, replace(LARGE, time_limit_s=20.0, workers=2))
    small = solve(p, replace(SMALL, time_limit_s=10.0, workers=2))
    assert plan.bound <= small.objective
    assert plan.gap <= 0.02
    assert plan.objective <= 1.02 * small.objective


def test_a_crowded_city_reaches_labs_beyond_its_nearest() -> None:
    # Ten labs near the centre can make 4 shields a day each; 60 orders of 10 need more than the
    # nearest ones have, so part goes further away instead of being reported short.
    shield = [printer(), machine("laser", "laser"), machine("bench", "assembly")]
    labs = [lab(f"near{i}", (NEAR[0] + 0.01 * i, NEAR[1]), shield) for i in range(10)]
    labs += [lab(f"far{i}", (FAR[0] + 0.01 * i, FAR[1]), shield) for i in range(10)]
    orders = [order(f"o{i}", "face-shield", 10, CENTRE, days=8.0) for i in range(60)]
    plan = solved(problem(labs, orders), replace(LARGE, k_nearest=2, late_window_days=0.0))
    assert plan.shortages == []
    assert {a.lab_id for a in plan.allocations if a.lab_id.startswith("far")}


def test_time_too_short_for_the_relaxation_still_gives_a_valid_plan() -> None:
    p = synthetic_problem(300, 60, 3)
    # The limit is honoured with the best plan so far: valid, with what was not placed by then
    # short, and a status that says the clock, not convergence, ended it.
    plan = solved(p, replace(LARGE, time_limit_s=0.01))
    placed = sum(a.quantity for a in plan.allocations)
    assert placed + sum(s.quantity for s in plan.shortages) == sum(d.quantity for d in p.demands)
    assert plan.status == TIMED_OUT
    assert plan.solve_seconds < 5.0  # the steps after the limit are skipped, not run late
    assert sum(a.quantity for a in solved(p, replace(LARGE, time_limit_s=2.0)).allocations) > 0
    assert plan.bound >= 0  # every cost is positive: at worst the bound at zero prices


def test_the_bound_is_never_below_the_bound_at_zero_prices() -> None:
    # Prices far above what capacity is worth (as an LP stopped early can give) drive the Lagrangian
    # bound far below zero; the best bound keeps the one at zero prices, and the line search between.
    p = synthetic_problem(300, 60, 3)
    params = LARGE
    days = horizon_days(p, params)
    n = build_network(p, params, find_candidates(p, 8, days, 2, 3), days)
    beyond = np.full(len(n.quantity), np.inf)
    zero = lagrangian_bound(n, np.zeros(len(n.point_chain)), np.zeros(len(n.stock_capacity)), beyond)
    huge = np.full(len(n.point_chain), 1e4)
    wild = lagrangian_bound(n, huge, np.zeros(len(n.stock_capacity)), beyond)
    assert wild < 0 < zero
    best = best_bound(n, huge, np.zeros(len(n.stock_capacity)), beyond)
    assert best >= zero
    some = best_bound(n, huge * 1e-4, np.zeros(len(n.stock_capacity)), beyond)
    assert some >= max(zero, lagrangian_bound(n, huge * 1e-4, np.zeros(len(n.stock_capacity)), beyond))
    assert best <= solve(p, params).objective + 1e-6 * best


def test_bound_counts_labs_off_the_candidates_at_their_distance() -> None:
    # With one candidate (near: room for 2 units), the other 8 units can only go further away; the
    # bound must not price them as short, but at least at the next lab's distance.
    small_lab = lab(
        "near", NEAR, [printer(hours=4.0), machine("laser", "laser"), machine("bench", "assembly")]
    )
    p = problem(
        [small_lab, lab("middle", MIDDLE), lab("far", FAR)], [order("o1", "face-shield", 10, days=1.0)]
    )
    params = replace(LARGE, late_window_days=0.0)
    days = horizon_days(p, params)
    candidates = find_candidates(p, 1, days)
    network = build_network(p, params, candidates, days)
    beyond = np.array(candidates.beyond) * params.km_weight
    bound = lagrangian_bound(
        network, np.zeros(len(network.point_chain)), np.zeros(len(network.stock_capacity)), beyond
    )
    best_params = replace(SMALL, k_nearest=3)
    best = solve(p, best_params)
    assert check(p, best, best_params) == []
    assert bound <= best.objective
    assert bound >= 10 * candidates.edges[0][0].km  # every unit travels at least to the nearest lab
    assert bound < params.shortage_penalty["routine"]  # far labs exist: nothing need be short


def test_machine_sets_are_the_connected_unions_of_groups() -> None:
    a, b, c = frozenset({0}), frozenset({0, 1}), frozenset({2})
    sets, complete = machine_sets({a, b, c})
    assert complete and sets == sorted([a, b, c], key=sorted)  # nested and disjoint: no new union
    x, y = frozenset({0, 1}), frozenset({1, 2})
    sets, complete = machine_sets({x, y})
    assert complete and frozenset({0, 1, 2}) in sets  # overlapping: their union is a set of its own


def test_machine_sets_fall_back_to_groups_and_their_union_when_too_many() -> None:
    groups = {frozenset({i, i + 1}) for i in range(20)}
    sets, complete = machine_sets(groups)
    assert not complete
    assert set(sets) == groups | {frozenset(range(21))}


def test_a_lab_whose_machine_rows_are_not_exact_is_left_out_of_the_plan() -> None:
    # Twelve steps, each on a different pair of neighbouring machines: too many unions of groups
    # for exact rows at "chain", so its options serve the bound only; "whole" makes everything.
    steps = [Step(process="p", minutes=10.0, requires={f"t{j}": True}) for j in range(12)]
    design = Design(id="chain-part", name="chain part", licence="CC0-1.0", source="test", steps=steps)
    paired = [machine(f"m{i}", "p", **{f"t{j}": True for j in (i - 1, i) if 0 <= j < 12}) for i in range(13)]
    whole = [machine("all", "p", hours=24.0, **{f"t{j}": True for j in range(12)})]
    p = problem([lab("chain", NEAR, paired), lab("whole", FAR, whole)], [])
    orders = [order(f"o{i}", "chain-part", 3, CENTRE, days=5.0) for i in range(3)]
    p = replace(p, designs={**p.designs, design.id: design}, demands=[Demand(o, o.quantity) for o in orders])
    plan = solved(p)
    assert plan.allocations and {a.lab_id for a in plan.allocations} == {"whole"}
    assert plan.shortages == []


def test_unknown_designs_and_refused_licences_are_short_with_their_reason() -> None:
    p = problem(
        [lab("near", NEAR), lab("far", FAR)],
        [order("o1", "no-such-design", 4), order("o2", "face-shield", 4), order("o3", "finger-splint", 2)],
    )
    gated = p.demands[1].order.model_copy(update={"accepts_licences": ["CC-BY-4.0"]})
    p = replace(p, demands=[p.demands[0], Demand(gated, 4), p.demands[2]])
    plan = solved(p)
    reasons = {s.order_id: s.reason for s in plan.shortages}
    assert set(reasons) == {"o1", "o2"}
    assert "unknown" in reasons["o1"] and "licence" in reasons["o2"]
    assert [a.order_id for a in plan.allocations] == ["o3"]
    assert plan.bound >= 8 * LARGE.shortage_penalty["routine"] - 1.0  # those units cannot be made


@pytest.mark.parametrize("weighting", ["balanced", "km"])
def test_a_warm_start_is_never_beaten_by_a_worse_replan(weighting: str) -> None:
    # The same problem again, with no time for the relaxation: the plan in hand is kept, not lost.
    # Under the balanced weights the first plan reaches labs that only its widened candidates hold;
    # the rushed re-plan does not widen, so it takes the plan's edges in (13.3 M against 3.3 M before).
    p = synthetic_problem(300, 60, 5)
    weighted = replace(LARGE, time_weight=objective_weights(weighting))
    first = solved(p, replace(weighted, workers=2))
    rushed = replace(weighted, time_limit_s=0.01)
    cold = solved(p, rushed)
    warm = solve(p, rushed, warm_start=first)
    assert check(p, warm, rushed) == []
    assert warm.objective <= first.objective + 1e-6 * first.objective
    assert cold.objective > first.objective  # else this test would show nothing


def test_a_warm_start_brings_its_labs_into_the_candidates() -> None:
    # A plan in hand at a lab beyond a demand's candidates keeps that line: the edge is taken in.
    p = synthetic_problem(300, 60, 5)
    params = replace(LARGE, k_nearest=1, room_candidates=0, trail_candidates=0)
    days = horizon_days(p, params)
    candidates = find_candidates(p, 1, days)
    own = candidates.edge_lab[candidates.edge_start[0] : candidates.edge_start[1]].tolist()
    assert candidates.useful is not None and candidates.design_row is not None
    useful = candidates.useful[candidates.design_row[0]]
    other = next(j for j in range(len(p.labs)) if j not in own and useful[j])
    widened = with_pairs(p, candidates, [(0, other), (0, own[0])])
    assert widened.edge_lab[widened.edge_start[0] : widened.edge_start[1]].tolist() == [*own, other]
    assert widened.edge_start[-1] == candidates.edge_start[-1] + 1
    assert widened.beyond == candidates.beyond
    delivery, at = p.demands[0].order.delivery, p.labs[other].lab.location
    km = distances_km([delivery.lat], [delivery.lon], [at.lat], [at.lon])[0, 0]
    assert widened.edge_km[widened.edge_start[1] - 1] == pytest.approx(km, rel=1e-9)


def test_a_warm_start_is_trimmed_to_a_lab_that_is_gone() -> None:
    p = synthetic_problem(300, 60, 6)
    first = solved(p)
    busiest = max(
        {a.lab_id for a in first.allocations},
        key=lambda lab_id: sum(a.quantity for a in first.allocations if a.lab_id == lab_id),
    )
    fewer = replace(p, labs=[state for state in p.labs if state.lab.id != busiest])
    again = solve(fewer, LARGE, warm_start=first)
    assert check(fewer, again, LARGE) == []
    assert busiest not in {a.lab_id for a in again.allocations}


@SETTINGS
@given(p=problems(), k=st.integers(1, 6))
def test_the_large_path_warm_started_from_the_small_paths_plan_is_no_worse(p: Problem, k: int) -> None:
    # Without material transfers: the large path plans none, so it cannot reproduce a plan with some.
    large = replace(LARGE, k_nearest=k, time_limit_s=0.01)
    small = replace(SMALL, k_nearest=k, transfer_radius_km=0.0)
    other = solve(p, small)
    plan = solve(p, large, warm_start=other)
    assert check(p, plan, large) == []
    assert plan.objective <= other.objective + 1e-6 * max(1.0, abs(other.objective))


def test_a_unit_that_exactly_fills_a_machine_by_its_due_date_is_planned_on_time() -> None:
    # 30 nominal minutes a day for 2 days, and a 60-minute print, then its 10-minute assembly (a third
    # of a day at the bench's pace): it fits, exactly, on both paths.
    sla = machine("sla", "sla", speed=0.5, hours=1.0, medical_grade=True)
    bench = machine("bench", "assembly", speed=0.5, hours=1.0)
    p = problem([lab("only", NEAR, [sla, bench])], [order("o1", "charlotte-valve", 1, days=2.0 + 1 / 3)])
    for params in (replace(LARGE, **INSTANT), replace(SMALL, **INSTANT)):
        plan = solve(p, params)
        assert check(p, plan, params) == []
        assert [(a.quantity, a.late_units) for a in plan.allocations] == [(1, 0)], params.decompose_above


@pytest.mark.parametrize("scarce", ["stock", "machine time"])
def test_the_bound_counts_whole_units_only(scarce: str) -> None:
    # Room for 4.5 face shields, by petg or by printer minutes shared with a finger splint: a
    # fraction of a shield is never made, and the bound knows it (4 shields, 6 short).
    shield = [printer(hours=9.0), machine("laser", "laser"), machine("bench", "assembly")]
    stock = {"petg": 0.033 * 4.5, "pla": 1.0, "pet_sheet_0_5": 10.0, "elastic": 10.0}
    days = 10.0
    if scarce == "machine time":
        stock["petg"] = 1.0
        days = 1.0  # 540 printer minutes: 4 shields (480) and the splint (25), not 4.5 shields
    orders = [order("shields", "face-shield", 10, days=days), order("splint", "finger-splint", 1, days=days)]
    plan = solved(
        problem([lab("only", NEAR, shield, stock=stock)], orders), replace(LARGE, late_window_days=0.0)
    )
    assert {s.order_id: s.quantity for s in plan.shortages} == {"shields": 6}
    # Counted in fractions, the half shield would take half a shortage penalty (50,000) off the
    # bound; what is left is part of one setup, which the relaxation spreads over the units.
    assert plan.objective - plan.bound < LARGE.setup_cost


@pytest.mark.parametrize("weighting", ["balanced", "km"])
def test_a_lab_off_the_candidates_costs_at_least_what_the_bound_counts(weighting: str) -> None:
    # The bound prices a lab beyond a demand's candidates at a lower bound of its cost per unit; the
    # time term is in it (under balanced weights a day is 25 km), and it never exceeds what any
    # option at such a lab costs in the network that holds every lab.
    p = synthetic_problem(300, 60, 5)
    params = replace(LARGE, time_weight=objective_weights(weighting))
    days = horizon_days(p, params)
    few = find_candidates(p, 1, days)
    beyond = beyond_cost(p, params, few, DEFAULT_RULES)
    every = find_candidates(p, len(p.labs), days)
    network = build_network(p, params, every, days)
    cheapest = np.full(len(p.demands), np.inf)
    for d in range(len(p.demands)):
        own = few.edge_lab[few.edge_start[d] : few.edge_start[d + 1]]
        off = (network.demand == d) & ~np.isin(network.lab, own)
        if off.any():
            cheapest[d] = network.cost[off].min()
    reached = np.isfinite(cheapest)
    assert reached.sum() > 250
    assert np.all(beyond[reached] <= cheapest[reached] + 1e-9)
    km_only = np.array(few.beyond)[reached] * params.km_weight
    assert np.all(beyond[reached] > km_only)  # the time term is counted


@pytest.mark.parametrize("seed", [5, 11])
def test_the_priced_charge_off_the_candidates_is_below_every_option_there(seed: int) -> None:
    # Each lab off a demand's candidates is charged its km, the arrival of a unit finishing by each
    # time a network option could, and the price of its capacity by then, together. Checked here
    # against every option of the network that holds every lab, priced one by one from the fewer
    # candidates' checkpoints (the first of the lab's machine set at or after the option's finish).
    p = synthetic_problem(200, 40, seed)
    params = LARGE  # the planner's balanced weights: a day sooner is worth 25 to 1,000 km
    days = horizon_days(p, params)
    few = find_candidates(p, 2, days)
    network = build_network(p, params, few, days)
    every = build_network(p, params, find_candidates(p, len(p.labs), days), days)
    rng = np.random.default_rng(seed)
    multiplier = rng.exponential(2.0, len(network.point_chain)) * (rng.random(len(network.point_chain)) < 0.5)
    price = suffix_sums(network, multiplier)
    stock = rng.exponential(50.0, len(network.stock_capacity))
    charged = priced_beyond(p, params, few, network, DEFAULT_RULES)(np.arange(len(p.demands)), price, stock)

    rows = few.design_row
    assert rows is not None
    entries: dict[tuple[int, int], tuple[list[tuple[int, float]], float]] = {}
    for o in range(network.options):
        key = (int(rows[network.demand[o]]), int(network.lab[o]))
        if key not in entries:
            work = np.flatnonzero(network.work_option == o)
            own = np.flatnonzero(network.stock_option == o)
            used = float(stock[network.stock_row[own]] @ network.stock_amount[own])
            chains = [
                (int(network.point_chain[network.work_point[w]]), float(network.work_amount[w])) for w in work
            ]
            entries[key] = (chains, used)

    def price_by(design_row: int, lab: int, finish: float) -> float:
        if (design_row, lab) not in entries:
            return 0.0
        chains, used = entries[(design_row, lab)]
        total = used
        for chain, minutes in chains:
            points = np.flatnonzero((network.point_chain == chain) & (network.point_time >= finish))
            total += minutes * price[points.min()]
        return total

    reference = np.full(len(p.demands), np.inf)
    for o in range(every.options):
        d, j = int(every.demand[o]), int(every.lab[o])
        if j in few.edge_lab[few.edge_start[d] : few.edge_start[d + 1]]:
            continue
        at = every.cost[o] + price_by(int(rows[d]), j, float(every.finish[o]))
        reference[d] = min(reference[d], at)
    reached = np.isfinite(reference)
    assert reached.sum() > 150
    assert np.all(charged[reached] <= reference[reached] + 1e-6 * np.abs(reference[reached]))
    assert np.all(np.isinf(charged[~reached]) | (charged[~reached] > 0))
    # The prices count: above the charge without them, and near the exact one option by option.
    unpriced = beyond_cost(p, params, few, DEFAULT_RULES)
    assert np.sum(charged[reached] > unpriced[reached] + 1e-6) > reached.sum() / 2
    assert charged[reached].sum() >= 0.9 * reference[reached].sum()


def test_prices_of_the_aggregated_lp_bound_a_plan_that_leaves_units_short() -> None:
    # Fifteen orders a lab: labs cannot make everything, and shortage penalties are most of any
    # plan's cost. Prices from the LP gathered by design and priority (machine sets by the horizon
    # and stock only) make the Lagrangian bound see it, where zero prices see the km alone.
    p = synthetic_problem(300, 20, 4)
    params = replace(LARGE, time_weight=objective_weights("km"))
    days = horizon_days(p, params)
    candidates = find_candidates(p, params.k_nearest, days)
    network = build_network(p, params, candidates, days)
    assert candidates.design_row is not None
    prices = aggregate_prices(network, candidates.design_row, 30.0)
    assert prices is not None
    point, stock = prices
    assert point.shape == network.point_chain.shape and stock.shape == network.stock_capacity.shape
    assert point.min() >= 0 and stock.min() >= 0 and point.max() > 0
    charge = priced_beyond(p, params, candidates, network, DEFAULT_RULES)
    beyond = beyond_cost(p, params, candidates, DEFAULT_RULES)
    bound = lagrangian_bound(network, point, stock, beyond, charge)
    zero = lagrangian_bound(network, np.zeros_like(point), np.zeros_like(stock), beyond, charge)
    plan = solved(p, params)
    short = sum(s.quantity for s in plan.shortages)
    assert short > 100
    assert zero < 0.01 * plan.objective < bound <= plan.objective
    assert bound >= 0.95 * plan.objective


def test_units_short_on_full_candidates_go_to_a_farther_lab_that_has_room() -> None:
    # A city's order outgrows its one candidate; the lab 85 km off is only another order's
    # candidate, and has room. Units short there go to it, late when they arrive after the due
    # date, and the plan stays valid. A lab that is no demand's candidate for the design is not
    # reached: the network has no rows of it.
    shield = [printer(), machine("laser", "laser"), machine("bench", "assembly")]
    labs = [lab("near", NEAR, shield), lab("far", FAR, shield), lab("unseen", MIDDLE, shield)]
    orders = [
        order("city", "face-shield", 400, CENTRE, days=3.0),
        order("town", "face-shield", 1, FAR, days=3.0),
    ]
    p = problem(labs, orders)
    params = replace(LARGE, k_nearest=1, near_km=0.0, room_candidates=0, trail_candidates=0)
    days = horizon_days(p, params)
    candidates = find_candidates(p, 1, days)
    assert candidates.edge_lab.tolist() == [0, 1]  # each order's nearest lab only
    network = build_network(p, params, candidates, days)
    units = round_units(network, np.zeros(network.options), network.shortage)
    on_candidates = int(units.sum())
    assert on_candidates < 401  # the city's candidate cannot make its 400
    far = place_far(p, params, network, candidates, units)
    assert {(f.demand, f.lab) for f in far} == {(0, 1)}
    assert all(f.late == (f.arrival > 3.0) for f in far)
    plan = _plan(p, params, network, candidates, units, 0.0, 0, 0.0, far=far)
    assert check(p, plan, params) == []
    made = {a.lab_id: a.quantity for a in plan.allocations if a.order_id == "city"}
    assert made["far"] == sum(f.units for f in far) > 0 and "unseen" not in made
    # The far lab is full now: nothing more of the design fits there by the horizon.
    rows = Rows(network)
    rows.load(units)
    proxy = int(np.flatnonzero((network.lab == 1) & (network.finish >= network.days - 1e-9))[0])
    rows.add(proxy, sum(f.units for f in far))
    short = sum(s.quantity for s in plan.shortages)
    assert short == 0 or rows.room(proxy) == 0


@pytest.mark.parametrize(("designs", "labs", "options"), [(3, 40, 5_000), (5_000, 2_000, 300)])
def test_design_lab_pairs_are_the_sorted_pairs_whichever_way_they_are_counted(
    designs: int, labs: int, options: int
) -> None:
    # (3, 40): few enough cells to tabulate; (5,000, 2,000): ten million cells, counted by sorting.
    rng = np.random.default_rng(designs)
    design_row = rng.integers(0, designs, size=options // 3 + 1)
    network = SimpleNamespace(
        demand=rng.integers(0, len(design_row), options), lab=rng.integers(0, labs, options)
    )
    pair_key, first, option_pair = design_lab_pairs(network, design_row, labs)  # type: ignore[arg-type]
    key = design_row[network.demand] * labs + network.lab
    want_key, want_first, want_pair = np.unique(key, return_index=True, return_inverse=True)
    assert np.array_equal(pair_key, want_key)
    assert np.array_equal(first, want_first)  # the first option of each pair
    assert np.array_equal(option_pair, want_pair)


@pytest.mark.parametrize("cells", [50, 1 << 23])
def test_the_least_value_per_key_is_the_same_tabulated_or_sorted(cells: int) -> None:
    # 50 cells: tabulated; 2^23 cells for 2,000 entries: by sorted keys.
    rng = np.random.default_rng(cells)
    key = rng.integers(0, cells, 2_000)
    value = rng.random(2_000)
    wanted = np.r_[
        key[:300], rng.integers(0, cells, 300)
    ]  # keys that have entries, and most likely some that do not
    want = np.array([value[key == k].min() if np.any(key == k) else np.inf for k in wanted])
    assert np.array_equal(_least_by_key(key, value, wanted, cells), want)


@given(st.lists(st.integers(0, 30), max_size=60), st.integers(0, 10))
def test_key_starts_are_where_each_key_begins_in_the_sorted_keys(keys: list[int], beyond: int) -> None:
    # key_starts counts instead of searching; it must give what the search gives, for keys with gaps,
    # keys absent at either end, and no keys at all.
    ordered = np.array(sorted(keys), dtype=np.int32)
    count = (max(keys) + 1 if keys else 0) + beyond
    assert np.array_equal(key_starts(ordered, count), np.searchsorted(ordered, np.arange(count + 1)))


@pytest.mark.parametrize("share, chosen", [(0.3, "near"), (1.0, "middle")])
def test_the_large_path_scales_a_trail_to_the_trip_as_the_model_does(share: float, chosen: str) -> None:
    # A strong trail at a lab 3.6 km away against one at 1.4 km: at most 30 % of a trip, it never
    # wins against a lab at half the distance; allowed the whole trip, it does. Both paths agree,
    # and the large path's bound, priced with the same discount, stays below both plans.
    # Untrailed labs able to make splints far away (Girona): beside them the trail leads the mean of
    # the labs able to make splints by most of the span (`solver.model.trail_strength`).
    bystanders = [lab(f"bystander-{i}", (FAR[0] + 0.01 * i, FAR[1])) for i in range(6)]
    labs = [lab("near", NEAR), lab("middle", (41.42, 2.17)), *bystanders]
    base = problem(labs, [order(f"o{i}", "finger-splint", 2) for i in range(6)])
    p = Problem(base.now, base.designs, base.labs, base.demands, trails={("finger-splint", "middle"): 5.0})
    strength = problem_trail_strengths(p)[("finger-splint", "middle")]
    large, small = replace(LARGE, trail_trip_share=share), replace(SMALL, trail_trip_share=share)
    plan, other = solved(p, large), solve(p, small)
    assert {a.lab_id for a in plan.allocations} == {a.lab_id for a in other.allocations} == {chosen}
    assert plan.bound <= other.objective + 1e-6 and other.bound <= plan.objective + 1e-6
    expected = sum(
        -share * strength * a.cost.km * a.quantity if chosen == "middle" else 0.0 for a in plan.allocations
    )
    assert sum(a.cost.trail for a in plan.allocations) == pytest.approx(expected)
