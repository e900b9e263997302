"""An independent validator: does a plan respect every demand, capability, stock and machine hour?

It recomputes everything from the records and shares no code with the allocator except the
definition of the planning horizon, so a defect in the model shows up here instead of in a lab.
Machine capacity is judged with a max-flow per lab (work of each allocated step -> machines able to
run it -> free minutes of each machine), which is exact when machines offer several processes; its
value comes from Hall's condition over every set of the lab's machines (a few hundred sets, at once
in numpy), or from networkx's max-flow for labs with very many machines. It is judged at every due
date: the units planned on time for orders due by then must fit the minutes free by then, and every
unit, late ones included, must fit the minutes free within the horizon.
"""

from __future__ import annotations

from collections import defaultdict

import networkx as nx
import numpy as np

from protocol.model import Allocation, Design, Lab, Plan
from solver.model.problem import Demand, LabState, Problem, SolveParams, days_until, horizon_days

#: Relative tolerance on stock and machine minutes (floats in, floats compared).
TOLERANCE = 1e-6


def check(problem: Problem, plan: Plan, params: SolveParams = SolveParams()) -> list[str]:
    """Every way `plan` breaks `problem`, one readable line each; an empty list means the plan is valid.

    `params` must be those the plan was solved with: they set the horizon machine time is counted in.
    """
    demands = {d.order.id: d for d in problem.demands}
    labs = {s.lab.id: s for s in problem.labs}
    violations: list[str] = []
    valid: list[Allocation] = []
    for a in plan.allocations:
        problems = _allocation_problems(a, problem, demands, labs)
        violations += problems
        if not problems:
            valid.append(a)
    violations += _quantity_problems(problem, plan)
    violations += _stock_problems(problem, valid)
    violations += _capacity_problems(problem, valid, horizon_days(problem, params))
    if plan.bound > plan.objective + TOLERANCE * max(1.0, abs(plan.objective)):
        violations.append(f"plan bound {plan.bound} exceeds its objective {plan.objective}")
    return violations


def _allocation_problems(
    a: Allocation, problem: Problem, demands: dict[str, Demand], labs: dict[str, LabState]
) -> list[str]:
    """What is wrong with one allocation alone: unknown order or lab, lost lab, bad quantity, incapability."""
    where = f"allocation of {a.quantity!r} units of order {a.order_id!r} at lab {a.lab_id!r}"
    found = []
    if a.order_id not in demands:
        found.append(f"{where}: order {a.order_id!r} is not among the demands")
    state = labs.get(a.lab_id)
    if state is None:
        found.append(f"{where}: lab {a.lab_id!r} is not known")
    elif not state.live:
        found.append(f"{where}: lab {a.lab_id!r} is lost (not live)")
    if not isinstance(a.quantity, int) or isinstance(a.quantity, bool) or a.quantity <= 0:
        found.append(f"{where}: quantity must be a positive whole number")
    elif not 0 <= a.late_units <= a.quantity:
        found.append(f"{where}: late units {a.late_units} must lie within 0..{a.quantity}")
    elif a.order_id in demands and a.late_units < a.quantity:
        due = days_until(problem, demands[a.order_id].order.due_at)
        if due <= 0:
            found.append(
                f"{where}: {a.quantity - a.late_units} units planned on time, but the order is past due"
            )
    if (a.order_id, a.lab_id) in problem.excluded:
        found.append(f"{where}: the lab refused this order's work before")
    order = demands.get(a.order_id)
    if order is not None and order.order.accepts_licences and order.order.design in problem.designs:
        licence = problem.designs[order.order.design].licence
        if licence not in order.order.accepts_licences:
            found.append(f"{where}: the requester does not accept the design's licence {licence!r}")
    if found:
        return found
    design_id = demands[a.order_id].order.design
    design = problem.designs.get(design_id)
    if design is None:
        return [f"{where}: design {design_id!r} is not known"]
    for i, step in enumerate(design.steps):
        if not any(step.can_run_on(m) for m in state.lab.machines):
            found.append(
                f"{where}: lab cannot make design {design_id!r}: no machine can run step {i + 1} "
                f"({step.process}, requires {step.requires or 'nothing'})"
            )
    return found


