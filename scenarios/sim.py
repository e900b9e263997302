"""Simulated time: a discrete-event replay of a world under one allocation policy, without sockets.

The replay advances in planning rounds of `round_hours`, from the scenario's start until its last
order falls due (`World.end`): orders arrive during the scenario's `days`, and every policy keeps
working on them until then. Each round, in this order:

1. disruptions that start or end by now are applied (a lost lab's unfinished units return to demand,
   as the planner does when a lab goes silent; jobs a lab can no longer make or supply are released);
2. supply arrives (each lab's `restock_per_day`, less any cut supply);
3. the policy allocates the open demand (ordered units not yet made or queued at a lab) to labs; the
   rules are the planner's: committed units are never re-planned, lost labs get nothing;
4. every live lab works through its queue, earliest leave-by first (`leave_by`), for the round's machine
   minutes.

A policy that keeps trails (`Learner`, the solver's policy) is told of every unit made by its due
date and of every lab lost with work queued, as the planner is told by its labs: its trails grow
and fade as the planner's do, by machine hours and by days, whatever the rounds.

Material transfers a policy sends (`Shipper`, the solver's plan) leave the sender's stock when sent
and join the receiver's stock when they arrive: a round is worked in parts split at each arrival, so
a unit that needs the material is not made before it, and is made in the same round after it.
Material on its way counts as the receiver's (promised to the work
that asked for it): its queued work is not released for lack of stock. The solver sees it as the
planner does, in transit (`solver.model.problem.InTransit`): usable from its arrival on.

Lab execution is a simple model consistent with `Machine.minutes_per_day()`: each machine offers
`minutes_per_day * round_hours / 24` nominal minutes per round; a unit needs each design step's
minutes on a machine eligible for that step (`solver.model.capability.step_groups`) and its
materials from stock. Units are whole and counted when done. When the minutes left in a round's
part cannot finish a unit while work waits, the machines start one anyway and finish it in the next
part (`in_progress`), as a printer does overnight. A unit finishes at the time its lab's busiest
step group reaches it, and is delivered after one hour of handling plus the road distance at the
scenario's `transport_kmh`. No wall clock is read except to time solves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol, runtime_checkable

from planner.hours import deferred_late_work
from protocol.model import PRIORITIES, Design, Lab, Location, Order, Transfer
from scenarios.world import World, WorldEvent
from solver.jobshop import ranking
from solver.model.capability import step_groups
from solver.model.geo import haversine_km
from solver.model.objective import HANDLING_HOURS as SOLVER_HANDLING_HOURS
from solver.model.problem import InTransit, LabState

#: Hours of handling before a finished unit leaves its lab: the solver's own figure, so that what
#: the plan counts as on time and what the replay measures agree.
HANDLING_HOURS = SOLVER_HANDLING_HOURS

DAY = timedelta(days=1)


class SimulationError(RuntimeError):
    """The replay found a defect (a plan that breaks its own problem): a bug, never a result."""


class Line(NamedTuple):
    """One line a policy allocates: units of an order at a lab, and what the plan promised of them.

    Baselines promise nothing beyond placing work where it fits by the due date (`late_units` 0,
    `arrive_by` None); the solver says how many of its units it planned late and when the last of
    them should arrive.
    """

    order_id: str
    lab_id: str
    units: int
    late_units: int = 0
    arrive_by: datetime | None = None


@dataclass
class Job:
    """Units of one order queued at a lab, with the units of them the plan counted on time."""

    order: Order
    units: int
    seq: int
    on_time_left: int = 0
    arrive_by: datetime | None = None


@dataclass(frozen=True)
class Delivery:
    """Units of an order made at a lab and delivered."""

    order_id: str
    lab_id: str
    units: int
    made_at: datetime
    delivered_at: datetime
    km: float
    planned_on_time: int = 0  # units of these the plan counted on time
    arrive_by: datetime | None = None  # when the plan said they would arrive at the latest


@dataclass
class LabSim:
    """A lab during the replay: presence, machines down, stock, supply and its job queue."""

    lab: Lab
    restock: dict[str, float]
    present: bool = True
    lost: bool = False
    down: set[str] = field(default_factory=set)
    cut: dict[str, float | None] = field(default_factory=dict)  # material -> supply lost per day (None: all)
    stock: dict[str, float] = field(default_factory=dict)
    incoming: list[Transfer] = field(default_factory=list)  # material on its way here
    queue: list[Job] = field(default_factory=list)
    minutes_used: float = 0.0
    minutes_offered: float = 0.0
    units_made: int = 0
    #: Machine id -> minutes of a unit in progress when the last part of a round ended: a printer
    #: that has a unit's worth of work waiting starts it, and finishes it in the next round.
    in_progress: dict[str, float] = field(default_factory=dict)
    _groups: dict[tuple[str, frozenset[str]], tuple[frozenset[str], ...]] = field(default_factory=dict)

    def groups(self, design: Design) -> tuple[frozenset[str], ...]:
        """Eligible working machines per step of a design (`solver.model.capability.step_groups`), cached."""
        key = (design.id, frozenset(self.down))
        if key not in self._groups:
            active = self.active_lab()
            self._groups[key] = (
                step_groups(active, design) if active else tuple(frozenset() for _ in design.steps)
            )
        return self._groups[key]

    @property
    def live(self) -> bool:
        """Present and not lost: it can receive and do work."""
        return self.present and not self.lost

    def active_lab(self) -> Lab | None:
        """The lab with only its working machines; None when every machine is down."""
        machines = [m for m in self.lab.machines if m.id not in self.down]
        if not machines:
            return None
        if len(machines) == len(self.lab.machines):
            return self.lab
        return self.lab.model_copy(update={"machines": machines})

    def stock_and_incoming(self) -> dict[str, float]:
        """Material in hand and on its way here."""
        total = dict(self.stock)
        for t in self.incoming:
            total[t.material] = total.get(t.material, 0.0) + t.quantity
        return total

    def reserved(self, designs: dict[str, Design]) -> dict[str, float]:
        """Material -> amount the queued units will consume."""
        total: dict[str, float] = {}
        for job in self.queue:
            for material, amount in designs[job.order.design].materials_per_unit().items():
                total[material] = total.get(material, 0.0) + amount * job.units
        return total

    def free_in_hand_and_on_its_way(
        self, designs: dict[str, Design]
    ) -> tuple[dict[str, float], tuple[InTransit, ...]]:
        """Free stock in hand, and the parcels on their way (`InTransit`) less what queued units are
        already promised: the queue draws on stock in hand first, then on the earliest parcels."""
        reserved = self.reserved(designs)
        in_hand = {}
        for material in sorted(set(self.stock) | set(reserved)):
            free = self.stock.get(material, 0.0) - reserved.get(material, 0.0)
            in_hand[material] = max(0.0, free)
            reserved[material] = max(0.0, -free)
        parcels = []
        for t in sorted(self.incoming, key=lambda t: t.arrive_at):
            left = t.quantity - reserved.get(t.material, 0.0)
            reserved[t.material] = max(0.0, -left)
            if left > 1e-9:
                parcels.append(InTransit(t.material, left, t.arrive_at))
        return in_hand, tuple(parcels)

    def backlog_minutes(self, designs: dict[str, Design]) -> dict[str, float]:
        """Machine id -> nominal minutes of queued work, each step spread over its eligible machines."""
        active = self.active_lab()
        backlog: dict[str, float] = {}
        if active is None:
            return backlog
        per_day = {m.id: m.minutes_per_day() for m in active.machines}
        for job in self.queue:
            design = designs[job.order.design]
            for step, group in zip(design.steps, self.groups(design), strict=True):
                total = sum(per_day[m] for m in group)
                for m in group:
                    backlog[m] = backlog.get(m, 0.0) + step.minutes * job.units * per_day[m] / total
        return backlog

    def state(self, designs: dict[str, Design], now: datetime | None = None, kmh: float = 0.0) -> LabState:
        """The lab as the solver sees it: working machines, backlog, free stock, live or not; from
        `now` on, with its late work deferred behind work that must leave sooner, as the planner
        counts a lab's (`planner.hours.deferred_late_work`), at the road speed `kmh`."""
        active = self.active_lab()
        in_hand, on_its_way = self.free_in_hand_and_on_its_way(designs)
        backlog = self.backlog_minutes(designs)
        deferred = {}
        if now is not None and active is not None and kmh > 0:
            late = [
                (designs[job.order.design], job.units, (leave_by(job, self.lab.location, kmh) - now) / DAY)
                for job in self.queue
                if job.on_time_left <= 0 and job.arrive_by is not None
            ]
            deferred = deferred_late_work(active, late, backlog)
        return LabState(
            lab=active or self.lab,
            backlog_minutes=backlog,
            stock=in_hand,
            live=self.live and active is not None,
            incoming=on_its_way,
            deferred_minutes=deferred,
        )


