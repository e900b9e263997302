"""A planner's own record of its trades with peer regions (SPEC.md sections 10.5 and 10.7), in SQLite.

Each planner keeps its trades in its own ledger file (tables of their own beside the planner's), so a
planner killed with -9 finds after a restart every trade it had committed, its lease and its
progress. Writes are idempotent by trade id: a COMMIT, LEASE, CONFIRM or PROGRESS received twice
changes nothing the second time. The origin's side also keeps which of its own orders a trade covers
(`covers`): that never leaves the region.

States of a trade: `pending` (committed; the origin waits for the host's LEASE), `leased` (the origin
confirmed the units it still takes; the host's labs make them), `void` (a lease that never came, a
lease the origin refused, a trade its peer does not hold).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from solver.federation.market import Trade

SCHEMA = """
CREATE TABLE IF NOT EXISTS fed_trades (
    trade_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    origin TEXT NOT NULL,
    design TEXT NOT NULL,
    window INTEGER NOT NULL,
    cell TEXT NOT NULL,
    units INTEGER NOT NULL,
    price REAL NOT NULL,
    round INTEGER NOT NULL,
    priority TEXT NOT NULL,
    state TEXT NOT NULL,
    units_done INTEGER NOT NULL DEFAULT 0,
    covers TEXT NOT NULL DEFAULT '{}',
    committed_at TEXT NOT NULL,
    seq INTEGER NOT NULL,
    day TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS fed_rounds (
    round INTEGER PRIMARY KEY,
    outcome TEXT NOT NULL,
    total_before REAL,
    total_after REAL,
    at TEXT NOT NULL
);
"""

STATES = ("pending", "leased", "void")


@dataclass
class TradeRow:
    """One trade as this planner holds it."""

    trade: Trade
    state: str
    units_done: int = 0
    #: Origin side only: own order id -> units of it the trade covers (never sent).
    covers: dict[str, int] = field(default_factory=dict)
    committed_at: str = ""
    seq: int = 0

    @property
    def units(self) -> int:
        """Units the trade stands for now (the origin may confirm fewer than were awarded)."""
        return self.trade.units

    def to_json(self) -> dict[str, Any]:
        """The trade as this planner's API shows it (its `covers` stays out)."""
        return self.trade.body() | {"state": self.state, "units_done": self.units_done}


class TradeBook:
    """The trades table of one planner's ledger file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(fed_trades)")}
        if "day" not in columns:  # a ledger written before trades kept their windows' day
            self._db.execute("ALTER TABLE fed_trades ADD COLUMN day TEXT NOT NULL DEFAULT ''")
        self.rows: dict[str, TradeRow] = {}
        self.seq = 0
        for row in self._db.execute(
            "SELECT trade_id, host, origin, design, window, cell, units, price, round, priority, state, "
            "units_done, covers, committed_at, seq, day FROM fed_trades ORDER BY seq"
        ):
            trade = Trade(*row[:10], day=date.fromisoformat(row[15]) if row[15] else None)
            self.rows[trade.trade_id] = TradeRow(
                trade, row[10], row[11], json.loads(row[12]), row[13], row[14]
            )
            self.seq = max(self.seq, row[14])

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def commit(self, trades: list[Trade], covers: dict[str, dict[str, int]], at: str) -> list[TradeRow]:
        """Record committed trades as `pending`, once each (a trade id known already is left as it is);
        return the rows that are new. Durable before it returns."""
        new = []
        with self._transaction():
            for trade in trades:
                if trade.trade_id in self.rows:
                    continue
                self.seq += 1
                row = TradeRow(trade, "pending", 0, covers.get(trade.trade_id, {}), at, self.seq)
                self._put(row)
                self.rows[trade.trade_id] = row
                new.append(row)
        return new

    def update(
        self,
        trade_id: str,
        *,
        state: str | None = None,
        units: int | None = None,
        units_done: int | None = None,
        covers: dict[str, int] | None = None,
    ) -> TradeRow:
        """Change a trade's state, units, progress or cover; durable before it returns."""
        if state is not None and state not in STATES:
            raise ValueError(f"state: must be one of {', '.join(STATES)}, got {state!r}")
        row = self.rows[trade_id]
        if units is not None and units != row.trade.units:
            row.trade = replace(row.trade, units=units)
        row.state = state or row.state
        if units_done is not None:
            row.units_done = max(row.units_done, units_done)
        if covers is not None:
            row.covers = dict(covers)
        self.seq += 1
        row.seq = self.seq
        with self._transaction():
            self._put(row)
        return row

    def record_round(
        self, round_: int, outcome: str, before: float | None, after: float | None, at: str
    ) -> bool:
        """Record a round's outcome once (commit, abort, or presumed abort); False if it was known."""
        with self._transaction():
            found = self._db.execute("SELECT outcome FROM fed_rounds WHERE round = ?", (round_,)).fetchone()
            if found is not None:
                return False
            self._db.execute(
                "INSERT INTO fed_rounds (round, outcome, total_before, total_after, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (round_, outcome, before, after, at),
            )
        return True

    def round_outcome(self, round_: int) -> str | None:
        """How a round ended here (None: not decided here)."""
        found = self._db.execute("SELECT outcome FROM fed_rounds WHERE round = ?", (round_,)).fetchone()
        return None if found is None else str(found[0])

    def last_round(self) -> int:
        """The highest round this planner recorded an outcome for (0: none)."""
        found = self._db.execute("SELECT MAX(round) FROM fed_rounds").fetchone()
        return int(found[0] or 0)

    def rounds(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest rounds, newest first."""
        return [
            {"round": r, "outcome": o, "total_before": b, "total_after": a, "at": at}
            for r, o, b, a, at in self._db.execute(
                "SELECT round, outcome, total_before, total_after, at FROM fed_rounds "
                "ORDER BY round DESC LIMIT ?",
                (limit,),
            )
        ]

    def with_peer(self, region: str) -> list[TradeRow]:
        """Every trade between this planner and `region`, either way."""
        return [r for r in self.rows.values() if region in (r.trade.host, r.trade.origin)]

    def _put(self, row: TradeRow) -> None:
        t = row.trade
        self._db.execute(
            "INSERT OR REPLACE INTO fed_trades (trade_id, host, origin, design, window, cell, units, "
            "price, round, priority, state, units_done, covers, committed_at, seq, day) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                t.trade_id,
                t.host,
                t.origin,
                t.design,
                t.window,
                t.cell,
                t.units,
                t.price,
                t.round,
                t.priority,
                row.state,
                row.units_done,
                json.dumps(row.covers, sort_keys=True),
                row.committed_at,
                row.seq,
                t.day.isoformat() if t.day else "",
            ),
        )

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind: object, *_: object) -> None:
            self.db.execute("ROLLBACK" if kind is not None else "COMMIT")

    def _transaction(self) -> TradeBook._Tx:
        return TradeBook._Tx(self._db)
