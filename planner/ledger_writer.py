"""The ledger's writes, applied by one thread of their own so that no commit waits on the event loop.

The planner's state changes run on its event loop, each inside `Ledger.transaction()`: the SQL of
one change is recorded as a `Batch` there (nothing touches the file), and handed over whole when
the change is complete. One `LedgerWriter` thread owns the SQLite connection that writes: it takes
every batch waiting, applies them in the order they were made inside one SQLite transaction (a
savepoint each, so one bad batch cannot undo the others), and commits once. The commit fsyncs
(`synchronous=FULL`) when any batch in the group asked to be durable, so a busy planner pays one
fsync for many orders (group commit) instead of one each, and the loop pays none.

What leaves the planner waits for the commit of what it stands for: the HTTP API answers `201` for
an order only once `committed()` says its batch is on disk; ASSIGN goes to a lab, and a DONE is
acknowledged, only after theirs (`after_commit`); event-stream listeners hear of an event after it
is in the file (`planner.committed_bus`). A planner killed with -9 loses only batches nobody was
told about.

A write that fails (a full disk, a file locked past `LOCK_TIMEOUT_S`) leaves the planner's memory
ahead of its file: the writer stops writing from then on, every wait raises `LedgerFailed`, and the
HTTP API answers 503. Restarting the planner on its ledger rebuilds its memory from what is on disk,
and the labs repeat what they reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
#: Seconds a write waits for another connection's lock on the file (a token issued by the command
#: line, say) before it fails.
LOCK_TIMEOUT_S = 30.0
#: The most batches applied in one SQLite transaction (one fsync).
GROUP_MAX = 2000


class LedgerFailed(RuntimeError):
    """A ledger write failed: the planner's memory is ahead of its file until it restarts."""


@dataclass
class Batch:
    """The SQL statements of one ledger transaction, recorded on the loop, applied by the writer."""

    durable: bool
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    #: Idempotency keys this batch writes: (key, fingerprint, order id), see `Ledger.find_idempotency`.
    keys: list[tuple[str, str, str]] = field(default_factory=list)
    #: Event sequence numbers claimed by this batch (first, last), or None.
    seqs: tuple[int, int] | None = None
    #: Claims the next event sequence number (set by the ledger that made the batch).
    claim: Callable[[], int] = lambda: 0

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        """Record one statement, to be run when the batch is applied."""
        self.statements.append((sql, tuple(params)))

    def next_seq(self) -> int:
        """The event sequence number of the next event this batch appends."""
        seq = self.claim()
        self.seqs = (seq, seq) if self.seqs is None else (self.seqs[0], seq)
        return seq


def apply(db: sqlite3.Connection, batches: list[Batch]) -> list[BaseException | None]:
    """Apply `batches` in one SQLite transaction, each in a savepoint; one commit, with an fsync
    when any of them is durable. Returns, per batch, the error that undid it (None: applied).

    An error of the transaction itself (BEGIN or COMMIT: a locked or full file) is raised: then
    none of the batches is in the file.
    """
    durable = any(batch.durable for batch in batches)
    db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    errors: list[BaseException | None] = [None] * len(batches)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            for index, batch in enumerate(batches):
                db.execute("SAVEPOINT batch")
                try:
                    for sql, params in batch.statements:
                        db.execute(sql, params)
                except sqlite3.Error as exc:
                    db.execute("ROLLBACK TO batch")
                    errors[index] = exc
                db.execute("RELEASE batch")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    finally:
        db.execute("PRAGMA synchronous=FULL")
    return errors


#: What the writer tells the loop after a group: the last ticket applied, the batches in it, and
#: the error that stopped the writer (None when all went in).
Report = tuple[int, list[Batch], BaseException | None]


