"""Large problems solved as one: the linear relaxation of the whole network, rounded, and bounded.

Above `SolveParams.decompose_above` demands, one CP-SAT model is too big to build and solve in
seconds, and splitting by region starves the regions whose demand exceeds their labs. Instead:

1. *Candidates.* Every demand gets its `WIDE` × k nearest qualifying labs (plus trails, room, and
   every lab within `SolveParams.near_km`), as numpy arrays (`solver.large.network`), with exact
   machine rows at every due date.
2. *Relaxation.* The LP of the whole network is solved by row and column generation
   (`solver.large.relaxation`): it starts from the k nearest labs and the chains' horizons and takes in
   the rows it violates and the options it prices as worth it. This is where the demands of a
   crowded city reach labs further away; where the LP would still pay more for a unit than the
   nearest lab off a demand's candidates costs (known once its prices settle, before it converges),
   that demand's candidates are widened and the wider LP solved from the first one's basis.
3. *Rounding.* The LP's units are rounded down, trimmed to the rows, and the rest placed greedily
   on the cheapest options with room (`solver.large.rounding`): a valid plan on the validator's rows.
   Units still short then go to the nearest labs off their candidates that have room for their
   design by the horizon (`solver.large.far`): where labs cannot make everything, the candidates
   fill up first, and any trip costs less than a unit short.
4. *Bound.* The Lagrangian bound at the LP's dual prices (`solver.large.bound`) covers every plan, on
   any lab, so the reported gap is a true upper bound on the distance to the optimum.

Time: each step is measured against the caller's time limit; the LP gets what the others leave.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from protocol.model import Allocation, Plan, Shortage
from solver.large.aggregate import aggregate_prices
from solver.large.beyond import beyond_cost, priced_beyond
from solver.large.bound import best_bound, lagrangian_bound
from solver.large.far import FarUnits, place_far
from solver.large.heap import release_freed_memory
from solver.large.network import Network, build_network
from solver.large.relaxation import relax
from solver.large.rounding import polished, round_units_by
from solver.model.candidates import (
    Candidates,
    find_candidates,
    merge_candidates,
    shortage_reason,
    with_pairs,
)
from solver.model.lines import LineUnits, allocation_line, split_units
from solver.model.problem import Problem, SolveParams, horizon_days, with_whole_units
from solver.model.trails import DEFAULT_RULES, TrailRules

#: Candidate labs per demand in the network, as a multiple of k_nearest (the LP starts on k of them).
WIDE = 3
#: Every qualifying lab within `SolveParams.near_km` is a candidate too (up to MOST in all): where labs
#: are dense, a crowded city's demand can then spread over its whole neighbourhood.
MOST = 96
#: Share of the time limit the LP may use; the rounding, the bound and the plan take the rest. The
#: first LP stops by FIRST_LP_SHARE, leaving time to widen the candidates of crowded demands.
LP_SHARE = 0.7
FIRST_LP_SHARE = 0.55
#: A bound this close to the objective, relative to it, proves the plan optimal: the bound is
#: computed in floating point and shaved so that rounding cannot lift it (solver.large.bound), and
#: distances differ in their last digits between the network's arrays and the plan's terms.
PROOF_TOLERANCE = 1e-6
#: Widened candidates: this many times more nearest labs and km (and half as many times MOST).
FURTHER = 4
#: Candidates are widened only when that could lower the LP's value by more than this share of it.
WIDEN_GAIN = 0.002
#: The first LP stops as soon as its prices, settled (solver.large.relaxation.SETTLED), show a gain of
#: this share of its value from widening: the wider LP, started from its basis, finishes the
#: generation instead (at 10,000 x 2,000 the rounds left were 4 to 5 of the first LP's 12 CPU s on
#: the widened seeds, where the gain was already 3 % to 29 % at the first settled round; on seed 5,
#: not widened, 0.02 % to 0.06 % through every round). Above WIDEN_GAIN, so that a first LP whose
#: gain is near the line still decides on its last prices.
WIDEN_EARLY = 0.005
#: The wider LP's stopping rule: one round that moves its value by less than this (relative, with few
#: rows and options added) ends it. It starts from the first LP's settled basis, and each round costs
#: about a second of GLOP's fixed cost: on seeds 8 and 20 of 10,000 x 2,000, its fourth round was
#: within 1e-4 of the value where the first LP's rule (2 rounds below 3e-5) stopped two rounds later.
WIDER_STALL = 1e-4
#: Share of the time limit kept for the greedy fill, the bound and the plan: the rounding's merge
#: (which only makes a full plan cheaper) stops this far before the limit.
BOUND_RESERVE = 0.15
#: Share of the time limit kept for the bound and writing the plan: the greedy fill stops this far
#: before it, and the search for a better bound (which only sharpens the reported gap) at half that.
ROUND_RESERVE = 0.08
#: Share of the time limit kept for the bound and the plan after units are placed off the candidates.
FAR_RESERVE = 0.06
#: What follows each step grows with the network, not with the time limit: on a continent (50,000
#: orders over 5,000 labs) placing units off the candidates took 2.6 s, one evaluation of the bound
#: 11.7 s and the plan's lines 1.7 s, against 15.5 s to build the candidates and the network. So
#: besides the shares of the limit above, the merge stops at least AFTER_MERGE times the build's
#: time before the limit (at 1.3 a continent's solve ended 0.5 s inside its 120), the greedy fill
#: AFTER_FILL times, the placing off the candidates AFTER_FAR times, and no evaluation of the bound
#: starts later than EVALUATE times before it.
AFTER_MERGE = 1.5
AFTER_FILL = 1.1
AFTER_FAR = 0.9
EVALUATE = 1.0
#: Deterministic budgets of the relaxation (`SolveParams.deterministic`), counted in LP solves and
#: simplex iterations, never in seconds: the same problem stops at the same round on any machine.
#: Per demand, so that a problem twice as large gets twice the work; the widened LP, which starts
#: from the first one's rows and columns, gets WIDER_WORK of it more.
LP_ROUNDS = 30
WORK_PER_DEMAND = 20
WIDER_WORK = 0.5
#: The plan in hand, fitted to today's rows and filled, is polished (merged, consolidated, joined by
#: ejection) only when it costs less than this share above the LP's plan: polishing took 0.1 % to
#: 1.2 % off it (the federation's plans with trades, 4 x 2,500 x 400, surge seed 1), and took 0.6 to
#: 6.4 s of a 2,500-order plan whose LP's plan was 2 % to 22 % cheaper anyway.
WARM_POLISH = 0.03
#: Why units are short when the solve's time limit cut the greedy fill (see _plan).
TIME_REASON = "not placed before the solve's time limit (a problem too large for it, or a busy machine)"
#: Statuses of a plan of the large path that is not proven optimal: the relaxation converged (its
#: LP is solved over every row and option of the network), it stalled (solver.large.relaxation.STALL:
#: rows and options were left, but rounds no longer moved its value), it stopped at its budget of
#: rounds or iterations, or the wall clock stopped it (then a second run may differ).
CONVERGED = "FEASIBLE"
UNCONVERGED = "FEASIBLE_LP_BUDGET"
STALLED = "FEASIBLE_LP_STALLED"
TIMED_OUT = "FEASIBLE_LP_TIME_LIMIT"


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

    With `params.deterministic`, the relaxation's budgets are counted in solves and simplex
    iterations (LP_ROUNDS, WORK_PER_DEMAND), so the same problem gives the same plan on any machine;
    the time limit still holds, and a plan it cut short says so in its status (TIMED_OUT).
    """
    started = time.perf_counter()
    if params.whole_units:  # pooled machines' time in whole units (`with_whole_units`)
        problem = with_whole_units(problem)
    limit = started + params.time_limit_s
    work = WORK_PER_DEMAND * max(1, len(problem.demands)) if params.deterministic else None
    days = horizon_days(problem, params)
    wide = params.k_nearest * WIDE
    candidates = _candidates(
        problem, params, days, range(len(problem.demands)), wide, params.near_km, MOST, rules
    )
    if warm_start is not None:
        # The plan in hand may use labs that only a widened network held: take its edges in, or its
        # lines there are dropped and a rushed re-plan is worse than the plan it started from.
        candidates = with_pairs(problem, candidates, _pairs_of(problem, warm_start))
    network = build_network(problem, params, candidates, days, rules)
    release_freed_memory()  # the build's temporaries (see solver.large.heap)
    built = time.perf_counter() - started
    # The LP starts on the k nearest labs and the trail and room extras, on time where possible. The
    # labs within near_km come in by column generation where they pay: on a continent they were
    # 448,000 of the first 848,000 columns, and GLOP's model is the solve's peak of memory.
    extras = params.trail_candidates + params.room_candidates
    active = (
        (network.rank < params.k_nearest) | ((network.rank >= wide) & (network.rank < wide + extras))
    ) & _first_variant(network)
    deadline = started + params.time_limit_s * LP_SHARE
    beyond = beyond_cost(problem, params, candidates, rules)

    def widen_early(demand_price: np.ndarray, value: float) -> bool:
        """Whether the first LP's settled prices already say its candidates must be widened."""
        margin = demand_price - (beyond + network.setup / network.quantity)
        gain = float(np.sum(np.maximum(margin, 0.0) * network.quantity))
        return gain > WIDEN_EARLY * abs(value)

    relaxation = relax(
        network, active, started + params.time_limit_s * FIRST_LP_SHARE, LP_ROUNDS, work, widen=widen_early
    )
    release_freed_memory()  # GLOP's model, gone with the LP: a gigabyte at a continent
    stops = [relaxation.stopped]
    first = (network, candidates, relaxation)
    margin = relaxation.demand_price - (beyond + network.setup / network.quantity)
    starved = np.flatnonzero(margin > 1e-6)
    # What widening could save at most: each starved unit made off its candidates at the cheapest
    # cost there instead of at its marginal price. When that is a sliver of the LP's value, the wider
    # network (as costly to build and solve again as the first) cannot change the plan much.
    gain = float(np.sum(margin[starved] * network.quantity[starved]))
    worth = not math.isnan(relaxation.value) and gain > WIDEN_GAIN * abs(relaxation.value)
    # Building the wider network takes about as long as the first one did: start it only with room
    # for that and a few LP rounds before the deadline. In deterministic mode too: a wider LP that
    # the clock would cut after a round or two gave a worse plan and a worse bound than the first LP
    # (10,000 x 2,000, seed 8, 30 s: 31 %). Then the clock, not the work, decided, and the status says
    # so (a second run may differ).
    room = deadline - time.perf_counter() > 2.0 * built
    if len(starved) and worth and not room:
        stops.append("time")
    # The plan by the merge and the fill, whose deadlines are known now (see below).
    merge_by = limit - max(BOUND_RESERVE * params.time_limit_s, AFTER_MERGE * built)
    fill_by = limit - max(ROUND_RESERVE * params.time_limit_s, AFTER_FILL * built)
    far_by = limit - max(FAR_RESERVE * params.time_limit_s, AFTER_FAR * built)
    if len(starved) and worth and room:
        # Some demands pay more at the margin than the nearest lab off their candidates would cost:
        # their candidates are too few (a crowded place). Widen theirs and solve again, from the rows
        # and options the first LP took in, and from its optimal basis.
        more = _candidates(
            problem,
            params,
            days,
            starved,
            wide * FURTHER,
            params.near_km * FURTHER,
            MOST * FURTHER // 2,
            rules,
        )
        widened = merge_candidates(candidates, more, starved)
        wider = build_network(problem, params, widened, days, rules)
        active = np.zeros(wider.options, dtype=bool)
        active[_same_options(network, relaxation.columns_in, wider)] = True
        # The wider LP starts from the first one's optimal basis, carried over element by element
        # (new options at their bound, new rows' slacks basic): GLOP resumes from it in a few
        # thousand pivots instead of solving the wider LP afresh.
        point_of = _point_map(network, wider)
        carried = None
        if relaxation.basis is not None:
            option_of = _option_map(network, wider)
            carried = relaxation.basis.carried(option_of, point_of, _stock_map(network, wider, option_of))
        again = relax(
            wider,
            active,
            deadline,
            LP_ROUNDS,
            None if work is None else max(1, int(work * WIDER_WORK)),
            cuts=_same_points(relaxation.cut_points, point_of),
            basis=carried,
            stall=WIDER_STALL,
            stall_rounds=1,
        )
        stops.append(again.stopped)
        release_freed_memory()
        if not math.isnan(again.value):  # else keep the first LP: the second found no solution in time
            candidates, network, relaxation = widened, wider, again
            beyond = beyond_cost(problem, params, candidates, rules)
    lp_network, lp_candidates = network, candidates
    bound_by = limit - max(ROUND_RESERVE * params.time_limit_s / 2, EVALUATE * built)
    # Where the relaxation stopped short and leaves units short, the aggregated LP's prices
    # (solver.large.aggregate) see what capacity is worth where its own do not. It runs beside the
    # rounding: GLOP lets go of the interpreter, and the rounding holds it.
    pricing = None
    lp_placed = np.bincount(network.demand, weights=relaxation.units, minlength=len(network.quantity))
    if not relaxation.complete and np.any(lp_placed < network.quantity - 1e-6):
        assert candidates.design_row is not None
        pricing = ThreadPoolExecutor(1, thread_name_prefix="aggregate")
        aggregated = pricing.submit(
            aggregate_prices, network, candidates.design_row, bound_by - time.perf_counter()
        )
    # The plan must be out by the limit: the merge stops BOUND_RESERVE before it, the greedy fill
    # (without which units go short at a high penalty) ROUND_RESERVE before it, leaving the bound's
    # evaluations the rest; the status says so.
    units, merged, rows = round_units_by(network, relaxation.units, network.shortage, merge_by, fill_by)
    release_freed_memory()
    if warm_start is not None:
        in_hand = _units_of(problem, network, warm_start)
        kept, kept_merged, kept_rows = round_units_by(
            network, in_hand, network.shortage, merge_by, fill_by, polish=False
        )
        lp_cost = _objective(network, units)
        light = _objective(network, kept)
        if kept_merged and kept_rows is not None and light < (1 + WARM_POLISH) * lp_cost:
            kept_merged = polished(kept_rows, kept, merge_by)
        if _objective(network, kept) < lp_cost:
            units, merged, rows = kept, kept_merged, kept_rows
    # Units still short go to labs off their candidates that have room (solver.large.far): where
    # the candidates are full, any trip costs less than a unit short.
    far = place_far(problem, params, network, candidates, units, far_by, rows)
    # Every bound computed is valid for every plan, on any lab: the best of them is kept. The first
    # LP's prices are tried too when the widened LP did not converge, and time allows. The bound
    # comes after the plan: a sharper bound only narrows the reported gap, while a rounding cut
    # short leaves units short (under load the search ran first and took the fill's time).
    charge = priced_beyond(problem, params, lp_candidates, lp_network, rules, limit)
    bound = -math.inf
    if pricing is not None:
        prices = aggregated.result()
        pricing.shutdown()
        # Evaluated even past `bound_by`: some bound is evaluated at some prices anyway (below), and
        # where the relaxation stopped short these see the capacity its own prices do not. On a
        # continent whose rounding ended 1.5 s past `bound_by`, the relaxation's prices were
        # evaluated instead, in the same 19 s, and the gap reported was 99.9 % where these gave 0.8 %.
        if prices is not None:
            bound = lagrangian_bound(lp_network, *prices, beyond, charge)
    # The relaxation's own prices, unless the clock is out and a bound is in hand: on a continent
    # each evaluation takes seconds, and two more ran the solve 5 s past its limit. Then the floor
    # at zero prices is taken with the unpriced charge off the candidates, one pass over the
    # options: the aggregated prices with their charge cut by the clock gave -26.6 B on a continent.
    if bound == -math.inf or time.perf_counter() < bound_by:
        bound = max(
            bound,
            best_bound(
                lp_network,
                relaxation.point_multiplier,
                relaxation.stock_multiplier,
                beyond,
                charge,
                search=relaxation.stopped not in ("converged", "stalled"),
                deadline=bound_by,
            ),
        )
    else:
        free = np.zeros(len(lp_network.point_chain)), np.zeros(len(lp_network.stock_capacity))
        bound = max(bound, lagrangian_bound(lp_network, *free, beyond))
    # Not after a wider LP that converged or stalled: the first LP's prices, on its fewer candidates
    # and unsettled where it stopped to widen, gave the lower bound on every widened seed measured.
    widened_settled = relaxation.stopped in ("converged", "stalled")
    if relaxation is not first[2] and not widened_settled and time.perf_counter() < bound_by:
        net, cand, rel = first
        bound = max(
            bound,
            best_bound(
                net,
                rel.point_multiplier,
                rel.stock_multiplier,
                beyond_cost(problem, params, cand, rules),
                priced_beyond(problem, params, cand, net, rules, limit),
                search=rel.stopped not in ("converged", "stalled", "widen"),
                deadline=bound_by,
            ),
        )
    if "time" in stops or not merged or time.perf_counter() > limit:
        status = TIMED_OUT
    elif relaxation.complete:
        status = CONVERGED
    elif relaxation.stopped == "stalled":
        status = STALLED
    else:
        status = UNCONVERGED
    seconds = time.perf_counter() - started
    return _plan(problem, params, network, candidates, units, bound, version, seconds, status, limit, far)