def _quantity_problems(problem: Problem, plan: Plan) -> list[str]:
    """Per order: allocated units within the demand, and allocated + short exactly the demand."""
    allocated: dict[str, int] = defaultdict(int)
    short: dict[str, int] = defaultdict(int)
    found = []
    for a in plan.allocations:
        allocated[a.order_id] += a.quantity
    demands = {d.order.id: d.quantity for d in problem.demands}
    for s in plan.shortages:
        if s.order_id not in demands:
            found.append(
                f"shortage of {s.quantity} units of order {s.order_id!r}: order is not among the demands"
            )
        if not isinstance(s.quantity, int) or s.quantity <= 0:
            found.append(
                f"shortage of order {s.order_id!r}: quantity {s.quantity!r} must be a positive whole number"
            )
        short[s.order_id] += s.quantity
    for order_id, wanted in demands.items():
        if allocated[order_id] > wanted:
            found.append(
                f"order {order_id!r}: {allocated[order_id]} units allocated but only {wanted} demanded"
            )
        if allocated[order_id] + short[order_id] != wanted:
            found.append(
                f"order {order_id!r}: {allocated[order_id]} allocated + {short[order_id]} short "
                f"= {allocated[order_id] + short[order_id]}, but {wanted} demanded"
            )
    return found


def _designs_by_order(problem: Problem) -> dict[str, Design]:
    """Order id -> its design, for the demands whose design is known."""
    return {
        d.order.id: problem.designs[d.order.design]
        for d in problem.demands
        if d.order.design in problem.designs
    }


def _stock_problems(problem: Problem, allocations: list[Allocation]) -> list[str]:
    """Per lab and material: units allocated there times material per unit within the free stock."""
    need: dict[tuple[str, str], float] = defaultdict(float)
    orders: dict[tuple[str, str], set[str]] = defaultdict(set)
    designs = _designs_by_order(problem)
    for a in allocations:
        for step in designs[a.order_id].steps:
            for material, amount in step.materials.items():
                need[a.lab_id, material] += amount * a.quantity
                orders[a.lab_id, material].add(a.order_id)
    labs = {s.lab.id: s for s in problem.labs}
    found = []
    for (lab_id, material), amount in sorted(need.items()):
        have = labs[lab_id].stock.get(material, 0.0)
        if amount > have * (1 + TOLERANCE) + 1e-12:
            found.append(
                f"lab {lab_id!r}: material {material!r} over stock: {amount:.6g} needed "
                f"(orders {', '.join(sorted(orders[lab_id, material]))}) but {have:.6g} free"
            )
    return found


def _capacity_problems(problem: Problem, allocations: list[Allocation], days: float) -> list[str]:
    """Per lab and due date: can the work due by then run on eligible machines in the minutes free by then?"""
    by_lab: dict[str, list[Allocation]] = defaultdict(list)
    for a in allocations:
        by_lab[a.lab_id].append(a)
    labs = {s.lab.id: s for s in problem.labs}
    designs = _designs_by_order(problem)
    due = {d.order.id: days_until(problem, d.order.due_at) for d in problem.demands}
    found = []
    for lab_id, lab_allocations in sorted(by_lab.items()):
        checkpoints = sorted(
            {min(days, due[a.order_id]) for a in lab_allocations if a.late_units < a.quantity}
        )
        cases: list[tuple[float, list[tuple[str, int]]]] = []
        for when in [t for t in checkpoints if t < days]:
            on_time = [
                (a.order_id, a.quantity - a.late_units)
                for a in lab_allocations
                if a.late_units < a.quantity and due[a.order_id] <= when + 1e-9
            ]
            cases.append((when, on_time))
        cases.append((days, [(a.order_id, a.quantity) for a in lab_allocations]))
        placed = _placeable(designs, labs[lab_id], cases)
        for (when, work), most in zip(cases, placed, strict=True):
            message = _lab_capacity_problem(designs, labs[lab_id], work, when, most)
            if message:
                found.append(message)
    return found


#: Labs with more eligible machines than this are judged by max-flow instead of Hall's condition.
HALL_MAX_MACHINES = 12


