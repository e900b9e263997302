"""An independent validator: does a plan respect every demand, capability, stock and machine hour?

It recomputes everything from the records and shares no code with the allocator except the
definition of the planning horizon, so a defect in the model shows up here instead of in a lab.
Machine capacity is judged with a max-flow per lab (work of each allocated step -> machines able to
run it -> free minutes of each machine), which is exact when machines offer several processes; its
value comes from Hall's condition over every set of the lab's machines (a few hundred sets, at once
in numpy), or from networkx's max-flow for labs with very many machines. It is judged at every due
date: the units planned on time for orders due by then must fit the minutes free by then, and every
unit, late ones included, must fit the minutes free within the horizon.

Material transfers (`Plan.transfers`) are judged on their own records: each joins two known live
labs, leaves now and arrives no sooner than handling and the road allow; a sender ships nothing its
own planned work needs (own use plus what it ships within its stock); material is never spent before
it arrives (the work a lab must have made before a transfer reaches it fits the stock it has before
then); and quantities conserve (what the lines of a lab say they receive is exactly what reaches it,
and no line receives more than it uses). Material already on its way to a lab (`LabState.incoming`)
is held to the same rules as a transfer arriving then, except that the lines may leave some of it
unused (it joins the lab's stock when it arrives).
"""

from __future__ import annotations

from collections import defaultdict

import networkx as nx
import numpy as np

from protocol.model import Allocation, Design, Lab, Plan, Transfer
from solver.model.geo import haversine_km
from solver.model.problem import (
    Demand,
    LabState,
    Problem,
    SolveParams,
    days_until,
    earliest_finish,
    horizon_days,
    transit,
)

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
    violations += _release_problems(problem, valid, params)
    transfers, transfer_violations = _transfer_problems(problem, plan, params)
    violations += transfer_violations
    violations += _stock_problems(problem, valid, transfers)
    violations += _received_problems(problem, valid, transfers)
    violations += _arrival_problems(problem, valid, transfers, params)
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


def _release_problems(problem: Problem, allocations: list[Allocation], params: SolveParams) -> list[str]:
    """Units planned to be made by the first time checkpoint (the work sent now) of a demand that may
    not finish by then (`earliest_finish`): a forecast is made a commit window after it is ordered."""
    first = min(params.time_checkpoints_days, default=None)
    if first is None:
        return []
    demands = {d.order.id: d for d in problem.demands}
    found = []
    for a in allocations:
        earliest = earliest_finish(problem, params, demands[a.order_id])
        if a.early_units > 0 and earliest > first + 1e-9:
            found.append(
                f"allocation of order {a.order_id!r} at lab {a.lab_id!r}: {a.early_units} units planned "
                f"to be made within {first:g} days, but the demand may be made only in {earliest:.2f} days"
            )
    return found


def _designs_by_order(problem: Problem) -> dict[str, Design]:
    """Order id -> its design, for the demands whose design is known."""
    return {
        d.order.id: problem.designs[d.order.design]
        for d in problem.demands
        if d.order.design in problem.designs
    }


def _need(problem: Problem, allocations: list[Allocation]) -> dict[tuple[str, str], float]:
    """(lab, material) -> amount the allocations there use."""
    need: dict[tuple[str, str], float] = defaultdict(float)
    designs = _designs_by_order(problem)
    for a in allocations:
        for material, amount in designs[a.order_id].materials_per_unit().items():
            need[a.lab_id, material] += amount * a.quantity
    return need


