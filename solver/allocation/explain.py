"""Why this lab, and why not the others: the explanation of an order's allocation, in plain lines.

For the labs an order was given to, the cost terms (distance, transport, setup, lateness, trail,
capacity), and the material that reaches the lab by transfer for them: which lab ships what
material, how much, how far and when it arrives ("material pla from lab B (Store), 84 km, arrives
day 0.2 (...): 0.036 kg for these units, of a 0.036 kg parcel"), in the text and as data
(`LabVerdict.transfers`). For the nearest labs it was not given to, the first reason that rules each
out, in the order a person would check them (lost, licence, capability, stock, capacity before the
due date, distance), and when something concrete would change it, what: "with 4.0 more fdm-hours
before 2026-03-06, lab B could take 2 more units". Recomputed from the problem's records alone, like
the validator.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from protocol.model import Allocation, Design, Order, Plan, Transfer
from protocol.okh import materials
from solver.jobshop.lab_schedule import unrunnable_step
from solver.model.capability import step_groups
from solver.model.geo import haversine_km
from solver.model.problem import LabState, Problem, SolveParams, days_until, free_minutes, horizon_days

#: Said of a lab short of stock when the plan's path plans no transfers (`Plan.transfers_considered`).
NO_TRANSFERS = (
    "this plan could not ship it from another lab: the path that made it (the large path, above "
    "decompose_above open demands, or transfers turned off) plans no material transfers"
)


@dataclass(frozen=True)
class LabVerdict:
    """One lab's part in an order's allocation: chosen with its terms, or not, and why."""

    lab_id: str
    lab_name: str
    km: float
    chosen: bool
    units: int
    why: str
    what_would_change: str | None = None
    cost: dict[str, float] | None = None
    #: For a chosen lab: the transfers its units wait for or were planned with (`Supply.to_json`).
    transfers: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The verdict as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class Parcel:
    """A transfer as the explanation may name it: the record, and, once the planner dispatched it,
    its id and state (`planner.shipping`); a plan's own transfers have neither."""

    transfer: Transfer
    id: str | None = None
    state: str | None = None


def _merged(lines: list[Allocation]) -> Allocation:
    """An order's lines at one lab as one: units, late and early units, material received and cost
    terms added up (the distance is the lab's, the same for each)."""
    first = lines[0]
    if len(lines) == 1:
        return first
    received: dict[str, float] = {}
    for line in lines:
        for material, amount in line.received.items():
            received[material] = received.get(material, 0.0) + amount
    cost = first.cost.model_copy(
        update={
            name: sum(getattr(line.cost, name) for line in lines)
            for name in ("transport", "setup", "lateness", "trail", "capacity", "time")
        }
    )
    return first.model_copy(
        update={
            "quantity": sum(line.quantity for line in lines),
            "late_units": sum(line.late_units for line in lines),
            "early_units": sum(line.early_units for line in lines),
            "received": received,
            "cost": cost,
        }
    )


def explain_order(
    problem: Problem,
    plan: Plan,
    order_id: str,
    params: SolveParams = SolveParams(),
    nearest: int = 5,
    parcels: list[Parcel] | None = None,
) -> list[LabVerdict]:
    """The chosen labs of `order_id` in `plan` (its lines at one lab taken together), then its
    `nearest` other labs with why not.

    A chosen lab's line that receives material (`Allocation.received`) names the transfers of that
    material into the lab: `parcels` when given (the planner's, with their ids and states: the
    material may have been shipped by an earlier plan), else the plan's own. When the order has
    units short or late and the plan's path plans no transfers (`Plan.transfers_considered`), a lab
    ruled out for want of stock says so in what would change it. The order must be among the
    problem's demands (ValueError otherwise).
    """
    demand = next((d for d in problem.demands if d.order.id == order_id), None)
    if demand is None:
        raise ValueError(f"order {order_id!r} is not among the problem's demands")
    order = demand.order
    design = problem.designs.get(order.design)
    lines: dict[str, list[Allocation]] = {}
    for a in plan.allocations:
        if a.order_id == order_id:
            lines.setdefault(a.lab_id, []).append(a)
    chosen = {lab_id: _merged(group) for lab_id, group in lines.items()}
    known = parcels if parcels is not None else [Parcel(t) for t in plan.transfers]
    by_distance = sorted(problem.labs, key=lambda s: (haversine_km(s.lab.location, order.delivery), s.lab.id))
    verdicts = []
    for state in by_distance:
        if state.lab.id in chosen:
            incoming = [p for p in known if p.transfer.to_lab == state.lab.id]
            verdicts.append(_chosen(problem, state, chosen[state.lab.id], incoming, design))
    farthest_chosen = max((a.cost.km for a in chosen.values()), default=None)
    missing = demand.quantity - sum(a.quantity for a in chosen.values())
    late = sum(a.late_units for a in chosen.values())
    others = [s for s in by_distance if s.lab.id not in chosen][:nearest]
    horizon = horizon_days(problem, params)
    due_days = days_until(problem, order.due_at)
    for state in others:
        km = haversine_km(state.lab.location, order.delivery)
        # Units it could win: those short or late, and those made farther away.
        wanted = missing + late + sum(a.quantity for a in chosen.values() if a.cost.km > km)
        why, change = _why_not(state, design, order, km, farthest_chosen, wanted, due_days, horizon)
        if why.startswith("no stock") and missing + late > 0 and not plan.transfers_considered:
            change = f"{change}; {NO_TRANSFERS}"
        verdicts.append(LabVerdict(state.lab.id, state.lab.name, round(km, 1), False, 0, why, change))
    return verdicts


