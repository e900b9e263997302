"""The ledger is written by a thread of its own: the event loop answers while a commit waits.

The slow commit is real: another connection holds the SQLite file's write lock (`BEGIN IMMEDIATE`),
as a second writer would, so the ledger's commit waits for it. No timing: /health is answered while
the order's POST is still waiting for its commit, and the POST gets its 201 only once the lock is
let go. Were the commit made on the event loop, /health would wait behind it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from planner.app import PlannerSettings, create_app
from planner.ledger_writer import LedgerFailed
from planner.store import AssignmentRow, Ledger
from protocol.model import CostTerms, Location, Order

ORDER = {
    "design": "face-shield",
    "quantity": 5,
    "priority": "routine",
    "due_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
    "delivery": {"lat": 48.85, "lon": 2.35},
}


def _until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Wait for `condition`, checking it every 10 ms; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        pause.wait(0.01)


def _lock(path: Path) -> sqlite3.Connection:
    """Another connection holding the file's write lock: every commit waits until it lets go."""
    blocker = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


def test_health_answers_while_an_order_waits_for_its_durable_commit(settings: PlannerSettings) -> None:
    with TestClient(create_app(settings)) as client:
        planner = client.app.state.planner  # type: ignore[attr-defined]
        listener = planner.core.bus.subscribe()
        blocker = _lock(settings.db_path)
        answers: list[Any] = []
        posting = threading.Thread(target=lambda: answers.append(client.post("/orders", json=ORDER)))
        posting.start()
        _until(lambda: len(planner.core.orders) == 1, "the order to be taken in")
        health = client.get("/health")
        waiting = not answers  # the POST has no answer yet: its commit waits for the lock
        heard_before_commit = listener.qsize()
        blocker.execute("COMMIT")
        blocker.close()
        posting.join(30.0)
        heard_after_commit = listener.qsize()
    assert health.status_code == 200
    assert health.json()["ledger_pending"] >= 1, "no commit was waiting when /health answered"
    assert waiting, "the POST was answered before its commit: /health waited for it, or the 201 did not"
    assert heard_before_commit == 0, "an event stream heard of the order before it was in the file"
    assert answers and answers[0].status_code == 201
    assert heard_after_commit >= 1
    assert [o.id for o in Ledger(settings.db_path).load_orders()] == [answers[0].json()["id"]]


def test_a_retried_post_waits_for_the_first_orders_commit_and_orders_once(settings: PlannerSettings) -> None:
    """The retry finds the key of an order still on its way to the file, and answers once it is there."""
    with TestClient(create_app(settings)) as client:
        planner = client.app.state.planner  # type: ignore[attr-defined]
        blocker = _lock(settings.db_path)
        answers: list[Any] = []
        headers = {"Idempotency-Key": "retry-1"}
        posts = [
            threading.Thread(
                target=lambda: answers.append(client.post("/orders", json=ORDER, headers=headers))
            )
            for _ in range(2)
        ]
        posts[0].start()
        _until(lambda: len(planner.core.orders) == 1, "the first order to be taken in")
        posts[1].start()
        _until(lambda: planner.overload.in_flight == 2, "the retry to reach the planner")
        waiting = not answers
        blocker.execute("COMMIT")
        blocker.close()
        for post in posts:
            post.join(30.0)
    assert waiting
    assert sorted(a.status_code for a in answers) == [200, 201]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert len(Ledger(settings.db_path).load_orders()) == 1


def _order(order_id: str) -> Order:
    now = datetime.now(UTC)
    return Order(
        id=order_id,
        design="face-shield",
        quantity=1,
        due_at=now + timedelta(days=2),
        delivery=Location(lat=48.85, lon=2.35),
        created_at=now,
    )


