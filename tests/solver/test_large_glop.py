"""The LP kept in GLOP between solves (solver.lp.glop) and the relaxation grown on it."""

from __future__ import annotations

import numpy as np
import pytest

from scenarios.scale import synthetic_problem
from solver.large import relaxation as relaxation_module
from solver.large.network import build_network
from solver.large.path import (
    WIDE,
    _first_variant,
    _option_map,
    _point_map,
    _same_options,
    _same_points,
    _stock_map,
)
from solver.large.relaxation import GLOP_PARAMETERS, LinearRelaxation, relax
from solver.lp.glop import BASIC, IncrementalLP
from solver.model.candidates import find_candidates
from solver.model.problem import SolveParams, horizon_days


def transport(rng: np.random.Generator, sources: int, sinks: int) -> tuple[np.ndarray, ...]:
    """A random transport problem: supply per source, demand per sink, cost per (source, sink)."""
    supply = rng.integers(50, 70, sources).astype(float)  # more than the sinks ask: feasible
    demand = rng.integers(5, 15, sinks).astype(float)
    cost = rng.uniform(1.0, 10.0, (sources, sinks))
    return supply, demand, cost


def add_arcs(lp: IncrementalLP, arcs: list[tuple[int, int]], cost: np.ndarray, sources: int) -> None:
    """Columns for these (source, sink) arcs, in the supply rows (first) and the demand rows."""
    ids = lp.add_variables(np.zeros(len(arcs)), np.full(len(arcs), np.inf), np.array([cost[a] for a in arcs]))
    src = np.array([a[0] for a in arcs])
    dst = np.array([a[1] for a in arcs])
    lp.set_coefficients(np.r_[src, sources + dst], np.r_[ids, ids], np.ones(2 * len(arcs)))


def transport_rows(supply: np.ndarray, demand: np.ndarray, slack_cost: float | None = None) -> IncrementalLP:
    """An LP with a transport problem's supply rows (first) and demand rows, and no arc yet; with
    `slack_cost`, a dear column per sink that meets its demand alone (so that any arcs are feasible)."""
    lp = IncrementalLP(GLOP_PARAMETERS)
    sources, sinks = len(supply), len(demand)
    lp.add_rows(np.full(sources, -np.inf), supply)
    lp.add_rows(demand, np.full(sinks, np.inf))
    if slack_cost is not None:
        slack = lp.add_variables(np.zeros(sinks), np.full(sinks, np.inf), np.full(sinks, slack_cost))
        lp.set_coefficients(sources + np.arange(sinks), slack, np.ones(sinks))
    return lp


def test_an_lp_grown_by_rows_and_columns_resumes_and_reaches_the_from_scratch_optimum() -> None:
    rng = np.random.default_rng(7)
    sources, sinks = 12, 40
    supply, demand, cost = transport(rng, sources, sinks)
    every = [(i, j) for i in range(sources) for j in range(sinks)]
    # From scratch: every arc at once.
    whole = transport_rows(supply, demand)
    add_arcs(whole, every, cost, sources)
    best = whole.solve(60.0)
    assert best.optimal
    # Grown: a few arcs per sink and a dear slack per sink first, then the rest in two batches,
    # with a row that binds nothing (a cap on the total) between them.
    grown = transport_rows(supply, demand, slack_cost=1000.0)
    first = [(i, j) for (i, j) in every if (i + j) % 4 == 0]
    add_arcs(grown, first, cost, sources)
    start = grown.solve(60.0)
    assert start.optimal and start.value >= best.value - 1e-6
    cap = grown.add_rows(np.array([-np.inf]), np.array([supply.sum()]))
    grown.set_coefficients(
        np.full(grown.variables, cap[0]), np.arange(grown.variables), np.ones(grown.variables)
    )
    again = grown.solve(60.0)
    assert again.optimal and again.value == pytest.approx(start.value, rel=1e-9)
    assert again.iterations <= 2  # the cap binds nothing: the basis of the last solve is optimal
    # One arc that the prices say is worth it: a few pivots from the basis, not a solve afresh.
    rest = [a for a in every if a not in set(first)]
    reduced = [cost[a] - again.dual[a[0]] - again.dual[sources + a[1]] for a in rest]
    arc = rest.pop(int(np.argmin(reduced)))
    assert min(reduced) < -1e-6
    add_arcs(grown, [arc], cost, sources)
    one = grown.solve(60.0)
    assert one.optimal and one.value < again.value - 1e-9
    assert one.iterations <= 5
    add_arcs(grown, rest, cost, sources)
    last = grown.solve(60.0)
    assert last.optimal
    assert last.value == pytest.approx(best.value, rel=1e-9)