def _stock_problems(problem: Problem, allocations: list[Allocation], transfers: list[Transfer]) -> list[str]:
    """Per lab and material: what the allocations there use fits the free stock, less what the lab
    ships, plus what reaches it (conservation); and a sender ships only beyond its own planned use."""
    need = _need(problem, allocations)
    orders: dict[tuple[str, str], set[str]] = defaultdict(set)
    designs = _designs_by_order(problem)
    for a in allocations:
        for material in designs[a.order_id].materials_per_unit():
            orders[a.lab_id, material].add(a.order_id)
    out: dict[tuple[str, str], float] = defaultdict(float)
    into: dict[tuple[str, str], float] = defaultdict(float)
    for t in transfers:
        out[t.from_lab, t.material] += t.quantity
        into[t.to_lab, t.material] += t.quantity
    for (lab_id, material), amount in _on_the_way(problem).items():
        into[lab_id, material] += amount
    labs = {s.lab.id: s for s in problem.labs}
    found = []
    for lab_id, material in sorted(set(need) | set(out)):
        have = labs[lab_id].stock.get(material, 0.0)
        own = need.get((lab_id, material), 0.0)
        shipped = out.get((lab_id, material), 0.0)
        # What the lab's own stock must cover: its work, less what reaches it for that work.
        from_own = max(0.0, own - into.get((lab_id, material), 0.0))
        if shipped and from_own + shipped > have * (1 + TOLERANCE) + 1e-12:
            found.append(
                f"lab {lab_id!r}: ships {shipped:.6g} of {material!r} but has only "
                f"{max(0.0, have - from_own):.6g} beyond its own planned use ({have:.6g} free, "
                f"{from_own:.6g} used from it)"
            )
            continue
        total = have - shipped + into.get((lab_id, material), 0.0)
        if own > total * (1 + TOLERANCE) + 1e-12:
            found.append(
                f"lab {lab_id!r}: material {material!r} over stock: {own:.6g} needed "
                f"(orders {', '.join(sorted(orders[lab_id, material]))}) but {have:.6g} free"
                + (f" and {total - have:+.6g} by transfers" if total != have else "")
            )
    return found


def _transfer_problems(problem: Problem, plan: Plan, params: SolveParams) -> tuple[list[Transfer], list[str]]:
    """The transfers whose records make sense on their own, and what is wrong with the others."""
    labs = {s.lab.id: s for s in problem.labs}
    valid: list[Transfer] = []
    found = []
    for t in plan.transfers:
        where = f"transfer of {t.quantity:.6g} {t.material!r} from lab {t.from_lab!r} to lab {t.to_lab!r}"
        problems = []
        for role, lab_id in (("sender", t.from_lab), ("receiver", t.to_lab)):
            state = labs.get(lab_id)
            if state is None:
                problems.append(f"{where}: {role} {lab_id!r} is not known")
            elif not state.live:
                problems.append(f"{where}: {role} {lab_id!r} is lost (not live)")
        if t.ship_at < problem.now:
            problems.append(f"{where}: ships at {t.ship_at.isoformat()}, before now")
        if not problems:
            km = haversine_km(labs[t.from_lab].lab.location, labs[t.to_lab].lab.location)
            if t.km + 1e-6 < km * (1 - 1e-6):
                problems.append(f"{where}: {t.km:.1f} km claimed, but the labs are {km:.1f} km apart")
            hours = params.transfer_handling_hours + km / params.transport_kmh
            if (t.arrive_at - t.ship_at).total_seconds() < hours * 3600.0 - 1.0:
                problems.append(
                    f"{where}: arrives {(t.arrive_at - t.ship_at).total_seconds() / 3600.0:.2f} h after it "
                    f"ships, sooner than handling and the road allow ({hours:.2f} h)"
                )
        found += problems
        if not problems:
            valid.append(t)
    return valid, found


def _received_problems(
    problem: Problem, allocations: list[Allocation], transfers: list[Transfer]
) -> list[str]:
    """Quantities conserve: per lab and material, what its lines receive is what reaches it; a line
    receives no more than its units use."""
    designs = _designs_by_order(problem)
    received: dict[tuple[str, str], float] = defaultdict(float)
    found = []
    for a in allocations:
        per_unit = designs[a.order_id].materials_per_unit()
        for material, amount in a.received.items():
            received[a.lab_id, material] += amount
            uses = per_unit.get(material, 0.0) * a.quantity
            if amount > uses * (1 + TOLERANCE) + 1e-12:
                found.append(
                    f"allocation of order {a.order_id!r} at lab {a.lab_id!r}: receives {amount:.6g} of "
                    f"{material!r} but its {a.quantity} units use {uses:.6g}"
                )
    arriving: dict[tuple[str, str], float] = defaultdict(float)
    for t in transfers:
        arriving[t.to_lab, t.material] += t.quantity
    # Material already on its way may be left unused by the lines (it joins the lab's stock).
    on_the_way = _on_the_way(problem)
    for lab_id, material in sorted(set(received) | set(arriving)):
        got, sent = received.get((lab_id, material), 0.0), arriving.get((lab_id, material), 0.0)
        spare = on_the_way.get((lab_id, material), 0.0)
        if got < sent - TOLERANCE * max(1.0, got, sent) or got > sent + spare + TOLERANCE * max(
            1.0, got, sent + spare
        ):
            coming = f" and {spare:.6g} is on its way" if spare else ""
            found.append(
                f"lab {lab_id!r}: {sent:.6g} of {material!r} arrives by transfer{coming} but its lines "
                f"receive {got:.6g}: quantities must conserve"
            )
    return found


