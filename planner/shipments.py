"""The planner's book of material transfers: dispatch, answers, arrival, loss (SPEC.md section 11).

Every change is one ledger transaction (event + projection) before it is visible, as for the rest
of the planner's state; the mesh is told through the callbacks `on_sent` (send SHIP to the sender)
and `on_shipped` (send INCOMING to the receiver), and the planner re-plans through `on_change`.
The meaning of each state for the next solve is in `planner.shipping`.

What leaves the planner waits for the ledger's commit of what it stands for, as ASSIGN does
(`planner.ledger_writer`): SHIP goes to a sender, and INCOMING to a receiver, only once the change
that made the transfer `sent` (or `shipped`) is in the file. Until then the transfer is left out of
`awaiting_ship` and `awaiting_arrival`, so the mesh's re-sends cannot send it early either. A planner
killed with -9 in between has told no lab of a transfer its restarted self does not know (its ids,
`t<plan version>-<n>`, would otherwise be given again to another parcel).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from planner.events import Event
from planner.shipping import UNDER_WAY, TransferRow, UnknownTransfer, on_the_way, withheld
from planner.store import Ledger
from protocol.model import Plan
from solver.model.problem import InTransit

log = logging.getLogger(__name__)


def _ignore_rows(rows: list[TransferRow]) -> None:
    return None


def _ignore_row(row: TransferRow) -> None:
    return None


@dataclass
class Shipments:
    """Every transfer the planner dispatched, by id, and the rules of their states."""

    ledger: Ledger
    clock: Callable[[], datetime]
    publish: Callable[[Event], None]
    on_change: Callable[[str], None]
    #: Send SHIP for these new transfers (the mesh; retries are the mesh's too).
    on_sent: Callable[[list[TransferRow]], None] = _ignore_rows
    #: Send INCOMING for a transfer its sender shipped.
    on_shipped: Callable[[TransferRow], None] = _ignore_row
    rows: dict[str, TransferRow] = field(default_factory=dict)
    refused: int = 0
    voided: int = 0
    #: Per transfer id: its changes not yet in the ledger's file (nothing is sent about it meanwhile).
    _unwritten: dict[str, int] = field(default_factory=dict)

    def load(self) -> None:
        """Take up the ledger's transfers (a restarted planner carries on where it was)."""
        self.rows = {row.id: row for row in self.ledger.load_transfers()}

    def _change(self, db: Any, row: TransferRow, state: str, reason: str | None = None) -> Event:
        row.state, row.updated_at = state, self.clock().isoformat()
        if reason is not None:
            row.reason = reason
        Ledger.put_transfer(db, row)
        data = row.to_json()
        seq = Ledger.append(db, self.clock(), f"transfer-{row.id}", f"transfer.{state}", data)
        return Event(seq, f"transfer.{state}", data)

    def _hold(self, transfer_id: str) -> None:
        self._unwritten[transfer_id] = self._unwritten.get(transfer_id, 0) + 1

    def _release(self, transfer_id: str) -> None:
        left = self._unwritten.get(transfer_id, 0) - 1
        if left > 0:
            self._unwritten[transfer_id] = left
        else:
            self._unwritten.pop(transfer_id, None)

    def written(self, transfer_id: str) -> bool:
        """Whether every change made to this transfer is in the ledger's file."""
        return transfer_id not in self._unwritten

    def dispatch(
        self, db: Any, plan: Plan, live: Callable[[str], bool]
    ) -> tuple[list[TransferRow], list[Event]]:
        """Record a committed plan's transfers whose labs are live (state `sent`), in the plan's own
        transaction `db`. Nothing is sent yet: once that transaction has ended, the caller hands the
        rows to `send_when_written`, which sends SHIP after the commit."""
        rows, events = [], []
        for n, transfer in enumerate(plan.transfers, start=1):
            if not (live(transfer.from_lab) and live(transfer.to_lab)):
                log.info(
                    "transfer of %s from %s to %s not dispatched: a lab was lost while solving",
                    transfer.material,
                    transfer.from_lab,
                    transfer.to_lab,
                )
                continue
            row = TransferRow(f"t{plan.version}-{n}", transfer, plan.version, "sent", None, "")
            self.rows[row.id] = row
            self._hold(row.id)
            events.append(self._change(db, row, "sent"))
            rows.append(row)
        return rows, events

    def send_when_written(self, rows: list[TransferRow]) -> None:
        """Send SHIP (`on_sent`) for these newly dispatched transfers once the transaction that
        recorded them is in the ledger's file; those no longer `sent` by then (their sender was lost)
        are not sent. Never, when the ledger failed: the planner's memory is ahead of its file."""
        if not rows:
            return

        def send_written() -> None:
            for row in rows:
                self._release(row.id)
            still = [row for row in rows if row.state == "sent"]
            if still:
                self.on_sent(still)

        self.ledger.after_commit(send_written)

    def _incoming_when_written(self, row: TransferRow) -> None:
        """Send INCOMING (`on_shipped`) once the `shipped` change is in the ledger's file."""
        self._hold(row.id)

        def send_written() -> None:
            self._release(row.id)
            if row.state == "shipped":
                self.on_shipped(row)

        self.ledger.after_commit(send_written)

    def _row(self, transfer_id: str, lab_id: str, role: str) -> TransferRow:
        row = self.rows.get(transfer_id)
        party = None if row is None else (row.transfer.from_lab if role == "sender" else row.transfer.to_lab)
        if row is None or party != lab_id:
            raise UnknownTransfer(f"transfer {transfer_id!r} has no {role} {lab_id!r}")
        return row

    def answer(self, lab_id: str, transfer_id: str, shipped: bool, reason: str | None = None) -> None:
        """The sender's SHIPPED or SHIP_REFUSED. Duplicates change nothing; a SHIPPED after the transfer
        was made void (its sender lost) revives it: the material is on the road all the same."""
        row = self._row(transfer_id, lab_id, "sender")
        if shipped and row.state in {"sent", "void"}:
            if row.state == "void":
                log.warning("%s shipped after its sender was given up: the material is on the road", row.id)
            with self.ledger.transaction() as db:
                event = self._change(db, row, "shipped")
            self.publish(event)
            log.info(
                "lab %s shipped %s: %g of %s to %s, arriving %s",
                lab_id,
                row.id,
                row.transfer.quantity,
                row.transfer.material,
                row.transfer.to_lab,
                row.transfer.arrive_at.isoformat(),
            )
            self._incoming_when_written(row)
            self.on_change("transfer shipped")
        elif not shipped and row.state == "sent":
            with self.ledger.transaction() as db:
                event = self._change(db, row, "refused", reason or "refused")
            self.refused += 1
            self.publish(event)
            log.warning("lab %s refused to ship %s: %s; re-planning", lab_id, row.id, reason)
            self.on_change("transfer refused")
        else:
            log.debug("%s is %s; %s ignored", row.id, row.state, "SHIPPED" if shipped else "SHIP_REFUSED")

    def arrived(self, lab_id: str, transfer_id: str) -> None:
        """The receiver's ARRIVED: the material is in its stock now (its STOCK follows)."""
        row = self._row(transfer_id, lab_id, "receiver")
        if row.state == "arrived":
            return
        with self.ledger.transaction() as db:
            event = self._change(db, row, "arrived")
        self.publish(event)
        log.info("%s arrived at lab %s", row.id, lab_id)
        self.on_change("transfer arrived")

    def sender_lost(self, db: Any, lab_id: str) -> list[Event]:
        """A lab was lost: the transfers it was told to ship and did not are void (in `db`)."""
        events = []
        for row in self.rows.values():
            if row.state == "sent" and row.transfer.from_lab == lab_id:
                events.append(self._change(db, row, "void", "sender lost before it shipped"))
                self.voided += 1
        return events

    # --- what the next solve and the mesh need -------------------------------------------------

    def withheld(self, lab_id: str) -> dict[str, float]:
        """Material a lab must ship and has not yet (not free for its own work)."""
        return withheld(list(self.rows.values()), lab_id)

    def on_the_way(self, lab_id: str) -> tuple[InTransit, ...]:
        """Material on its way to a lab, for the solver."""
        return on_the_way(list(self.rows.values()), lab_id)

    def awaiting_ship(self, lab_id: str) -> list[TransferRow]:
        """Transfers this lab was told to ship and has not answered (once their dispatch is in the
        ledger's file: SHIP is not sent, nor sent again, before)."""
        return [
            r
            for r in self.rows.values()
            if r.state == "sent" and r.transfer.from_lab == lab_id and r.id not in self._unwritten
        ]

    def awaiting_arrival(self, lab_id: str) -> list[TransferRow]:
        """Transfers shipped to this lab that it has not said arrived (once `shipped` is in the
        ledger's file)."""
        return [
            r
            for r in self.rows.values()
            if r.state == "shipped" and r.transfer.to_lab == lab_id and r.id not in self._unwritten
        ]

    def awaiting_answers(self) -> list[tuple[str, str, TransferRow]]:
        """Every transfer awaiting a lab's answer, in one pass over the transfers: ("ship", its
        sender, row) as `awaiting_ship` gives it, and ("incoming", its receiver, row) as
        `awaiting_arrival` does."""
        found: list[tuple[str, str, TransferRow]] = []
        for r in self.rows.values():
            if r.id in self._unwritten:
                continue
            if r.state == "sent":
                found.append(("ship", r.transfer.from_lab, r))
            elif r.state == "shipped":
                found.append(("incoming", r.transfer.to_lab, r))
        return found

    def of_lab(self, lab_id: str) -> dict[str, list[dict[str, Any]]]:
        """A lab's transfers, outgoing and incoming, newest first, with their state."""
        rows = list(self.rows.values())[::-1]
        return {
            "outgoing": [r.to_json() for r in rows if r.transfer.from_lab == lab_id],
            "incoming": [r.to_json() for r in rows if r.transfer.to_lab == lab_id],
        }

    def under_way(self) -> int:
        """Transfers sent or on the road."""
        return sum(1 for r in self.rows.values() if r.state in UNDER_WAY)