def test_repeated_entries_of_a_pair_are_summed() -> None:
    lp = IncrementalLP(GLOP_PARAMETERS)
    x = lp.add_variables(np.zeros(1), np.array([10.0]), np.array([-1.0]))
    row = lp.add_rows(np.array([-np.inf]), np.array([6.0]))
    lp.set_coefficients(np.r_[row, row], np.r_[x, x], np.array([1.0, 2.0]))  # 3 x <= 6
    solution = lp.solve(10.0)
    assert solution.optimal and solution.primal[0] == pytest.approx(2.0)
    assert solution.dual[0] == pytest.approx(-1.0 / 3.0)  # a <= row that binds: a value <= 0


def test_a_pair_set_again_keeps_its_latest_value_in_glop_and_in_a_glop_built_afresh() -> None:
    lp = IncrementalLP(GLOP_PARAMETERS)
    x = lp.add_variables(np.zeros(1), np.array([10.0]), np.array([-1.0]))
    row = lp.add_rows(np.array([-np.inf]), np.array([6.0]))
    lp.set_coefficients(row, x, np.array([1.0]))  # x <= 6
    assert lp.solve(10.0).primal[0] == pytest.approx(6.0)
    lp.set_coefficients(row, x, np.array([3.0]))  # set again, after a solve: 3 x <= 6
    lp.set_coefficients(row, x, np.array([2.0]))  # and again before the next: 2 x <= 6
    assert lp.solve(10.0).primal[0] == pytest.approx(3.0)  # GLOP updated in place
    lp._solver = None  # as if GLOP had refused the update: it is built afresh from the arrays
    assert lp.solve(10.0).primal[0] == pytest.approx(3.0)


def test_an_lp_grown_over_solves_is_the_lp_built_from_its_arrays_at_once() -> None:
    rng = np.random.default_rng(11)
    sources, sinks = 8, 30
    supply, demand, cost = transport(rng, sources, sinks)
    every = [(i, j) for i in range(sources) for j in range(sinks)]
    lp = transport_rows(supply, demand, slack_cost=1000.0)
    for part in range(3):  # a third of the arcs at a time, a solve after each
        add_arcs(lp, every[part::3], cost, sources)
        grown = lp.solve(60.0)
    lp._solver = None
    afresh = lp.solve(60.0)
    assert grown.optimal and afresh.optimal
    assert afresh.value == pytest.approx(grown.value, rel=1e-9)
    costs = np.r_[np.full(sinks, 1000.0), [cost[a] for p in range(3) for a in every[p::3]]]
    assert afresh.primal @ costs == pytest.approx(grown.value, rel=1e-9)  # the columns in their order


def network_of(orders: int, labs: int, seed: int):
    p = synthetic_problem(orders, labs, seed)
    params = SolveParams(time_limit_s=60.0, workers=1, decompose_above=0)
    days = horizon_days(p, params)
    wide = params.k_nearest * WIDE
    candidates = find_candidates(p, wide, days, params.trail_candidates, params.room_candidates)
    network = build_network(p, params, candidates, days)
    active = ((network.rank < params.k_nearest) | (network.rank >= wide)) & _first_variant(network)
    return network, active


