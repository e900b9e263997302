"""The emergency fast path: place one urgent order at once, in its neighbourhood, within a latency budget.

A hospital's emergency order should not wait for a full re-plan of the network. It is placed first
by a small re-solve over its own neighbourhood: its k nearest capable labs (plus its strongest
trails), with their capacity as it stands, every other demand left for the full re-plan that
follows. The model is a few dozen variables, so the budget is mostly spent proving the result
optimal. The caller commits the result, then re-plans the rest around it.
"""

from __future__ import annotations

from dataclasses import replace

from protocol.model import Plan
from solver.allocation.allocate import solve_small
from solver.model.candidates import find_candidates
from solver.model.problem import Problem, SolveParams, horizon_days


def insert_urgent(problem: Problem, order_ids: set[str], params: SolveParams, budget_s: float = 0.15) -> Plan:
    """A plan for the demands `order_ids` only, on their neighbourhood of labs, within `budget_s`.

    Raises ValueError when an id is not among the problem's demands.
    """
    demands = [d for d in problem.demands if d.order.id in order_ids]
    missing = order_ids - {d.order.id for d in demands}
    if missing:
        raise ValueError(f"not among the demands: {', '.join(sorted(missing))}")
    focus = Problem(problem.now, problem.designs, problem.labs, demands, problem.trails)
    candidates = find_candidates(
        focus, params.k_nearest, horizon_days(focus, params), params.trail_candidates
    )
    nearby = sorted({c.lab for cands in candidates.edges for c in cands})
    neighbourhood = Problem(
        problem.now, problem.designs, [problem.labs[j] for j in nearby], demands, problem.trails
    )
    # The latency budget decides here, not a work budget meant for a full solve.
    fast = replace(params, time_limit_s=budget_s, workers=1, work_limit=None)
    return solve_small(neighbourhood, fast, certify=False)
