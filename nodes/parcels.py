"""A lab's material transfers: what it was told to ship, and what is on its way to it (SPEC.md 11).

`Parcels` needs no socket: given a SHIP it ships (takes the material off the free stock at once) or
refuses with the reason, idempotently by transfer id; given an INCOMING it waits for the parcel, and
as the lab's clock passes a parcel's arrival the free stock grows, never before. The agent
(`nodes.agent`) moves the bodies over the wire and keeps `to_journal` in the lab's journal, so a
restarted lab neither ships twice nor forgets what is on its way.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from protocol.messages import Arrived, Body, Incoming, Ship, Shipped, ShipRefused
from protocol.okh import materials

log = logging.getLogger(__name__)

#: Stock arithmetic tolerance, in the material's unit.
_EPSILON = 1e-9
#: Answers repeated after each WELCOME: those of transfers due to arrive within this window of now.
RESEND_WINDOW = timedelta(days=2)


def _unit(material: str) -> str:
    known = materials().get(material)
    return f" {known.unit}" if known else ""


class Parcels:
    """The lab's side of every transfer it takes part in (see the module docstring)."""

    def __init__(self) -> None:
        #: Transfer id -> the SHIP received and the lab's answer to it.
        self.sent: dict[str, tuple[Ship, Shipped | ShipRefused]] = {}
        #: Transfer id -> the INCOMING received, and whether it has arrived.
        self.coming: dict[str, tuple[Incoming, bool]] = {}

    def ship(self, request: Ship, stock: dict[str, float]) -> tuple[list[Body], bool]:
        """Answer a SHIP: (the answer, True when it is new). Ships (taking the material off `stock`)
        when enough of it is free; else refuses naming what is needed and what is free. A duplicate
        gets the first answer and ships nothing."""
        first = self.sent.get(request.transfer_id)
        if first is not None:
            if first[0] != request:
                log.warning("SHIP %s repeated with different content; keeping the first", request.transfer_id)
            return [first[1]], False
        free = stock.get(request.material, 0.0)
        answer: Shipped | ShipRefused
        if request.quantity > free + _EPSILON:
            unit = _unit(request.material)
            needs = f"{request.material} needs {request.quantity:.3f}{unit}"
            reason = f"not enough stock: {needs}, {free:.3f}{unit} free"
            answer = ShipRefused(transfer_id=request.transfer_id, reason=reason)
            log.warning("refused to ship %s to %s: %s", request.transfer_id, request.to_lab, reason)
        else:
            stock[request.material] = max(0.0, round(free - request.quantity, 9))
            answer = Shipped(transfer_id=request.transfer_id)
            log.info(
                "shipped %s: %g%s of %s to %s, expected there %s",
                request.transfer_id,
                request.quantity,
                _unit(request.material),
                request.material,
                request.to_lab,
                request.arrive_at.isoformat(),
            )
        self.sent[request.transfer_id] = (request, answer)
        return [answer], True

    def expect(self, parcel: Incoming) -> tuple[list[Body], bool]:
        """Take note of material on its way: (what to answer, True when it is new). A duplicate of a
        parcel that has arrived is answered with ARRIVED again; one still on its way with nothing."""
        known = self.coming.get(parcel.transfer_id)
        if known is not None:
            return ([Arrived(transfer_id=parcel.transfer_id)] if known[1] else []), False
        self.coming[parcel.transfer_id] = (parcel, False)
        log.info(
            "expecting %s: %g%s of %s from %s at %s",
            parcel.transfer_id,
            parcel.quantity,
            _unit(parcel.material),
            parcel.material,
            parcel.from_lab,
            parcel.arrive_at.isoformat(),
        )
        return [], True

    def arrive(self, now: datetime, stock: dict[str, float]) -> list[Arrived]:
        """The parcels whose arrival `now` has reached join `stock`; their ARRIVED bodies."""
        arrived = []
        for tid, (parcel, done) in sorted(self.coming.items()):
            if done or parcel.arrive_at > now:
                continue
            stock[parcel.material] = round(stock.get(parcel.material, 0.0) + parcel.quantity, 9)
            self.coming[tid] = (parcel, True)
            arrived.append(Arrived(transfer_id=tid))
            log.info(
                "%s arrived: %g%s of %s from %s",
                tid,
                parcel.quantity,
                _unit(parcel.material),
                parcel.material,
                parcel.from_lab,
            )
        return arrived

    def on_the_way(self) -> dict[str, float]:
        """Material -> amount announced and not arrived yet (not in the free stock)."""
        out: dict[str, float] = {}
        for parcel, done in self.coming.values():
            if not done:
                out[parcel.material] = out.get(parcel.material, 0.0) + parcel.quantity
        return out

    def resync_messages(self, now: datetime) -> list[Body]:
        """After a WELCOME: the answers and arrivals of recent transfers again (they are idempotent),
        so one lost with a link is not lost for good."""
        recent = now - RESEND_WINDOW
        messages: list[Body] = [answer for ship, answer in self.sent.values() if ship.arrive_at >= recent]
        messages += [
            Arrived(transfer_id=tid)
            for tid, (parcel, done) in sorted(self.coming.items())
            if done and parcel.arrive_at >= recent
        ]
        return messages

    # --- the journal ---------------------------------------------------------------------------

    def to_journal(self) -> dict[str, Any]:
        """What a restarted lab must remember of its transfers."""
        return {
            "sent": [
                {
                    "ship": ship.model_dump(mode="json"),
                    "shipped": isinstance(answer, Shipped),
                    "answer": answer.model_dump(mode="json"),
                }
                for ship, answer in self.sent.values()
            ],
            "coming": [
                {"incoming": parcel.model_dump(mode="json"), "arrived": done}
                for parcel, done in self.coming.values()
            ],
        }

    def from_journal(self, saved: dict[str, Any] | None) -> None:
        """Take up `to_journal`'s state (None: a journal written before transfers; nothing to take)."""
        if saved is None:
            return
        for entry in saved["sent"]:
            ship = Ship.model_validate(entry["ship"])
            kind = Shipped if entry["shipped"] else ShipRefused
            self.sent[ship.transfer_id] = (ship, kind.model_validate(entry["answer"]))
        for entry in saved["coming"]:
            parcel = Incoming.model_validate(entry["incoming"])
            self.coming[parcel.transfer_id] = (parcel, bool(entry["arrived"]))