@pytest.mark.parametrize("seed", [1, 2])
def test_the_generated_relaxation_is_the_lp_of_every_row_and_option(seed: int) -> None:
    network, active = network_of(300, 60, seed)
    grown = relax(network, active, deadline=np.inf, max_rounds=200)
    assert grown.complete and grown.stopped == "converged"
    # The LP written out whole: every option, every checkpoint's row (anchored), one solve.
    whole = LinearRelaxation(network, np.ones(network.options, dtype=bool))
    whole.add_cuts(np.setdiff1d(np.arange(len(network.point_chain)), whole.cut_points), anchored=True)
    optimal, value, *_ = whole.solve(np.inf)
    assert optimal
    assert grown.value == pytest.approx(value, rel=1e-7)


def solved_first_lp():
    """A 300 x 60 network's first LP, solved: the network, the LP, its demand and stock duals."""
    network, active = network_of(300, 60, 4)
    lp = LinearRelaxation(network, active)
    optimal, _, _, demand_dual, _, stock_dual = lp.solve(np.inf)
    assert optimal
    return network, lp, demand_dual, stock_dual


def test_columns_are_priced_the_same_a_chunk_of_options_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # negative_columns prices OPTION_CHUNK options at a time (a continent's 8 million at once held
    # 400 MB of temporaries): chunks of 7 options, which cut many options' entries apart from their
    # neighbours', must find the same columns as one chunk of every option.
    network, lp, demand_dual, stock_dual = solved_first_lp()
    point_dual = np.zeros(len(network.point_chain))
    point_dual[np.arange(0, len(point_dual), 5)] = 0.01  # some checkpoints priced, as cuts would be
    whole = lp.negative_columns(demand_dual, point_dual, stock_dual)
    monkeypatch.setattr(relaxation_module, "OPTION_CHUNK", 7)
    chunked = lp.negative_columns(demand_dual, point_dual, stock_dual)
    assert len(whole) > 0
    assert chunked.tolist() == whole.tolist()


def test_plain_and_anchored_cuts_give_the_same_lp() -> None:
    network, _ = network_of(300, 60, 3)
    values = []
    for anchored in (True, False):
        lp = LinearRelaxation(network, np.ones(network.options, dtype=bool))
        optimal, _, units, *_ = lp.solve(np.inf)
        while optimal and len(cuts := lp.violated(units)):
            lp.add_cuts(cuts, anchored=anchored)
            optimal, value, units, *_ = lp.solve(np.inf)
        assert optimal
        values.append(value)
    assert values[0] == pytest.approx(values[1], rel=1e-9)


def widened_pair(orders: int, labs: int, seed: int):
    """A network and the same problem's network on four times the candidates, as the large path widens."""
    p = synthetic_problem(orders, labs, seed)
    params = SolveParams(time_limit_s=60.0, workers=1, decompose_above=0)
    days = horizon_days(p, params)
    wide = params.k_nearest * WIDE
    narrow = build_network(
        p, params, find_candidates(p, wide, days, params.trail_candidates, params.room_candidates), days
    )
    wider = build_network(
        p, params, find_candidates(p, 4 * wide, days, params.trail_candidates, params.room_candidates), days
    )
    return narrow, wider, wide, params.k_nearest


@pytest.mark.parametrize("seed", [1, 2])
def test_a_wider_lp_started_from_the_narrow_basis_resumes_and_reaches_the_same_optimum(seed: int) -> None:
    narrow, wider, wide, k = widened_pair(300, 60, seed)
    assert wider.options > narrow.options
    first = relax(
        narrow, ((narrow.rank < k) | (narrow.rank >= wide)) & _first_variant(narrow), np.inf, max_rounds=200
    )
    assert first.complete and first.basis is not None
    active = ((wider.rank < k) | (wider.rank >= wide)) & _first_variant(wider)
    active[_same_options(narrow, first.columns_in, wider)] = True
    point_of = _point_map(narrow, wider)
    cuts = _same_points(first.cut_points, point_of)
    afresh = relax(wider, active, np.inf, max_rounds=200, cuts=cuts)
    option_of = _option_map(narrow, wider)
    carried = first.basis.carried(option_of, point_of, _stock_map(narrow, wider, option_of))
    resumed = relax(wider, active, np.inf, max_rounds=200, cuts=cuts, basis=carried)
    assert afresh.complete and resumed.complete
    assert resumed.value == pytest.approx(afresh.value, rel=1e-7)
    assert resumed.value <= first.value * (1 + 1e-9)  # more options can only help
    # The carried basis is the narrow optimum, primal feasible in the wider LP: a few pivots.
    assert resumed.work * 3 < afresh.work