def _on_the_way(problem: Problem) -> dict[tuple[str, str], float]:
    """(lab, material) -> amount on its way to a live lab (shipped before this plan)."""
    coming: dict[tuple[str, str], float] = defaultdict(float)
    for state in problem.labs:
        if state.live:
            for parcel in state.incoming:
                coming[state.lab.id, parcel.material] += parcel.quantity
    return coming


def _required_by(
    problem: Problem, a: Allocation, demand: Demand, state: LabState, params: SolveParams, days: float
) -> list[tuple[float, int]]:
    """(day by which they must be made, units) of an allocation: its early units by the first time
    checkpoint, its on-time units by the day they must leave to arrive by the due date, the rest
    within the horizon."""
    km = haversine_km(state.lab.location, demand.order.delivery)
    leave_by = days_until(problem, demand.order.due_at) - transit(params, km)
    first = min(params.time_checkpoints_days, default=days)
    on_time = a.quantity - a.late_units
    early_on_time = min(a.early_units, on_time)
    early_late = min(a.early_units - early_on_time, a.late_units)
    return [
        (min(first, leave_by), early_on_time),
        (leave_by, on_time - early_on_time),
        (first, early_late),
        (days, a.late_units - early_late),
    ]


def _arrival_problems(
    problem: Problem, allocations: list[Allocation], transfers: list[Transfer], params: SolveParams
) -> list[str]:
    """Material is never spent before it arrives: at each arrival, the work the receiving lab must
    have made before it fits the stock the lab had before it; and a line that receives material
    has at least that much work due no earlier than the first arrival."""
    demands = {d.order.id: d for d in problem.demands}
    labs = {s.lab.id: s for s in problem.labs}
    designs = _designs_by_order(problem)
    days = horizon_days(problem, params)
    out: dict[tuple[str, str], float] = defaultdict(float)
    arrivals: dict[tuple[str, str], list[tuple[float, float, str]]] = defaultdict(list)
    for t in transfers:
        out[t.from_lab, t.material] += t.quantity
        arrivals[t.to_lab, t.material].append(
            (days_until(problem, t.arrive_at), t.quantity, f"the transfer from lab {t.from_lab!r}")
        )
    for state in problem.labs:
        for parcel in state.incoming if state.live else ():
            when = max(0.0, days_until(problem, parcel.arrive_at))
            arrivals[state.lab.id, parcel.material].append((when, parcel.quantity, "material in transit"))
    if not arrivals:
        return []
    due_work: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    found = []
    for a in allocations:
        per_unit = designs[a.order_id].materials_per_unit()
        groups = _required_by(problem, a, demands[a.order_id], labs[a.lab_id], params, days)
        for material, amount in per_unit.items():
            if (a.lab_id, material) in arrivals:
                due_work[a.lab_id, material] += [(when, amount * units) for when, units in groups if units]
        for material, got in a.received.items():
            first = min((when for when, _, _ in arrivals.get((a.lab_id, material), [])), default=days)
            after = sum(units for when, units in groups if when >= first - 1e-9) * per_unit.get(material, 0.0)
            if got > after * (1 + TOLERANCE) + 1e-12:
                found.append(
                    f"allocation of order {a.order_id!r} at lab {a.lab_id!r}: receives {got:.6g} of "
                    f"{material!r} arriving on day {first:.2f}, but only {after:.6g} of it is used by "
                    "units made after then: material spent before it arrives"
                )
    for (lab_id, material), coming in sorted(arrivals.items()):
        before = labs[lab_id].stock.get(material, 0.0) - out.get((lab_id, material), 0.0)
        for arrive, quantity, sender in sorted(coming):
            needed = sum(amount for when, amount in due_work[lab_id, material] if when < arrive - 1e-9)
            if needed > before * (1 + TOLERANCE) + 1e-12:
                found.append(
                    f"lab {lab_id!r}: {needed:.6g} of {material!r} must be used before day {arrive:.2f}, "
                    f"when {sender} arrives, but only {max(0.0, before):.6g} is "
                    "there before then: material spent before it arrives"
                )
                break
            before += quantity
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
    machines, of the work only S can run over the minutes free on S. Machines that every step of
    the work can run on alike (a lab's identical printers) are one node with their minutes added
    up, which leaves the flow's value as it is; with a handful of such nodes every set is
    enumerated at once in numpy, and beyond HALL_MAX_MACHINES max-flow proper is run.
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
    patterns = sorted(set(eligible.values()))
    used = [b for b in range(len(machines)) if any(bits >> b & 1 for bits in patterns)]
    # Machines in the same patterns are interchangeable to the work: one class each.
    class_of_signature: dict[tuple[int, ...], int] = {}
    class_of = {
        b: class_of_signature.setdefault(tuple(bits >> b & 1 for bits in patterns), len(class_of_signature))
        for b in used
    }
    classes = len(class_of_signature)
    if classes > HALL_MAX_MACHINES:
        return [_max_flow(designs, state, work, days) for days, work in cases]
    mask_of = {bits: sum(1 << k for k in {class_of[b] for b in used if bits >> b & 1}) for bits in patterns}
    masks = sorted(set(mask_of.values()))
    if not masks:
        return [0.0] * len(cases)
    subsets = np.arange(1 << classes)
    within = np.array([(subsets & mask) == mask for mask in masks], dtype=np.float64)  # masks x sets
    member = np.array([(subsets >> k) & 1 for k in range(classes)], dtype=np.float64)  # classes x sets
    column = {mask: c for c, mask in enumerate(masks)}
    need = np.zeros((len(cases), len(masks)))
    free = np.zeros((len(cases), classes))
    for row, (days, work) in enumerate(cases):
        minutes = _free_minutes(state, days)
        for b in used:
            free[row, class_of[b]] += minutes[machines[b]]
        for order_id, quantity in work:
            for i, step in enumerate(designs[order_id].steps):
                need[row, column[mask_of[eligible[order_id, i]]]] += step.minutes * quantity
    excess = need @ within - free @ member
    return (need.sum(axis=1) - np.maximum(0.0, excess.max(axis=1))).tolist()


def _max_flow(designs: dict[str, Design], state: LabState, work: list[tuple[str, int]], days: float) -> float:
    """Max-flow of work -> eligible machines -> free minutes (networkx), for labs with many machines.

    Work that can run on the same set of machines is one node (its minutes added up): the flow's
    value is the same, and the graph has a node per distinct set instead of per order and step.
    """
    free = _free_minutes(state, days)
    need: dict[tuple[str, ...], float] = defaultdict(float)
    for order_id, quantity in work:
        for step in designs[order_id].steps:
            eligible = tuple(m.id for m in state.lab.machines if step.can_run_on(m))
            need[eligible] += step.minutes * quantity
    graph = nx.DiGraph()
    graph.add_node("source")
    for k, (eligible, minutes) in enumerate(sorted(need.items())):
        node = ("work", k)
        graph.add_edge("source", node, capacity=minutes)
        for machine_id in eligible:
            graph.add_edge(node, ("machine", machine_id))  # no capacity attribute: unbounded
    for machine in state.lab.machines:
        graph.add_edge(("machine", machine.id), "sink", capacity=free[machine.id])
    return float(nx.maximum_flow_value(graph, "source", "sink", flow_func=nx.algorithms.flow.edmonds_karp))


def _free_minutes(state: LabState, days: float) -> dict[str, float]:
    """Machine id -> minutes of nominal work it can still do in `days` (hours x speed, less the
    backlog it works first: a part that must leave only after `days` waits behind new work that must
    leave by then, as a lab takes its work earliest leave-by first)."""
    free = {}
    for m in state.lab.machines:
        backlog = state.backlog_minutes.get(m.id, 0.0)
        for leave, minutes in state.deferred_minutes.get(m.id, ()):
            if leave > days + 1e-9:
                backlog -= minutes
        free[m.id] = max(0.0, m.hours_per_day * 60.0 * m.speed * days - max(0.0, backlog))
    return free


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