def minutes_per_group(design: Design, groups: tuple[frozenset[str], ...]) -> dict[frozenset[str], float]:
    """Minutes one unit of `design` needs on each machine group (steps on the same group add up)."""
    need: dict[frozenset[str], float] = {}
    for step, group in zip(design.steps, groups, strict=True):
        need[group] = need.get(group, 0.0) + step.minutes
    return need


def fit_units(
    budgets: dict[str, float],
    groups: tuple[frozenset[str], ...],
    design: Design,
    stock: dict[str, float],
    most: int,
) -> tuple[int, dict[str, float]]:
    """How many whole units (at most `most`) fit these machine minutes and stock; the budgets they leave.

    `groups` are the machines eligible for each step. When steps share either all or none of their
    machines (the usual case), each group's minutes are pooled, as the solver pools them, and the work
    is drawn from its machines in proportion to what each has left. Otherwise each step takes minutes
    from the eligible machines with the most left, and the count is found by bisection.
    """
    if most <= 0 or not all(groups):
        return 0, budgets
    for material, amount in design.materials_per_unit().items():
        if amount > 0:
            most = min(most, math.floor(stock.get(material, 0.0) / amount + 1e-9))
    if most <= 0:
        return 0, budgets
    distinct = list(dict.fromkeys(groups))
    if all(a == b or not (a & b) for a in distinct for b in distinct):
        need = minutes_per_group(design, groups)
        free = {g: sum(budgets.get(m, 0.0) for m in g) for g in distinct}
        for g in distinct:
            most = min(most, math.floor(free[g] / need[g] + 1e-9))
        if most <= 0:
            return 0, budgets
        left = dict(budgets)
        for g in distinct:
            share = min(1.0, need[g] * most / free[g])
            for m in g:
                left[m] = left.get(m, 0.0) * (1.0 - share)
        return most, left

    def take(k: int) -> dict[str, float] | None:
        left = dict(budgets)
        for step, group in zip(design.steps, groups, strict=True):
            need = step.minutes * k
            for m in sorted(group, key=lambda g: (-left.get(g, 0.0), g)):
                use = min(need, left.get(m, 0.0))
                left[m] = left.get(m, 0.0) - use
                need -= use
                if need <= 1e-9:
                    break
            if need > 1e-6:
                return None
        return left

    low, high, best = 0, most, budgets
    while low < high:
        mid = (low + high + 1) // 2
        left = take(mid)
        if left is None:
            high = mid - 1
        else:
            low, best = mid, left
    return low, (best if low else budgets)


