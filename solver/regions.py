"""Large problems: split by geography, solve the regions, and bound the whole honestly.

One model over 10,000 orders and 2,000 labs is too big to build and solve in seconds. Instead:

- *Regions.* Labs are clustered by place (k-means on points of the unit sphere, seeded), each demand
  goes to the region of its nearest capable lab, and each region is solved as an ordinary problem
  by `solver.allocate` (candidates inside the region). Regions are independent, so they are solved
  in parallel worker processes. A demand near a border keeps only its region's labs: a restriction,
  so the combined plan stays feasible (and the validator checks it whole).
- *Bound.* A lower bound of the whole problem on a wide candidate graph (the 8k nearest capable labs
  of each demand, which holds the candidates of every region and of the repair but in rare cases at
  a region's far edge), from a relaxation solved
  exactly by min-cost flow (OR-Tools `SimpleMinCostFlow`), one flow per design: each lab may make
  as many units of a design as it could if it made nothing else (so designs stop competing for
  machines), due dates are dropped (lateness costs >= 0), a setup is spread over the units its
  edge could carry (as in the linear relaxation), and shortage costs its penalty. Every plan costs
  at least that, so the reported gap is a true upper bound on how far the plan is from optimal.
- *Repair across borders.* Units a region leaves short are offered to every lab on the capacity the
  regions left (`solver.residual`).

This path is honest but not yet good: with little time per region, a region's fallback can leave
units short that one model would place, and the flow bound ignores lateness and competition between
designs, so gaps at 10,000 orders are large (measured figures in the issue notes).
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from ortools.graph.python import min_cost_flow

from protocol.model import Allocation, CostTerms, Plan, Shortage
from solver.candidates import find_candidates, units_alone
from solver.problem import Demand, LabState, Problem, SolveParams, free_minutes, horizon_days
from solver.residual import residual_labs
from solver.trails import DEFAULT_RULES

#: Labs per region, about; a region of this size solves in a second or two.
LABS_PER_REGION = 120
#: The bound's candidates: this many times k nearest capable labs per demand.
BOUND_REACH = 8
#: Flow costs are integers: cost units are counted in thousandths, rounded down (a bound stays a bound).
_COST_SCALE = 1000


def regions_of(problem: Problem, labs_per_region: int = LABS_PER_REGION, seed: int = 0) -> list[int]:
    """Region index per lab (k-means on the unit sphere, a fixed number of rounds, seeded)."""
    count = max(1, math.ceil(len(problem.labs) / labs_per_region))
    points = _unit_vectors(
        [s.lab.location.lat for s in problem.labs], [s.lab.location.lon for s in problem.labs]
    )
    if count == 1:
        return [0] * len(problem.labs)
    rng = np.random.default_rng(seed)
    centres = points[rng.choice(len(points), size=count, replace=False)]
    for _ in range(25):
        labels = np.argmax(points @ centres.T, axis=1)
        for c in range(count):
            members = points[labels == c]
            if len(members):
                mean = members.mean(axis=0)
                centres[c] = mean / (np.linalg.norm(mean) or 1.0)
    return [int(x) for x in np.argmax(points @ centres.T, axis=1)]


def split(problem: Problem, params: SolveParams) -> list[Problem]:
    """One sub-problem per region: its labs, and the demands whose nearest candidate lies in it.

    Demands with no candidate at all go to a region of their own, where they are reported short.
    """
    region = regions_of(problem, seed=params.seed)
    candidates = find_candidates(problem, 1, horizon_days(problem, params))
    labs_in: dict[int, list[LabState]] = defaultdict(list)
    for state, r in zip(problem.labs, region, strict=True):
        labs_in[r].append(state)
    demands_in: dict[int, list[Demand]] = defaultdict(list)
    for demand, cands in zip(problem.demands, candidates.edges, strict=True):
        demands_in[region[cands[0].lab] if cands else -1].append(demand)
    parts = []
    for r, demands in sorted(demands_in.items()):
        labs = labs_in.get(r, []) if r >= 0 else []
        parts.append(Problem(problem.now, problem.designs, labs, demands, problem.trails))
    return parts


def flow_bound(problem: Problem, params: SolveParams) -> float:
    """A lower bound of every plan's objective: the min-cost-flow relaxation (see the module docstring)."""
    days = horizon_days(problem, params)
    # Wider than any model's candidates (k nearest, the roomiest of the 4k nearest, trails), so the
    # bound holds for every plan whose labs lie among each demand's BOUND_REACH × k nearest.
    candidates = find_candidates(problem, params.k_nearest * BOUND_REACH, days, params.trail_candidates)
    free = [free_minutes(state, days) for state in problem.labs]
    total = 0.0
    by_design: dict[str, list[int]] = defaultdict(list)
    for d, demand in enumerate(problem.demands):
        by_design[demand.order.design].append(d)
    for design_id, demand_ids in sorted(by_design.items()):
        design = problem.designs.get(design_id)
        flow = min_cost_flow.SimpleMinCostFlow()
        sink = len(problem.demands) + len(problem.labs)
        tails, heads, caps, costs = [], [], [], []
        supplies: dict[int, int] = defaultdict(int)
        capacity_of: dict[int, int] = {}
        for d in demand_ids:
            demand = problem.demands[d]
            supplies[d] += demand.quantity
            supplies[sink] -= demand.quantity
            penalty = params.shortage_penalty[demand.order.priority]
            tails.append(d), heads.append(sink), caps.append(demand.quantity)
            costs.append(math.floor(penalty * _COST_SCALE))
            if design is None:
                continue
            for c in candidates.edges[d]:
                if c.lab not in capacity_of:
                    capacity_of[c.lab] = units_alone(problem.labs[c.lab], design, free[c.lab])
                tau = problem.trails.get((design_id, problem.labs[c.lab].lab.id))
                discount = 0.0 if tau is None else params.trail_discount_km * DEFAULT_RULES.strength(tau)
                # The setup amortised over the units an edge may carry, as the linear relaxation does.
                unit = (c.km - discount) * params.km_weight + params.setup_cost / demand.quantity
                tails.append(d), heads.append(len(problem.demands) + c.lab), caps.append(demand.quantity)
                costs.append(math.floor(unit * _COST_SCALE))
        for lab, units in capacity_of.items():
            tails.append(len(problem.demands) + lab), heads.append(sink), caps.append(units), costs.append(0)
        flow.add_arcs_with_capacity_and_unit_cost(
            np.array(tails, dtype=np.int64),
            np.array(heads, dtype=np.int64),
            np.array(caps, dtype=np.int64),
            np.array(costs, dtype=np.int64),
        )
        for node, supply in supplies.items():
            flow.set_node_supply(node, supply)
        status = flow.solve()
        if status != flow.OPTIMAL:
            raise RuntimeError(f"flow relaxation of design {design_id!r} ended {status}: a defect")
        total += flow.optimal_cost() / _COST_SCALE
    return total


