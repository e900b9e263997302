"""What the solver is given: labs with their free capacity and stock, designs, demands, parameters.

Plain frozen records built by the caller (the planner, a scenario, a test). They hold no clock and
no connection: `now` is data. The planning horizon, which the allocator and the validator must agree
on, is defined once here, as is a machine's free time within it for the allocator (the validator
recomputes free time on its own).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from protocol.model import PRIORITIES, Design, Lab, Location, Order
from solver.model.objective import (
    DEFAULT_OBJECTIVE,
    HANDLING_HOURS,
    LATENESS_PENALTY,
    SHORTAGE_PENALTY,
    TRAIL_TRIP_SHARE,
    TRANSFER_HANDLING_COST,
    TRANSFER_HANDLING_HOURS,
    TRANSFER_KM_WEIGHT,
    TRANSFER_RADIUS_KM,
    TRANSFER_SENDERS,
    TRANSPORT_KMH,
    objective_weights,
    trail_reach,
    transit_days,
)

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class InTransit:
    """Material on its way to a lab (a transfer already shipped): usable there from `arrive_at` on.

    It is not in the lab's free stock yet; units made from it finish no earlier than its arrival."""

    material: str
    quantity: float
    arrive_at: datetime

    def __post_init__(self) -> None:
        if not self.quantity > 0:
            raise ValueError(f"material in transit ({self.material}): quantity must be positive")
        if self.arrive_at.tzinfo is None:
            raise ValueError(f"material in transit ({self.material}): arrive_at must carry a time zone (UTC)")


@dataclass(frozen=True)
class LabState:
    """A lab as the solver sees it: its description, the work already committed, its free stock."""

    lab: Lab  # description: machines, location (lab.stock is NOT used; see stock)
    backlog_minutes: dict[str, float]  # machine id -> nominal minutes of work already committed there
    stock: dict[str, float]  # free stock per material (reservations already taken off)
    live: bool = True  # lost labs get no allocations
    #: Material shipped to the lab and still on its way (not in `stock`): usable from its arrival.
    incoming: tuple[InTransit, ...] = ()
    #: Machine id -> minutes of the unit step it is counted in: by a due date, its free time is
    #: counted in whole such units (`with_whole_units`). Empty: its minutes are a fluid pool.
    unit_minutes: dict[str, float] = field(default_factory=dict)
    #: Machine id -> parts of `backlog_minutes` that must leave only later, as (days from now when
    #: they must leave, minutes). A lab takes its work earliest leave-by first
    #: (`solver.jobshop.ranking`), so new work that must leave before such a part goes ahead of it:
    #: by an earlier checkpoint the part does not hold the machine (`backlog_by`). The planner
    #: gives the late work a lab holds so (`planner.core`); empty, the whole backlog comes first.
    deferred_minutes: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Demand:
    """Units of an order still to allocate; may be fewer than the order asked for."""

    order: Order  # protocol.model.Order
    quantity: int  # units still to allocate (> 0); may be less than order.quantity
    #: When the units may start to be made: None for an order placed now. A forecast of a known rate
    #: (units that will be ordered later) is released at that time: no plan makes its units within a
    #: commit window of it (`earliest_finish`), and none is sent to a lab before then, so today's
    #: plan leaves room for them without spending today's hours on them.
    release_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.quantity, int) or not 0 < self.quantity <= self.order.quantity:
            raise ValueError(
                f"demand for order {self.order.id!r}: quantity must be a whole number in "
                f"1..{self.order.quantity} (the order's quantity), got {self.quantity!r}"
            )
        if self.release_at is not None and self.release_at.tzinfo is None:
            raise ValueError(f"demand for order {self.order.id!r}: release_at must carry a time zone (UTC)")


