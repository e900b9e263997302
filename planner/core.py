"""The planner's state and rules: orders, labs, assignments, and how each message changes them.

The core owns no socket and no server: the mesh and the HTTP API call its methods from the one
event loop, so state changes are sequential and need no locks. Each change is written to the
ledger (event + projection, one transaction) before it is visible, then published to listeners.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from planner import rates as rate_rules
from planner.events import Event, EventBus
from planner.hours import add, deferred_late_work, spread
from planner.need_met import need_met
from planner.rates import Rate, RateRequest
from planner.reality import Trouble, cause_of, late_units
from planner.reality import summary as reality_summary
from planner.shipments import Shipments
from planner.shipping import UNDER_WAY, held_back
from planner.store import AssignmentRow, Ledger
from protocol.messages import CapacityTrace, DemandTrace, Field_
from protocol.model import Allocation, Design, Lab, Machine, Order, OrderRequest, Plan
from solver.allocation.explain import Parcel, explain_order
from solver.jobshop.ranking import DispatchKey, dispatch_key, leave_by
from solver.model.geo import haversine_km
from solver.model.late_window import LATE_WORK_HOURS, late_work_within
from solver.model.lines import to_dispatch
from solver.model.objective import transit_days
from solver.model.problem import Demand, FutureDemand, LabState, Problem, SolveParams
from solver.model.trail_strength import design_references
from solver.model.trails import TrailBook

log = logging.getLogger(__name__)

#: Assignment states whose units are still expected from the lab.
ACTIVE_STATES = frozenset({"assigned", "accepted", "running"})
#: The change reason of a new emergency order: it takes the fast path (solver.allocation.emergency).
EMERGENCY_ORDER = "emergency order"
#: States from which an assignment never moves again.
FINAL_STATES = frozenset({"done", "failed", "refused"})
#: How the reason of an assignment the planner ended (not the lab) begins: the lab may not know yet,
#: so units it reports later still count (see `PlannerCore._units_reported_late`).
ENDED_BY_PLANNER = ("lab lost: ", "lease expired ", "withdrawn: ")


class OrderRejected(ValueError):
    """An order request that cannot be accepted: `field` names the offending field."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


class UnknownAssignment(LookupError):
    """A lab spoke of an assignment that is not its own or does not exist."""


@dataclass
class LabView:
    """What the planner knows of a lab: its description and its last reported state.

    `report_seq` is the lab's own number (its envelope seq) of the message `backlog` came from, HELLO
    or CAPACITY, and `heard_seq` the highest number of the lab's the planner has taken a backlog or an
    ACCEPT from: with them the planner tells whether a report was sent before or after the lab took
    a job, however the frames were delayed, batched, dropped or reordered on the way
    (`PlannerCore._lab_state`).
    """

    lab: Lab
    live: bool
    backlog: dict[str, float]
    stock: dict[str, float]
    last_seen: datetime
    report_seq: int = 0
    heard_seq: int = 0

    def minutes_per_day(self) -> float:
        """Nominal machine-minutes the lab offers per day, all machines together."""
        return sum(m.minutes_per_day() for m in self.lab.machines)


