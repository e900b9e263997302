"""The emergency fast path between planner processes (SPEC.md section 10.8): one round trip, no vote.

As the *origin*, after each plan it commits and every heartbeat (`scan`), a planner looks at its open
emergency orders: units its plan leaves short, or plans late (due a whole day ahead or more), that
no lab of its own is making and no trade covers, merged per (design, cell, window). For each such
group, with live peers and no request of it under way, it sends every live peer one `EMERGENCY`.
When every asked live peer has answered, or at the request's `expires_at`, it takes the cheapest
answers at or below the emergency's lateness penalty, writes the trades (`pending`, with their cover,
`planner.fed_leases`) and only then sends `EMERGENCY_TAKE` (0 units to the answers it leaves).

As a *host*, it answers an `EMERGENCY` from the capacity its own LP leaves spare (with the trades it
hosts and the answers it holds counted), holds those units for the origin until the answer's
`expires_at`, and on a take within the hold writes the trade as `pending` and sends `LEASE` at once.
From there a trade of the fast path is a trade as any other (leases, progress, resync).

Retries are idempotent: a repeated request gets the same answer, a repeated take the same LEASE; a
silent peer's answer is simply not waited for past `expires_at`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from planner.core import PlannerCore
from planner.fed_leases import Leases, day_start, day_zero
from planner.trade_book import TradeBook
from protocol.peers import EmergencyBody, EmergencyOfferBody, EmergencyTakeBody
from solver.federation.cells import CELL_DEG, cell_of, window_of
from solver.federation.emergency import (
    EMERGENCY,
    Answer,
    Firm,
    capacity_window,
    choose,
    host_answer,
    max_price,
)
from solver.federation.market import Trade
from solver.federation.region import RegionModel
from solver.model.problem import Problem, SolveParams

log = logging.getLogger(__name__)

Send = Callable[[str, str, dict[str, Any]], Awaitable[None]]
#: Seconds an origin waits for the answers to a request before it takes the best it has.
ANSWER_WAIT_S = 2.0
#: Seconds a host holds the units of an answer for its origin.
HOLD_S = 10.0
#: Heartbeats before a group whose request took nothing is asked again.
RETRY_BEATS = 10
#: Requests (and their outcomes) kept for /federation.
HISTORY = 20
#: The start of request counters (SPEC.md 10.2: they never go back, even over a restart).
COUNTER_ORIGIN = datetime(2025, 1, 1, tzinfo=UTC)
#: Statuses of an order that no longer needs anything.
ENDED = frozenset({"done", "cancelled"})

Key = tuple[str, str, int]  # design, cell, window


@dataclass
class EmergencyStats:
    """Counters of the fast path, for /federation."""

    requests_sent: int = 0
    request_retries: int = 0
    answers_received: int = 0
    answers_late: int = 0
    answers_sent: int = 0
    requests_repeated: int = 0
    takes_sent: int = 0
    takes_refused: int = 0
    trades_received: int = 0
    trades_hosted: int = 0
    units_received: int = 0


@dataclass
class Request:
    """An origin's request under way: what it asked whom, and the answers so far."""

    request_id: str
    key: Key
    units: int
    body: dict[str, Any]
    asked: list[str]
    started: float
    deadline: float
    orders: set[str]
    answers: dict[str, EmergencyOfferBody] = field(default_factory=dict)
    decided: bool = False
    #: When it was last sent to the peers that have not answered (a retry waits a heartbeat).
    last_sent: float = 0.0


@dataclass
class Hold:
    """Units a host answered an origin with, held for it until `expires_at`."""

    origin: str
    request: EmergencyBody
    answer: dict[str, Any]
    units: int
    price: float
    expires_at: datetime