@runtime_checkable
class Shipper(Protocol):
    """A policy that also ships material between labs (the solver's transfers)."""

    def transfers_to_send(self) -> list[Transfer]:
        """The transfers of the last `allocate` call to send now; each is returned once."""
        ...


@runtime_checkable
class Learner(Protocol):
    """A policy that learns from what labs deliver and let down, as the planner's trails do
    (`solver.model.trails`): told of every unit made by its due date, and of every lab lost with work
    queued."""

    def delivered_on_time(self, design: str, lab_id: str, machine_hours: float, at: datetime) -> None:
        """`machine_hours` of work on `design` made at `lab_id` by its due date, at `at`."""
        ...

    def let_down(self, design: str, lab_id: str, at: datetime) -> None:
        """`lab_id` dropped its queued work on `design` at `at` (the planner's lease expiring)."""
        ...


class Policy(Protocol):
    """An allocation policy: given the open demand and the labs, which units go where this round."""

    name: str

    def allocate(
        self, now: datetime, labs: list[LabSim], demand: list[tuple[Order, int]], designs: dict[str, Design]
    ) -> list[tuple[str, str, int]] | list[Line]:
        """(order id, lab id, units) to queue, or `Line`s; must respect each lab's free capacity and stock."""
        ...


@dataclass
class PlanStats:
    """What the solver-backed policy reports about its plans (zero for the baselines)."""

    plans: int = 0
    objective: float = 0.0
    bound: float = 0.0
    optimal: int = 0
    solve_seconds: float = 0.0
    shortages: int = 0
    transfers: int = 0


@dataclass
class PolicyRun:
    """Everything one policy did in one replay."""

    policy: str
    world: World
    labs: list[LabSim]
    deliveries: list[Delivery]
    allocations: list[tuple[datetime, str, str, int]]
    solve_seconds: float
    stats: PlanStats
    transfers: list[Transfer] = field(default_factory=list)  # material shipped between labs