@dataclass
class PlannerCore:
    """State and rules of the planner (see module docstring)."""

    ledger: Ledger
    designs: dict[str, Design]
    clock: Callable[[], datetime]
    bus: EventBus = field(default_factory=EventBus)
    on_change: Callable[[str], None] = lambda reason: None
    #: Called with a lab id when some of its work was withdrawn, so the lab hears of it at once.
    on_withdrawn: Callable[[str], None] = lambda lab_id: None
    #: Per own order, (units that trades with peer regions cover, units of those made abroad): the
    #: federation (planner.federation) sets it; covered units are planned by no lab of this region.
    abroad: Callable[[str], tuple[int, int]] = lambda order_id: (0, 0)
    orders: dict[str, Order] = field(default_factory=dict)
    labs: dict[str, LabView] = field(default_factory=dict)
    assignments: dict[str, AssignmentRow] = field(default_factory=dict)
    plan: Plan | None = None
    #: Trails per (design, lab id), fading with time; see solver.model.trails. Visible through the API
    #: with their history.
    trails: TrailBook = field(default_factory=TrailBook)
    #: Seconds a lab has to answer an ASSIGN before the lease lapses (an operator may decide by hand).
    answer_window_s: float = 900.0
    #: Slack after a job's reported ETA before its lease lapses: this share of the time left, at least
    #: `lease_grace_min_s`.
    lease_grace_share: float = 0.25
    lease_grace_min_s: float = 600.0
    leases_expired: int = 0
    labs_lost: int = 0
    #: Units a lab reported made after the planner had ended their assignment (it was cut off).
    units_reported_late: int = 0
    #: Assignments ended because units reported late already covered their order.
    assignments_withdrawn: int = 0
    #: Seconds the units a lost lab may have made stay out of re-plans while it may come back to
    #: report them (see `lab_lost`); then they are planned again. The planner app sets it from the
    #: heartbeat (planner.app.DOUBT_WINDOWS liveness windows).
    doubt_s: float = 30.0
    #: Units held out of re-plans because a lost lab may have made them, over the planner's life.
    units_held_in_doubt: int = 0
    plans_committed: int = 0
    plans_rejected: int = 0
    #: When the current plan was committed (None before the first since this boot).
    plan_committed_at: datetime | None = None
    #: Send labs only the work to start now (`solver.model.lines.to_dispatch`) and plan the rest again at
    #: the next re-plan (a rolling horizon); False sends every planned unit at once.
    rolling: bool = True
    #: Hours of a lab's machines its late work may fill when sent (`solver.model.late_window`): late
    #: units beyond stay planned, so that an order a lab can still make on time does not queue
    #: behind them. None sends the late work of the whole commit window.
    late_work_hours: float | None = LATE_WORK_HOURS
    #: Hours of queue on a design's machines under which a lab is topped up with late work
    #: (`solver.model.late_window`); None: the window's own default share.
    late_work_refill_hours: float | None = None
    #: Rates (planner.rates): demand as units per day until a date, released as orders day by day.
    rates: dict[str, Rate] = field(default_factory=dict)
    #: Days ahead in which a rate's releases still to come are planned as demand (0: none).
    forecast_days: float = rate_rules.FORECAST_DAYS
    #: The last plan's lines not sent to labs (planned for later, or forecasts): what is planned
    #: beyond the assignments, for "days until this need is met". Rebuilt by every plan.
    unsent: list[Allocation] = field(default_factory=list)
    _by_order: dict[str, list[AssignmentRow]] = field(default_factory=dict)
    _by_lab: dict[str, list[AssignmentRow]] = field(default_factory=dict)
    #: Per assignment: the most units its lab said may be made by the end of a work lease (HEARTBEAT).
    _promised: dict[str, int] = field(default_factory=dict)
    #: Per assignment of a lost lab: (units it may have made beyond those reported, until when held).
    _in_doubt: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    #: Per lab: when the planner first gave it work, the start of its hours account (`_lab_state`).
    _hours_from: dict[str, datetime] = field(default_factory=dict)
    #: Lab id -> every machine it has declared since this planner started (by machine id, the latest
    #: description): the hours account shares a lab's past work over these, not only the machines up now.
    _machines_seen: dict[str, dict[str, Machine]] = field(default_factory=dict)
    #: Per assignment accepted since this boot: the lab's seq of the message that accepted it. Until a
    #: backlog report the lab sent after that message is taken, the report the planner holds may not
    #: hold the work, and the planner counts it itself (`_lab_state`).
    _accepted_seq: dict[str, int] = field(default_factory=dict)
    #: Backlog reports not taken because the planner already held one the lab sent later.
    backlog_reports_stale: int = 0
    #: Per lab: machines down and stock-outs heard of since this boot (planner.reality causes).
    _troubles: dict[str, list[Trouble]] = field(default_factory=dict)
    #: Per assignment made since this boot: when it was made (planner.reality causes).
    _made_at: dict[str, datetime] = field(default_factory=dict)

    #: Material transfers the planner dispatched (planner.shipments); made from the ledger.
    shipments: Shipments = field(init=False)

    def __post_init__(self) -> None:
        self.shipments = Shipments(
            self.ledger, self.clock, lambda event: self._publish(event), lambda reason: self.on_change(reason)
        )

    # --- boot ---------------------------------------------------------------------------------

    def load(self) -> None:
        """Rebuild the in-memory state from the ledger (labs start as not live until they say HELLO)."""
        now = self.clock()
        self.orders = {o.id: o for o in self.ledger.load_orders()}
        self.rates = {r.id: r for r in self.ledger.load_rates()}
        self.labs = {
            lab.id: LabView(lab, False, backlog, stock, now)
            for lab, _, backlog, stock in self.ledger.load_labs()
        }
        self._machines_seen = {lab_id: {m.id: m for m in v.lab.machines} for lab_id, v in self.labs.items()}
        self.assignments = {}
        self._by_order.clear()
        self._by_lab.clear()
        for row in self.ledger.load_assignments():
            self._index(row)
        self.plan = self.ledger.load_latest_plan()
        self.trails = TrailBook(self.trails.rules, self.ledger.load_trails())
        self._hours_from = self.ledger.first_work_at()
        self.shipments.load()

    # --- events -------------------------------------------------------------------------------

    def _emit(self, db: Any, stream: str, kind: str, data: dict[str, Any]) -> Event:
        seq = Ledger.append(db, self.clock(), stream, kind, data)
        return Event(seq, kind, data)

    def _publish(self, *events: Event) -> None:
        for event in events:
            self.bus.publish(event)

    # --- orders -------------------------------------------------------------------------------

    def place_order(self, request: OrderRequest, idempotency_key: str | None = None) -> tuple[Order, bool]:
        """Accept an order at most once per Idempotency-Key: (the order, whether it was placed before).

        A key seen before with the same request gives back the order it created; with a different
        request it is refused (field `Idempotency-Key`), so a retried POST never orders twice.
        """
        if idempotency_key is None:
            return self.submit_order(request), False
        if not 1 <= len(idempotency_key) <= 200:
            raise OrderRejected("Idempotency-Key", "must hold 1 to 200 characters")
        fingerprint = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
        found = self.ledger.find_idempotency(idempotency_key)
        if found is not None:
            if found[0] != fingerprint:
                raise OrderRejected("Idempotency-Key", "was used before for a different order")
            return self.orders[found[1]], True
        return self.submit_order(request, (idempotency_key, fingerprint)), False

    def submit_order(self, request: OrderRequest, idempotency: tuple[str, str] | None = None) -> Order:
        """Accept an order: checked, written durably, announced, and a re-plan requested."""
        design = self.designs.get(request.design)
        if design is None:
            known = ", ".join(sorted(self.designs))
            raise OrderRejected("design", f"unknown design {request.design!r}; known designs: {known}")
        now = self.clock()
        if request.due_at <= now:
            raise OrderRejected("due_at", f"due date {request.due_at.isoformat()} is not in the future")
        order = Order(
            id=f"o-{secrets.token_hex(8)}",
            design=request.design,
            quantity=request.quantity,
            due_at=request.due_at,
            delivery=request.delivery,
            priority=request.priority,
            accepts_licences=request.accepts_licences,
            created_at=now,
            state="open",
        )
        self._accept(order, idempotency)
        return order

    def _accept(self, order: Order, idempotency: tuple[str, str] | None = None) -> None:
        """Write an accepted order durably, announce it and ask for a re-plan."""
        now = self.clock()
        with self.ledger.transaction() as db:
            Ledger.put_order(db, order)
            if idempotency is not None:
                Ledger.put_idempotency(db, idempotency[0], idempotency[1], order.id, now)
            event = self._emit(db, f"order-{order.id}", "order.created", self._order_json(order))
        self.orders[order.id] = order
        self._publish(event)
        log.info(
            "order %s: %d x %s, %s, due %s",
            order.id,
            order.quantity,
            order.design,
            order.priority,
            order.due_at.isoformat(),
        )
        self.on_change(EMERGENCY_ORDER if order.priority == "emergency" else "order")

    # --- rates --------------------------------------------------------------------------------

    def submit_rate(self, request: RateRequest) -> Rate:
        """Accept a rate: checked, written durably, its first release placed when due, a re-plan asked."""
        if request.design not in self.designs:
            known = ", ".join(sorted(self.designs))
            raise OrderRejected("design", f"unknown design {request.design!r}; known designs: {known}")
        now = self.clock()
        if request.until <= now:
            raise OrderRejected("until", f"{request.until.isoformat()} is not in the future")
        starts_at = request.starts_at or now
        why = rate_rules.check_span(starts_at, request.until)
        if why is not None:
            raise OrderRejected("until", why)
        rate = Rate(
            id=f"r-{secrets.token_hex(8)}",
            design=request.design,
            units_per_day=request.units_per_day,
            starts_at=starts_at,
            until=request.until,
            due_days=request.due_days,
            delivery=request.delivery,
            priority=request.priority,
            accepts_licences=request.accepts_licences,
            created_at=now,
            release=request.release,
        )
        if rate_rules.last_release(rate) is None:
            raise OrderRejected("units_per_day", "the stream releases no whole unit before `until`")
        with self.ledger.transaction() as db:
            Ledger.put_rate(db, rate)
            event = self._emit(db, f"rate-{rate.id}", "rate.created", rate.model_dump(mode="json"))
        self.rates[rate.id] = rate
        self._publish(event)
        log.info(
            "rate %s: %g x %s a day until %s",
            rate.id,
            rate.units_per_day,
            rate.design,
            rate.until.isoformat(),
        )
        if not self.release_rates():
            self.on_change("rate")
        return rate

    def release_rates(self) -> list[Order]:
        """Place, as orders, every rate release whose time has come (once each: its id is fixed)."""
        now = self.clock()
        placed = []
        for rate in self.rates.values():
            if not rate.release:
                continue  # its requester places the orders
            for day, at, units in rate_rules.releases(rate, now):
                if rate_rules.release_id(rate, day) in self.orders:
                    continue
                order = rate_rules.release_order(rate, day, at, units)
                if order.due_at <= now:
                    continue  # a release whose due date passed while the planner was down: not placed late
                self._accept(order)
                placed.append(order)
        return placed

    def forecast(self, now: datetime) -> list[Demand]:
        """The releases still to come within `forecast_days`, as demand released at their time."""
        ahead = now + timedelta(days=self.forecast_days)
        found = []
        for rate in self.rates.values():
            for day, at, units in rate_rules.releases(rate, ahead):
                if at > now and rate_rules.release_id(rate, day) not in self.orders:
                    found.append(Demand(rate_rules.release_order(rate, day, at, units), units, release_at=at))
        return found

    def still_to_come(self, now: datetime) -> list[FutureDemand]:
        """What each rate will release in its lead time after the forecast window, with its last due
        date: the units that will want the same machine minutes as the work open now. The solver
        prices the labs' minutes against them (`solver.large.bid_prices`)."""
        after = now + timedelta(days=self.forecast_days)
        found = []
        for rate in self.rates.values():
            until = after + timedelta(days=rate.due_days)
            later = [(at, units) for _, at, units in rate_rules.releases(rate) if after < at <= until]
            if later:
                last_due = later[-1][0] + timedelta(days=rate.due_days)
                units = float(sum(units for _, units in later))
                found.append(FutureDemand(rate.design, rate.delivery, units, last_due))
        return found

    def rate_view(self, rate_id: str) -> dict[str, Any] | None:
        """A rate as its requester follows it: its releases (placed and forecast), what is planned to
        arrive when, and the days until its need is met (`planner.need_met`)."""
        rate = self.rates.get(rate_id)
        if rate is None:
            return None
        now = self.clock()
        end = rate_rules.window_end(rate, now, self.forecast_days)
        horizon = now + timedelta(days=self.forecast_days)
        dues: list[tuple[datetime, int]] = []
        arrivals: list[tuple[datetime, int]] = []
        releases = []
        ids = set()
        for day, at, units in rate_rules.releases(rate, horizon):
            order_id = rate_rules.release_id(rate, day)
            placed = self.orders.get(order_id)
            ids.add(order_id)
            due_at = at + timedelta(days=rate.due_days)
            dues.append((due_at, units))
            releases.append(
                {
                    "order_id": order_id,
                    "release_at": at.isoformat(),
                    "due_at": due_at.isoformat(),
                    "units": units,
                    "state": placed.state if placed is not None else "forecast",
                    "units_made": self.units_made(order_id) if placed is not None else 0,
                }
            )
        arrivals = self._planned_arrivals(ids)
        met = need_met(dues, arrivals, now, end)
        return {
            **rate.model_dump(mode="json"),
            "state": rate_rules.rate_state(rate, now),
            "forecast_days": self.forecast_days,
            "window_end": end.isoformat(),
            "need": met.to_json(),
            "units_released": sum(r["units"] for r in releases if r["state"] != "forecast"),
            "units_forecast": sum(r["units"] for r in releases if r["state"] == "forecast"),
            "releases": releases,
        }

    def _planned_arrivals(self, order_ids: set[str]) -> list[tuple[datetime, int]]:
        """(when, units) that arrive or are planned to, for these orders: units made at their arrival,
        units under way at their job's planned arrival, and the last plan's lines not sent yet."""
        found: list[tuple[datetime, int]] = []
        for order_id in order_ids:
            for a in self._by_order.get(order_id, ()):
                if a.units_done and a.arrived_at is not None:
                    found.append((datetime.fromisoformat(a.arrived_at), a.units_done))
                elif a.units_done:
                    found.append((datetime.fromisoformat(a.updated_at), a.units_done))
                if a.state in ACTIVE_STATES and a.quantity > a.units_done:
                    when = datetime.fromisoformat(a.arrive_by or a.eta or a.updated_at)
                    found.append((when, a.quantity - a.units_done))
        for line in self.unsent:
            if line.order_id in order_ids and line.arrive_by is not None:
                found.append((line.arrive_by, line.quantity))
        return found

    def units_made(self, order_id: str) -> int:
        """Units of an order reported made, across every lab (and by peer regions' labs, `abroad`)."""
        return sum(a.units_done for a in self._by_order.get(order_id, ())) + self.abroad(order_id)[1]

    def units_committed(self, order_id: str) -> int:
        """Units made or still expected from a lab, or that a lost lab may have made: what no re-plan
        may hand out again."""
        total = self.abroad(order_id)[0]
        for a in self._by_order.get(order_id, ()):
            total += a.quantity if a.state in ACTIVE_STATES or a.state == "done" else a.units_done
            total += self._in_doubt.get(a.id, (0, None))[0]
        return total

    def units_in_doubt(self) -> int:
        """Units held out of re-plans right now because a lost lab may have made them."""
        return sum(units for units, _ in self._in_doubt.values())

    def _order_state(self, order: Order) -> str:
        made = self.units_made(order.id)
        if made >= order.quantity:
            return "done"
        mine = self._by_order.get(order.id, [])
        if made > 0 or any(a.state in {"accepted", "running"} for a in mine):
            return "in_progress"
        if any(a.state == "assigned" for a in mine):
            return "planned"
        return "open"

    def place_external(self, order: Order) -> None:
        """Take an order made here on another's behalf (a peer region's lease, planner.federation):
        written durably and planned as any order. Placed once: an id known already is left alone."""
        if order.id not in self.orders:
            self._accept(order)

    def refresh_orders(self, order_ids: list[str]) -> None:
        """Recompute these orders' states (units made abroad changed them) and announce the changes."""
        with self.ledger.transaction() as db:
            events = [e for order_id in order_ids if (e := self._refresh_order(db, order_id)) is not None]
        self._publish(*events)

    def _refresh_order(self, db: Any, order_id: str) -> Event | None:
        order = self.orders.get(order_id)
        if order is None:
            return None
        state = self._order_state(order)
        if state == order.state:
            return None
        order = order.model_copy(update={"state": state})
        self.orders[order_id] = order
        Ledger.put_order(db, order)
        if state == "done":
            log.info("order %s done: %d units made", order.id, self.units_made(order.id))
        return self._emit(
            db,
            f"order-{order.id}",
            "order.state",
            {"order_id": order.id, "state": state, "units_made": self.units_made(order.id)},
        )

    def _order_json(self, order: Order) -> dict[str, Any]:
        return order.model_dump(mode="json")

    def order_view(self, order_id: str) -> dict[str, Any] | None:
        """An order as its requester follows it: allocations per lab, progress, why those labs."""
        order = self.orders.get(order_id)
        if order is None:
            return None
        allocations = []
        for a in self._by_order.get(order_id, ()):
            lab = self.labs.get(a.lab_id)
            allocations.append(
                a.to_json()
                | {
                    "lab_name": lab.lab.name if lab else a.lab_id,
                    "lab_place": lab.lab.location.place if lab else None,
                    "units_planned_on_time_arrived_late": late_units(a, order),
                }
            )
        shortage = None
        if self.plan is not None:
            for s in self.plan.shortages:
                if s.order_id == order_id and order.state != "done":
                    shortage = s.model_dump()
        rows = self._by_order.get(order_id, ())
        return {
            **self._order_json(order),
            "units_made": self.units_made(order_id),
            "units_planned": self.units_committed(order_id),
            "allocations": allocations,
            "shortage": shortage,
            "reality": reality_summary(rows, {order_id: order}),
        }

    # --- labs ---------------------------------------------------------------------------------

    def lab_hello(self, lab: Lab, backlog: dict[str, float], seq: int | None = None) -> None:
        """A lab joined (or re-joined): record its description and mark it live.

        `seq` is the HELLO's envelope seq (None: a caller without one). The backlog HELLO carries
        holds every job the lab took, and a new conversation's numbers may start again from 1.
        """
        now = self.clock()
        before = self.labs.get(lab.id)
        if before is not None:
            gone = sorted({m.id for m in before.lab.machines} - {m.id for m in lab.machines})
            if gone:
                self._trouble(lab.id, "machine down", f"lab {lab.id} came back without {', '.join(gone)}")
        number = seq or 0
        view = LabView(lab, True, dict(backlog), dict(lab.stock), now, report_seq=number, heard_seq=number)
        for a in self._by_lab.get(lab.id, ()):  # the backlog HELLO carries holds what it accepted
            self._accepted_seq.pop(a.id, None)
        known = lab.id in self.labs
        self.labs[lab.id] = view
        self._machines_seen.setdefault(lab.id, {}).update({m.id: m for m in lab.machines})
        with self.ledger.transaction() as db:
            Ledger.put_lab(db, lab, True, view.backlog, view.stock, now)
            event = self._emit(
                db, f"lab-{lab.id}", "lab.joined", {"lab_id": lab.id, "name": lab.name, "rejoined": known}
            )
        self._publish(event)
        log.info(
            "lab %s (%s) %s with %d machines",
            lab.id,
            lab.name,
            "re-joined" if known else "joined",
            len(lab.machines),
        )
        self.on_change("lab joined")

    def lab_seen(self, lab_id: str) -> None:
        """Any message from a lab proves it alive."""
        view = self.labs.get(lab_id)
        if view is not None:
            view.last_seen = self.clock()

    def lab_capacity(self, lab_id: str, backlog: dict[str, float], seq: int | None = None) -> None:
        """The lab's machine backlog changed (one CAPACITY; see `take_backlogs`)."""
        self.take_backlogs({lab_id: (backlog, seq)})

    def take_backlogs(self, reports: Mapping[str, tuple[dict[str, float], int | None]]) -> int:
        """Take labs' backlog reports, each with the lab's seq of its CAPACITY: how many were taken.

        The one place where a lab's report replaces the backlog the planner holds. A report the lab
        sent before the one held (reordered or repeated on the way) is not taken. `seq` None (a
        caller without the lab's numbers) counts the report as the lab's newest message. One ledger
        transaction for them all, without an fsync (a lab repeats its backlog after every WELCOME),
        then one re-plan request.
        """
        taken: list[LabView] = []
        for lab_id, (backlog, seq) in reports.items():
            view = self.labs.get(lab_id)
            if view is None:
                continue
            number = view.heard_seq + 1 if seq is None else seq
            if number <= view.report_seq:
                self.backlog_reports_stale += 1
                log.debug(
                    "lab %s: backlog report %d older than the one held (%d)", lab_id, number, view.report_seq
                )
                continue
            view.backlog = dict(backlog)
            view.report_seq = number
            view.heard_seq = max(view.heard_seq, number)
            taken.append(view)
        if not taken:
            return 0
        with self.ledger.transaction(durable=False) as db:
            for view in taken:
                Ledger.put_backlog(db, view.lab.id, view.backlog, view.last_seen)
        self.on_change("capacity")
        return len(taken)

    def lab_stock(self, lab_id: str, stock: dict[str, float]) -> None:
        """The lab's free stock changed."""
        view = self.labs[lab_id]
        out = sorted(m for m, amount in stock.items() if amount <= 1e-9 and view.stock.get(m, 0.0) > 1e-9)
        if out:
            self._trouble(lab_id, "stock-out", f"lab {lab_id} reported no {', '.join(out)} left")
        view.stock = dict(stock)
        self._save_lab(view, durable=False)  # the lab repeats it after every WELCOME
        self.on_change("stock")

    def _save_lab(self, view: LabView, durable: bool = True) -> None:
        with self.ledger.transaction(durable) as db:
            Ledger.put_lab(db, view.lab, view.live, view.backlog, view.stock, view.last_seen)

    def lab_promised(self, lab_id: str, promise: dict[str, int]) -> None:
        """A lab's HEARTBEAT: per job, the most units it may have made when its work lease ends."""
        for aid, units in promise.items():
            a = self.assignments.get(aid)
            if a is not None and a.lab_id == lab_id and a.state in ACTIVE_STATES:
                self._promised[aid] = min(a.quantity, max(units, self._promised.get(aid, 0)))

    def lab_lost(self, lab_id: str, reason: str, said_bye: bool = False) -> None:
        """A lab went silent or left: its unfinished units return to demand.

        All but the units it may have made and not reported: its last HEARTBEAT read said how many
        each job may reach before its work lease ends (and the lab stops there, SPEC.md section 5).
        Those stay out of re-plans until the lab comes back and says what it made, or `doubt_s`
        passes, so that a lab only cut off does not see its last units made again elsewhere. A lab
        that `said_bye` reported everything before its BYE: nothing of it is in doubt.

        Its trail weakens once for each design it leaves work of unfinished, however many jobs held
        that work: how many jobs a lab holds depends on how often the planner plans, and the scenario
        replay weakens it the same way (`scenarios.sim.Learner`).
        """
        view = self.labs.get(lab_id)
        if view is None or not view.live:
            return
        view.live = False
        self.labs_lost += 1
        now = self.clock()
        events = []
        left_undone: dict[str, AssignmentRow] = {}  # design -> the first job of it failed here
        with self.ledger.transaction() as db:
            Ledger.put_lab(db, view.lab, False, view.backlog, view.stock, view.last_seen)
            events.append(self._emit(db, f"lab-{lab_id}", "lab.lost", {"lab_id": lab_id, "reason": reason}))
            for a in self._by_lab.get(lab_id, ()):
                if a.state in ACTIVE_STATES:
                    left_undone.setdefault(self.orders[a.order_id].design, a)
                    promised = self._promised.pop(a.id, a.units_done) if not said_bye else a.units_done
                    doubt = min(max(0, promised - a.units_done), a.quantity - a.units_done)
                    if doubt:
                        self._in_doubt[a.id] = (doubt, now + timedelta(seconds=self.doubt_s))
                        self.units_held_in_doubt += doubt
                        log.info(
                            "%d units of %s may have been made by lab %s: held until it reports",
                            doubt,
                            a.id,
                            lab_id,
                        )
                    events.append(self._change_job(db, a, "failed", now, reason=f"lab lost: {reason}"))
                    if (e := self._refresh_order(db, a.order_id)) is not None:
                        events.append(e)
            for design in sorted(left_undone):
                events += self._mark_trail(db, left_undone[design], "failed", now)
            events += self.shipments.sender_lost(db, lab_id)
        self._publish(*events)
        log.warning("lab %s lost (%s); its unfinished work returns to demand", lab_id, reason)
        self.on_change("lab lost")

    # --- jobs ---------------------------------------------------------------------------------

    def _job(self, lab_id: str, assignment_id: str) -> AssignmentRow:
        a = self.assignments.get(assignment_id)
        if a is None or a.lab_id != lab_id:
            raise UnknownAssignment(f"assignment {assignment_id!r} is not assigned to lab {lab_id!r}")
        return a

    def _change_job(self, db: Any, a: AssignmentRow, state: str, now: datetime, **changes: Any) -> Event:
        a.state = state
        for name, value in changes.items():
            setattr(a, name, value)
        a.updated_at = now.isoformat()
        if state in FINAL_STATES:
            self._promised.pop(a.id, None)
        Ledger.put_assignment(db, a)
        return self._emit(db, f"order-{a.order_id}", f"job.{state}", a.to_json())

    def job_update(
        self,
        lab_id: str,
        assignment_id: str,
        state: str,
        units_done: int | None = None,
        reason: str | None = None,
        eta: datetime | None = None,
        seq: int | None = None,
    ) -> None:
        """A lab reports on a job: accepted, refused, running (progress), done or failed.

        `seq` is the lab's envelope seq of the message (None: a caller without one, taken as the
        lab's newest); an acceptance's tells which backlog reports hold the job (`_lab_state`).
        """
        a = self._job(lab_id, assignment_id)
        if units_done is not None and not 0 <= units_done <= a.quantity:
            raise UnknownAssignment(f"assignment {a.id}: units_done {units_done} outside 0..{a.quantity}")
        if a.state in FINAL_STATES:
            # A lost lab's end settles the units held in doubt for it: it stopped for good then.
            doubt = self._in_doubt.pop(a.id, None) if state in {"done", "failed"} else None
            if (
                a.state == "failed"
                and (a.reason or "").startswith(ENDED_BY_PLANNER)
                and units_done is not None
                and units_done > a.units_done
            ):
                self._units_reported_late(a, units_done)
            else:
                log.debug("assignment %s already %s; ignoring %s", a.id, a.state, state)
            if doubt is not None:
                log.info(
                    "lab %s settled the units in doubt of %s: %d made in all", lab_id, a.id, a.units_done
                )
                self.on_change("units in doubt settled")
            return
        if state == "running" and a.state == "running" and units_done == a.units_done:
            return
        if a.state == "assigned" and state in {"accepted", "running"} and (view := self.labs.get(lab_id)):
            number = view.heard_seq + 1 if seq is None else seq
            view.heard_seq = max(view.heard_seq, number)
            self._accepted_seq[a.id] = number
        changes: dict[str, Any] = {}
        if units_done is not None:
            changes["units_done"] = max(a.units_done, units_done)
        if reason is not None:
            changes["reason"] = reason
        if eta is not None:
            changes["eta"] = eta.isoformat()
        now = self.clock()
        if state in ACTIVE_STATES:
            changes["lease_until"] = self._renewed_lease(now, eta).isoformat()
        if state == "done":
            changes.update(self._arrival(a, now, changes.get("units_done", a.units_done)))
        # Progress is repeated by the lab after every WELCOME: no fsync of its own (Ledger.transaction).
        with self.ledger.transaction(durable=state != "running") as db:
            events = [self._change_job(db, a, state, now, **changes)]
            if (e := self._refresh_order(db, a.order_id)) is not None:
                events.append(e)
            if state in {"done", "refused", "failed"}:
                events += self._mark_trail(db, a, state, now)
        self._publish(*events)
        if state in {"refused", "failed"}:
            log.warning(
                "lab %s %s %s (%d units of order %s): %s", lab_id, state, a.id, a.quantity, a.order_id, reason
            )
            self.on_change(f"job {state}")

    def road_hours(self, a: AssignmentRow) -> float | None:
        """Handling plus the road from a job's lab to its order's delivery place, in hours, as
        `_arrival` counts it (None when the lab or the order is not known)."""
        order = self.orders.get(a.order_id)
        view = self.labs.get(a.lab_id)
        if order is None or view is None:
            return None
        return transit_days(haversine_km(view.lab.location, order.delivery)) * 24.0

    def _arrival(self, a: AssignmentRow, now: datetime, units_done: int) -> dict[str, Any]:
        """A job reported done: when it finished, when its units arrive, and why late if they are
        planned on time and arrive after the due date (planner.reality)."""
        order = self.orders[a.order_id]
        view = self.labs.get(a.lab_id)
        km = haversine_km(view.lab.location, order.delivery) if view is not None else 0.0
        arrived = now + timedelta(days=transit_days(km))
        done = {"finished_at": now.isoformat(), "arrived_at": arrived.isoformat(), "late_cause": None}
        probe = AssignmentRow(**{**a.__dict__, **done, "units_done": units_done})
        if late_units(probe, order):
            troubles = self._troubles.get(a.lab_id, [])
            done["late_cause"] = cause_of(
                probe, self._by_order.get(a.order_id, ()), troubles, self._made_at.get(a.id)
            )
            log.info("%s: units planned on time arrive late (%s)", a.id, done["late_cause"])
        return done

    def _trouble(self, lab_id: str, cause: str, detail: str) -> None:
        """Remember a machine down or a stock-out at a lab, a cause of lateness (planner.reality)."""
        self._troubles.setdefault(lab_id, []).append(Trouble(self.clock(), cause, detail))

    def reality(self) -> dict[str, Any]:
        """Over every order: units planned on time, and those that arrived late, by cause."""
        return reality_summary(self.assignments.values(), self.orders)

    def _units_reported_late(self, a: AssignmentRow, units_done: int) -> None:
        """Count units a lab made before it heard that its assignment was ended; trim any excess.

        A lab cut off from the planner (lost, lease lapsed) may have made units it could not report.
        They are real, so they count for the order. If the re-plan already gave them to another lab,
        the newest work of that order not yet made is withdrawn, so that no unit is made twice.
        """
        now = self.clock()
        late = units_done - a.units_done
        a.units_done = units_done
        a.updated_at = now.isoformat()
        withdrawn: list[AssignmentRow] = []
        with self.ledger.transaction() as db:
            Ledger.put_assignment(db, a)
            events = [self._emit(db, f"order-{a.order_id}", "job.late_units", {**a.to_json(), "late": late})]
            order = self.orders[a.order_id]
            surplus = self.units_committed(order.id) - order.quantity
            others = [b for b in self._by_order.get(order.id, ()) if b.state in ACTIVE_STATES]
            # Withdraw work not yet started first, then the work with the most units still to make.
            others.sort(key=lambda b: (b.state != "assigned", -(b.quantity - b.units_done)))
            for b in others:
                if surplus <= 0:
                    break
                surplus -= b.quantity - b.units_done
                reason = f"withdrawn: {late} units of order {order.id} were reported late by lab {a.lab_id}"
                events.append(self._change_job(db, b, "failed", now, reason=reason))
                withdrawn.append(b)
            if (e := self._refresh_order(db, a.order_id)) is not None:
                events.append(e)
        self._publish(*events)
        self.units_reported_late += late
        self.assignments_withdrawn += len(withdrawn)
        log.warning("lab %s reported %d more units of %s after it was ended", a.lab_id, late, a.id)
        for b in withdrawn:
            log.warning("withdrew %s from lab %s: %s", b.id, b.lab_id, b.reason)
            self.on_withdrawn(b.lab_id)
        if withdrawn:
            self.on_change("work withdrawn")

    def active_assignments(self, lab_id: str) -> list[str]:
        """Ids of the lab's assignments whose units the planner still expects (HEARTBEAT `active`)."""
        return [a.id for a in self._by_lab.get(lab_id, ()) if a.state in ACTIVE_STATES]

    def units_surplus(self) -> int:
        """Units made beyond their order's quantity, over all orders (0 unless work was made twice)."""
        return sum(max(0, self.units_made(o) - self.orders[o].quantity) for o in self._by_order)

    # --- leases -------------------------------------------------------------------------------

    def _renewed_lease(self, now: datetime, eta: datetime | None) -> datetime:
        """A lease renewed by news of a job: until its ETA plus slack, or the answer window from now."""
        if eta is None or eta <= now:
            return now + timedelta(seconds=max(self.answer_window_s, self.lease_grace_min_s))
        slack = max(self.lease_grace_min_s, self.lease_grace_share * (eta - now).total_seconds())
        return eta + timedelta(seconds=slack)

    def release_doubts(self) -> list[str]:
        """Plan again the units held in doubt whose lab did not come back in time; their ids."""
        now = self.clock()
        due = [aid for aid, (_, until) in self._in_doubt.items() if until <= now]
        for aid in due:
            units, _ = self._in_doubt.pop(aid)
            a = self.assignments[aid]
            log.warning(
                "lab %s did not say what it made of %s: its %d units in doubt are planned again",
                a.lab_id,
                aid,
                units,
            )
        if due:
            self.on_change("units in doubt released")
        return due

    def expire_leases(self) -> list[str]:
        """End the leases nobody renewed: their unfinished units return to demand, their trails weaken.

        A lease lapses when a lab neither answers an ASSIGN within the answer window nor finishes (or
        reports a later ETA) by its last ETA plus slack. Returns the ids of the assignments ended.
        """
        now = self.clock()
        lapsed = [
            a
            for a in self.assignments.values()
            if a.state in ACTIVE_STATES
            and a.lease_until is not None
            and datetime.fromisoformat(a.lease_until) < now
        ]
        if not lapsed:
            return []
        events = []
        with self.ledger.transaction() as db:
            for a in lapsed:
                reason = f"lease expired at {a.lease_until}: no answer or progress from the lab"
                events.append(self._change_job(db, a, "failed", now, reason=reason))
                events += self._mark_trail(db, a, "failed", now)
                if (e := self._refresh_order(db, a.order_id)) is not None:
                    events.append(e)
        self._publish(*events)
        self.leases_expired += len(lapsed)
        for a in lapsed:
            log.warning(
                "lease of %s at lab %s expired: %d units return to demand",
                a.id,
                a.lab_id,
                a.quantity - a.units_done,
            )
        for lab_id in sorted({a.lab_id for a in lapsed}):
            self.on_withdrawn(lab_id)
        self.on_change("lease expired")
        return [a.id for a in lapsed]

    # --- trails -------------------------------------------------------------------------------

    def _mark_trail(self, db: Any, a: AssignmentRow, state: str, now: datetime) -> list[Event]:
        """Reinforce the (design, lab) trail by the machine hours delivered on time, weaken it on a
        refusal or failure."""
        order = self.orders[a.order_id]
        key = (order.design, a.lab_id)
        if state == "done" and now <= order.due_at:
            design = self.designs.get(order.design)
            hours = a.units_done * (design.minutes_per_unit() if design is not None else 0.0) / 60.0
            before, after = self.trails.delivered_on_time(key, hours, now)
            cause = f"delivered on time: {a.units_done} units, {hours:.1f} machine hours"
        elif state == "done":
            before, after = self.trails.held(key, now)
            cause = "delivered after the due date (no reinforcement)"
        else:
            before, after = self.trails.let_down(key, now)
            cause = f"{state}: {a.reason or 'no reason given'}"
        Ledger.put_trail(db, key[0], key[1], after, now)
        data = {"design": key[0], "lab_id": key[1], "before": before, "tau": after, "cause": cause}
        return [self._emit(db, f"trail-{key[1]}", "trail.changed", data)]

    def trails_view(self, lab_id: str, params: SolveParams = SolveParams()) -> dict[str, Any]:
        """A lab's trails as they stand now, what each is worth in the plan, and their recorded history
        (each change with the trail's value just before it, faded to that moment)."""
        rules = self.trails.rules
        now_trails = self.trails.at(self.clock())
        live = [view.lab for view in list(self.labs.values()) if view.live]
        reference = design_references(now_trails, live, self.designs, rules)
        trails = []
        for (design, lab), tau in sorted(now_trails.items()):
            if lab != lab_id:
                continue
            strength = rules.strength(tau, reference[design])
            trails.append(
                {
                    "design": design,
                    "tau": round(tau, 4),
                    "design_mean": round(reference[design], 4),
                    "strength": round(strength, 4),
                    "discount_km_per_unit": round(params.trail_discount_km * strength, 3),
                    "discount_share_of_trip": round(params.trail_trip_share * strength, 4),
                }
            )
        history = [
            {"seq": e.seq, "at": e.at, **e.data} for e in self.ledger.events_of(f"trail-{lab_id}", limit=200)
        ]
        return {
            "lab_id": lab_id,
            "rules": {
                "neutral": rules.neutral,
                "minimum": rules.minimum,
                "maximum": rules.maximum,
                "half_life_days": rules.half_life_days,
                "reinforce_per_machine_hour_on_time": rules.reinforce_per_hour,
                "weaken_factor": rules.weaken,
            },
            "trails": trails,
            "history": history,
        }

    def explanation(self, order_id: str, params: SolveParams = SolveParams()) -> list[dict[str, Any]]:
        """Why the order's labs were chosen and why its nearest other labs were not.

        The chosen lines are the order's assignments, and the last plan's lines of the order that
        wait for material on its way to their lab (held back, `planner.shipping.held_back`): those
        name, from the planner's transfers into that lab (sent or shipped, or arrived since that
        plan), which lab ships what material, how much, how far and when it arrives. When the last
        plan's path planned no transfers (the large path), labs short of stock say so.

        See solver.allocation.explain. It reads every lab, so the API runs it in a worker thread, off
        the event loop: what it reads of the planner's state it copies first in single steps
        (`list(...)`, `dict(...)`), so the loop may change that state meanwhile.
        """
        order = self.orders[order_id]
        per_late_unit = params.lateness_penalty[order.priority]
        allocations = [
            Allocation(
                order_id=order_id,
                lab_id=a.lab_id,
                quantity=a.quantity,
                cost=a.cost,
                late_units=min(a.quantity, round(a.cost.lateness / per_late_unit)) if per_late_unit else 0,
            )
            for a in list(self._by_order.get(order_id, ()))
            if a.state in ACTIVE_STATES or a.state == "done"
        ]
        waiting = [a for a in list(self.unsent) if a.order_id == order_id and a.received]
        allocations += waiting
        parcels = []
        if waiting:
            into = {a.lab_id for a in waiting}
            since = self.plan_committed_at
            for row in list(self.shipments.rows.values()):
                if row.transfer.to_lab not in into:
                    continue
                if row.state in UNDER_WAY or (
                    row.state == "arrived"  # since the plan: the re-plan that sends its units is coming
                    and since is not None
                    and datetime.fromisoformat(row.updated_at) >= since
                ):
                    parcels.append(Parcel(row.transfer, row.id, row.state))
        now = self.clock()
        labs = [self._lab_state(view, now) for view in list(self.labs.values())]
        problem = Problem(
            now=now,
            designs=self.designs,
            labs=labs,
            demands=[Demand(order=order, quantity=order.quantity)],
            trails=self.trails.at(now),
        )
        current = self.plan
        plan = Plan(
            version=0,
            allocations=allocations,
            objective=0.0,
            bound=0.0,
            status="FEASIBLE",
            solve_seconds=0,
            transfers_considered=current is None or current.transfers_considered,
        )
        return [v.to_json() for v in explain_order(problem, plan, order_id, params, parcels=parcels)]

    # --- planning -----------------------------------------------------------------------------

    def problem(self, ahead: timedelta = timedelta(0)) -> Problem:
        """The allocation problem for everything not yet committed, from the labs' latest reports,
        as of `ahead` from now: when its plan reaches the labs (`planner.replan.Replanner.plan_lead`)."""
        demands = []
        for order in self.orders.values():
            if order.state in {"done", "cancelled"}:
                continue
            remaining = order.quantity - self.units_committed(order.id)
            if remaining > 0:
                demands.append(Demand(order=order, quantity=remaining))
        now = self.clock() + ahead
        demands += self.forecast(now)
        labs = [self._lab_state(view, now) for view in self.labs.values()]
        refused = frozenset(
            (a.order_id, a.lab_id)
            for d in demands
            for a in self._by_order.get(d.order.id, ())
            if a.state == "refused"
        )
        return Problem(
            now=now,
            designs=self.designs,
            labs=labs,
            demands=demands,
            trails=self.trails.at(now),
            excluded=refused,
            future=tuple(self.still_to_come(now)),
        )

    def _lab_state(self, view: LabView, now: datetime) -> LabState:
        """A lab as the solver sees it: its report, and the work the planner holds it to.

        Two accounts, and the solver gets the stricter per machine:

        - The lab's report: the backlog it last sent, plus the work assigned but not yet acknowledged,
          plus the work it accepted in a message sent after that report (by the lab's own numbers,
          `LabView.report_seq`). A lab sends its new backlog just before ACCEPT, but the mesh applies
          CAPACITY reports in batches (`planner.mesh.CAPACITY_APPLY_S`) and ACCEPT at once: in
          between, the accepted work was in neither account, and the re-plan or emergency placement
          that came then handed the lab's hours out again. On valve-lombardy live, three plans 0.12 s
          apart gave fablab-trieste 5, 3 and 2 valves due the same day, and it accepted the last
          "after its due date" (docs/live-vs-sim.md). Counting reports taken after the ACCEPT was not
          enough: when the CAPACITY sent with the ACCEPT is lost (a lossy link, the rate limit) an
          older report waiting at the mesh was taken after it and the job dropped out of both. Only a
          report the lab sent after the ACCEPT surely holds the job; the one it sent just before
          usually does too, so the job is counted twice until the lab's next report (0.5 s later at
          most, `nodes.agent`'s capacity interval): the safe side.
        - The lab's hours since the planner first gave it work (`_hours_from`): every unit it made or
          is still expected to make, shared over every machine it has had (`_machines_seen`), less
          the hours that have passed. Work a lab finished leaves its
          backlog, but the hours it took are spent: a lab that works faster than the hours it
          declared (or whose clock runs ahead of the planner's, as simulated labs do) must not be
          handed those hours again, or it is asked for more than it offers by a due date.
        """
        backlog = dict(view.backlog)
        stock = dict(view.stock)
        for material, amount in self.shipments.withheld(view.lab.id).items():  # to ship, not yet shipped
            stock[material] = max(0.0, stock.get(material, 0.0) - amount)
        units_held: dict[str, int] = {}  # design id -> units made or expected
        for a in self._by_lab.get(view.lab.id, ()):
            design = self.designs[self.orders[a.order_id].design]
            if a.state == "assigned":
                for material, amount in design.materials_per_unit().items():
                    stock[material] = max(0.0, stock.get(material, 0.0) - amount * a.quantity)
                backlog = add(backlog, spread(view.lab, design, a.quantity, backlog))
            elif a.id in self._accepted_seq:
                if a.state in {"accepted", "running"} and view.report_seq <= self._accepted_seq[a.id]:
                    backlog = add(backlog, spread(view.lab, design, a.quantity - a.units_done, backlog))
                else:  # a report sent after the acceptance holds the work (or the job has ended)
                    del self._accepted_seq[a.id]
            units = a.quantity if a.state in ACTIVE_STATES else a.units_done
            units += self._in_doubt.get(a.id, (0, None))[0]
            if units:
                units_held[design.id] = units_held.get(design.id, 0) + units
        # Shared over every machine the lab has had: with one machine down, the work the others made
        # with it is not charged to those left, which would book them for days (docs/live-vs-sim.md).
        up = {m.id for m in view.lab.machines}
        down = [
            m for machine_id, m in self._machines_seen.get(view.lab.id, {}).items() if machine_id not in up
        ]
        ever = view.lab.model_copy(update={"machines": [*view.lab.machines, *down]}) if down else view.lab
        held: dict[str, float] = {}
        for design_id, units in sorted(units_held.items()):  # one levelling per design, not per job
            held = add(held, spread(ever, self.designs[design_id], units, held))
        since = self._hours_from.get(view.lab.id)
        if since is not None:
            days = max(0.0, (now - since).total_seconds() / 86_400.0)
            for m in view.lab.machines:
                owed = held.get(m.id, 0.0) - m.minutes_per_day() * days
                if owed > backlog.get(m.id, 0.0):
                    backlog[m.id] = owed
        return LabState(
            lab=view.lab,
            backlog_minutes=backlog,
            stock=stock,
            live=view.live,
            incoming=self.shipments.on_the_way(view.lab.id),
            deferred_minutes=deferred_late_work(view.lab, self._late_work_held(view.lab.id, now), backlog),
        )

    def _late_work_held(self, lab_id: str, now: datetime) -> list[tuple[Design, int, float]]:
        """The late units a lab holds and has not made, per job: (design, units, days from `now` until
        they must leave by the plan's arrival for them), for `planner.hours.deferred_late_work`. The
        units a job makes first are the ones planned on time, as the lab counts them."""
        jobs = []
        for a in self._by_lab.get(lab_id, ()):
            late_left = a.quantity - max(a.units_done, a.on_time_units)
            if a.state not in ACTIVE_STATES or late_left <= 0 or a.arrive_by is None:
                continue
            order = self.orders[a.order_id]
            leave = leave_by(order.due_at, self.road_hours(a), datetime.fromisoformat(a.arrive_by), late=True)
            jobs.append((self.designs[order.design], late_left, (leave - now).total_seconds() / 86_400.0))
        return jobs

    def has_unplanned_demand(self) -> bool:
        """True when some order still has units no lab is making."""
        return any(
            o.state not in {"done", "cancelled"} and self.units_committed(o.id) < o.quantity
            for o in self.orders.values()
        )

    def awaiting_answer(self, lab_id: str) -> list[AssignmentRow]:
        """Assignments sent to a lab that it has neither accepted nor refused yet, in the order the
        lab takes them up (`in_dispatch_order`)."""
        return self.in_dispatch_order([a for a in self._by_lab.get(lab_id, ()) if a.state == "assigned"])

    def in_dispatch_order(self, rows: list[AssignmentRow]) -> list[AssignmentRow]:
        """`rows` in the order a lab takes work up: earliest leave-by first (solver.jobshop.ranking).

        A lab starts a job on its idle machines as soon as it accepts it, and a unit started keeps
        its machine; so the jobs of one plan are sent in this order, or the first one sent would
        take the machines that a job which must leave sooner needs.
        """
        return sorted(rows, key=self._dispatch_key)

    def _dispatch_key(self, a: AssignmentRow) -> DispatchKey:
        """The rank of a job's first units at its lab, as `nodes` ranks them from the ASSIGN."""
        order = self.orders[a.order_id]
        arrive_by = None if a.arrive_by is None else datetime.fromisoformat(a.arrive_by)
        leave = leave_by(order.due_at, self.road_hours(a), arrive_by, late=a.on_time_units <= 0)
        return dispatch_key(leave, order.due_at, order.priority, a.order_id, 0)

    def _index(self, row: AssignmentRow) -> None:
        self.assignments[row.id] = row
        self._by_order.setdefault(row.order_id, []).append(row)
        self._by_lab.setdefault(row.lab_id, []).append(row)

    def _new_assignment_id(self, order_id: str) -> str:
        return f"{order_id}-a{len(self._by_order.get(order_id, ())) + 1}"

    def commit_plan(self, plan: Plan) -> list[AssignmentRow]:
        """Record a validated plan and turn its allocations into assignments to send."""
        now = self.clock()
        version = (self.plan.version if self.plan else 0) + 1
        plan = plan.model_copy(update={"version": version})
        new: list[AssignmentRow] = []
        events = []
        with self.ledger.transaction() as db:
            Ledger.put_plan(db, plan, now)
            under_way = {
                order_id
                for order_id, rows in self._by_order.items()
                if any(a.state in ACTIVE_STATES for a in rows)
            }
            # Planned for later, or late: the next re-plan decides where it is made
            # (solver.model.lines.to_dispatch), the same rule as the simulated replay's.
            # A rate's forecast is not an order yet: planned, never sent.
            ordered = [a for a in plan.allocations if a.order_id in self.orders]
            sent = to_dispatch(ordered, under_way) if self.rolling else ordered
            if self.rolling:
                sent = self._late_work_within(sent, now)
            # Units made from material not in the lab's stock yet wait for it (planner.shipping).
            designs = {a.order_id: self.designs[self.orders[a.order_id].design] for a in ordered}
            sent = [self._promised_by_due(a) for a in held_back(ordered, sent, designs)]
            assigned: dict[tuple[str, str], int] = {}
            for allocation in sent:
                view = self.labs.get(allocation.lab_id)
                order = self.orders.get(allocation.order_id)
                if view is None or not view.live or order is None:
                    continue  # the lab was lost while solving; the next re-plan covers these units
                key = (allocation.order_id, allocation.lab_id)
                assigned[key] = assigned.get(key, 0) + allocation.quantity
                row = AssignmentRow(
                    id=self._new_assignment_id(order.id),
                    order_id=allocation.order_id,
                    lab_id=allocation.lab_id,
                    quantity=allocation.quantity,
                    state="assigned",
                    units_done=0,
                    plan_version=version,
                    cost=allocation.cost,
                    reason=None,
                    eta=None,
                    updated_at=now.isoformat(),
                    lease_until=(now + timedelta(seconds=self.answer_window_s)).isoformat(),
                    arrive_by=None if allocation.arrive_by is None else allocation.arrive_by.isoformat(),
                    on_time_units=allocation.quantity - allocation.late_units,
                )
                self._made_at[row.id] = now
                self._index(row)
                self._hours_from.setdefault(row.lab_id, now)
                Ledger.put_assignment(db, row)
                events.append(self._emit(db, f"order-{row.order_id}", "job.assigned", row.to_json()))
                new.append(row)
                if (e := self._refresh_order(db, row.order_id)) is not None:
                    events.append(e)
            live = {lab_id for lab_id, v in self.labs.items() if v.live}
            shipped, transfer_events = self.shipments.dispatch(db, plan, live.__contains__)
            events += transfer_events
            events.append(self._emit(db, "plan", "plan.committed", self.plan_summary(plan)))
        self._keep_unsent(plan, assigned)
        self.plan = plan
        self.plan_committed_at = now
        self.plans_committed += 1
        self._publish(*events)
        # SHIP goes once the plan's transaction is in the ledger's file, as ASSIGN does (SPEC.md 11).
        self.shipments.send_when_written(shipped)
        log.info(
            "plan v%d: %d allocations, %d shortages, objective %.1f, bound %.1f, %s in %.2f s",
            version,
            len(plan.allocations),
            len(plan.shortages),
            plan.objective,
            plan.bound,
            plan.status,
            plan.solve_seconds,
        )
        return new

    def _promised_by_due(self, allocation: Allocation) -> Allocation:
        """A line sent with no late unit promises arrival by its order's due date. Its `arrive_by` is
        the latest of the plan line's units, which may be late units not sent now (the window, the
        commit window): kept, the job's units planned on time showed a promise days past their due
        date, and one that arrived late was put down to no known cause (`planner.reality`)."""
        due = self.orders[allocation.order_id].due_at
        if allocation.late_units == 0 and allocation.arrive_by is not None and allocation.arrive_by > due:
            return allocation.model_copy(update={"arrive_by": due})
        return allocation

    def _late_work_within(self, sent: list[Allocation], now: datetime) -> list[Allocation]:
        """`sent` with each lab's late units cut to what its machines reach within `late_work_hours`
        (as sent when that is None)."""
        labs = {a.lab_id for a in sent if a.late_units > 0 and a.lab_id in self.labs}
        if not labs or self.late_work_hours is None:
            return sent
        states = {lab_id: self._lab_state(self.labs[lab_id], now) for lab_id in sorted(labs)}
        designs = {a.order_id: self.designs[self.orders[a.order_id].design] for a in sent if a.lab_id in labs}
        return late_work_within(sent, states, designs, self.late_work_hours, self.late_work_refill_hours)

    def _keep_unsent(self, plan: Plan, assigned: dict[tuple[str, str], int]) -> None:
        """Remember the plan's lines (or the parts of them) that were not sent: planned for later."""
        planned = {a.order_id for a in plan.allocations}
        kept = [a for a in self.unsent if a.order_id not in planned]
        for a in plan.allocations:
            left = a.quantity - assigned.pop((a.order_id, a.lab_id), 0)
            if left > 0:
                kept.append(a.model_copy(update={"quantity": left, "late_units": min(a.late_units, left)}))
            elif left < 0:
                assigned[(a.order_id, a.lab_id)] = -left
        self.unsent = kept

    def reject_plan(self, plan: Plan, violations: list[str]) -> None:
        """A plan that failed the validator is never used; the failure is recorded for the operator."""
        self.plans_rejected += 1
        with self.ledger.transaction() as db:
            event = self._emit(db, "plan", "plan.rejected", {"violations": violations[:50]})
        self._publish(event)
        log.error(
            "plan rejected by the validator (%d violations): %s", len(violations), "; ".join(violations[:5])
        )

    @staticmethod
    def plan_summary(plan: Plan) -> dict[str, Any]:
        """A plan's statistics, without its allocation lines."""
        return {
            "version": plan.version,
            "objective": plan.objective,
            "bound": plan.bound,
            "bound_scope": plan.bound_scope,
            "gap": plan.gap,
            "status": plan.status,
            "solve_seconds": plan.solve_seconds,
            "allocations": len(plan.allocations),
            "shortages": [s.model_dump() for s in plan.shortages],
            "transfers": len(plan.transfers),
            "transfers_considered": plan.transfers_considered,
        }

    # --- views --------------------------------------------------------------------------------

    def field(self, max_traces: int = 500) -> Field_:
        """The stigmergic field as labs see it: unmet demand and free capacity traces.

        Demand traces are capped at the `max_traces` strongest (unmet units x urgency) so that a
        snapshot always fits in one frame.
        """
        urgency = {"routine": 1, "urgent": 10, "emergency": 100}
        # Ranked as plain pairs, and only the strongest made into traces: a planner under load holds
        # thousands of open orders, and this runs on its event loop.
        open_orders = [
            (max(0, o.quantity - self.units_made(o.id)), o)
            for o in self.orders.values()
            if o.state not in {"done", "cancelled"}
        ]
        open_orders.sort(key=lambda pair: pair[0] * urgency[pair[1].priority], reverse=True)
        demand = [
            DemandTrace(order_id=o.id, design=o.design, location=o.delivery, unmet=unmet, priority=o.priority)
            for unmet, o in open_orders[:max_traces]
        ]
        capacity = [
            CapacityTrace(
                lab_id=v.lab.id,
                location=v.lab.location,
                live=v.live,
                free_minutes_per_day=max(0.0, v.minutes_per_day() - sum(v.backlog.values())),
            )
            for v in self.labs.values()
        ]
        return Field_(demand=demand, capacity=capacity)

    def lab_json(self, view: LabView) -> dict[str, Any]:
        """A lab as the API shows it."""
        jobs = [a.to_json() for a in self._by_lab.get(view.lab.id, ())]
        return {
            **view.lab.model_dump(mode="json", exclude={"public_key"}),
            "live": view.live,
            "last_seen": view.last_seen.isoformat(),
            "backlog_minutes": view.backlog,
            "free_stock": view.stock,
            "jobs_running": sum(
                1 for a in self._by_lab.get(view.lab.id, ()) if a.state in {"accepted", "running"}
            ),
            "jobs": jobs,
            "transfers": self.shipments.of_lab(view.lab.id),
        }

    def current_allocations(self) -> list[dict[str, Any]]:
        """Every allocation still standing (assigned, accepted, running or done), with km to delivery."""
        rows = []
        for a in self.assignments.values():
            if a.state in {"refused"}:
                continue
            rows.append(a.to_json())
        return rows

    def km_travelled(self) -> float:
        """Unit-kilometres of delivered units (each made unit shipped lab -> delivery place)."""
        total = 0.0
        for a in self.assignments.values():
            view = self.labs.get(a.lab_id)
            order = self.orders.get(a.order_id)
            if view and order and a.units_done:
                total += a.units_done * haversine_km(view.lab.location, order.delivery)
        return total
