"""What becomes of a committed trade (SPEC.md section 10.7): leases, confirmations, progress, resync.

The origin is the authority on every trade it receives, so host and origin can never disagree for
long, whatever is lost or killed:

- On COMMIT, both sides write the trade as `pending`. The origin reserves units of its own orders
  for it (`covers`, earliest due first, only units no lab of its own is making); they leave its
  demand.
- The host sends `LEASE` for every pending trade it hosts, again each heartbeat until answered.
- The origin answers `CONFIRM` with the units it still takes: those it covers for a pending trade
  (which becomes `leased`), the same figure again for a leased one, 0 for a trade it does not hold,
  holds as void, or that expired. A pending trade whose LEASE has not come within `lease_wait_s`
  (and still has not by the heartbeat after: a held-up loop reads its inbox before it judges)
  expires: void, its units back in the origin's demand (the next round bids elsewhere).
- A trade's window counts days from the day its session or emergency request fixed (`trade_day`),
  so a round that ends past midnight covers and places the same due dates it bid for.
- Only on a CONFIRM with units does the host place the trade as an order of its own (`lease-...`)
  that its planner plans and its labs make as any order; a CONFIRM of 0 voids it. A host never
  voids a trade on its own: it asks until the origin answers.
- The host sends `PROGRESS` as the lease order's units are made; the origin counts them for the
  orders the trade covers (`abroad`), so their pages show units made abroad.
- A returning peer is sent a SNAPSHOT of the trades with it (by `PEER_HELLO`, `planner.peers`); a
  host applies the origin's word in it (leased or void) to its pending trades.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from planner.core import PlannerCore
from planner.trade_book import TradeBook, TradeRow
from protocol.model import Order
from protocol.peers import ConfirmBody, LeaseBody, ProgressBody, SnapshotBody
from solver.federation.cells import CELL_DEG, cell_centre, cell_of, window_of
from solver.federation.market import Trade

log = logging.getLogger(__name__)

Send = Callable[[str, str, dict[str, Any]], Awaitable[None]]
#: Open own orders by (design, priority, cell, window): what a received trade may cover.
OrdersByPlace = dict[tuple[str, str, str, int], list[Order]]
#: The earliest a lease order falls due, from now: a trade of window 0 still gets this much time.
LEASE_MIN_HOURS = 6.0
#: Heartbeats between two PROGRESS messages that repeat an unchanged figure (they are idempotent).
PROGRESS_REPEAT = 5


@dataclass
class LeaseStats:
    """Counters of the leases, for /federation."""

    leases_sent: int = 0
    leases_confirmed: int = 0
    leases_refused: int = 0
    leases_expired: int = 0
    progress_sent: int = 0
    progress_received: int = 0
    frames_out_of_turn: int = 0


def lease_order_id(trade_id: str) -> str:
    """The id of the order a host plans for a trade (a plain id, at most 64 characters)."""
    plain = f"lease-{trade_id}"
    if len(plain) <= 64:
        return plain
    return f"lease-{hashlib.sha256(trade_id.encode()).hexdigest()[:24]}"


def day_zero(now: datetime) -> datetime:
    """The start of the UTC day of `now`: the origin of every region's day windows."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def day_start(day: date) -> datetime:
    """The start of a UTC day, as `day_zero` gives it."""
    return datetime.combine(day, time(), tzinfo=UTC)


def trade_day(trade: Trade, now: datetime) -> datetime:
    """The start of the day a trade's window counts from: the day its session or request fixed, so
    that a window means the same due date after midnight as before (`now`'s day when none was)."""
    return day_zero(now) if trade.day is None else day_start(trade.day)


