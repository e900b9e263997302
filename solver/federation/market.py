"""The records that cross between regions: offers, bids, awards, trades and one cost per region.

Each record holds only what SPEC.md section 10.3 lets leave a region: designs (open knowledge),
quantities, day windows, coarse cells and prices. `body()` gives the message body the peer
transport sends (`protocol.peers` validates it field by field).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any


@dataclass(frozen=True)
class Offer:
    """Capacity a host offers: `units` of `design` made in `cell` by day `window`, at `price` each."""

    offer_id: str
    host: str
    round: int
    design: str
    window: int
    cell: str
    units: int
    price: float

    @property
    def key(self) -> tuple[str, str, str, int]:
        """What stays the same from round to round: host, cell, design, window."""
        return (self.host, self.cell, self.design, self.window)

    def body(self) -> dict[str, Any]:
        """The OFFER body (the host is the frame's sender)."""
        body = asdict(self)
        del body["host"]
        return body


@dataclass(frozen=True)
class Bid:
    """An origin asks a host for `units` of an offer, delivered to `cell` in `window`."""

    bid_id: str
    origin: str
    host: str
    offer_id: str
    round: int
    units: int
    window: int
    cell: str
    max_price: float
    priority: str

    def body(self) -> dict[str, Any]:
        """The BID body (origin and host are the frame's sender and receiver)."""
        body = asdict(self)
        del body["origin"], body["host"]
        return body


@dataclass(frozen=True)
class Trade:
    """A tentative or committed trade: the host makes `units` of `design` for the origin's `cell`."""

    trade_id: str
    host: str
    origin: str
    design: str
    window: int
    cell: str
    units: int
    price: float
    round: int
    priority: str = "routine"
    #: The host's cell whose offer the trade answers ("" when unknown): the host may always make the
    #: units there. The host's own record, not sent (its offer named the cell already).
    source: str = ""
    #: The UTC day `window` counts from: the session's, or the emergency request's (None: the day
    #: it is read on). Host and origin both know it from the round or the request; not sent.
    day: date | None = None

    def body(self) -> dict[str, Any]:
        """The TRADE record as SNAPSHOT lists it."""
        body = asdict(self)
        del body["source"]
        del body["day"]
        return body


@dataclass(frozen=True)
class Message:
    """One message of the net as the transport would send it: who to whom, its kind and body."""

    sender: str
    receiver: str
    kind: str
    body: dict[str, Any]
