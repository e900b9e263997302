"""The ledger is durable (WAL + synchronous=FULL) and its projections survive a reopen."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from planner.store import Ledger
from protocol.model import Location, Order, Plan


def _order(now: datetime) -> Order:
    return Order(
        id="o-1",
        design="face-shield",
        quantity=5,
        due_at=now + timedelta(days=2),
        delivery=Location(lat=48.85, lon=2.35, place="Paris"),
        priority="urgent",
        created_at=now,
    )


def test_ledger_is_opened_with_durable_settings(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    assert ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    ledger.close()


def test_order_and_event_survive_reopen(tmp_path: Path) -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    ledger = Ledger(tmp_path / "l.db")
    with ledger.transaction() as db:
        Ledger.put_order(db, _order(now))
        seq = Ledger.append(db, now, "order-o-1", "order.created", {"id": "o-1"})
    ledger.close()
    reopened = Ledger(tmp_path / "l.db")
    assert [o.id for o in reopened.load_orders()] == ["o-1"]
    assert reopened.load_orders()[0].priority == "urgent"
    events = reopened.events_after(0)
    assert [(e.seq, e.kind, e.data) for e in events] == [(seq, "order.created", {"id": "o-1"})]
    assert reopened.events_after(seq) == []


def test_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    ledger = Ledger(tmp_path / "l.db")
    try:
        with ledger.transaction() as db:
            Ledger.put_order(db, _order(now))
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert ledger.load_orders() == []
    assert ledger.last_event_seq() == 0


def test_epoch_increases_per_boot(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    assert ledger.next_epoch() == 1
    assert ledger.next_epoch() == 2
    ledger.close()
    assert Ledger(tmp_path / "l.db").next_epoch() == 3


def test_plan_totals_say_the_summed_bound_covers_every_plan_only_when_each_did(tmp_path: Path) -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    ledger = Ledger(tmp_path / "l.db")
    with ledger.transaction() as db:
        Ledger.put_plan(
            db,
            Plan(
                version=1, objective=10.0, bound=9.0, bound_scope="all", status="FEASIBLE", solve_seconds=0.1
            ),
            now,
        )
    assert ledger.plan_totals() == {
        "plans": 1,
        "objective": 10.0,
        "bound": 9.0,
        "all_optimal": False,
        "bound_scope": "all",
    }
    with ledger.transaction() as db:  # an emergency insertion: its bound covers its own model only
        Ledger.put_plan(
            db,
            Plan(
                version=2, objective=5.0, bound=5.0, bound_scope="model", status="OPTIMAL", solve_seconds=0.01
            ),
            now,
        )
    totals = ledger.plan_totals()
    assert totals["bound"] == 14.0 and totals["bound_scope"] == "model"


def test_a_commit_without_fsync_is_committed_and_the_next_one_is_durable_again(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    statements: list[str] = []
    ledger._db.set_trace_callback(statements.append)  # what SQLite is asked to run, in order
    now = datetime.now(UTC)
    with ledger.transaction(durable=False) as db:
        Ledger.append(db, now, "lab-a", "lab.capacity", {"backlog": 1})
    assert statements[:2] == ["PRAGMA synchronous=NORMAL", "BEGIN IMMEDIATE"]  # no fsync at this commit
    assert statements[-2:] == ["COMMIT", "PRAGMA synchronous=FULL"]
    with sqlite3.connect(tmp_path / "l.db") as reader:  # committed: another connection reads it
        assert reader.execute("SELECT COUNT(*) FROM events WHERE kind = 'lab.capacity'").fetchone()[0] == 1
    statements.clear()
    with ledger.transaction() as db:
        Ledger.append(db, now, "lab-a", "lab.hello", {})
    assert statements[0] == "PRAGMA synchronous=FULL" and "COMMIT" in statements
    ledger.close()