class Leases:
    """One planner's side of its committed trades (see the module docstring)."""

    def __init__(
        self,
        region: str,
        core: PlannerCore,
        book: TradeBook,
        send: Send,
        lease_wait_s: float,
        cell_deg: float = CELL_DEG,
    ) -> None:
        self.region = region
        self.core = core
        self.book = book
        self.send = send
        self.lease_wait_s = lease_wait_s
        self.cell_deg = cell_deg
        self.stats = LeaseStats()
        self._abroad: dict[str, tuple[int, int]] = {}
        self._ticks = 0
        self._overdue: set[str] = set()
        self._reindex()

    # --- the origin's orders ------------------------------------------------------------------

    def abroad(self, order_id: str) -> tuple[int, int]:
        """(units of an own order that live trades cover, units of those made abroad)."""
        return self._abroad.get(order_id, (0, 0))

    def abroad_view(self, order_id: str) -> dict[str, Any]:
        """What an order's page shows of the units made for it in other regions."""
        covered, made = self.abroad(order_id)
        trades = [
            {"region": r.trade.host, "units": r.covers[order_id], "state": r.state}
            for r in self.book.rows.values()
            if r.trade.origin == self.region and order_id in r.covers and r.state != "void"
        ]
        return {"units_covered_abroad": covered, "units_made_abroad": made, "abroad": trades}

    def _reindex(self) -> None:
        """Recompute each own order's covered and made-abroad units from the live trades."""
        found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for row in self.book.rows.values():
            if row.trade.origin != self.region or row.state == "void":
                continue
            done = row.units_done
            for order_id, units in row.covers.items():  # earliest due first: made units go there first
                found[order_id][0] += units
                made = min(units, done)
                found[order_id][1] += made
                done -= made
        self._abroad = {order_id: (c, m) for order_id, (c, m) in found.items()}

    def cover(
        self, trade: Trade, now: datetime, places: dict[datetime, OrdersByPlace] | None = None
    ) -> dict[str, int]:
        """Units of own orders a trade received takes: its design, cell, window and priority, earliest
        due first, only units no lab of this region is making and no other trade covers.

        `places` keeps the open orders by place (`orders_by_place`) across the trades of one commit:
        a round of a hundred trades over thousands of orders would otherwise read every order per
        trade, seconds on the event loop at 2,500 orders (the planner's peers then took it for lost)."""
        start = trade_day(trade, now)
        places = {} if places is None else places
        if start not in places:
            places[start] = self.orders_by_place(start)
        pool = []
        for order in places[start].get((trade.design, trade.priority, trade.cell, trade.window), []):
            free = order.quantity - self.core.units_committed(order.id)
            if free > 0:
                pool.append((order.due_at, order.id, free))
        covers: dict[str, int] = {}
        left = trade.units
        for _, order_id, free in sorted(pool):
            if left <= 0:
                break
            take = min(free, left)
            covers[order_id] = take
            left -= take
        return covers

    def orders_by_place(self, start: datetime) -> OrdersByPlace:
        """The open own orders by (design, priority, cell, window counted from `start`)."""
        found: OrdersByPlace = defaultdict(list)
        for order in self.core.orders.values():
            if order.state in {"done", "cancelled"}:
                continue
            cell = cell_of(order.delivery, self.cell_deg)
            found[order.design, order.priority, cell, window_of(start, order.due_at)].append(order)
        return found

    # --- commit ---------------------------------------------------------------------------------

    async def commit(self, trades: list[Trade], now: datetime) -> list[TradeRow]:
        """Write a round's committed trades of this region (pending); reserve the origin's cover, send
        the host's LEASEs. Idempotent by trade id."""
        mine = [t for t in trades if self.region in (t.host, t.origin)]
        covers = {}
        places: dict[datetime, OrdersByPlace] = {}
        for trade in mine:
            if trade.origin == self.region and trade.trade_id not in self.book.rows:
                covers[trade.trade_id] = self.cover(trade, now, places)
                self._abroad_add(covers[trade.trade_id])
        new = self.book.commit(mine, covers, now.isoformat())
        self._reindex()
        if any(r.trade.origin == self.region for r in new):
            self.core.on_change("federation")
        for row in new:
            if row.trade.host == self.region:
                await self.send_lease(row, now)
        return new

    def _abroad_add(self, covers: dict[str, int]) -> None:
        """Count a new cover at once, so the next trade of the same round does not take it again."""
        for order_id, units in covers.items():
            covered, made = self._abroad.get(order_id, (0, 0))
            self._abroad[order_id] = (covered + units, made)

    async def send_lease(self, row: TradeRow, now: datetime) -> None:
        """Send the origin a LEASE of a trade this planner hosts (again: it is idempotent)."""
        expires = now + timedelta(seconds=self.lease_wait_s)
        body = {"trade_id": row.trade.trade_id, "units": row.units, "expires_at": expires.isoformat()}
        await self.send(row.trade.origin, "LEASE", body)
        self.stats.leases_sent += 1

    # --- messages -------------------------------------------------------------------------------

    async def on_lease(self, sender: str, body: LeaseBody, now: datetime) -> None:
        """The origin's answer to a host's LEASE: the units it takes (0: none)."""
        row = self.book.rows.get(body.trade_id)
        units = 0
        if row is not None and row.trade.origin == self.region and row.trade.host == sender:
            if row.state == "leased":
                units = row.units
            elif row.state == "pending":
                still = self._still_needed(row.covers)
                units = min(body.units, sum(still.values()))
                if units > 0:
                    covers = _trim(still, units)
                    self.book.update(body.trade_id, state="leased", units=units, covers=covers)
                    self.stats.leases_confirmed += 1
                else:
                    self.book.update(body.trade_id, state="void", covers={})
                    self.stats.leases_refused += 1
                self._reindex()
                self.core.on_change("federation")
        elif row is None:
            self.stats.leases_refused += 1
        await self.send(sender, "CONFIRM", {"trade_id": body.trade_id, "units": units})

    def _still_needed(self, covers: dict[str, int]) -> dict[str, int]:
        """The part of a pending trade's cover its orders still need: a plan solved before the trade
        was written may have given some of those units to labs of this region since (an emergency's
        full re-plan runs while its fast path asks the peers); those the trade no longer takes."""
        out = {}
        for order_id, units in covers.items():
            order = self.core.orders.get(order_id)
            if order is None or order.state in {"done", "cancelled"}:
                continue
            keep = units - max(0, self.core.units_committed(order_id) - order.quantity)
            if keep > 0:
                out[order_id] = keep
        return out

    def on_confirm(self, sender: str, body: ConfirmBody, now: datetime) -> None:
        """The host learns the units its origin takes: the trade is leased (its order placed) or void."""
        row = self.book.rows.get(body.trade_id)
        if row is None or row.trade.host != self.region or row.trade.origin != sender:
            self.stats.frames_out_of_turn += 1
            log.warning("CONFIRM from %r for a trade %r it is not the origin of", sender, body.trade_id)
            return
        if row.state == "pending":
            if body.units == 0:
                self.book.update(body.trade_id, state="void")
                log.info("trade %s void: %s took none of it", body.trade_id, sender)
                return
            row = self.book.update(body.trade_id, state="leased", units=min(body.units, row.units))
        if row.state == "leased":
            self._place(row, now)
        elif body.units > 0:  # void here, taken there: the origin's word stands, as in SNAPSHOT
            log.warning("trade %s: void here but %s holds %d units of it", body.trade_id, sender, body.units)
            self._place(self.book.update(body.trade_id, state="leased", units=body.units), now)

    def _place(self, row: TradeRow, now: datetime) -> None:
        """The host plans a leased trade as an order of its own, once."""
        t = row.trade
        due = max(now + timedelta(hours=LEASE_MIN_HOURS), trade_day(t, now) + timedelta(days=t.window))
        order = Order(
            id=lease_order_id(t.trade_id),
            design=t.design,
            quantity=row.units,
            due_at=due,
            delivery=cell_centre(t.cell, self.cell_deg),
            priority=t.priority,  # type: ignore[arg-type]
            created_at=now,
        )
        self.core.place_external(order)

    def on_progress(self, sender: str, body: ProgressBody) -> None:
        """Units of a trade made abroad: counted for the origin's orders it covers."""
        row = self.book.rows.get(body.trade_id)
        if (
            row is None
            or row.trade.origin != self.region
            or row.trade.host != sender
            or row.state != "leased"
        ):
            self.stats.frames_out_of_turn += 1
            return
        self.stats.progress_received += 1
        done = min(body.units_done, row.units)
        if done <= row.units_done:
            return
        self.book.update(body.trade_id, units_done=done)
        self._reindex()
        self.core.refresh_orders(list(row.covers))
        log.info("trade %s: %d of %d units made in %s", body.trade_id, done, row.units, sender)

    def on_snapshot(self, sender: str, body: SnapshotBody, now: datetime) -> None:
        """Apply a returning origin's word on the trades this planner hosts for it and holds pending."""
        for listed in body.trades:
            row = self.book.rows.get(listed.trade_id)
            if row is None or row.trade.host != self.region or row.trade.origin != sender:
                continue
            if row.state == "pending" and listed.state == "void":
                self.book.update(listed.trade_id, state="void")
            elif row.state == "pending" and listed.state == "leased":
                self._place(self.book.update(listed.trade_id, state="leased", units=listed.units), now)

    def trades_with(self, region: str) -> list[dict[str, Any]]:
        """The trades with a peer, as SNAPSHOT lists them."""
        return [r.to_json() for r in self.book.with_peer(region)]

    # --- every heartbeat ------------------------------------------------------------------------

    async def tick(self, now: datetime, live: set[str]) -> None:
        """Expire the leases that never came, ask again for unanswered ones, report progress."""
        self._ticks += 1
        expired = False
        self._overdue &= {i for i, r in self.book.rows.items() if r.state == "pending"}
        for row in list(self.book.rows.values()):
            t = row.trade
            if row.state == "pending" and t.origin == self.region:
                committed = datetime.fromisoformat(row.committed_at)
                if (now - committed).total_seconds() <= self.lease_wait_s:
                    continue
                if t.trade_id not in self._overdue:
                    # Overdue now; expired only at the next tick, if no LEASE came in between: a
                    # loop held up for a while reads what its peers sent before it judges them.
                    self._overdue.add(t.trade_id)
                    continue
                self._overdue.discard(t.trade_id)
                self.book.update(t.trade_id, state="void", covers={})
                self.stats.leases_expired += 1
                expired = True
                log.warning(
                    "trade %s: no lease from %s in %.0f s; its units return to demand",
                    t.trade_id,
                    t.host,
                    self.lease_wait_s,
                )
            elif row.state == "pending" and t.host == self.region and t.origin in live:
                await self.send_lease(row, now)
            elif row.state == "leased" and t.host == self.region:
                self._place(row, now)  # idempotent: a host killed between CONFIRM and placing
                made = min(row.units, self.core.units_made(lease_order_id(t.trade_id)))
                if made > row.units_done or (made and self._ticks % PROGRESS_REPEAT == 0):
                    if made > row.units_done:
                        self.book.update(t.trade_id, units_done=made)
                    if t.origin in live:
                        await self.send(t.origin, "PROGRESS", {"trade_id": t.trade_id, "units_done": made})
                        self.stats.progress_sent += 1
        if expired:
            self._reindex()
            self.core.on_change("federation")


def _trim(covers: dict[str, int], units: int) -> dict[str, int]:
    """The first `units` of a cover (earliest due first)."""
    out = {}
    for order_id, taken in covers.items():
        if units <= 0:
            break
        out[order_id] = min(taken, units)
        units -= out[order_id]
    return out