@dataclass(frozen=True)
class FutureDemand:
    """Units of a design that known rates will still bring to a place, after the demands of the
    problem, the last of them due by `last_due_at` (`solver.large.bid_prices`)."""

    design: str
    delivery: Location
    units: float
    last_due_at: datetime

    def __post_init__(self) -> None:
        if not self.units >= 0.0:
            raise ValueError(f"future demand for {self.design!r}: units must be >= 0, got {self.units!r}")
        if self.last_due_at.tzinfo is None:
            raise ValueError(f"future demand for {self.design!r}: last_due_at must carry a time zone (UTC)")


@dataclass(frozen=True)
class Problem:
    """One allocation problem: labs, designs and demands at a given instant."""

    now: datetime  # UTC; the solver never reads the clock
    designs: dict[str, Design]
    labs: list[LabState]
    demands: list[Demand]
    #: Trail strength per (design id, lab id); missing pairs are neutral (see solver.model.trails).
    trails: dict[tuple[str, str], float] = field(default_factory=dict)
    #: (order id, lab id) pairs never to plan: the lab refused that order's work before.
    excluded: frozenset[tuple[str, str]] = frozenset()
    #: What known rates will bring after these demands, within their lead time: the allocation prices
    #: the labs' minutes against it (`bid_prices`), so today's work goes where it costs that demand least.
    future: tuple[FutureDemand, ...] = ()
    #: Per (design id, lab id), km-equivalents charged per unit for the minutes it takes there
    #: (`solver.large.bid_prices`); set by `solver.allocation.allocate.solve` from `future`.
    bid_prices: dict[tuple[str, str], float] = field(default_factory=dict)

    def bid_price(self, design_id: str, lab: int) -> float:
        """What a unit of the design pays at the lab (by index) for its minutes there (`bid_prices`)."""
        return self.bid_prices.get((design_id, self.labs[lab].lab.id), 0.0) if self.bid_prices else 0.0

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("problem.now must carry a time zone (UTC)")
        _require_unique("lab", [s.lab.id for s in self.labs])
        _require_unique("order", [d.order.id for d in self.demands])


def _default_shortage_penalty() -> dict[str, float]:
    return dict(SHORTAGE_PENALTY)


def _default_lateness_penalty() -> dict[str, float]:
    return dict(LATENESS_PENALTY)


def _default_time_weight() -> dict[str, float]:
    return objective_weights(DEFAULT_OBJECTIVE)


