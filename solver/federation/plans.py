"""Each region's own integer plan with the committed trades, through the usual allocator and validator.

After the rounds, a region plans as it always does (`solver.allocation.allocate.solve`), on a
problem changed by its trades only:

- trades it *receives* cover units of its own orders of the trade's design, delivery cell, day window
  and priority (earliest due first): those units leave its demand (the host makes them);
- trades it *hosts* become demands of its own, due at the start of the trade's window (so never later
  than any order they serve), one per host cell its LP makes them in, delivered to that cell's centre;
  their carriage on to the trade's cell (the most a host ever learns of where they go) is counted
  apart, at `km_weight` per unit-km.

Every regional plan is checked by the independent validator (`solver.check`) against the problem it
was solved for, as any plan of the planner is.

**The final check.** The net decides on the regions' LPs, and a trade that lowers the LPs by 0.1 %
can still make the integer plans dearer (the allocator's plans are not the LP's). So the trades are
kept only if the regions' integer plans with them cost, summed, no more than the integer plans
without them (`integer_check`), the same rule as a round's, on the plans the labs will run; otherwise
every region keeps its plan alone. To make that comparison mean something, both sides are planned on
the same deterministic work budget (`SolveParams.deterministic`, `work_limit`), and the plan with the
trades starts from the plan alone (`plan_region(..., warm_start=...)`), less the units the trades
cover: the trades move few units, and the allocator then keeps what it knew to be good.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from protocol.model import Order, Plan
from solver.allocation.allocate import solve
from solver.check import check
from solver.federation.cells import CELL_DEG, cell_centre, cell_of, window_of
from solver.federation.market import Trade
from solver.federation.region import RegionModel
from solver.model.geo import haversine_km
from solver.model.problem import Demand, Problem, SolveParams

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
    #: Cost of carrying the units made for other regions from the host's cells to theirs.
    carriage: float = 0.0

    @property
    def cost(self) -> float:
        """The region's cost: its plan's objective and the carriage of what it makes for others."""
        return self.plan.objective + self.carriage


def with_trades(
    region: str, problem: Problem, trades: list[Trade], params: SolveParams, cell_deg: float = CELL_DEG
) -> tuple[Problem, dict[str, int], float]:
    """The region's problem with its trades applied (see the module docstring), the units of its own
    orders covered, and the carriage of the units it makes for others from its cells to theirs."""
    covered = _cover(region, problem, trades, cell_deg)
    demands = []
    for d in problem.demands:
        left = d.quantity - covered.get(d.order.id, 0)
        if left > 0:
            demands.append(Demand(order=d.order, quantity=left))
    leases, carriage = _leases(region, problem, trades, params, cell_deg)
    demands += leases
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
        carriage,
    )


def plan_region(
    region: str,
    problem: Problem,
    trades: list[Trade],
    params: SolveParams,
    cell_deg: float = CELL_DEG,
    warm_start: Plan | None = None,
) -> RegionalPlan:
    """Solve and validate the region's plan with its trades.

    `warm_start` is a plan of the region's own problem (its plan alone): the units its trades cover
    are taken off it (`without_covered`) and the allocator starts from the rest.
    """
    traded, covered, carriage = with_trades(region, problem, trades, params, cell_deg)
    warm = None if warm_start is None else without_covered(warm_start, covered)
    plan = solve(traded, params, warm_start=warm)
    return RegionalPlan(region, traded, plan, check(traded, plan, params), covered, carriage)


def without_covered(plan: Plan, covered: dict[str, int]) -> Plan:
    """`plan` less the units of each order that trades cover (order id -> units): its late units go
    first, then units on time from its smallest lines, so what stays is the plan's best part for the
    demand left."""
    left = dict(covered)
    quantity = [a.quantity for a in plan.allocations]
    late = [a.late_units for a in plan.allocations]
    lines: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(plan.allocations):
        lines[a.order_id].append(i)
    for order_id, units in left.items():
        mine = lines.get(order_id, [])
        for i in sorted(mine, key=lambda i: (-late[i], plan.allocations[i].lab_id)):
            take = min(units, late[i])
            late[i] -= take
            quantity[i] -= take
            units -= take
        for i in sorted(mine, key=lambda i: (quantity[i], plan.allocations[i].lab_id)):
            take = min(units, quantity[i])
            quantity[i] -= take
            units -= take
    allocations = [
        a
        if quantity[i] == a.quantity
        else a.model_copy(
            update={
                "quantity": quantity[i],
                "late_units": late[i],
                "early_units": min(a.early_units, quantity[i]),
            }
        )
        for i, a in enumerate(plan.allocations)
        if quantity[i] > 0
    ]
    return plan.model_copy(update={"allocations": allocations})


def integer_check(alone: list[RegionalPlan], traded: list[RegionalPlan]) -> bool:
    """Whether the trades are kept: the regions' integer plans with them cost, summed, no more than
    their plans alone (each region publishes its two numbers, as it publishes its LP cost in a round).
    """
    if sorted(p.region for p in alone) != sorted(p.region for p in traded):
        raise ValueError("integer_check: the plans alone and with the trades must name the same regions")
    return sum(p.cost for p in traded) <= sum(p.cost for p in alone)


def _cover(region: str, problem: Problem, trades: list[Trade], cell_deg: float) -> dict[str, int]:
    """Units of own orders covered by the trades the region receives."""
    pools: dict[tuple[str, str, int, str], list[Demand]] = defaultdict(list)
    for d in problem.demands:
        o = d.order
        pools[o.design, cell_of(o.delivery, cell_deg), window_of(problem.now, o.due_at), o.priority].append(d)
    for pool in pools.values():
        pool.sort(key=lambda d: (d.order.due_at, d.order.id))
    covered: dict[str, int] = defaultdict(int)
    for trade in trades:
        if trade.origin != region:
            continue
        units = trade.units
        for d in pools.get((trade.design, trade.cell, trade.window, trade.priority), []):
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


def _leases(
    region: str, problem: Problem, trades: list[Trade], params: SolveParams, cell_deg: float
) -> tuple[list[Demand], float]:
    """Demands for the trades the region hosts, made where its own LP makes them, and their carriage.

    A lease of many units delivered at one point would only reach the few labs nearest that point (the
    allocator's candidates), so each trade is planned in the host's cells its LP chose, delivered to
    that cell's centre, and the carriage from there to the trade's cell is counted apart.
    """
    hosted = [t for t in trades if t.host == region]
    if not hosted:
        return [], 0.0
    model = RegionModel(region, problem, params, cell_deg)
    made = model.solve(imports=[t for t in trades if t.origin == region], exports=hosted).made
    merged: dict[tuple[str, str, int, str, str], int] = defaultdict(int)
    carriage = 0.0
    for trade in hosted:
        for cell, units in _whole_units(trade, made.get(trade.trade_id, {}), model).items():
            merged[cell, trade.design, trade.window, trade.priority, trade.origin] += units
            km = haversine_km(cell_centre(cell, cell_deg), cell_centre(trade.cell, cell_deg))
            carriage += params.km_weight * km * units
    demands = []
    for n, ((cell, design, window, priority, origin), units) in enumerate(sorted(merged.items())):
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
    return demands, carriage


def _whole_units(trade: Trade, split: dict[str, float], model: RegionModel) -> dict[str, int]:
    """A trade's units per host cell in whole units (largest remainders), all of them placed."""
    if not split:
        near = model.near_cells(trade.design, cell_centre(trade.cell, model.cell_deg))
        if not near:
            raise ValueError(
                f"trade {trade.trade_id!r}: region {model.region!r} cannot make {trade.design!r}"
            )
        return {near[0][0]: trade.units}
    whole = {cell: int(units) for cell, units in split.items()}
    left = trade.units - sum(whole.values())
    for cell in sorted(split, key=lambda c: (-(split[c] - int(split[c])), c)):
        if left <= 0:
            break
        whole[cell] += 1
        left -= 1
    if left > 0:
        whole[max(split, key=lambda c: split[c])] += left
    return {cell: units for cell, units in whole.items() if units > 0}
