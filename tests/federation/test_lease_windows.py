"""A trade's day window keeps its meaning past midnight, and an overdue lease is judged a beat late.

A session's windows count days from the day the coordinator fixed when it opened the session. A
round that commits after midnight must still cover the orders it bid for, and the host must still
place the due date the origin asked for: read from the new day, window 2 would mean a day later, and
the origin's orders would match none of it (every trade void, all its units made at home).
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from planner.fed_leases import Leases, lease_order_id
from planner.trade_book import TradeBook
from protocol.model import Location, Order
from protocol.peers import LeaseBody
from solver.federation.cells import cell_of
from solver.federation.market import Trade

MILAN = Location(lat=45.4642, lon=9.1900)
BID_DAY = date(2026, 5, 1)  # the session opened at 23:50 on May 1
AFTER_MIDNIGHT = datetime(2026, 5, 2, 0, 10, tzinfo=UTC)  # and its round committed at 00:10 on May 2


def _core(orders: list[Order], now: datetime) -> SimpleNamespace:
    placed: dict[str, Order] = {}
    return SimpleNamespace(
        orders={o.id: o for o in orders},
        clock=lambda: now,
        units_committed=lambda order_id: 0,
        units_made=lambda order_id: 0,
        on_change=lambda reason: None,
        place_external=lambda order: placed.setdefault(order.id, order),
        placed=placed,
    )


def _order(order_id: str, due: datetime, quantity: int) -> Order:
    return Order(id=order_id, design="face-shield", quantity=quantity, due_at=due, delivery=MILAN,
                 created_at=due - timedelta(days=3))  # fmt: skip


def _trade(host: str, origin: str, units: int, day: date | None) -> Trade:
    return Trade(trade_id="t.alpha.r2.b0", host=host, origin=origin, design="face-shield", window=2,
                 cell=cell_of(MILAN), units=units, price=10.0, round=2, day=day)  # fmt: skip


class _Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def __call__(self, to: str, kind: str, body: dict[str, Any]) -> None:
        self.sent.append((to, kind, body))


def test_a_round_committed_after_midnight_covers_the_orders_its_session_bid_for(tmp_path: Path) -> None:
    due = datetime(2026, 5, 3, 14, tzinfo=UTC)  # window 2 from May 1, window 1 from May 2
    core = _core([_order("o-0001", due, 12)], AFTER_MIDNIGHT)
    book = TradeBook(tmp_path / "origin.db")
    try:
        leases = Leases("alpha", core, book, _Outbox(), lease_wait_s=60.0)  # type: ignore[arg-type]
        [row] = asyncio.run(leases.commit([_trade("beta", "alpha", 5, BID_DAY)], AFTER_MIDNIGHT))
        assert row.covers == {"o-0001": 5}
        assert leases.abroad("o-0001") == (5, 0)
        # Read from the day it is committed on, the same window would match none of the orders.
        assert leases.cover(_trade("beta", "alpha", 5, None), AFTER_MIDNIGHT) == {}
    finally:
        book.close()
    reopened = TradeBook(tmp_path / "origin.db")  # the day is durable, as the trade is
    try:
        assert reopened.rows["t.alpha.r2.b0"].trade.day == BID_DAY
    finally:
        reopened.close()


def test_the_host_places_the_due_date_the_origin_bid_for_after_midnight(tmp_path: Path) -> None:
    core = _core([], AFTER_MIDNIGHT)
    book = TradeBook(tmp_path / "host.db")
    outbox = _Outbox()
    try:
        leases = Leases("beta", core, book, outbox, lease_wait_s=60.0)  # type: ignore[arg-type]
        asyncio.run(leases.commit([_trade("beta", "alpha", 5, BID_DAY)], AFTER_MIDNIGHT))
        assert [kind for _, kind, _ in outbox.sent] == ["LEASE"]
        leases.on_confirm("alpha", SimpleNamespace(trade_id="t.alpha.r2.b0", units=5), AFTER_MIDNIGHT)  # type: ignore[arg-type]
        placed = core.placed[lease_order_id("t.alpha.r2.b0")]
        assert placed.due_at == datetime(2026, 5, 3, tzinfo=UTC)
        assert placed.quantity == 5
    finally:
        book.close()


def test_a_ledger_from_before_trades_kept_their_day_opens_and_reads_them_as_of_today(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    book = TradeBook(path)
    asyncio.run(
        Leases("beta", _core([], AFTER_MIDNIGHT), book, _Outbox(), 60.0).commit(  # type: ignore[arg-type]
            [_trade("beta", "alpha", 5, None)], AFTER_MIDNIGHT
        )
    )
    book.close()
    with sqlite3.connect(path) as db:  # the table as it was written before the column existed
        db.execute("ALTER TABLE fed_trades DROP COLUMN day")
    reopened = TradeBook(path)
    try:
        assert reopened.rows["t.alpha.r2.b0"].trade.day is None
        assert reopened.rows["t.alpha.r2.b0"].units == 5
    finally:
        reopened.close()


def test_an_overdue_lease_expires_a_heartbeat_later_unless_the_lease_comes_in_between(tmp_path: Path) -> None:
    due = datetime(2026, 5, 3, 14, tzinfo=UTC)
    committed = datetime(2026, 5, 1, 12, tzinfo=UTC)
    core = _core([_order("o-0001", due, 12), _order("o-0002", due, 12)], committed)
    book = TradeBook(tmp_path / "origin.db")
    try:
        leases = Leases("alpha", core, book, _Outbox(), lease_wait_s=1.5)  # type: ignore[arg-type]
        late = _trade("beta", "alpha", 12, BID_DAY)
        never = Trade(**(late.body() | {"trade_id": "t.alpha.r2.b1", "day": BID_DAY}))
        asyncio.run(leases.commit([late, never], committed))
        overdue = committed + timedelta(seconds=2)
        asyncio.run(leases.tick(overdue, {"beta"}))  # the loop was held up: both overdue, none expired
        assert {r.state for r in book.rows.values()} == {"pending"}
        lease = LeaseBody(trade_id=late.trade_id, units=12, expires_at=overdue + timedelta(minutes=1))
        asyncio.run(leases.on_lease("beta", lease, overdue))  # read before the next beat
        asyncio.run(leases.tick(overdue + timedelta(seconds=0.5), {"beta"}))
        assert book.rows[late.trade_id].state == "leased"
        assert book.rows[never.trade_id].state == "void"
        assert leases.stats.leases_expired == 1
    finally:
        book.close()