def _placeable(
    designs: dict[str, Design], state: LabState, cases: list[tuple[float, list[tuple[str, int]]]]
) -> list[float]:
    """Per case (days, work as (order, units)): the most minutes of that work the machines can take.

    That is the max-flow of work -> eligible machines -> free minutes, computed through Hall's
    condition (König, Gale): the flow is the total work less the largest excess, over all sets S of
    machines, of the work only S can run over the minutes free on S. With a handful of machines,
    every set is enumerated at once in numpy; beyond HALL_MAX_MACHINES, max-flow proper is run.
    """
    lab = state.lab
    eligible: dict[tuple[str, int], int] = {}
    machines = [m.id for m in lab.machines]
    for order_id in {order_id for _, work in cases for order_id, _ in work}:
        for i, step in enumerate(designs[order_id].steps):
            bits = 0
            for b, machine in enumerate(lab.machines):
                if step.can_run_on(machine):
                    bits |= 1 << b
            eligible[order_id, i] = bits
    used = sorted({b for bits in eligible.values() for b in range(len(machines)) if bits >> b & 1})
    if len(used) > HALL_MAX_MACHINES:
        return [_max_flow(designs, state, work, days) for days, work in cases]
    # Re-index the machines that matter (the others can only add free minutes to a set).
    compact = {b: k for k, b in enumerate(used)}
    masks = sorted({sum(1 << compact[b] for b in used if bits >> b & 1) for bits in eligible.values()})
    if not masks:
        return [0.0] * len(cases)
    subsets = np.arange(1 << len(used))
    within = np.array([(subsets & mask) == mask for mask in masks], dtype=np.float64)  # masks x sets
    member = np.array([(subsets >> k) & 1 for k in range(len(used))], dtype=np.float64)  # machines x sets
    column = {mask: c for c, mask in enumerate(masks)}
    need = np.zeros((len(cases), len(masks)))
    free = np.zeros((len(cases), len(used)))
    for row, (days, work) in enumerate(cases):
        minutes = _free_minutes(state, days)
        free[row] = [minutes[machines[b]] for b in used]
        for order_id, quantity in work:
            for i, step in enumerate(designs[order_id].steps):
                bits = eligible[order_id, i]
                mask = sum(1 << compact[b] for b in used if bits >> b & 1)
                need[row, column[mask]] += step.minutes * quantity
    excess = need @ within - free @ member
    return (need.sum(axis=1) - np.maximum(0.0, excess.max(axis=1))).tolist()


def _max_flow(designs: dict[str, Design], state: LabState, work: list[tuple[str, int]], days: float) -> float:
    """Max-flow of work -> eligible machines -> free minutes (networkx), for labs with many machines."""
    free = _free_minutes(state, days)
    graph = nx.DiGraph()
    graph.add_node("source")
    for k, (order_id, quantity) in enumerate(work):
        for i, step in enumerate(designs[order_id].steps):
            node = ("work", k, i)
            graph.add_edge("source", node, capacity=step.minutes * quantity)
            for machine in state.lab.machines:
                if step.can_run_on(machine):
                    graph.add_edge(node, ("machine", machine.id))  # no capacity attribute: unbounded
    for machine in state.lab.machines:
        graph.add_edge(("machine", machine.id), "sink", capacity=free[machine.id])
    return float(nx.maximum_flow_value(graph, "source", "sink", flow_func=nx.algorithms.flow.edmonds_karp))


def _free_minutes(state: LabState, days: float) -> dict[str, float]:
    """Machine id -> minutes of nominal work it can still do in `days` (hours x speed, less backlog)."""
    return {
        m.id: max(0.0, m.hours_per_day * 60.0 * m.speed * days - state.backlog_minutes.get(m.id, 0.0))
        for m in state.lab.machines
    }


def _lab_capacity_problem(
    designs: dict[str, Design],
    state: LabState,
    allocations: list[tuple[str, int]],
    days: float,
    placed: float,
) -> str | None:
    """A message when not all the work (`placed` minutes of it can run) fits within `days`."""
    lab: Lab = state.lab
    free = _free_minutes(state, days)
    need = 0.0
    need_by_process: dict[str, float] = defaultdict(float)
    machines_by_process: dict[str, set[str]] = defaultdict(set)
    for order_id, quantity in allocations:
        for step in designs[order_id].steps:
            minutes = step.minutes * quantity
            for machine in lab.machines:
                if step.can_run_on(machine):
                    machines_by_process[step.process].add(machine.id)
            need += minutes
            need_by_process[step.process] += minutes
    if placed >= need * (1 - TOLERANCE) - 1e-9:
        return None
    detail = "; ".join(
        f"{process}: {minutes:.1f} min needed, {sum(free[m] for m in machines_by_process[process]):.1f} "
        f"free on {', '.join(sorted(machines_by_process[process]))}"
        for process, minutes in sorted(need_by_process.items())
    )
    orders = ", ".join(sorted({order_id for order_id, _ in allocations}))
    return (
        f"lab {lab.id!r}: machine capacity exceeded within {days:.2f} days: {need:.1f} minutes of work "
        f"(orders {orders}) but at most {placed:.1f} fit on the machines ({detail})"
    )