def _chosen(
    problem: Problem,
    state: LabState,
    allocation: Allocation,
    incoming: list[Parcel],
    design: Design | None,
) -> LabVerdict:
    c = allocation.cost
    terms = f"{c.km:.1f} km; transport {c.transport:.1f}, setup {c.setup:.1f}"
    if c.lateness:
        terms += f", lateness {c.lateness:.1f} ({allocation.late_units} units after the due date)"
    if c.trail:
        terms += f", trail discount {c.trail:.1f}"
    if c.capacity:
        terms += f", capacity {c.capacity:.1f} (what the lab's minutes are worth to the demand still to come)"
    text, supplies = _supplied(problem, allocation, incoming)
    waiting = _units_from_transfers(allocation, design)
    head = f"chosen for {allocation.quantity} units"
    if waiting:
        head += f" ({waiting} of them made from material shipped to the lab)"
    if text:
        terms += f"; {text}"
    return LabVerdict(
        state.lab.id,
        state.lab.name,
        round(c.km, 1),
        True,
        allocation.quantity,
        f"{head}: {terms}",
        None,
        c.model_dump(),
        supplies,
    )


def _units_from_transfers(allocation: Allocation, design: Design | None) -> int:
    """Units of the line made from material that reaches its lab by transfer."""
    if design is None or not allocation.received:
        return 0
    per_unit = design.materials_per_unit()
    units = 0
    for material, amount in allocation.received.items():
        each = per_unit.get(material, 0.0)
        if each > 0:
            units = max(units, math.ceil(amount / each - 1e-9))
    return min(units, allocation.quantity)


def _amount(material: str, amount: float) -> str:
    known = materials().get(material)
    return f"{amount:.3f} {known.unit}" if known else f"{amount:.3f}"


def _supplied(
    problem: Problem, allocation: Allocation, incoming: list[Parcel]
) -> tuple[str, list[dict[str, Any]]]:
    """Where the material the allocation receives comes from, as text ("material pla from lab far
    (Far), 84 km, arrives day 0.2 (Mon 04 May 13:24 UTC): 0.036 kg for these units, of a 0.036 kg
    parcel (transfer t3-1, shipped)", one part per transfer into the lab of that material) and as
    data, one dict per transfer."""
    names = {s.lab.id: s.lab.name for s in problem.labs}
    parts: list[str] = []
    data: list[dict[str, Any]] = []
    for material, amount in sorted(allocation.received.items()):
        parcels = sorted(
            (p for p in incoming if p.transfer.material == material), key=lambda p: p.transfer.arrive_at
        )
        for p in parcels:
            t = p.transfer
            day = days_until(problem, t.arrive_at)
            ident = ", ".join(x for x in (f"transfer {p.id}" if p.id else "", p.state or "") if x)
            parts.append(
                f"{material} from lab {t.from_lab} ({names.get(t.from_lab, t.from_lab)}), {t.km:.0f} km, "
                f"arrives day {day:.1f} ({t.arrive_at.strftime('%a %d %b %H:%M UTC')}): "
                f"{_amount(material, amount)} for these units, of a {_amount(material, t.quantity)} parcel"
                + (f" ({ident})" if ident else "")
            )
            data.append(
                {
                    "id": p.id,
                    "state": p.state,
                    "material": material,
                    "from_lab": t.from_lab,
                    "from_lab_name": names.get(t.from_lab, t.from_lab),
                    "to_lab": t.to_lab,
                    "km": round(t.km, 1),
                    "parcel_quantity": t.quantity,
                    "line_uses": amount,
                    "ship_at": t.ship_at.isoformat(),
                    "arrive_at": t.arrive_at.isoformat(),
                }
            )
        if not parcels:
            parts.append(f"{_amount(material, amount)} {material} by a transfer not in this plan")
    return (("material " + "; ".join(parts)) if parts else ""), data