def replay_rounds(world: World) -> int:
    """How many planning rounds a replay of `world` takes: its time until `World.end` cut into rounds,
    at least one."""
    hours = (world.end - world.start) / timedelta(hours=1)
    return max(1, math.ceil(hours / world.loaded.scenario.round_hours - 1e-9))


def leave_by(job: Job, lab_at: Location, kmh: float) -> datetime:
    """When a job must leave the lab (`solver.jobshop.ranking.leave_by`, the lab agent's own rule):
    the order's due date less handling and the road while the plan counts units of it on time, else
    when the plan said its units would arrive, less the same.

    A lab works earliest leave-by first, which is how it meets arrival dates (a far order due later
    may have to leave sooner than a near one). Units already planned late must not jump ahead of
    units planned on time elsewhere in the queue: the plan placed them after those.
    """
    road_hours = HANDLING_HOURS + haversine_km(lab_at, job.order.delivery) / kmh
    return ranking.leave_by(job.order.due_at, road_hours, job.arrive_by, late=job.on_time_left <= 0)


def dispatch_key(job: Job, lab_at: Location, kmh: float) -> ranking.DispatchKey:
    """Where a job stands in its lab's queue: the lab agent's own key (`solver.jobshop.ranking`)."""
    order = job.order
    return ranking.dispatch_key(leave_by(job, lab_at, kmh), order.due_at, order.priority, order.id, job.seq)


def _started_unit(
    lab: LabSim, queue: list[Job], left: dict[str, float], designs: dict[str, Design]
) -> dict[str, float]:
    """The minutes a lab's machines put into the next unit of its first waiting job, when the part of
    the round they had left could not finish one: machine id -> minutes, carried into the next part.

    Whole units only are made, so without this a lab would lose up to a unit's minutes per machine
    group at every round's end while work waited (a printer does not stop at midnight because the
    planner's round does). Nothing is carried for a job the stock cannot supply, nor beyond one
    unit's minutes per step group, nor from machines with no such work: idle time is not banked.
    """
    for job in queue:  # in the order the lab took them
        design = designs[job.order.design]
        materials = design.materials_per_unit()
        if any(lab.stock.get(m, 0.0) + 1e-9 < amount for m, amount in materials.items()):
            continue
        groups = lab.groups(design)
        if not all(groups):
            continue
        need = minutes_per_group(design, groups)
        carried: dict[str, float] = {}
        for group, minutes in need.items():
            free = sum(left.get(m, 0.0) for m in group)
            if free <= 0:
                continue
            share = min(1.0, minutes / free)
            for m in group:
                carried[m] = min(left.get(m, 0.0), carried.get(m, 0.0) + left.get(m, 0.0) * share)
        return carried
    return {}


def _rank(order: Order) -> tuple[datetime, int, str]:
    return (order.due_at, -PRIORITIES.index(order.priority), order.id)