def solve_regions(problem: Problem, params: SolveParams, version: int = 0) -> Plan:
    """Solve a large problem region by region in parallel and report it against the flow bound."""
    from solver.allocate import solve_small

    started = time.perf_counter()
    parts = split(problem, params)
    units = [sum(d.quantity for d in part.demands) for part in parts]
    budget = max(0.5, params.time_limit_s * 0.8 - (time.perf_counter() - started))
    workers = max(1, min(params.workers, os.cpu_count() or 1, len(parts)))
    # Each region gets a share of the time in proportion to its units, over `workers` processes.
    limits = [max(0.3, budget * workers * u / max(1, sum(units))) for u in units]
    sub_params = [
        SolveParams(**{**params.__dict__, "time_limit_s": min(limit, budget), "workers": 1})
        for limit in limits
    ]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            plans = list(pool.map(solve_small, parts, sub_params))
    else:
        plans = [solve_small(part, p) for part, p in zip(parts, sub_params, strict=True)]
    allocations = [a for plan in plans for a in plan.allocations]
    shortages = [s for plan in plans for s in plan.shortages]
    remaining = params.time_limit_s - (time.perf_counter() - started)
    if shortages and remaining > 0.5:
        allocations, shortages = _repair_across_borders(problem, params, allocations, shortages, remaining)
    objective = _objective(problem, params, allocations, shortages)
    bound = flow_bound(problem, params)
    return Plan(
        version=version,
        allocations=allocations,
        shortages=shortages,
        objective=objective,
        bound=min(bound, objective),
        status="FEASIBLE",
        solve_seconds=time.perf_counter() - started,
    )


def _repair_across_borders(
    problem: Problem,
    params: SolveParams,
    allocations: list[Allocation],
    shortages: list[Shortage],
    seconds: float,
) -> tuple[list[Allocation], list[Shortage]]:
    """Offer what the regions left short to every lab, whatever its region, on what capacity is left.

    The regions' work is put in front of each lab's backlog (`solver.residual`), so the repair cannot
    overload a lab: the merged plan stays feasible (and the validator checks it whole).
    """
    from solver.allocate import solve_small

    labs = residual_labs(problem, allocations)
    orders = {d.order.id: d.order for d in problem.demands}
    demands = [Demand(order=orders[s.order_id], quantity=s.quantity) for s in shortages]
    repair = solve_small(
        Problem(problem.now, problem.designs, labs, demands, problem.trails),
        SolveParams(**{**params.__dict__, "time_limit_s": max(0.3, seconds)}),
    )
    merged = {(a.order_id, a.lab_id): a for a in allocations}
    for a in repair.allocations:
        old = merged.get((a.order_id, a.lab_id))
        merged[a.order_id, a.lab_id] = a if old is None else _combine(old, a)
    return list(merged.values()), list(repair.shortages)


def _combine(first: Allocation, second: Allocation) -> Allocation:
    """Two allocations of one order at one lab as one line (one setup)."""
    a, b = first.cost, second.cost
    cost = CostTerms(
        km=a.km,
        transport=a.transport + b.transport,
        setup=a.setup,
        lateness=a.lateness + b.lateness,
        trail=a.trail + b.trail,
    )
    return Allocation(
        order_id=first.order_id,
        lab_id=first.lab_id,
        quantity=first.quantity + second.quantity,
        late_units=first.late_units + second.late_units,
        cost=cost,
    )


def _objective(
    problem: Problem, params: SolveParams, allocations: list[Allocation], shortages: list[Shortage]
) -> float:
    """The plan's objective from its lines: transport, setup, lateness, trail; shortage penalties."""
    priority = {d.order.id: d.order.priority for d in problem.demands}
    total = sum(a.cost.transport + a.cost.setup + a.cost.lateness + a.cost.trail for a in allocations)
    return total + sum(params.shortage_penalty[priority[s.order_id]] * s.quantity for s in shortages)


def _unit_vectors(lat: list[float], lon: list[float]) -> np.ndarray:
    phi, lam = np.radians(np.asarray(lat)), np.radians(np.asarray(lon))
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)