def _same_options(network: Network, options: np.ndarray, wider: Network) -> np.ndarray:
    """The options of `wider` that are the given options of `network` (same demand, lab and lateness)."""
    labs = int(max(network.lab.max(initial=0), wider.lab.max(initial=0))) + 1

    def key(n: Network, o: np.ndarray) -> np.ndarray:
        return (n.demand[o].astype(np.int64) * labs + n.lab[o]) * 2 + n.late[o]

    mine, theirs = key(network, options), key(wider, np.arange(wider.options))
    return np.flatnonzero(np.isin(theirs, mine))


def _match(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """Per key of `theirs`, the index of the same key in `mine` (the first, if repeated), or -1."""
    order = np.argsort(mine, kind="stable")
    at = np.minimum(np.searchsorted(mine[order], theirs), max(0, len(mine) - 1))
    if not len(mine):
        return np.full(len(theirs), -1, dtype=np.int64)
    found = mine[order[at]] == theirs
    return np.where(found, order[at], -1).astype(np.int64)


def _time_ranks(*times: np.ndarray) -> list[np.ndarray]:
    """Each array of times as its ranks among all of them: exact integer keys for equal floats."""
    every = np.unique(np.concatenate(times))
    return [np.searchsorted(every, t).astype(np.int64) for t in times]


def _option_map(network: Network, wider: Network) -> np.ndarray:
    """Per option of `wider`, the option of `network` with its demand, lab, lateness and checkpoint, or -1."""
    labs = int(max(network.lab.max(initial=0), wider.lab.max(initial=0))) + 1
    mine_at, theirs_at = _time_ranks(network.finish, wider.finish)
    times = int(max(mine_at.max(initial=0), theirs_at.max(initial=0))) + 1

    def key(n: Network, at: np.ndarray) -> np.ndarray:
        return ((n.demand.astype(np.int64) * labs + n.lab) * 2 + n.late) * times + at

    return _match(key(network, mine_at), key(wider, theirs_at))


def _chain_keys(n: Network) -> np.ndarray:
    """Per checkpoint, its chain as (lab, place among the lab's machine sets), or -1 (see `_point_map`)."""
    chains = int(n.point_chain.max(initial=-1)) + 1
    chain_lab = np.full(chains, -1, dtype=np.int64)
    chain_lab[n.point_chain[n.work_point]] = n.lab[n.work_option]
    starts = np.r_[True, chain_lab[1:] != chain_lab[:-1]] if chains else np.zeros(0, dtype=bool)
    first = np.maximum.accumulate(np.where(starts, np.arange(chains), 0))
    chain_key = np.where(chain_lab >= 0, chain_lab * (1 << 20) + np.arange(chains) - first, -1)
    return chain_key[n.point_chain]


def _point_map(network: Network, wider: Network) -> np.ndarray:
    """Per checkpoint of `wider`, the checkpoint of `network` at the same lab, place among its
    machine sets and time, or -1. A mismatch (a lab whose sets differ) only costs the wider LP's
    first solve some pivots: the basis it starts from is a guess GLOP repairs."""
    mine_chain, theirs_chain = _chain_keys(network), _chain_keys(wider)
    mine_at, theirs_at = _time_ranks(network.point_time, wider.point_time)
    times = int(max(mine_at.max(initial=0), theirs_at.max(initial=0))) + 1
    found = _match(mine_chain * times + mine_at, theirs_chain * times + theirs_at)
    return np.where(theirs_chain >= 0, found, -1)


def _stock_map(network: Network, wider: Network, option_of: np.ndarray) -> np.ndarray:
    """Per stock row of `wider`, the stock row of `network` that the same options draw on, or -1."""
    out = np.full(len(wider.stock_capacity), -1, dtype=np.int64)
    theirs = np.flatnonzero(option_of >= 0)
    mine = option_of[theirs]
    theirs_start = np.searchsorted(wider.stock_option, theirs)
    theirs_count = np.searchsorted(wider.stock_option, theirs, "right") - theirs_start
    mine_start = np.searchsorted(network.stock_option, mine)
    mine_count = np.searchsorted(network.stock_option, mine, "right") - mine_start
    same = theirs_count == mine_count  # the same design at the same lab: the same entries in order
    count = theirs_count[same]
    step = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    out[wider.stock_row[np.repeat(theirs_start[same], count) + step]] = network.stock_row[
        np.repeat(mine_start[same], count) + step
    ]
    return out


def _same_points(points: np.ndarray, point_of: np.ndarray) -> np.ndarray:
    """The checkpoints of a wider network that are the given checkpoints of the first one, by the
    map between them (`_point_map`: same lab, same place among that lab's machine sets, same time).
    A miss costs nothing but a round: every row of the wider network is one of its own, valid for its
    LP."""
    return np.flatnonzero((point_of >= 0) & np.isin(point_of, points))


def meets(bound: float, objective: float) -> bool:
    """True when `bound` proves `objective` optimal, within PROOF_TOLERANCE."""
    return bound >= objective - PROOF_TOLERANCE * max(1.0, abs(objective))


def _units_of(problem: Problem, network: Network, plan: Plan) -> np.ndarray:
    """Units per option of `plan`; allocations off the network are dropped.

    Each allocation's units go where the plan put them as far as its lines say: its early units
    (`Allocation.early_units`) on the first time checkpoint, the rest on the loosest checkpoint of
    their kind, on time or late (`solver.model.lines.split_units`).
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


def _pairs_of(problem: Problem, plan: Plan) -> list[tuple[int, int]]:
    """The (demand, lab) index pairs of the plan's allocations to today's demands and labs."""
    demand_of = {d.order.id: i for i, d in enumerate(problem.demands)}
    lab_of = {state.lab.id: j for j, state in enumerate(problem.labs)}
    return [
        (demand_of[a.order_id], lab_of[a.lab_id])
        for a in plan.allocations
        if a.order_id in demand_of and a.lab_id in lab_of
    ]


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
    rules: TrailRules,
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
        rules=rules,
    )


def _first_variant(network: Network) -> np.ndarray:
    """Per option: True for the first option of its edge: the loosest on time, else the loosest late."""
    first = np.ones(network.options, dtype=bool)
    first[1:] = (network.demand[1:] != network.demand[:-1]) | (network.lab[1:] != network.lab[:-1])
    return first


def _plan(
    problem: Problem,
    params: SolveParams,
    network: Network,
    candidates: Candidates,
    units: np.ndarray,
    bound: float,
    version: int,
    seconds: float,
    status: str = CONVERGED,
    deadline: float = math.inf,
    far: Sequence[FarUnits] = (),
) -> Plan:
    """The plan of whole units per option, and of the units placed off the candidates (`far`): one
    allocation per used (order, lab), shortages, objective."""
    n = network
    used = np.flatnonzero(units > 0)
    lines: dict[tuple[int, int], Allocation] = {}
    pairs: dict[tuple[int, int], tuple[int, LineUnits]] = {}
    for o in used.tolist():
        _, line = pairs.setdefault((int(n.demand[o]), int(n.lab[o])), (o, LineUnits()))
        line.add(int(units[o]), bool(n.late[o]), float(n.finish[o]), float(n.arrival[o]), params)
    for (d, lab), (o, line) in pairs.items():
        km, discount = float(n.km[o]), float(n.discount[o])
        lines[d, lab] = allocation_line(problem, params, d, lab, km, discount, line)
    placed = np.bincount(n.demand, weights=units, minlength=len(n.quantity)).astype(np.int64)
    for placement in far:  # off the candidates: never a pair of the network's
        lines[placement.demand, placement.lab] = placement.allocation(problem, params, n.days)
        placed[placement.demand] += placement.units
    allocations = [lines[pair] for pair in sorted(lines)]
    objective = sum((allocation.cost.total for allocation in allocations), 0.0)
    shortages = []
    # Past the limit (a loaded machine cut the fill), each demand's reason is not looked up: that
    # takes a second per thousand demands, and the clock, not the labs, left these units short.
    late = status == TIMED_OUT and time.perf_counter() > deadline
    for d in np.flatnonzero(placed < n.quantity).tolist():
        short = int(n.quantity[d] - placed[d])
        objective += params.shortage_penalty[problem.demands[d].order.priority] * short
        shortages.append(
            Shortage(
                order_id=problem.demands[d].order.id,
                quantity=short,
                reason=TIME_REASON if late else shortage_reason(problem, candidates, d),
            )
        )
    return Plan(
        version=version,
        allocations=allocations,
        shortages=shortages,
        objective=objective,
        bound=min(bound, objective),
        bound_scope="all",  # the Lagrangian bound prices the labs off the candidates too
        status="OPTIMAL" if meets(bound, objective) else status,
        solve_seconds=seconds,
    )