@dataclass(frozen=True)
class SolveParams:
    """How to solve: time and threads, candidate breadth, and the weights of the objective.

    The weights and what they mean are documented in one place, `solver.model.objective`.
    """

    time_limit_s: float = 5.0
    workers: int = 2
    k_nearest: int = 8  # candidate labs per order (nearest capable)
    km_weight: float = 1.0  # cost per unit-km
    #: Per used (order, lab) edge, so orders are not shattered: a ceiling, lowered where trips are short
    #: (`solver.model.setup_cost`) unless `scale_setup` is off.
    setup_cost: float = 50.0
    #: Whether a solve lowers `setup_cost` to the network's trips. Off where plans of different networks
    #: are summed and compared in one currency (the federation's regions against one global plan).
    scale_setup: bool = True
    shortage_penalty: dict[str, float] = field(default_factory=_default_shortage_penalty)  # per unit
    #: Per unit planned to finish after its due date (well below the shortage penalty: late beats never).
    lateness_penalty: dict[str, float] = field(default_factory=_default_lateness_penalty)
    #: Per unit per day until its planned arrival, by priority (`solver.model.objective`).
    time_weight: dict[str, float] = field(default_factory=_default_time_weight)
    #: Turn a distance into days of transport: a unit is on time when it *arrives* by its due date.
    transport_kmh: float = TRANSPORT_KMH
    handling_hours: float = HANDLING_HOURS
    #: Days from now at which the time term also checkpoints a unit's finish (besides due dates and
    #: the horizon): capacity free within a day is told apart from capacity free later. The first is
    #: also the commit window: only the work planned to be made by it is sent to labs now
    #: (`solver.model.lines.work_to_start`). Finer grids (1, 2, 4) did no better in the built-in scenarios
    #: and make the relaxation larger.
    time_checkpoints_days: tuple[float, ...] = (1.0,)
    #: Days after the latest due date in which late units may still be planned.
    late_window_days: float = 7.0
    max_horizon_days: float = 60.0
    #: Most due-date buckets per lab; due dates between bucket edges count at the earlier edge.
    due_buckets: int = 6
    #: Largest trail discount per unit, in km-equivalents (a strong trail is worth this much distance).
    trail_discount_km: float = 25.0
    #: ... and at most this share of the trip it shortens (`solver.model.objective.TRAIL_TRIP_SHARE`).
    trail_trip_share: float = TRAIL_TRIP_SHARE
    #: Extra candidates per demand: the strongest-trail capable labs beyond the k nearest.
    trail_candidates: int = 2
    #: Extra candidates per demand: the labs with the most room for its design among the 4k nearest.
    room_candidates: int = 3
    #: Above this many demands, a problem is solved through its linear relaxation (see solver.large.path).
    #: From a few hundred demands on, that path finds cheaper plans than the one CP-SAT model, in a
    #: fraction of the time, and its bound is valid for every plan (300 x 100: 1.099 M in 0.13 s
    #: against 1.140 M in 10 s; 1000 x 200: 2.53 M in 0.7 s against 2.75 M in 10 s).
    decompose_above: int = 250
    #: The large path (above `decompose_above`) also takes every qualifying lab within this many km
    #: as a candidate (up to `solver.large.path.MOST`), so a crowded city's demand can spread over its
    #: neighbourhood; 0 takes only the k nearest, trails and room. Where 400 labs sit within about
    #: 80 km (the federation bench's regions) the radius holds ~96 labs per demand: a region's plan of
    #: 2,500 orders came out the same at 0 (2,457,599) in 16.7 CPU s instead of 38.4.
    near_km: float = 50.0
    #: Material transfers between labs (`solver.model.objective`): senders within this radius may ship
    #: material to a lab whose machines would otherwise idle; 0 plans no transfer. Only the one-model
    #: path plans them; the large path (above `decompose_above` demands) plans none.
    transfer_radius_km: float = TRANSFER_RADIUS_KM
    transfer_km_weight: float = TRANSFER_KM_WEIGHT
    transfer_handling_cost: float = TRANSFER_HANDLING_COST
    transfer_handling_hours: float = TRANSFER_HANDLING_HOURS
    transfer_senders: int = TRANSFER_SENDERS
    seed: int = 0
    #: Budgets counted in work (LP solves, simplex iterations, CP-SAT's deterministic time), not
    #: seconds, so the same problem and seed give the same plan on any machine; the time limit still
    #: holds as a cap (see solver.large.path and solver.allocation.allocate.solve_small).
    deterministic: bool = True
    #: The one-model path's budget in deterministic mode, in CP-SAT's deterministic time (a unit of
    #: counted work, about a second of search on one core of a quick machine). None: the time
    #: limit's worth (`solver.allocation.allocate.WORK_PER_SECOND` per second). Set it with a
    #: generous time limit to make a solve depend on work alone, not on the machine's speed.
    work_limit: float | None = None
    #: Run HiGHS's branch and bound beside CP-SAT in the one-model path (`solver.sparse.core`). A node
    #: limit bounds its search but not its root (presolve, cuts), which only the clock stops: a run
    #: that must give the same plan on a quiet and a busy machine (a scenario replay) leaves it out.
    mip: bool = True
    #: Count each machine's free time by a checkpoint in whole units (`with_whole_units`): a machine
    #: makes one unit at a time, so a unit it starts before a due date may end after it. False counts
    #: the machines' minutes as a fluid pool.
    whole_units: bool = True
    #: Make a lab's units promised on time by their leave-by date less the lab's flow time for the
    #: design (`solver.model.capability.flow_days`): the steps of a unit run in turn, so the last
    #: one still needs its other steps after the busiest machines' work. False: leave-by alone.
    flow_time: bool = True

    def __post_init__(self) -> None:
        if self.time_limit_s <= 0:
            raise ValueError(f"time_limit_s must be positive, got {self.time_limit_s}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.k_nearest < 1:
            raise ValueError(f"k_nearest must be at least 1, got {self.k_nearest}")
        if self.work_limit is not None and not self.work_limit > 0:
            raise ValueError(f"work_limit must be positive when given, got {self.work_limit}")
        if self.km_weight < 0 or self.setup_cost < 0:
            raise ValueError("km_weight and setup_cost cannot be negative")
        if self.near_km < 0:
            raise ValueError(f"near_km cannot be negative, got {self.near_km}")
        if self.max_horizon_days <= 0:
            raise ValueError(f"max_horizon_days must be positive, got {self.max_horizon_days}")
        if not 0 <= self.trail_trip_share <= 1:
            raise ValueError(f"trail_trip_share must lie in [0, 1], got {self.trail_trip_share}")
        if self.due_buckets < 1 or self.trail_candidates < 0 or self.trail_discount_km < 0:
            raise ValueError("due_buckets must be at least 1; trail_candidates and trail_discount_km >= 0")
        if self.late_window_days < 0:
            raise ValueError(f"late_window_days cannot be negative, got {self.late_window_days}")
        missing = [p for p in PRIORITIES if p not in self.lateness_penalty]
        if missing:
            raise ValueError(
                f"lateness_penalty needs a value for every priority; missing: {', '.join(missing)}"
            )
        missing = [p for p in PRIORITIES if p not in self.shortage_penalty]
        if missing:
            raise ValueError(
                f"shortage_penalty needs a value for every priority; missing: {', '.join(missing)}"
            )
        missing = [p for p in PRIORITIES if p not in self.time_weight]
        if missing:
            raise ValueError(f"time_weight needs a value for every priority; missing: {', '.join(missing)}")
        if any(v < 0 for v in self.time_weight.values()):
            raise ValueError("time_weight cannot be negative")
        if self.transport_kmh <= 0 or self.handling_hours < 0:
            raise ValueError("transport_kmh must be positive and handling_hours cannot be negative")
        if any(t <= 0 for t in self.time_checkpoints_days):
            raise ValueError("time_checkpoints_days must all be positive")
        if self.transfer_radius_km < 0 or self.transfer_km_weight < 0 or self.transfer_handling_cost < 0:
            raise ValueError(
                "transfer_radius_km, transfer_km_weight and transfer_handling_cost cannot be negative"
            )
        if self.transfer_handling_hours < 0 or self.transfer_senders < 1:
            raise ValueError(
                "transfer_handling_hours cannot be negative; transfer_senders must be at least 1"
            )
        negative = [p for p, v in self.shortage_penalty.items() if v < 0]
        if negative:
            raise ValueError(f"shortage_penalty cannot be negative; see: {', '.join(negative)}")

    def trail_discount(
        self, strength: float | np.ndarray, km: float | np.ndarray = math.inf
    ) -> float | np.ndarray:
        """A trail's discount per unit, in cost units, at `strength` (0 to 1, `TrailRules.strength`) on
        a trip of `km`: the whole `trail_discount_km` at full strength on a trip long enough, else its
        `trail_trip_share` of the trip (`solver.model.objective`). Element-wise on arrays as on numbers."""
        reach = trail_reach(km, self.trail_discount_km, self.trail_trip_share)
        return self.trail_discount_km * self.km_weight * strength * reach


def with_whole_units(problem: Problem) -> Problem:
    """The problem with each pooled machine's unit set (`LabState.unit_minutes`): the shortest step
    it may run for the designs in demand, in nominal minutes, on machines that share that step with
    another machine of their lab. The allocator then counts such a machine's free time by a due
    date in whole such units (`free_minutes`).

    A machine makes one unit at a time, so by any instant it has finished whole units only. A lone
    machine's plan is in whole units already (the plan's units are whole). A pool of machines is
    not: its minutes summed hold units split between machines, which no machine makes. Counted so,
    the last unit of many jobs was planned to be ready at its due date and came hours after it: over
    real lab processes (visor-surge-fr at 500x, 50 labs of 8-22 printers, a 2-hour
    headband printed over 4.8 hours of a 10-hour day), 5.2 % of the units planned on time arrived
    late, nearly all by 1 to 4 hours, and each lab said so when it accepted the work (its ETA was
    after the due date).

    Where designs of different lengths share machines, the shortest step is the unit: it never holds
    back time a unit could use, and a longer unit may still be cut at a due date. Counted in the
    longest (fab-city-barcelona's printers make 120-minute headbands and 25-minute splints), the
    splints lost up to 95 minutes a printer at every due date and went to farther labs.
    """
    wanted = sorted({d.order.design for d in problem.demands if d.order.design in problem.designs})
    labs = []
    for state in problem.labs:
        unit: dict[str, float] = {}
        for design_id in wanted:
            for step in problem.designs[design_id].steps:
                pooled = [m.id for m in state.lab.machines if step.can_run_on(m)]
                if len(pooled) < 2:
                    continue  # one machine: whole units already, as the plan's units are whole
                for machine_id in pooled:
                    unit[machine_id] = min(unit.get(machine_id, math.inf), step.minutes)
        labs.append(replace(state, unit_minutes=unit) if unit else state)
    return replace(problem, labs=labs)


def in_whole_units(minutes: float, unit: float) -> float:
    """`minutes` of a machine's free time rounded down to whole units of `unit` minutes (0: none)."""
    if unit <= 0:
        return minutes
    return unit * math.floor(minutes / unit + 1e-9)


def horizon_days(problem: Problem, params: SolveParams) -> float:
    """Days of machine time the plan may use: the latest due date plus the late window, capped."""
    if problem.demands:
        latest = max(d.order.due_at for d in problem.demands)
        days_to_latest = (latest - problem.now).total_seconds() / 86_400.0
    else:
        days_to_latest = 0.0
    return min(params.max_horizon_days, max(1.0, days_to_latest) + params.late_window_days)


def release_days(problem: Problem, demand: Demand) -> float:
    """Days from the problem's `now` until a demand's units may be made (-inf when they may now)."""
    return -math.inf if demand.release_at is None else days_until(problem, demand.release_at)


def earliest_finish(problem: Problem, params: SolveParams, demand: Demand) -> float:
    """The first finish checkpoint (days from now) a demand's units may be planned by: any for a
    demand placed now; for one released later (a forecast), one commit window (the first time
    checkpoint, a day) after its release.

    Capacity rows are cumulative: a row counts every machine minute from now to its checkpoint, and
    cannot tell the minutes after a release from those before. A forecast allowed to finish a few
    hours after its release would take hours that only the orders placed now can use; a day after
    it, it competes only for the time beyond today's work, which is the room it is planned to keep.
    """
    release = release_days(problem, demand)
    if release == -math.inf:
        return release
    return max(0.0, release) + min(params.time_checkpoints_days, default=1.0)


def transit(params: SolveParams, km: float) -> float:
    """Days a unit made at `km` from its delivery point takes to arrive (handling and road)."""
    return transit_days(km, params.transport_kmh, params.handling_hours)


def days_until(problem: Problem, instant: datetime) -> float:
    """Days from the problem's `now` to `instant` (negative when it is past)."""
    return (instant - problem.now).total_seconds() / 86_400.0


def bucket_edges(due_days: list[float], horizon: float, buckets: int) -> list[float]:
    """The due-date bucket edges of one lab (days from now, ascending, ending at the horizon).

    At most `buckets` edges before the horizon, taken from the due dates themselves (evenly spaced
    among them), so a due date between two edges counts at the earlier one: capacity is never
    over-promised.
    """
    # Rounded down (to a tenth of a second), never up: an edge must not fall after its own due date.
    inside = sorted({math.floor(d * 1e6) / 1e6 for d in due_days if 0 < d < horizon})
    if len(inside) > buckets:
        step = len(inside) / buckets
        inside = sorted({inside[int(i * step)] for i in range(buckets)})
    return [*inside, horizon]


def bucket_of(due: float, edges: list[float]) -> int | None:
    """Index of the last edge at or before `due`; None when the due date is before the first edge."""
    index = None
    for i, edge in enumerate(edges):
        if edge <= due + 1e-9:
            index = i
    return index


def in_transit(state: LabState, now: datetime) -> dict[str, tuple[float, float]]:
    """Material -> (amount on its way to the lab, days from `now` until the last of it arrives, at
    least 0): the material in transit taken as one parcel per material, arriving with its latest."""
    parcels: dict[str, tuple[float, float]] = {}
    for parcel in state.incoming:
        days = max(0.0, (parcel.arrive_at - now).total_seconds() / 86_400.0)
        amount, last = parcels.get(parcel.material, (0.0, 0.0))
        parcels[parcel.material] = (amount + parcel.quantity, max(last, days))
    return parcels


def backlog_by(state: LabState, machine_id: str, days: float) -> float:
    """Minutes of a machine's backlog that the lab works before new work that must leave within
    `days` from now: the whole backlog less the parts that must leave only later
    (`LabState.deferred_minutes`)."""
    backlog = state.backlog_minutes.get(machine_id, 0.0)
    parts = state.deferred_minutes.get(machine_id, ())
    later = sum(minutes for leave, minutes in parts if leave > days + 1e-9)
    return max(0.0, backlog - later)


def free_minutes(state: LabState, days: float, whole: bool = False) -> dict[str, float]:
    """Machine id -> nominal minutes still free within `days`: working time less the backlog the lab
    works before then (`backlog_by`); with `whole`, in whole units where the state counts them
    (`LabState.unit_minutes`)."""
    return {
        m.id: in_whole_units(
            max(0.0, m.minutes_per_day() * days - backlog_by(state, m.id, days)),
            state.unit_minutes.get(m.id, 0.0) if whole else 0.0,
        )
        for m in state.lab.machines
    }


def commit_checkpoints(hours: float) -> tuple[float, ...]:
    """The time checkpoints of plans made every `hours`: the next re-plan, then whole days.

    The first checkpoint is the commit window: labs are sent the work planned before it, and the
    rest is planned again at the next plan. It is also how finely a plan tells sooner from later:
    with 6-hour rounds and only a one-day checkpoint, a unit made in the next six hours and one made
    tomorrow cost the same, so emergency work queued at the nearest lab while others stood idle.
    """
    if hours <= 0:
        raise ValueError(f"the commit window must be above 0 hours, got {hours}")
    first = hours / 24.0
    return (first,) if first >= 1.0 else (first, 1.0)


def is_due_checkpoint(days: float, horizon: float, grid: tuple[float, ...]) -> bool:
    """Whether a lab's checkpoint `days` from now is a due date's (units made by it are promised on
    time), not the horizon or a time checkpoint (`SolveParams.time_checkpoints_days`).

    Only there are a machine's minutes counted in whole units (`with_whole_units`): what is made by
    a due date is a promise, and a unit cut across it is late. The time checkpoints decide how much
    work is sent to labs now and the horizon how much is planned at all: counted whole, a lab would
    be sent less than its machines work until the next plan, and stand idle."""
    return days < horizon - 1e-9 and all(abs(days - t) > 1e-9 for t in grid)


def _require_unique(kind: str, ids: list[str]) -> None:
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if repeated:
        raise ValueError(f"each {kind} may appear once in a problem; repeated: {', '.join(repeated)}")
