"""The planner's ledger: an SQLite file, append-only events plus projections, durable on commit.

Every change is one transaction that appends an event and updates the projection it concerns, so
the tables never disagree with the event log. `journal_mode=WAL` with `synchronous=FULL` makes a
committed transaction survive power loss: an order is on disk before the API answers `201`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from planner.ledger_writer import LOCK_TIMEOUT_S, Batch, LedgerWriter, apply
from planner.rates import Rate
from planner.shipping import TransferRow
from protocol.model import CostTerms, Lab, Order, Plan, Transfer

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    stream  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id          TEXT PRIMARY KEY,
    record      TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS labs (
    id          TEXT PRIMARY KEY,
    record      TEXT NOT NULL,
    live        INTEGER NOT NULL,
    backlog     TEXT NOT NULL,
    stock       TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    id            TEXT PRIMARY KEY,
    order_id      TEXT NOT NULL REFERENCES orders(id),
    lab_id        TEXT NOT NULL,
    quantity      INTEGER NOT NULL,
    state         TEXT NOT NULL,
    units_done    INTEGER NOT NULL DEFAULT 0,
    plan_version  INTEGER NOT NULL,
    cost          TEXT NOT NULL,
    reason        TEXT,
    eta           TEXT,
    updated_at    TEXT NOT NULL,
    lease_until   TEXT
);
CREATE INDEX IF NOT EXISTS assignments_by_order ON assignments(order_id);
CREATE TABLE IF NOT EXISTS plans (
    version     INTEGER PRIMARY KEY,
    created_at  TEXT NOT NULL,
    record      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trails (
    design      TEXT NOT NULL,
    lab_id      TEXT NOT NULL,
    tau         REAL NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (design, lab_id)
);
CREATE INDEX IF NOT EXISTS events_by_stream ON events(stream, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    key          TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    order_id     TEXT NOT NULL REFERENCES orders(id),
    created_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rates (
    id          TEXT PRIMARY KEY,
    record      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS transfers (
    id            TEXT PRIMARY KEY,
    record        TEXT NOT NULL,
    plan_version  INTEGER NOT NULL,
    state         TEXT NOT NULL,
    reason        TEXT,
    updated_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
"""


#: Columns added to `assignments` after the first ledgers were written: (name, SQL type and default).
ADDED_COLUMNS = (
    ("lease_until", "TEXT"),
    ("arrive_by", "TEXT"),
    ("on_time_units", "INTEGER NOT NULL DEFAULT 0"),
    ("finished_at", "TEXT"),
    ("arrived_at", "TEXT"),
    ("late_cause", "TEXT"),
)
#: The assignment columns in the order `AssignmentRow` takes them.
ASSIGNMENT_COLUMNS = (
    "id, order_id, lab_id, quantity, state, units_done, plan_version, cost, reason, eta, updated_at, "
    "lease_until, arrive_by, on_time_units, finished_at, arrived_at, late_cause"
)