def test_transactions_made_while_a_commit_waits_go_in_together(tmp_path: Path) -> None:
    """Group commit: fifty orders made while the file is locked take one or two commits, not fifty."""

    async def scenario() -> tuple[int, int, list[int]]:
        ledger = Ledger(tmp_path / "l.db")
        writer = ledger.start_writer(asyncio.get_running_loop())
        blocker = _lock(tmp_path / "l.db")
        seqs = []
        for i in range(50):
            with ledger.transaction() as db:
                Ledger.put_order(db, _order(f"o-{i}"))
                seqs.append(Ledger.append(db, datetime.now(UTC), f"order-o-{i}", "order.created", {}))
        assert writer.pending == 50
        blocker.execute("COMMIT")
        blocker.close()
        await ledger.committed()
        groups = writer.groups
        await asyncio.to_thread(ledger.close)
        return groups, writer.largest_group, seqs

    groups, largest, seqs = asyncio.run(scenario())
    assert groups <= 2 and largest >= 25  # the first may have been taken alone, before the rest came
    reopened = Ledger(tmp_path / "l.db")
    assert len(reopened.load_orders()) == 50
    assert [e.seq for e in reopened.events_after(0)] == seqs == list(range(1, 51))


def test_a_failed_write_fails_every_wait_and_runs_no_callback(tmp_path: Path) -> None:
    """An assignment of an order the file does not hold breaks a foreign key: the planner is told."""

    async def scenario() -> tuple[bool, str]:
        ledger = Ledger(tmp_path / "l.db")
        ledger.start_writer(asyncio.get_running_loop())
        ran: list[str] = []
        with ledger.transaction() as db:
            row = AssignmentRow(
                "o-x-a1",
                "o-x",
                "lab-a",
                1,
                "assigned",
                0,
                1,
                CostTerms(km=1.0, transport=1.0),
                None,
                None,
                "",
            )
            Ledger.put_assignment(db, row)
        ledger.after_commit(lambda: ran.append("sent"))
        with pytest.raises(LedgerFailed, match="FOREIGN KEY"):
            await ledger.committed()
        with ledger.transaction() as db:  # later writes are refused too: memory is ahead of the file
            Ledger.put_order(db, _order("o-y"))
        with pytest.raises(LedgerFailed):
            await ledger.committed()
        await asyncio.to_thread(ledger.close)
        return bool(ran), str(ledger.writer.failed if ledger.writer else "")

    ran, failed = asyncio.run(scenario())
    assert not ran
    assert "FOREIGN KEY" in failed
    assert Ledger(tmp_path / "l.db").load_orders() == []


def test_an_idempotency_key_on_its_way_to_the_file_is_found(tmp_path: Path) -> None:
    async def scenario() -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        ledger = Ledger(tmp_path / "l.db")
        ledger.start_writer(asyncio.get_running_loop())
        blocker = _lock(tmp_path / "l.db")
        with ledger.transaction() as db:
            Ledger.put_order(db, _order("o-1"))
            Ledger.put_idempotency(db, "key-1", "fp", "o-1", datetime.now(UTC))
        before = ledger.find_idempotency("key-1")
        blocker.execute("COMMIT")
        blocker.close()
        await ledger.committed()
        after = ledger.find_idempotency("key-1")
        assert not ledger._pending_keys  # read from the file now
        await asyncio.to_thread(ledger.close)
        return before, after

    before, after = asyncio.run(scenario())
    assert before == after == ("fp", "o-1")


def test_idempotency_keys_are_found_after_a_restart_and_a_failed_write_leaves_none(tmp_path: Path) -> None:
    async def scenario() -> None:
        ledger = Ledger(tmp_path / "l.db")
        ledger.start_writer(asyncio.get_running_loop())
        with ledger.transaction() as db:
            Ledger.put_order(db, _order("o-1"))
            Ledger.put_idempotency(db, "key-1", "fp", "o-1", datetime.now(UTC))
        await ledger.committed()
        with ledger.transaction() as db:  # an idempotency row naming no order: the write fails
            Ledger.put_idempotency(db, "key-2", "fp2", "o-missing", datetime.now(UTC))
        with pytest.raises(LedgerFailed, match="FOREIGN KEY"):
            await ledger.committed()
        await asyncio.to_thread(ledger.close)

    asyncio.run(scenario())
    restarted = Ledger(tmp_path / "l.db")
    assert restarted.find_idempotency("key-1") == ("fp", "o-1")
    assert restarted.find_idempotency("key-2") is None
    restarted.close()