class Simulation:
    """The replay of one world under one policy (see module docstring)."""

    def __init__(self, world: World, policy: Policy, stats: PlanStats | None = None) -> None:
        self.world = world
        self.policy = policy
        self.stats = stats or PlanStats()
        self.designs = world.loaded.designs
        self.labs = [
            LabSim(lab=lab, restock=dict(world.restock.get(lab.id, {})), stock=dict(lab.stock))
            for lab in world.labs
        ]
        self.by_id = {s.lab.id: s for s in self.labs}
        for event in world.events:
            if event.kind == "lab_joins":
                self.by_id[event.lab_id].present = False
        self.made: dict[str, int] = {}
        self.deliveries: list[Delivery] = []
        self.allocations: list[tuple[datetime, str, str, int]] = []
        self.transfers: list[Transfer] = []
        self.seq = 0
        self.solve_seconds = 0.0
        self._started: set[int] = set()
        self._ended: set[int] = set()

    # -- disruptions -------------------------------------------------------------------------------

    def _apply_events(self, now: datetime) -> None:
        for index, event in enumerate(self.world.events):
            if index not in self._started and event.start <= now:
                self._started.add(index)
                self._start(event)
            if index not in self._ended and event.end is not None and event.end <= now:
                self._ended.add(index)
                self._end(event)
        for lab in self.labs:
            self._release_unmakeable(lab)

    def _start(self, event: WorldEvent) -> None:
        lab = self.by_id[event.lab_id]
        if event.kind == "lab_lost":
            lab.lost = True
            if isinstance(self.policy, Learner):  # once per design, however many rounds queued it
                for design in sorted({job.order.design for job in lab.queue}):
                    self.policy.let_down(design, lab.lab.id, event.start)
            lab.queue.clear()  # unfinished units return to demand
        elif event.kind == "lab_joins":
            lab.present = True
        elif event.kind == "machine_down":
            lab.down |= set(event.machine_ids)
        elif event.kind == "stock_out" and event.material:
            have = lab.stock.get(event.material, 0.0)
            lab.stock[event.material] = 0.0 if event.drop is None else max(0.0, have - event.drop)
            lab.cut[event.material] = event.restock_cut

    def _end(self, event: WorldEvent) -> None:
        lab = self.by_id[event.lab_id]
        if event.kind == "lab_lost":
            lab.lost = False
        elif event.kind == "machine_down":
            lab.down -= set(event.machine_ids)
        elif event.kind == "stock_out" and event.material:
            lab.cut.pop(event.material, None)

    def _release_unmakeable(self, lab: LabSim) -> None:
        """Drop queued units the lab cannot make (machines down) or supply (stock gone): back to demand."""
        active = lab.active_lab()
        stock = lab.stock_and_incoming()
        kept = []
        for job in sorted(lab.queue, key=lambda j: _rank(j.order)):
            design = self.designs[job.order.design]
            if active is None or not all(lab.groups(design)):
                continue
            units = job.units
            for material, amount in design.materials_per_unit().items():
                if amount > 0:
                    units = min(units, math.floor(stock.get(material, 0.0) / amount + 1e-9))
            for material, amount in design.materials_per_unit().items():
                stock[material] = stock.get(material, 0.0) - amount * units
            if units > 0:
                job.units = units
                kept.append(job)
        lab.queue = kept

    # -- a round ---------------------------------------------------------------------------------

    def _restock(self, days: float) -> None:
        for lab in self.labs:
            for material, per_day in lab.restock.items():
                cut = lab.cut.get(material, 0.0) if material in lab.cut else 0.0
                lost = per_day if material in lab.cut and cut is None else (cut or 0.0)
                lab.stock[material] = lab.stock.get(material, 0.0) + max(0.0, per_day - lost) * days

    def _ship(self, transfers: list[Transfer]) -> None:
        """Material leaves each sender now and is on its way to its receiver.

        A sender ships at most what it holds in hand: material still on its way to it (which the plan
        counts as its stock) cannot be forwarded before it arrives, so such a transfer leaves short.
        """
        for t in transfers:
            sender, receiver = self.by_id[t.from_lab], self.by_id[t.to_lab]
            have = sender.stock.get(t.material, 0.0)
            quantity = min(t.quantity, have)
            if quantity <= 1e-12:
                continue
            sender.stock[t.material] = have - quantity
            shipped = t if quantity == t.quantity else t.model_copy(update={"quantity": quantity})
            receiver.incoming.append(shipped)
            self.transfers.append(shipped)

    def _receive(self, now: datetime) -> None:
        """Material that has arrived by now joins its receiver's stock."""
        for lab in self.labs:
            arrived = [t for t in lab.incoming if t.arrive_at <= now]
            if arrived:
                lab.incoming = [t for t in lab.incoming if t.arrive_at > now]
                for t in arrived:
                    lab.stock[t.material] = lab.stock.get(t.material, 0.0) + t.quantity

    def open_demand(self, now: datetime) -> list[tuple[Order, int]]:
        """Orders placed by now with units neither made nor queued, first come first."""
        queued: dict[str, int] = {}
        for lab in self.labs:
            for job in lab.queue:
                queued[job.order.id] = queued.get(job.order.id, 0) + job.units
        demand = []
        for order in self.world.orders:
            if order.created_at > now:
                break
            left = order.quantity - self.made.get(order.id, 0) - queued.get(order.id, 0)
            if left > 0:
                demand.append((order, left))
        return demand

    def _commit(self, now: datetime, lines: list[tuple[str, str, int]] | list[Line]) -> None:
        orders = {o.id: o for o in self.world.orders}
        for line in lines:
            order_id, lab_id, units, late_units, arrive_by = Line(*line)
            if units <= 0:
                continue
            lab = self.by_id[lab_id]
            if not lab.live:
                raise SimulationError(
                    f"policy {self.policy.name} allocated to lab {lab_id}, which is not live"
                )
            # Units planned on time and units planned late queue apart: the late ones must not ride
            # along at the on-time ones' rank and take the machines from other promised work.
            on_time = units - late_units
            if on_time > 0:
                self.seq += 1
                lab.queue.append(Job(orders[order_id], on_time, self.seq, on_time, arrive_by))
            if late_units > 0:
                self.seq += 1
                lab.queue.append(Job(orders[order_id], late_units, self.seq, 0, arrive_by))
            self.allocations.append((now, order_id, lab_id, units))

    def _execute(self, now: datetime, hours: float) -> None:
        """Every live lab works for the round; material that arrives during it is used from its
        arrival on (the round is worked in parts, split at each arrival)."""
        end = now + timedelta(hours=hours)
        for lab in self.labs:
            active = lab.active_lab()
            if not lab.live or active is None:
                continue
            arriving = sorted((t for t in lab.incoming if now < t.arrive_at < end), key=lambda t: t.arrive_at)
            start = now
            for t in arriving:
                self._work(lab, active, start, (t.arrive_at - start) / timedelta(hours=1))
                lab.stock[t.material] = lab.stock.get(t.material, 0.0) + t.quantity
                lab.incoming.remove(t)
                start = t.arrive_at
            self._work(lab, active, start, (end - start) / timedelta(hours=1))

    def _work(self, lab: LabSim, active: Lab, now: datetime, hours: float) -> None:
        """The lab works through its queue, earliest leave-by first (`leave_by`), for `hours` from `now`."""
        kmh = self.world.loaded.scenario.transport_kmh
        budgets = {m.id: m.minutes_per_day() * hours / 24.0 for m in active.machines}
        offered = sum(budgets.values())
        lab.minutes_offered += offered
        if offered <= 0:
            return
        for machine_id, minutes in lab.in_progress.items():
            if machine_id in budgets:
                budgets[machine_id] += minutes
        lab.in_progress = {}
        full = dict(budgets)
        kept = []
        for job in sorted(lab.queue, key=lambda j: dispatch_key(j, lab.lab.location, kmh)):
            design = self.designs[job.order.design]
            groups = lab.groups(design)
            units, left = fit_units(budgets, groups, design, lab.stock, job.units)
            if units > 0:
                used_share = max(
                    sum(full[m] - left[m] for m in g) / max(1e-9, sum(full[m] for m in g)) for g in groups
                )
                lab.minutes_used += sum(budgets.values()) - sum(left.values())
                budgets = left
                for material, amount in design.materials_per_unit().items():
                    lab.stock[material] = max(0.0, lab.stock.get(material, 0.0) - amount * units)
                made_at = now + timedelta(hours=hours * min(1.0, max(0.0, used_share)))
                km = haversine_km(lab.lab.location, job.order.delivery)
                delivered_at = made_at + timedelta(hours=HANDLING_HOURS + km / kmh)
                promised = min(units, job.on_time_left)
                job.on_time_left -= promised
                self.deliveries.append(
                    Delivery(
                        job.order.id, lab.lab.id, units, made_at, delivered_at, km, promised, job.arrive_by
                    )
                )
                if made_at <= job.order.due_at and isinstance(self.policy, Learner):
                    machine_hours = units * design.minutes_per_unit() / 60.0
                    self.policy.delivered_on_time(design.id, lab.lab.id, machine_hours, made_at)
                self.made[job.order.id] = self.made.get(job.order.id, 0) + units
                lab.units_made += units
                job.units -= units
            if job.units > 0:
                kept.append(job)
        lab.queue = kept
        lab.in_progress = _started_unit(lab, kept, budgets, self.designs)

    def run(self, on_round: Callable[[int, int], None] | None = None) -> PolicyRun:
        """Replay every round; `on_round(done, total)` is told after each one (for a progress bar)."""
        scenario = self.world.loaded.scenario
        hours = scenario.round_hours
        rounds = replay_rounds(self.world)
        for r in range(rounds):
            now = self.world.start + timedelta(hours=r * hours)
            self._receive(now)
            self._apply_events(now)
            self._restock(hours / 24.0)
            demand = self.open_demand(now)
            if demand:
                lines = self.policy.allocate(now, self.labs, demand, self.designs)
                self._commit(now, lines)
                if isinstance(self.policy, Shipper):
                    self._ship(self.policy.transfers_to_send())
            self._execute(now, hours)
            if on_round is not None:
                on_round(r + 1, rounds)
        return PolicyRun(
            policy=self.policy.name,
            world=self.world,
            labs=self.labs,
            deliveries=self.deliveries,
            allocations=self.allocations,
            solve_seconds=self.stats.solve_seconds,
            stats=self.stats,
            transfers=self.transfers,
        )
