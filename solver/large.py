"""Large problems solved as one: the linear relaxation of the whole network, rounded, and bounded.

Above `SolveParams.decompose_above` demands, one CP-SAT model is too big to build and solve in
seconds, and splitting by region starves the regions whose demand exceeds their labs. Instead:

1. *Candidates.* Every demand gets its `WIDE` × k nearest qualifying labs (plus trails, room, and
   every lab within `NEAR_KM`), as numpy arrays (`solver.network`), with exact machine rows at
   every due date.
2. *Relaxation.* The LP of the whole network is solved by row and column generation
   (`solver.relaxation`): it starts from the k nearest labs and the chains' horizons and takes in
   the rows it violates and the options it prices as worth it. This is where the demands of a
   crowded city reach labs further away; where the LP would still pay more for a unit than the
   nearest lab off a demand's candidates costs, that demand's candidates are widened and the LP
   solved again.
3. *Rounding.* The LP's units are rounded down, trimmed to the rows, and the rest placed greedily
   on the cheapest options with room (`solver.rounding`): a valid plan on the validator's rows.
4. *Bound.* The Lagrangian bound at the LP's dual prices (`solver.bound`) covers every plan, on
   any lab, so the reported gap is a true upper bound on the distance to the optimum.

Time: each step is measured against the caller's time limit; the LP gets what the others leave.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from protocol.model import Plan, Shortage
from solver.bound import Beyond, lagrangian_bound
from solver.candidates import (
    Candidates,
    cheapest_beyond,
    find_candidates,
    merge_candidates,
    shortage_reason,
)
from solver.lines import LineUnits, allocation_line, split_units
from solver.network import Network, build_network, trail_discount
from solver.problem import Problem, SolveParams, horizon_days
from solver.relaxation import relax
from solver.rounding import round_units
from solver.trails import DEFAULT_RULES, TrailRules

#: Candidate labs per demand in the network, as a multiple of k_nearest (the LP starts on k of them).
WIDE = 3
#: Every qualifying lab this close is a candidate too (up to MOST in all): where labs are dense,
#: a crowded city's demand can then spread over its whole neighbourhood.
NEAR_KM = 50.0
MOST = 96
#: Share of the time limit the LP may use; the rounding, the bound and the plan take the rest. The
#: first LP stops by FIRST_LP_SHARE, leaving time to widen the candidates of crowded demands.
LP_SHARE = 0.75
FIRST_LP_SHARE = 0.6
#: A bound this close to the objective, relative to it, proves the plan optimal: the bound is
#: computed in floating point and shaved so that rounding cannot lift it (solver.bound), and
#: distances differ in their last digits between the network's arrays and the plan's terms.
PROOF_TOLERANCE = 1e-6
#: Widened candidates: this many times more nearest labs and km (and half as many times MOST).
FURTHER = 4


def solve_large(
    problem: Problem,
    params: SolveParams,
    version: int = 0,
    rules: TrailRules = DEFAULT_RULES,
    warm_start: Plan | None = None,
) -> Plan:
    """Solve a large problem through its linear relaxation (see the module docstring).

    `warm_start` (a plan for the same demands, such as the previous one) is fitted to today's rows
    the way the LP's units are, and whichever of the two plans costs less is kept: a re-plan is never
    worse than the plan in hand, trimmed where capacity or stock has gone.
    """
    started = time.perf_counter()
    days = horizon_days(problem, params)
    wide = params.k_nearest * WIDE
    candidates = _candidates(problem, params, days, range(len(problem.demands)), wide, NEAR_KM, MOST)
    network = build_network(problem, params, candidates, days, rules)
    # The LP starts on the k nearest labs and the extras (trails, room, near), on time where possible.
    active = ((network.rank < params.k_nearest) | (network.rank >= wide)) & _first_variant(network)
    deadline = started + params.time_limit_s * LP_SHARE
    relaxation = relax(network, active, started + params.time_limit_s * FIRST_LP_SHARE)
    beyond = _beyond_cost(problem, params, candidates, rules)
    starved = np.flatnonzero(relaxation.demand_price > beyond + network.setup / network.quantity + 1e-6)
    if len(starved) and time.perf_counter() < deadline:
        # Some demands pay more at the margin than the nearest lab off their candidates would cost:
        # their candidates are too few (a crowded place). Widen theirs and solve again.
        more = _candidates(
            problem, params, days, starved, wide * FURTHER, NEAR_KM * FURTHER, MOST * FURTHER // 2
        )
        widened = merge_candidates(candidates, more, starved)
        wider = build_network(problem, params, widened, days, rules)
        active = ((wider.rank < params.k_nearest) | (wider.rank >= wide)) & _first_variant(wider)
        again = relax(wider, active, deadline)
        if not math.isnan(again.value):  # else keep the first LP: the second found no solution in time
            candidates, network, relaxation = widened, wider, again
            beyond = _beyond_cost(problem, params, candidates, rules)
    units = round_units(network, relaxation.units, network.shortage)
    if warm_start is not None:
        kept = round_units(network, _units_of(problem, network, warm_start), network.shortage)
        if _objective(network, kept) < _objective(network, units):
            units = kept
    bound = lagrangian_bound(
        network,
        relaxation.point_multiplier,
        relaxation.stock_multiplier,
        beyond,
        _priced_beyond(problem, params, candidates, network, rules),
    )
    return _plan(problem, params, network, candidates, units, bound, version, time.perf_counter() - started)


def meets(bound: float, objective: float) -> bool:
    """True when `bound` proves `objective` optimal, within PROOF_TOLERANCE."""
    return bound >= objective - PROOF_TOLERANCE * max(1.0, abs(objective))


def _units_of(problem: Problem, network: Network, plan: Plan) -> np.ndarray:
    """Units per option of `plan`; allocations off the network are dropped.

    Each allocation's units go where the plan put them as far as its lines say: its early units
    (`Allocation.early_units`) on the first time checkpoint, the rest on the loosest checkpoint of
    their kind, on time or late (`solver.lines.split_units`).
    """
    units = np.zeros(network.options, dtype=np.float64)
    if not network.options:
        return units
    demand_of = {d.order.id: i for i, d in enumerate(problem.demands)}
    lab_of = {state.lab.id: j for j, state in enumerate(problem.labs)}
    labs = len(problem.labs)
    key = (network.demand.astype(np.int64) * labs + network.lab.astype(np.int64)) * 2 + network.late
    order = np.argsort(key, kind="stable")  # within a key, the loosest checkpoint first
    ordered = key[order]
    first = min(network.grid, default=math.inf)
    for allocation in plan.allocations:
        d = demand_of.get(allocation.order_id)
        lab = lab_of.get(allocation.lab_id)
        if d is None or lab is None:
            continue
        for late, early, rest in split_units(allocation):
            wanted = (d * labs + lab) * 2 + late
            at = int(np.searchsorted(ordered, wanted))
            end = int(np.searchsorted(ordered, wanted, side="right"))
            if at == end:
                continue
            units[order[at]] += rest
            tightest = order[end - 1]
            units[tightest if network.finish[tightest] <= first + 1e-9 else order[at]] += early
    return units


def _objective(network: Network, units: np.ndarray) -> float:
    """What whole units per option cost: per unit, setups of the used (demand, lab) pairs, shortage."""
    used = units > 0
    labs = int(network.lab.max()) + 1 if network.options else 1
    pairs = np.unique(network.demand[used].astype(np.int64) * labs + network.lab[used])
    placed = np.bincount(network.demand, weights=units, minlength=len(network.quantity))
    short = np.maximum(0.0, network.quantity - placed)
    return float(units @ network.cost + network.setup * len(pairs) + short @ network.shortage)


def _candidates(
    problem: Problem,
    params: SolveParams,
    days: float,
    demands: Sequence[int] | np.ndarray,
    count: int,
    within_km: float,
    most: int,
) -> Candidates:
    """Candidates of the listed demands: `count` nearest, trails, room, and the labs within reach."""
    part = problem
    if len(demands) != len(problem.demands):
        part = Problem(
            problem.now,
            problem.designs,
            problem.labs,
            [problem.demands[int(d)] for d in demands],
            problem.trails,
            problem.excluded,
        )
    return find_candidates(
        part,
        count,
        days,
        params.trail_candidates,
        params.room_candidates,
        reach=max(1, 4 // WIDE),
        within_km=within_km,
        most=most,
    )


def _first_variant(network: Network) -> np.ndarray:
    """Per option: True for the first option of its edge: the loosest on time, else the loosest late."""
    first = np.ones(network.options, dtype=bool)
    first[1:] = (network.demand[1:] != network.demand[:-1]) | (network.lab[1:] != network.lab[:-1])
    return first


def _beyond_cost(
    problem: Problem, params: SolveParams, candidates: Candidates, rules: TrailRules
) -> np.ndarray:
    """Per demand, a lower bound of the cost per unit at any lab off its candidates (inf if none)."""
    strongest: dict[str, float] = {}
    for (design_id, _), tau in problem.trails.items():
        strongest[design_id] = max(strongest.get(design_id, 0.0), rules.strength(tau))
    discount = np.array(
        [
            params.trail_discount_km * params.km_weight * strongest.get(d.order.design, 0.0)
            for d in problem.demands
        ]
    )
    return np.array(candidates.beyond) * params.km_weight - discount


def _priced_beyond(
    problem: Problem, params: SolveParams, candidates: Candidates, network: Network, rules: TrailRules
) -> Beyond:
    """Per listed demand, the least cost per unit off its candidates with the labs' capacity priced.

    A lab's price for a design is the least price of that design's options there (the late ones,
    counted at the horizon, are the cheapest), or 0 where the network has none: never above what a
    unit made there would pay, less the lab's trail discount.
    """
    design_row = candidates.design_row
    assert design_row is not None

    discount = np.zeros((int(design_row.max(initial=0)) + 1, len(problem.labs)))
    if problem.trails:
        design_ids = sorted({d.order.design for d in problem.demands})
        lab_index = {s.lab.id: j for j, s in enumerate(problem.labs)}
        for design_id, lab_id in problem.trails:
            if design_id in design_ids and lab_id in lab_index:
                j = lab_index[lab_id]
                discount[design_ids.index(design_id), j] = trail_discount(
                    problem, params, rules, design_id, j
                )

    def cost(demands: np.ndarray, option_price: np.ndarray) -> np.ndarray:
        table = np.full(discount.shape, np.inf)
        np.minimum.at(table, (design_row[network.demand], network.lab), option_price)
        table[~np.isfinite(table)] = 0.0
        return cheapest_beyond(problem, candidates, demands, table - discount, params.km_weight)

    return cost


def _plan(
    problem: Problem,
    params: SolveParams,
    network: Network,
    candidates: Candidates,
    units: np.ndarray,
    bound: float,
    version: int,
    seconds: float,
) -> Plan:
    """The plan of whole units per option: one allocation per used (order, lab), shortages, objective."""
    n = network
    used = np.flatnonzero(units > 0)
    allocations = []
    objective = 0.0
    pairs: dict[tuple[int, int], tuple[int, LineUnits]] = {}
    for o in used.tolist():
        _, line = pairs.setdefault((int(n.demand[o]), int(n.lab[o])), (o, LineUnits()))
        line.add(int(units[o]), bool(n.late[o]), float(n.finish[o]), float(n.arrival[o]), params)
    for (d, lab), (o, line) in sorted(pairs.items()):
        km, discount = float(n.km[o]), float(n.discount[o])
        allocation = allocation_line(problem, params, d, lab, km, discount, line)
        objective += allocation.cost.total
        allocations.append(allocation)
    placed = np.bincount(n.demand, weights=units, minlength=len(n.quantity)).astype(np.int64)
    shortages = []
    for d in np.flatnonzero(placed < n.quantity).tolist():
        short = int(n.quantity[d] - placed[d])
        objective += params.shortage_penalty[problem.demands[d].order.priority] * short
        shortages.append(
            Shortage(
                order_id=problem.demands[d].order.id,
                quantity=short,
                reason=shortage_reason(problem, candidates, d),
            )
        )
    return Plan(
        version=version,
        allocations=allocations,
        shortages=shortages,
        objective=objective,
        bound=min(bound, objective),
        bound_scope="all",  # the Lagrangian bound prices the labs off the candidates too
        status="OPTIMAL" if meets(bound, objective) else "FEASIBLE",
        solve_seconds=seconds,
    )