class LedgerWriter:
    """The writer thread and the loop's side of it: tickets, waits and callbacks (module docstring).

    `submit`, `committed`, `after_commit` and the counters belong to the event loop's thread; the
    connection belongs to the writer thread once `start` has returned.
    """

    def __init__(self, db: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._db = db
        self._loop = loop
        self._queue: queue.SimpleQueue[tuple[int, Batch] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        #: Ticket of the latest batch submitted, and of the latest one in the file.
        self.submitted = 0
        self.committed_ticket = 0
        self.failed: BaseException | None = None
        #: (ticket, callback, future): run or resolved once the ticket is committed.
        self._waiters: deque[tuple[int, Callable[[], None] | None, asyncio.Future[None] | None]] = deque()
        #: Groups committed, and the most batches in one (an operator reads them on /health).
        self.groups = 0
        self.largest_group = 0
        self._on_batches: list[Callable[[list[Batch]], None]] = []

    def start(self) -> None:
        """Start the thread; from here on only it uses the write connection."""
        self._thread.start()

    def stop(self) -> None:
        """Apply what was submitted, then end the thread (blocks: call it off the loop)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def on_batches(self, callback: Callable[[list[Batch]], None]) -> None:
        """Call `callback` on the loop with the batches of each group once they are in the file."""
        self._on_batches.append(callback)

    @property
    def pending(self) -> int:
        """Batches submitted and not yet in the file."""
        return self.submitted - self.committed_ticket

    def submit(self, batch: Batch) -> int:
        """Hand a finished batch to the writer; returns its ticket."""
        self.submitted += 1
        self._queue.put((self.submitted, batch))
        return self.submitted

    async def committed(self, ticket: int | None = None) -> None:
        """Return once batch `ticket` (default: every batch submitted so far) is in the file;
        durable if it, or any batch committed with it, asked to be. Raises `LedgerFailed`."""
        ticket = self.submitted if ticket is None else ticket
        if self.failed is not None:
            raise LedgerFailed(f"the ledger could not be written: {self.failed}")
        if ticket <= self.committed_ticket:
            return
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append((ticket, None, future))
        await future

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the loop once every batch submitted so far is in the file: at once
        when none waits, never when the ledger failed."""
        if self.failed is not None:
            return
        if self.submitted <= self.committed_ticket:
            callback()
            return
        self._waiters.append((self.submitted, callback, None))

    # --- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            group: list[tuple[int, Batch]] = []
            if first is None:
                stopping = True
            else:
                group.append(first)
            while len(group) < GROUP_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
            if not group:
                continue
            if self.failed is not None:
                continue  # memory is ahead of the file: write nothing more (module docstring)
            report = self._write(group)
            with contextlib.suppress(RuntimeError):  # a closed loop: the planner is gone, nobody waits
                self._loop.call_soon_threadsafe(self._committed, report)

    def _write(self, group: list[tuple[int, Batch]]) -> Report:
        batches = [batch for _, batch in group]
        error: BaseException | None = None
        try:
            errors = apply(self._db, batches)
            error = next((e for e in errors if e is not None), None)
        except BaseException as exc:  # the whole group is out of the file
            error = exc
        if error is not None:
            self.failed = error
            log.critical("ledger write failed (%s): nothing more is written until a restart", error)
        return group[-1][0], batches, error

    # --- back on the loop -------------------------------------------------------------------

    def _committed(self, report: Report) -> None:
        ticket, batches, error = report
        if error is not None:
            self._fail(error)
            return
        self.committed_ticket = ticket
        self.groups += 1
        self.largest_group = max(self.largest_group, len(batches))
        for callback in self._on_batches:
            callback(batches)
        while self._waiters and self._waiters[0][0] <= ticket:
            _, run, future = self._waiters.popleft()
            if future is not None and not future.done():
                future.set_result(None)
            if run is not None:
                try:
                    run()
                except Exception:  # one listener's bug must not stop the others
                    log.exception("a callback after a ledger commit failed")

    def _fail(self, error: BaseException) -> None:
        self.failed = error
        while self._waiters:
            _, _, future = self._waiters.popleft()
            if future is not None and not future.done():
                future.set_exception(LedgerFailed(f"the ledger could not be written: {error}"))