def _why_not(
    state: LabState,
    design: Design | None,
    order: Order,
    km: float,
    farthest_chosen: float | None,
    wanted: int,
    due_days: float,
    horizon: float,
) -> tuple[str, str | None]:
    """The first reason that rules a lab out, and what would change it."""
    if not state.live:
        return "lost: the lab has not been heard from", "it reconnects"
    if design is None:
        return f"design {order.design!r} is unknown", None
    accepts = order.accepts_licences
    if accepts and design.licence not in accepts:
        return f"licence gate: the requester does not accept {design.licence!r}", None
    missing_step = unrunnable_step(design, state.lab.machines)
    if missing_step is not None:
        return f"no capability: {missing_step}", None
    for material, per_unit in sorted(design.materials_per_unit().items()):
        have = state.stock.get(material, 0.0)
        if have + 1e-9 < per_unit:
            more = per_unit * max(1, wanted) - have
            return (
                f"no stock: {material} needs {per_unit:.3f} per unit, {have:.3f} free",
                f"with {more:.3f} more {material}, it could take {max(1, wanted)} units",
            )
    room_by_due, bottleneck = _room(state, design, max(0.0, due_days))
    if room_by_due < 1:
        process, need, free = bottleneck
        units = max(1, wanted)
        hours = max(0.0, (need * units - free) / 60.0)
        room_late = _room(state, design, horizon)[0]
        suffix = f"; it could make {room_late} after the due date" if room_late >= 1 else ""
        due = order.due_at.strftime("%a %d %b %H:%M UTC")
        return (
            f"no capacity before the due date: {process} needs {need:.0f} min per unit, {free:.0f} free"
            + suffix,
            f"with {hours:.1f} more {process}-hours before {due}, it could take {units} units",
        )
    if farthest_chosen is not None and km > farthest_chosen:
        return (
            f"capable, with room for {room_by_due} units by the due date, but farther: {km:.1f} km "
            f"against {farthest_chosen:.1f} km for the farthest lab chosen",
            None,
        )
    if wanted > 0:
        return (
            f"capable, with room for {room_by_due} units by the due date, but left out of the "
            "candidates or the plan by cost: closer labs' capacity is used first",
            None,
        )
    return f"capable, with room for {room_by_due} units, but the chosen labs are closer or cheaper", None


def _room(state: LabState, design: Design, days: float) -> tuple[int, tuple[str, float, float]]:
    """Units the lab could make within `days` (steps sharing machines counted jointly, approximately;
    a pool of machines in whole units of this design per machine, as its machines make them), and
    the tightest step: (process, minutes per unit, minutes free). The plan counts a pool by a due
    date in whole units of the shortest step in demand (`with_whole_units`), the same where one
    design runs on it and a little more room where longer designs share it."""
    free = free_minutes(state, days)
    need: dict[frozenset[str], float] = {}
    process_of: dict[frozenset[str], str] = {}
    for step, group in zip(design.steps, step_groups(state.lab, design), strict=True):
        need[group] = need.get(group, 0.0) + step.minutes
        process_of.setdefault(group, step.process)
    room = math.inf
    tightest = ("", 0.0, 0.0)
    for group, minutes in need.items():
        available = sum(free[m] for m in group)
        if minutes <= 0:
            units = math.inf
        elif len(group) > 1:  # each machine makes whole units (`solver.model.problem.with_whole_units`)
            units = sum(math.floor(free[m] / minutes + 1e-9) for m in group)
        else:
            units = math.floor(available / minutes + 1e-9)
        if units < room:
            room, tightest = units, (process_of[group], minutes, available)
    for material, per_unit in design.materials_per_unit().items():
        if per_unit > 0:
            room = min(room, math.floor(state.stock.get(material, 0.0) / per_unit + 1e-9))
    return (int(room) if math.isfinite(room) else 0), tightest
