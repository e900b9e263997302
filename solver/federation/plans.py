"""Each region's own integer plan with the committed trades, through the usual allocator and validator.

After the rounds, a region plans as it always does (`solver.allocate.solve`), on a problem changed by
its trades only:

- trades it *receives* cover units of its own orders of the trade's design, delivery cell and day
  window (most urgent and earliest due first): those units leave its demand (the host makes them);
- trades it *hosts* become demands of its own, one per (origin, design, window, cell), due at the
  start of the window (so never later than any order they serve) and delivered to the cell's centre:
  a host never learns more than that.

Every regional plan is checked by the independent validator (`solver.check`) against the problem it
was solved for, as any plan of the planner is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from protocol.model import PRIORITIES, Order, Plan
from solver.allocate import solve
from solver.check import check
from solver.federation.cells import CELL_DEG, cell_centre, cell_of, window_of
from solver.federation.market import Trade
from solver.problem import Demand, Problem, SolveParams

#: Prefix of the demand a host plans for a trade it makes.
LEASE_PREFIX = "lease-"


@dataclass(frozen=True)
class RegionalPlan:
    """A region's plan, the problem it was solved for, and what the validator found wrong with it."""

    region: str
    problem: Problem
    plan: Plan
    violations: list[str]
    #: Units of each own order that trades cover (order id -> units): the origin's private record.
    covered: dict[str, int]


def with_trades(
    region: str, problem: Problem, trades: list[Trade], cell_deg: float = CELL_DEG
) -> tuple[Problem, dict[str, int]]:
    """The region's problem with its trades applied (see the module docstring), and the units covered."""
    covered = _cover(region, problem, trades, cell_deg)
    demands = []
    for d in problem.demands:
        left = d.quantity - covered.get(d.order.id, 0)
        if left > 0:
            demands.append(Demand(order=d.order, quantity=left))
    demands += _leases(region, problem, trades, cell_deg)
    return (
        Problem(
            now=problem.now,
            designs=problem.designs,
            labs=problem.labs,
            demands=demands,
            trails=problem.trails,
            excluded=problem.excluded,
        ),
        covered,
    )


def plan_region(
    region: str, problem: Problem, trades: list[Trade], params: SolveParams, cell_deg: float = CELL_DEG
) -> RegionalPlan:
    """Solve and validate the region's plan with its trades."""
    traded, covered = with_trades(region, problem, trades, cell_deg)
    plan = solve(traded, params)
    return RegionalPlan(region, traded, plan, check(traded, plan, params), covered)


def _cover(region: str, problem: Problem, trades: list[Trade], cell_deg: float) -> dict[str, int]:
    """Units of own orders covered by the trades the region receives."""
    rank = {p: i for i, p in enumerate(PRIORITIES)}
    pools: dict[tuple[str, str, int], list[Demand]] = defaultdict(list)
    for d in problem.demands:
        o = d.order
        pools[o.design, cell_of(o.delivery, cell_deg), window_of(problem.now, o.due_at)].append(d)
    for pool in pools.values():
        pool.sort(key=lambda d: (-rank[d.order.priority], d.order.due_at, d.order.id))
    covered: dict[str, int] = defaultdict(int)
    for trade in trades:
        if trade.origin != region:
            continue
        units = trade.units
        for d in pools.get((trade.design, trade.cell, trade.window), []):
            if units <= 0:
                break
            taken = min(units, d.quantity - covered[d.order.id])
            covered[d.order.id] += taken
            units -= taken
        if units > 0:
            raise ValueError(
                f"trade {trade.trade_id!r}: {trade.units} units of {trade.design!r} for cell {trade.cell} "
                f"window {trade.window}, but region {region!r} has only {trade.units - units} units there"
            )
    return {order_id: units for order_id, units in covered.items() if units > 0}


def _leases(region: str, problem: Problem, trades: list[Trade], cell_deg: float) -> list[Demand]:
    """One demand per (origin, design, window, cell, priority) of the trades the region hosts."""
    merged: dict[tuple[str, str, int, str, str], int] = defaultdict(int)
    for trade in trades:
        if trade.host == region:
            merged[trade.origin, trade.design, trade.window, trade.cell, trade.priority] += trade.units
    demands = []
    for n, ((origin, design, window, cell, priority), units) in enumerate(sorted(merged.items())):
        order = Order(
            id=f"{LEASE_PREFIX}{n}-{origin}"[:64],
            design=design,
            quantity=units,
            due_at=problem.now + timedelta(days=max(window, 0.25)),
            delivery=cell_centre(cell, cell_deg),
            priority=priority,
            created_at=problem.now,
        )
        demands.append(Demand(order=order, quantity=units))
    return demands
