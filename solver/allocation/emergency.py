"""The emergency fast path: place one urgent order at once, in its neighbourhood, within a latency budget.

A hospital's emergency order should not wait for a full re-plan of the network. It is placed first
by a small re-solve over its own neighbourhood: its k nearest capable labs (plus its strongest
trails), with their capacity as it stands, every other demand left for the full re-plan that
follows. The model is a few dozen variables, so the budget is mostly spent proving the result
optimal. The caller commits the result, then re-plans the rest around it.

Material transfers (`solver.model.transfers`), as the one-model path plans them: when a lab of the
neighbourhood holds too little of a material the urgent designs use, the few nearest live labs
within `transfer_radius_km` that hold it join the neighbourhood as senders, and the urgent demands
may be made from material they ship. The one-model path offers transfers only to the demands its
large path leaves short or late; here there is no large path to ask (it would cost the budget), so
every urgent demand may be, and the model's costs decide: a transfer pays its km and its handling,
so it is used only where it beats the lab's own stock or a shortage. No lab short of material, no
sender, and the model is the one it was before transfers.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from protocol.model import Plan
from solver.allocation.allocate import WORK_PER_SECOND, AllocationMapping
from solver.model.candidates import find_candidates
from solver.model.geo import distances_km
from solver.model.problem import Demand, Problem, SolveParams, horizon_days, with_whole_units
from solver.sparse.core import CoreParams, solve_core


def insert_urgent(problem: Problem, order_ids: set[str], params: SolveParams, budget_s: float = 0.15) -> Plan:
    """A plan for the demands `order_ids` only, on their neighbourhood of labs (and the labs that
    may ship it material), within `budget_s`.

    Raises ValueError when an id is not among the problem's demands.
    """
    started = time.perf_counter()
    demands = [d for d in problem.demands if d.order.id in order_ids]
    missing = order_ids - {d.order.id for d in demands}
    if missing:
        raise ValueError(f"not among the demands: {', '.join(sorted(missing))}")
    focus = Problem(problem.now, problem.designs, problem.labs, demands, problem.trails)
    if params.whole_units:  # machines' time in whole units of the urgent designs, as `solve` counts it
        focus = with_whole_units(focus)
        problem = replace(problem, labs=focus.labs)
    days = horizon_days(focus, params)
    candidates = find_candidates(focus, params.k_nearest, days, params.trail_candidates)
    nearby = {c.lab for cands in candidates.edges for c in cands}
    labs = set(nearby)
    shipping = False
    if params.transfer_radius_km > 0:
        # The nearest labs whose machines could make the units if they had the material, too.
        blind = find_candidates(_stock_blind(focus), params.k_nearest, days, params.trail_candidates)
        receivers = sorted(nearby | {c.lab for cands in blind.edges for c in cands})
        for receiver, found in senders_near(problem, receivers, demands, params).items():
            if found:
                labs |= {receiver, *found}
                shipping = True
    neighbourhood = Problem(
        problem.now, problem.designs, [problem.labs[j] for j in sorted(labs)], demands, problem.trails
    )
    # The latency budget decides here, not a work budget meant for a full solve.
    fast = replace(params, time_limit_s=budget_s, workers=1, work_limit=None)
    ship_for = frozenset(range(len(demands))) if shipping else frozenset()
    mapping = AllocationMapping(neighbourhood, fast, ship_for=ship_for)
    left = max(0.1 * budget_s, budget_s - (time.perf_counter() - started))
    # In deterministic mode, a budget of work for the whole latency budget (as `solve_small` gives).
    work = budget_s * WORK_PER_SECOND if params.deterministic else None
    result = solve_core(
        mapping.core,
        CoreParams(time_limit_s=left, workers=1, seed=params.seed, warm_start=None, work_limit=work),
    )
    plan = mapping.plan(result, 0, time.perf_counter() - started)
    return plan.model_copy(update={"transfers_considered": params.transfer_radius_km > 0})


def _stock_blind(problem: Problem) -> Problem:
    """The problem with every live lab holding plenty of each material its designs use: for the
    search of labs whose machines could make the units if material were shipped to them."""
    plenty = {
        m: 1e12
        for d in problem.demands
        if (design := problem.designs.get(d.order.design)) is not None
        for m in design.materials_per_unit()
    }
    return replace(
        problem, labs=[replace(s, stock={**s.stock, **plenty}) if s.live else s for s in problem.labs]
    )


def senders_near(
    problem: Problem, receivers: list[int], demands: list[Demand], params: SolveParams
) -> dict[int, set[int]]:
    """Per receiving lab (indices into `problem.labs`): the labs that may ship it material. For each
    urgent design whose materials a receiver holds too little of for the demand, the
    `params.transfer_senders` nearest other live labs within `params.transfer_radius_km` that hold a
    unit's worth of each of them (as `solver.model.transfers.senders_for` picks them).

    Empty when transfers are off (radius 0) or no receiver is short of material.
    """
    if params.transfer_radius_km <= 0 or not receivers or params.transfer_senders <= 0:
        return {}
    wants: list[tuple[int, dict[str, float]]] = []  # (lab, material -> a unit's worth)
    for j in receivers:
        state = problem.labs[j]
        if not state.live:
            continue
        for demand in demands:
            design = problem.designs.get(demand.order.design)
            if design is None:
                continue
            short = {
                m: each
                for m, each in design.materials_per_unit().items()
                if each > 0 and state.stock.get(m, 0.0) + 1e-9 < each * demand.quantity
            }
            if short:
                wants.append((j, short))
    if not wants:
        return {}
    live = [j for j, s in enumerate(problem.labs) if s.live]
    short_labs = sorted({j for j, _ in wants})
    km = distances_km(
        [problem.labs[j].lab.location.lat for j in short_labs],
        [problem.labs[j].lab.location.lon for j in short_labs],
        [problem.labs[j].lab.location.lat for j in live],
        [problem.labs[j].lab.location.lon for j in live],
    )
    row = {j: r for r, j in enumerate(short_labs)}
    chosen: dict[int, set[int]] = {}
    for j, short in wants:
        distance = km[row[j]]
        found = chosen.setdefault(j, set())
        count = 0
        for b in np.argsort(distance, kind="stable"):
            if distance[b] > params.transfer_radius_km:
                break
            sender = live[b]
            stock = problem.labs[sender].stock
            if sender != j and all(stock.get(m, 0.0) + 1e-9 >= each for m, each in short.items()):
                found.add(sender)
                count += 1
                if count == params.transfer_senders:
                    break
    return chosen