@dataclass
class AssignmentRow:
    """An allocation as a job at its lab: how many units, in which state, how far along."""

    id: str
    order_id: str
    lab_id: str
    quantity: int
    state: str
    units_done: int
    plan_version: int
    cost: CostTerms
    reason: str | None
    eta: str | None
    updated_at: str
    #: When the lease ends unless the lab renews it (ISO UTC); see PlannerCore.expire_leases.
    lease_until: str | None = None
    #: Plan against reality (planner.reality): when the plan said the units arrive at the latest, and
    #: how many of them it counted on time; then when the lab reported them done, when they arrive
    #: (done plus handling and the road), and why units planned on time arrived late, when known.
    arrive_by: str | None = None
    on_time_units: int = 0
    finished_at: str | None = None
    arrived_at: str | None = None
    late_cause: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as the HTTP API and the event stream show it."""
        return {
            "id": self.id,
            "order_id": self.order_id,
            "lab_id": self.lab_id,
            "quantity": self.quantity,
            "state": self.state,
            "units_done": self.units_done,
            "plan_version": self.plan_version,
            "cost": self.cost.model_dump(),
            "reason": self.reason,
            "eta": self.eta,
            "updated_at": self.updated_at,
            "lease_until": self.lease_until,
            "arrive_by": self.arrive_by,
            "on_time_units": self.on_time_units,
            "finished_at": self.finished_at,
            "arrived_at": self.arrived_at,
            "late_cause": self.late_cause,
        }


@dataclass
class StoredEvent:
    """One entry of the append-only log."""

    seq: int
    at: str
    stream: str
    kind: str
    data: dict[str, Any]


class Ledger:
    """One SQLite file opened with durable settings; one writer, many readers.

    Until `start_writer` is called (a command-line tool, a test) every transaction is applied in
    the calling thread when its block ends. A running planner calls `start_writer`: from then on
    transactions are applied by a thread of their own (planner.ledger_writer), the event loop never
    waits on the disk, and reads go through a second connection (WAL: readers never wait for the
    writer, and see what is committed).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()
        #: The connection reads use: the writing one until a writer thread takes that one over.
        self._read = self._db
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(assignments)")}
        for name, kind in ADDED_COLUMNS:  # a ledger written before these existed
            if name not in columns:
                self._db.execute(f"ALTER TABLE assignments ADD COLUMN {name} {kind}")
        self._writer: LedgerWriter | None = None
        #: The last event sequence number given out (events are numbered here, not by SQLite, so
        #: that a change knows its events' numbers before the writer has applied it).
        self._last_seq = self.last_event_seq()
        #: Idempotency keys written by batches not yet in the file: key -> (fingerprint, order id).
        self._pending_keys: dict[str, tuple[str, str]] = {}
        #: Every key the file holds, the same way: read once here, then kept as batches are written,
        #: so that a new key (nearly every order's) costs no read of the file on the event loop.
        #: Only this planner writes keys; the orders they name are all in its memory anyway.
        self._file_keys: dict[str, tuple[str, str]] = {
            row[0]: (row[1], row[2])
            for row in self._db.execute("SELECT key, fingerprint, order_id FROM idempotency")
        }

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=LOCK_TIMEOUT_S
        )
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def start_writer(self, loop: asyncio.AbstractEventLoop) -> LedgerWriter:
        """Apply transactions from now on in a writer thread that reports to `loop`; reads use a
        connection of their own. Returns the writer, whose waits the planner's answers await."""
        if self._writer is None:
            self._read = self._connect()
            self._writer = LedgerWriter(self._db, loop)
            writer = self._writer
            writer.on_batches(lambda batches: self._forget_keys(batches, written=writer.failed is None))
            self._writer.start()
        return self._writer

    @property
    def writer(self) -> LedgerWriter | None:
        """The writer thread's handle, once `start_writer` was called."""
        return self._writer

    async def committed(self) -> None:
        """Return once every transaction made so far is in the file (durable when it asked to be).

        At once without a writer thread (transactions are then applied before their block ends).
        Raises `planner.ledger_writer.LedgerFailed` when a write failed.
        """
        if self._writer is not None:
            await self._writer.committed()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once every transaction made so far is in the file (at once when it is)."""
        if self._writer is None:
            callback()
        else:
            self._writer.after_commit(callback)

    def close(self) -> None:
        """Write what was submitted, stop the writer thread, checkpoint and close the file."""
        if self._writer is not None:
            self._writer.stop()
            self._read.close()
        self._db.close()

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[Batch]:
        """All-or-nothing: the event and its projection change commit together.

        The block records its writes in a `Batch`; when it ends they are applied in one commit (an
        exception in the block discards them). Without a writer thread this happens before the block
        returns; with one, the writer applies it soon after, and `committed()` tells when.

        A `durable` commit is on disk when it is done (`synchronous=FULL`: one fsync). Reports a lab
        sends again after every WELCOME (its CAPACITY, STOCK, a job's PROGRESS; SPEC.md section 4)
        may commit with `durable=False`: no fsync of their own. Such a commit survives a crash of the
        process (it is in the file), and the next durable commit's fsync takes it to disk with
        everything before it; only a power cut in between can lose it, and the labs repeat it when
        they join the restarted planner.
        """
        batch = Batch(durable=durable, claim=self._claim_seq)
        try:
            yield batch
        except BaseException:
            if batch.seqs is not None and batch.seqs[1] == self._last_seq:
                self._last_seq = batch.seqs[0] - 1  # numbers nobody will see: given out again
            raise
        for key, fingerprint, order_id in batch.keys:
            self._pending_keys[key] = (fingerprint, order_id)
        if self._writer is not None:
            self._writer.submit(batch)
            return
        try:
            errors = apply(self._db, [batch])
        except BaseException:
            self._forget_keys([batch], written=False)
            raise
        self._forget_keys([batch], written=errors[0] is None)
        if errors[0] is not None:
            raise errors[0]

    def _claim_seq(self) -> int:
        self._last_seq += 1
        return self._last_seq

    def _forget_keys(self, batches: list[Batch], written: bool) -> None:
        """The keys of these batches are in the file now (`written`), or never will be: no longer
        pending; kept among the file's keys when written."""
        for batch in batches:
            for key, fingerprint, order_id in batch.keys:
                self._pending_keys.pop(key, None)
                if written:
                    self._file_keys[key] = (fingerprint, order_id)

    # --- events -----------------------------------------------------------------------------

    @staticmethod
    def append(db: Batch, at: datetime, stream: str, kind: str, data: dict[str, Any]) -> int:
        """Append one event inside an open transaction; returns its global sequence number."""
        seq = db.next_seq()
        db.execute(
            "INSERT INTO events (seq, at, stream, kind, data) VALUES (?, ?, ?, ?, ?)",
            (seq, at.isoformat(), stream, kind, json.dumps(data, separators=(",", ":"))),
        )
        return seq

    def events_after(self, seq: int, limit: int = 1000) -> list[StoredEvent]:
        """Events with a sequence number above `seq`, oldest first (for stream replay)."""
        rows = self._read.execute(
            "SELECT seq, at, stream, kind, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [StoredEvent(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def events_of(self, stream: str, limit: int = 200) -> list[StoredEvent]:
        """The latest events of one stream (such as a lab's trail history), oldest first."""
        rows = self._read.execute(
            "SELECT seq, at, stream, kind, data FROM events WHERE stream = ? ORDER BY seq DESC LIMIT ?",
            (stream, limit),
        ).fetchall()
        return [StoredEvent(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in reversed(rows)]

    def last_event_seq(self) -> int:
        """The highest sequence number written so far (0 for a new ledger)."""
        row = self._read.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(row[0])

    # --- meta -------------------------------------------------------------------------------

    def next_epoch(self) -> int:
        """Increment and return the boot epoch, durably (at boot, before a writer thread starts)."""
        if self._writer is not None:
            raise RuntimeError("the epoch is counted at boot, before the writer thread starts")
        with self.transaction() as db:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            epoch = int(row[0]) + 1 if row else 1
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('epoch', ?)", (str(epoch),))
        return epoch

    # --- projections: writes (inside a transaction) -----------------------------------------

    @staticmethod
    def put_order(db: Batch, order: Order) -> None:
        """Insert or update an order's projection."""
        db.execute(
            "INSERT INTO orders (id, record, state, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET record = excluded.record, state = excluded.state",
            (order.id, order.model_dump_json(), order.state, order.created_at.isoformat()),
        )

    @staticmethod
    def put_lab(
        db: Batch,
        lab: Lab,
        live: bool,
        backlog: dict[str, float],
        stock: dict[str, float],
        last_seen: datetime,
    ) -> None:
        """Insert or update a lab's projection."""
        db.execute(
            "INSERT INTO labs (id, record, live, backlog, stock, last_seen) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET record = excluded.record, live = excluded.live, "
            "backlog = excluded.backlog, stock = excluded.stock, last_seen = excluded.last_seen",
            (
                lab.id,
                lab.model_dump_json(),
                int(live),
                json.dumps(backlog),
                json.dumps(stock),
                last_seen.isoformat(),
            ),
        )

    @staticmethod
    def put_backlog(db: Batch, lab_id: str, backlog: dict[str, float], last_seen: datetime) -> None:
        """Update a known lab's machine backlog (and when it was last seen), nothing else of its row:
        a CAPACITY report costs no new copy of the lab's whole record."""
        db.execute(
            "UPDATE labs SET backlog = ?, last_seen = ? WHERE id = ?",
            (json.dumps(backlog), last_seen.isoformat(), lab_id),
        )

    @staticmethod
    def put_assignment(db: Batch, row: AssignmentRow) -> None:
        """Insert or update an assignment's projection."""
        db.execute(
            f"INSERT INTO assignments ({ASSIGNMENT_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET state = excluded.state, units_done = excluded.units_done, "
            "reason = excluded.reason, eta = excluded.eta, updated_at = excluded.updated_at, "
            "lease_until = excluded.lease_until, finished_at = excluded.finished_at, "
            "arrived_at = excluded.arrived_at, late_cause = excluded.late_cause",
            (
                row.id,
                row.order_id,
                row.lab_id,
                row.quantity,
                row.state,
                row.units_done,
                row.plan_version,
                row.cost.model_dump_json(),
                row.reason,
                row.eta,
                row.updated_at,
                row.lease_until,
                row.arrive_by,
                row.on_time_units,
                row.finished_at,
                row.arrived_at,
                row.late_cause,
            ),
        )

    @staticmethod
    def put_transfer(db: Batch, row: TransferRow) -> None:
        """Insert or update a transfer's projection (SPEC.md section 11)."""
        db.execute(
            "INSERT INTO transfers (id, record, plan_version, state, reason, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET state = excluded.state, "
            "reason = excluded.reason, updated_at = excluded.updated_at",
            (row.id, row.transfer.model_dump_json(), row.plan_version, row.state, row.reason, row.updated_at),
        )

    @staticmethod
    def put_rate(db: Batch, rate: Rate) -> None:
        """Insert or update a rate."""
        db.execute(
            "INSERT INTO rates (id, record, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET record = excluded.record",
            (rate.id, rate.model_dump_json(), rate.created_at.isoformat()),
        )

    @staticmethod
    def put_plan(db: Batch, plan: Plan, at: datetime) -> None:
        """Record a solved plan (the allocations it added and its statistics)."""
        db.execute(
            "INSERT OR REPLACE INTO plans (version, created_at, record) VALUES (?, ?, ?)",
            (plan.version, at.isoformat(), plan.model_dump_json()),
        )

    @staticmethod
    def put_trail(db: Batch, design: str, lab_id: str, tau: float, at: datetime) -> None:
        """Insert or update one trail's strength."""
        db.execute(
            "INSERT INTO trails (design, lab_id, tau, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(design, lab_id) DO UPDATE SET tau = excluded.tau, updated_at = excluded.updated_at",
            (design, lab_id, tau, at.isoformat()),
        )

    @staticmethod
    def put_idempotency(db: Batch, key: str, fingerprint: str, order_id: str, at: datetime) -> None:
        """Remember which order an Idempotency-Key created, in the order's own transaction."""
        db.keys.append((key, fingerprint, order_id))
        db.execute(
            "INSERT INTO idempotency (key, fingerprint, order_id, created_at) VALUES (?, ?, ?, ?)",
            (key, fingerprint, order_id, at.isoformat()),
        )

    # --- projections: reads (used at boot to rebuild the in-memory state) ------------------

    def find_idempotency(self, key: str) -> tuple[str, str] | None:
        """(fingerprint, order id) of the order an Idempotency-Key created, if any (written or
        still on its way to the file)."""
        if (pending := self._pending_keys.get(key)) is not None:
            return pending
        return self._file_keys.get(key)

    def load_trails(self) -> dict[tuple[str, str], tuple[float, datetime]]:
        """Every trail's strength by (design, lab id), as last set and when (it fades from then on)."""
        rows = self._read.execute("SELECT design, lab_id, tau, updated_at FROM trails").fetchall()
        return {(r[0], r[1]): (float(r[2]), datetime.fromisoformat(r[3])) for r in rows}

    def load_orders(self) -> list[Order]:
        """Every order, oldest first."""
        rows = self._read.execute("SELECT record FROM orders ORDER BY created_at, id").fetchall()
        return [Order.model_validate_json(r[0]) for r in rows]

    def load_rates(self) -> list[Rate]:
        """Every rate, oldest first."""
        rows = self._read.execute("SELECT record FROM rates ORDER BY created_at, id").fetchall()
        return [Rate.model_validate_json(r[0]) for r in rows]

    def load_labs(self) -> list[tuple[Lab, bool, dict[str, float], dict[str, float]]]:
        """Every lab ever seen, with its last known backlog and stock."""
        rows = self._read.execute("SELECT record, live, backlog, stock FROM labs ORDER BY id").fetchall()
        return [(Lab.model_validate_json(r[0]), bool(r[1]), json.loads(r[2]), json.loads(r[3])) for r in rows]

    def load_assignments(self) -> list[AssignmentRow]:
        """Every assignment, in creation order."""
        rows = self._read.execute(f"SELECT {ASSIGNMENT_COLUMNS} FROM assignments ORDER BY rowid").fetchall()
        return [AssignmentRow(*r[:7], CostTerms.model_validate_json(r[7]), *r[8:]) for r in rows]

    def load_transfers(self) -> list[TransferRow]:
        """Every transfer, in creation order."""
        rows = self._read.execute(
            "SELECT id, record, plan_version, state, reason, updated_at FROM transfers ORDER BY rowid"
        ).fetchall()
        return [
            TransferRow(r[0], Transfer.model_validate_json(r[1]), int(r[2]), r[3], r[4], r[5]) for r in rows
        ]

    def plan_totals(self) -> dict[str, float | int | bool | str]:
        """Sums over every committed plan: each plan places only units not placed before, so the
        sums are what the standing allocations cost and the bounds proved for each step. The summed
        bound covers every valid plan ("all") only when each plan's did; else "model"."""
        row = self._read.execute(
            "SELECT COUNT(*), COALESCE(SUM(json_extract(record, '$.objective')), 0), "
            "COALESCE(SUM(json_extract(record, '$.bound')), 0), "
            "COALESCE(MIN(json_extract(record, '$.status') = 'OPTIMAL'), 1), "
            "COALESCE(MIN(COALESCE(json_extract(record, '$.bound_scope'), 'model') = 'all'), 1) FROM plans"
        ).fetchone()
        return {
            "plans": int(row[0]),
            "objective": float(row[1]),
            "bound": float(row[2]),
            "all_optimal": bool(row[3]),
            "bound_scope": "all" if row[4] else "model",
        }

    def first_work_at(self) -> dict[str, datetime]:
        """Lab id -> when the first plan that gave it work was committed."""
        rows = self._read.execute(
            "SELECT a.lab_id, MIN(p.created_at) FROM assignments a "
            "JOIN plans p ON p.version = a.plan_version GROUP BY a.lab_id"
        ).fetchall()
        return {r[0]: datetime.fromisoformat(r[1]) for r in rows}

    def load_latest_plan(self) -> Plan | None:
        """The most recent solved plan, if any."""
        row = self._read.execute("SELECT record FROM plans ORDER BY version DESC LIMIT 1").fetchone()
        return Plan.model_validate_json(row[0]) if row else None