def test_maps_between_networks_pair_equal_elements() -> None:
    narrow, wider, _, _ = widened_pair(200, 40, 2)
    option_of = _option_map(narrow, wider)
    o = np.flatnonzero(option_of >= 0)
    assert len(o) == narrow.options  # every narrow option is in the wider network
    m = option_of[o]
    for field in ("demand", "lab", "late", "finish", "cost"):
        assert np.array_equal(getattr(narrow, field)[m], getattr(wider, field)[o]), field
    point_of = _point_map(narrow, wider)
    q = np.flatnonzero(point_of >= 0)
    assert len(q) and np.array_equal(narrow.point_time[point_of[q]], wider.point_time[q])
    stock_of = _stock_map(narrow, wider, option_of)
    assert np.all(stock_of < len(narrow.stock_capacity))


def test_a_wrong_basis_costs_pivots_not_the_optimum() -> None:
    network, active = network_of(200, 40, 5)
    lp = LinearRelaxation(network, active)
    optimal, value, *_ = lp.solve(np.inf)
    assert optimal
    again = LinearRelaxation(network, active)
    variables, rows = again.lp.statuses
    # Every column and every row's slack basic: far too many basic columns, no basis at all.
    again.lp.set_basis(np.full(len(variables), BASIC), np.full(len(rows), BASIC))
    optimal_again, value_again, *_ = again.solve(np.inf)
    assert optimal_again and value_again == pytest.approx(value, rel=1e-9)
    with pytest.raises(ValueError, match="row_status"):
        again.lp.set_basis(variables, rows[:-1])


def test_a_demand_short_by_many_units_takes_in_more_columns_a_round(monkeypatch: pytest.MonkeyPatch) -> None:
    # A demand the LP leaves short by several times a typical demand's quantity (a lease of hundreds
    # of units in a host's plan) needs labs its first options do not have: it gets up to
    # COLUMNS_PER_SHORT columns a round, in proportion; one short by less than that, the usual four.
    network, lp, demand_dual, stock_dual = solved_first_lp()
    points = np.zeros(len(network.point_chain))

    def per_demand(found: np.ndarray) -> np.ndarray:
        return np.bincount(network.demand[found], minlength=len(network.quantity))

    usual = per_demand(lp.negative_columns(demand_dual, points, stock_dual))
    with monkeypatch.context() as m:
        m.setattr(relaxation_module, "COLUMNS_PER_DEMAND", 10**6)
        available = per_demand(lp.negative_columns(demand_dual, points, stock_dual))
    wide = np.flatnonzero(available >= 8)
    assert len(wide) >= 2, "no demand with eight priced columns: the counts below would test nothing"
    typical = float(np.median(network.quantity))
    short = np.zeros(len(network.quantity))
    short[wide[0]] = 10 * typical  # wants 40 columns a round: capped
    short[wide[1]] = 0.5 * typical  # wants the usual 4
    counted = per_demand(lp.negative_columns(demand_dual, points, stock_dual, short))
    cap = relaxation_module.COLUMNS_PER_SHORT
    assert cap > relaxation_module.COLUMNS_PER_DEMAND
    assert counted[wide[0]] == min(int(available[wide[0]]), cap)
    assert counted[wide[1]] == relaxation_module.COLUMNS_PER_DEMAND
    others = np.setdiff1d(np.arange(len(network.quantity)), wide[:2])
    assert counted[others].tolist() == usual[others].tolist()