class Emergencies:
    """One planner's side of the emergency fast path, as origin and as host (module docstring)."""

    def __init__(
        self,
        region: str,
        core: PlannerCore,
        book: TradeBook,
        leases: Leases,
        send: Send,
        live: Callable[[], list[str]],
        params: SolveParams,
        heartbeat_s: float,
        exposed: set[str],
        cell_deg: float = CELL_DEG,
        answer_wait_s: float = ANSWER_WAIT_S,
        hold_s: float = HOLD_S,
        time_scale: float = 1.0,
    ) -> None:
        self.region = region
        self.core = core
        self.book = book
        self.leases = leases
        self.send = send
        self.live = live
        self.params = params
        self.heartbeat_s = heartbeat_s
        self.exposed = exposed
        self.cell_deg = cell_deg
        self.answer_wait_s = answer_wait_s
        self.hold_s = hold_s
        #: Seconds of the planner's clock per wall second (a replay's compressed clock,
        #: `protocol.timeframe`): waits are timed on the wall, dates stamped on the planner's clock.
        self.time_scale = time_scale
        self.stats = EmergencyStats()
        self.history: list[dict[str, Any]] = []
        self.requests: dict[str, Request] = {}
        self.holds: dict[str, Hold] = {}
        self._by_key: dict[Key, str] = {}
        self._quiet_until: dict[Key, float] = {}
        #: Takes the origin repeats until the host's LEASE comes: trade id -> (host, body, when sent).
        self._takes: dict[str, tuple[str, dict[str, Any], float]] = {}
        #: Trade id -> (its request's history entry, when the request started): for time to lease.
        self._waiting_lease: dict[str, tuple[dict[str, Any], float]] = {}
        self._counter = self._first_counter()
        self._scanning = asyncio.Lock()
        self._hosting = asyncio.Lock()

    def _first_counter(self) -> int:
        """Past every request id this planner may have used: its trades', and the wall clock's seconds."""
        used = [
            int(m.group(1))
            for trade_id in self.book.rows
            if (m := re.search(rf"\.{re.escape(self.region)}\.e([0-9]+)$", trade_id))
        ]
        clock = int((self.core.clock() - COUNTER_ORIGIN).total_seconds())
        return max([clock, *used]) % 1_000_000_000

    # --- the origin ---------------------------------------------------------------------------------

    def needs(self, now: datetime) -> dict[Key, tuple[int, set[str]]]:
        """Per (design, cell, window): the units of open emergency orders the latest plan leaves short
        or late (late only when due a whole day ahead or more), at most those no lab here is making and
        no trade covers; and the orders they are of."""
        plan = self.core.plan
        if plan is None:
            return {}
        missing: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for shortage in plan.shortages:
            missing[shortage.order_id][0] += shortage.quantity
        for line in plan.allocations:
            if line.late_units:
                missing[line.order_id][1] += line.late_units
        found: dict[Key, tuple[int, set[str]]] = {}
        start = day_zero(now)
        for order_id, (short, late) in sorted(missing.items()):
            order = self.core.orders.get(order_id)
            if order is None or order.priority != EMERGENCY or order.state in ENDED:
                continue
            if order_id.startswith("lease-"):  # made here for a peer: never sent on again
                continue
            window = window_of(start, order.due_at)
            wanted = short + (late if window >= 1 else 0)
            wanted = min(wanted, order.quantity - self.core.units_committed(order_id))
            if wanted < 1:
                continue
            key = (order.design, cell_of(order.delivery, self.cell_deg), window)
            units, orders = found.get(key, (0, set()))
            found[key] = (units + wanted, orders | {order_id})
        return found

    async def scan(self) -> None:
        """Send a request for every group in need that has none under way (module docstring)."""
        if self._scanning.locked():
            return
        async with self._scanning:
            live = self.live()
            if not live:
                return
            now = self.core.clock()
            moment = time.monotonic()
            for key, (units, orders) in self.needs(now).items():
                if key in self._by_key or self._quiet_until.get(key, 0.0) > moment:
                    continue
                await self._request(key, units, orders, live, now)

    async def _request(self, key: Key, units: int, orders: set[str], live: list[str], now: datetime) -> None:
        self._counter = (self._counter + 1) % 1_000_000_000
        request_id = f"{self.region}.e{self._counter}"
        design, cell, window = key
        body = {
            "request_id": request_id,
            "design": design,
            "units": units,
            "window": window,
            "cell": cell,
            "max_price": max_price(self.params),
            "expires_at": (now + timedelta(seconds=self.answer_wait_s * self.time_scale)).isoformat(),
            "day": day_zero(now).date().isoformat(),  # what `window` counts from, past midnight too
        }
        moment = time.monotonic()
        deadline = moment + self.answer_wait_s
        request = Request(
            request_id, key, units, body, sorted(live), moment, deadline, orders, last_sent=moment
        )
        self.requests[request_id] = request
        self._by_key[key] = request_id
        self.exposed |= orders  # their quantity left the region (merged, with no id or place)
        log.warning(
            "emergency: %d units of %s for cell %s, window %d, short here; asking %s (%s)",
            units,
            design,
            cell,
            window,
            ", ".join(request.asked),
            request_id,
        )
        for peer in request.asked:
            await self.send(peer, "EMERGENCY", body)
        self.stats.requests_sent += 1

    async def on_answer(self, sender: str, body: EmergencyOfferBody) -> None:
        """A host's answer: kept, and the request decided once every asked live peer answered."""
        request = self.requests.get(body.request_id)
        if request is None or request.decided or sender not in request.asked:
            self.stats.answers_late += 1
            return
        self.stats.answers_received += 1
        request.answers[sender] = body
        live = set(self.live())
        if all(peer in request.answers for peer in request.asked if peer in live):
            await self._decide(request)

    async def _decide(self, request: Request) -> None:
        """Take the cheapest answers, write the trades, then tell every answering host (module docstring)."""
        if request.decided:
            return
        request.decided = True
        self.requests.pop(request.request_id, None)
        self._by_key.pop(request.key, None)
        now = self.core.clock()
        design, cell, window = request.key
        day = date.fromisoformat(request.body["day"])
        valid = [
            Answer(host, a.units, a.price)
            for host, a in sorted(request.answers.items())
            if a.expires_at > now and a.units > 0
        ]
        probe = Trade(
            "probe", "", self.region, design, window, cell, request.units, 0.0, 0, EMERGENCY, day=day
        )
        coverable = sum(self.leases.cover(probe, now).values())
        taken = choose(valid, min(request.units, coverable), float(request.body["max_price"]))
        trades = [
            Trade(
                trade_id=f"t{request.asked.index(host)}.{request.request_id}",
                host=host,
                origin=self.region,
                design=design,
                window=window,
                cell=cell,
                units=units,
                price=request.answers[host].price,
                round=0,
                priority=EMERGENCY,
                day=day,
            )
            for host, units in sorted(taken.items())
        ]
        new = await self.leases.commit(trades, now) if trades else []  # durable before any take is sent
        entry = {
            "request_id": request.request_id,
            "design": design,
            "cell": cell,
            "window": window,
            "units": request.units,
            "asked": request.asked,
            "answered": sorted(request.answers),
            "taken": {t.host: t.units for t in trades},
            "seconds_to_decide": round(time.monotonic() - request.started, 3),
            "seconds_to_lease": None,
        }
        self.history = [*self.history, entry][-HISTORY:]
        for row in new:
            self._waiting_lease[row.trade.trade_id] = (entry, request.started)
            self.stats.trades_received += 1
            self.stats.units_received += row.units
        for host, answer in sorted(request.answers.items()):
            trade = next((t for t in trades if t.host == host), None)
            if trade is None and answer.units == 0:
                continue
            take = {
                "request_id": request.request_id,
                "trade_id": trade.trade_id if trade else f"t{request.asked.index(host)}.{request.request_id}",
                "units": trade.units if trade else 0,
            }
            if trade is not None:
                self._takes[trade.trade_id] = (host, take, time.monotonic())
            if host in self.live():
                await self.send(host, "EMERGENCY_TAKE", take)
                self.stats.takes_sent += 1
        if not trades:
            self._quiet_until[request.key] = time.monotonic() + RETRY_BEATS * self.heartbeat_s
            log.warning("emergency %s: no peer could take any of it", request.request_id)
        else:
            log.warning(
                "emergency %s: %s in %.3f s",
                request.request_id,
                ", ".join(f"{t.units} units to {t.host}" for t in trades),
                entry["seconds_to_decide"],
            )

    def on_leased(self, trade_id: str) -> None:
        """The origin confirmed a host's LEASE: its take is done, and the time to lease is known."""
        row = self.book.rows.get(trade_id)
        if row is None or row.state != "leased":
            return
        self._takes.pop(trade_id, None)
        waiting = self._waiting_lease.pop(trade_id, None)
        if waiting is not None:
            entry, started = waiting
            seconds = round(time.monotonic() - started, 3)
            entry["seconds_to_lease"] = max(entry["seconds_to_lease"] or 0.0, seconds)

    # --- the host -----------------------------------------------------------------------------------

    async def on_request(self, sender: str, body: EmergencyBody) -> None:
        """Answer an origin's request from spare capacity, and hold the units (module docstring)."""
        async with self._hosting:  # one answer at a time, so each sees the others' holds
            now = self.core.clock()
            held = self.holds.get(body.request_id)
            if held is not None and held.origin == sender and held.request == body:
                self.stats.requests_repeated += 1
                await self.send(sender, "EMERGENCY_OFFER", held.answer)
                return
            self.holds.pop(body.request_id, None)
            problem, exports = self.core.problem(), self._exports(now)  # read on the loop, solved off it
            firm = await asyncio.to_thread(self._firm, body, problem, exports)
            expires = now + timedelta(seconds=self.hold_s * self.time_scale)
            answer = {
                "request_id": body.request_id,
                "units": firm.units,
                "price": firm.price,
                "expires_at": expires.isoformat(),
            }
            self.holds[body.request_id] = Hold(sender, body, answer, firm.units, firm.price, expires)
            await self.send(sender, "EMERGENCY_OFFER", answer)
            self.stats.answers_sent += 1
            log.info(
                "emergency %s from %s: %d of %d units of %s answered at %.2f",
                body.request_id,
                sender,
                firm.units,
                body.units,
                body.design,
                firm.price,
            )

    def _exports(self, now: datetime) -> list[Trade]:
        """What this host must make besides its own orders: the trades it hosts not yet placed as
        orders (pending), and the units it holds for origins (as trades, so its LP counts them)."""
        exports = [
            r.trade for r in self.book.rows.values() if r.trade.host == self.region and r.state == "pending"
        ]
        for request_id, hold in self.holds.items():
            if hold.units > 0 and hold.expires_at > now:
                r = hold.request
                exports.append(
                    Trade(
                        f"hold.{request_id}",
                        self.region,
                        hold.origin,
                        r.design,
                        r.window,
                        r.cell,
                        hold.units,
                        hold.price,
                        0,
                        EMERGENCY,
                        day=r.day,
                    )
                )
        return exports

    def _firm(self, body: EmergencyBody, problem: Problem, exports: list[Trade]) -> Firm:
        """The host's own LP with what it hosts and holds, and its firm answer from it (in a thread)."""
        start = day_zero(problem.now)
        if body.day is not None:  # the origin's day: its window means the same due date here
            start = day_start(body.day)
        windowed = replace(problem, now=start)
        window = capacity_window(body.window)
        model = RegionModel(self.region, windowed, self.params, self.cell_deg, windows=(window,))
        solution = model.solve(exports=exports, stock_left=True)
        return host_answer(
            model, solution, body.design, body.cell, body.window, body.units, body.max_price, self.params
        )

    async def on_take(self, sender: str, body: EmergencyTakeBody) -> None:
        """An origin takes (some of) an answer: the trade is written and leased at once, or the hold
        released; a take this planner cannot honour is dropped and counted."""
        now = self.core.clock()
        row = self.book.rows.get(body.trade_id)
        if row is not None:  # a repeated take: the trade stands, its LEASE goes again
            if row.trade.host == self.region and row.trade.origin == sender and row.state == "pending":
                await self.leases.send_lease(row, now)
            return
        hold = self.holds.get(body.request_id)
        if hold is None or hold.origin != sender:
            self.stats.takes_refused += body.units > 0
            return
        if body.units == 0:
            self.holds.pop(body.request_id, None)
            return
        ours = re.fullmatch(rf"t[0-9]{{1,9}}\.{re.escape(body.request_id)}", body.trade_id)
        if ours is None or body.units > hold.units or now > hold.expires_at:
            self.stats.takes_refused += 1
            log.warning(
                "emergency take %s from %s refused: %d units against a hold of %d, until %s",
                body.trade_id,
                sender,
                body.units,
                hold.units,
                hold.expires_at.isoformat(),
            )
            return
        request = hold.request
        trade = Trade(
            trade_id=body.trade_id,
            host=self.region,
            origin=sender,
            design=request.design,
            window=request.window,
            cell=request.cell,
            units=body.units,
            price=hold.price,
            round=0,
            priority=EMERGENCY,
            day=request.day,
        )
        new = await self.leases.commit([trade], now)  # written, then LEASE sent
        self.holds.pop(body.request_id, None)
        self.stats.trades_hosted += len(new)

    # --- every heartbeat ----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Decide requests whose answers are all in or overdue, ask again the peers that did not
        answer, repeat takes not yet leased, drop expired holds; then scan for new needs."""
        moment = time.monotonic()
        live = set(self.live())
        for request in list(self.requests.values()):
            waiting = [p for p in request.asked if p in live and p not in request.answers]
            if moment >= request.deadline or not waiting:
                await self._decide(request)
                continue
            if moment - request.last_sent < self.heartbeat_s:
                continue
            request.last_sent = moment
            for peer in waiting:
                await self.send(peer, "EMERGENCY", request.body)
                self.stats.request_retries += 1
        for trade_id, (host, take, sent) in list(self._takes.items()):
            row = self.book.rows.get(trade_id)
            if row is None or row.state != "pending":
                self._takes.pop(trade_id, None)
                self._waiting_lease.pop(trade_id, None)
            elif host in live and moment - sent >= self.heartbeat_s:  # no LEASE within a heartbeat
                await self.send(host, "EMERGENCY_TAKE", take)
                self._takes[trade_id] = (host, take, moment)
        now = self.core.clock()
        for request_id, hold in list(self.holds.items()):
            if hold.expires_at <= now:
                del self.holds[request_id]
        await self.scan()

    def status(self) -> dict[str, Any]:
        """What /federation shows of the fast path: counters, requests under way, the latest outcomes."""
        return {
            "stats": vars(self.stats) | {"holds": len(self.holds), "under_way": len(self.requests)},
            "requests": self.history[-10:],
        }
