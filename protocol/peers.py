"""The peer protocol between regional planners (SPEC.md section 10): message bodies and their codec.

The envelope is the mesh's (`v`, `kind`, `sender`, `seq`, `epoch`, `body`), with `sender` a region id;
the kinds are those of section 10.2, each body validated field by field (unknown keys are
malformed). Nothing here can carry an order id, a person or an exact point: a delivery place is a
coarse cell name, a due date a day window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

import msgpack
from pydantic import Field, ValidationError, model_validator

from protocol.codec import MAX_FRAME_BYTES, unpack_frame
from protocol.errors import ProtocolError, describe_validation_error
from protocol.model import Name, Priority, Record, UtcDatetime

PEER_PROTOCOL_VERSION = 1
#: A coarse cell: "LAT_INDEX:LON_INDEX" on the federation's grid.
Cell = Annotated[str, Field(pattern=r"^-?[0-9]{1,5}:-?[0-9]{1,5}$")]
Money = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Units = Annotated[int, Field(ge=1, le=10_000_000)]
Round = Annotated[int, Field(ge=1)]
Window = Annotated[int, Field(ge=0, le=3650)]
#: A region id: plain, as any id (no order id is a region id: orders are `o-HEX`).
Region = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
# Ids of what crosses between regions have fixed forms built from the region, the round and a
# counter, so that nothing else (an order id, a lab id, a person) can ride in an id field.
_ID_HEAD = r"[a-z0-9][a-z0-9_-]{0,39}\.r[0-9]{1,9}"
OfferId = Annotated[str, Field(pattern=rf"^{_ID_HEAD}\.o[0-9]{{1,9}}$")]
BidId = Annotated[str, Field(pattern=rf"^{_ID_HEAD}\.b[0-9]{{1,9}}$")]
#: An emergency request (SPEC.md section 10.8): the origin's region and a counter.
RequestId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}\.e[0-9]{1,9}$")]
#: A trade answers a bid of a round (`t.BID_ID`), or an emergency request (`tK.REQUEST_ID`).
TradeId = Annotated[
    str,
    Field(pattern=rf"^t[0-9]{{0,9}}\.({_ID_HEAD}\.b[0-9]{{1,9}}|[a-z0-9][a-z0-9_-]{{0,39}}\.e[0-9]{{1,9}})$"),
]
_ENVELOPE_KEYS = frozenset({"v", "kind", "sender", "seq", "epoch", "body"})
_MAX_SEQ = 2**63 - 1


class PeerHello(Record):
    """A planner (re)introduces itself to a peer: answered by SNAPSHOT."""

    region: Region
    epoch: int = Field(ge=0)
    heartbeat_ms: int = Field(ge=10, le=600_000)
    committed_seq: int = Field(ge=0)


class PeerHeartbeat(Record):
    """Liveness between planners; `round` is the sender's latest round."""

    round: int = Field(ge=0)


class OfferBody(Record):
    """Capacity for `units` of `design` made in `cell` by day `window`, at `price` per unit."""

    offer_id: OfferId
    round: int = Field(ge=0)  # 0: offered before the first round, at the prices of the region alone
    design: Name
    window: Window
    cell: Cell
    units: Units
    price: Money
    expires_at: UtcDatetime | None = None


class BidBody(Record):
    """An origin wants `units` of an offer delivered to `cell` in `window`, paying at most `max_price`."""

    bid_id: BidId
    offer_id: OfferId
    round: Round
    units: Units
    window: Window
    cell: Cell
    max_price: Money
    priority: Priority


class AwardBody(Record):
    """The host accepts `units` of a bid tentatively."""

    bid_id: BidId
    round: Round
    units: Units


class CostBody(Record):
    """The sender's plan cost with every tentative trade of the round: one number.

    `before` is its cost with the trades committed so far, and `bids` the bids it sent this round, so
    the coordinator sums both sides of the commit rule and knows when a round had no bid at all."""

    round: Round
    cost: Money
    before: Money | None = None
    bids: int = Field(default=0, ge=0)


class VoteBody(Record):
    """The round's outcome as the coordinator computed it from every COST."""

    round: Round
    commit: bool
    total_before: Money
    total_after: Money


class RoundBody(Record):
    """COMMIT or ABORT of a round."""

    round: Round


class RoundStart(Record):
    """The coordinator opens a round among `regions` (itself included).

    `offers_only` opens a session: every region solves alone and sends its OFFERS, and nothing else.
    `step` is the share of the awarded units hosts grant this round (SPEC.md section 10.4). `day` is
    the UTC day the session's windows count from, fixed by the coordinator when it opens the session:
    a session that runs past midnight keeps one meaning for every window (absent: each region's own
    current day)."""

    round: Round
    session: int = Field(ge=1)
    regions: list[Region] = Field(min_length=2, max_length=64)
    step: float = Field(gt=0.0, le=1.0)
    offers_only: bool = False
    day: date | None = None


#: The most items of one OFFERS, BIDS or AWARDS message; a longer list goes in parts (`Parts`). At
#: about 170 bytes an offer, a full part stays near a third of the frame limit.
PART_ITEMS = 500
#: The most parts one list may take (500 x 200 = 100,000 offers of one region in one round).
MOST_PARTS = 200


class Parts(Record):
    """A message whose list may come in several parts: `part` of `parts` (0-based), each whole and
    valid on its own; the receiver takes the message once it holds every part (SPEC.md 10.2)."""

    part: int = Field(default=0, ge=0, lt=MOST_PARTS)
    parts: int = Field(default=1, ge=1, le=MOST_PARTS)

    @model_validator(mode="after")
    def _part_within_parts(self) -> Parts:
        if self.part >= self.parts:
            raise ValueError(f"part {self.part} of {self.parts}: a part counts from 0 to parts - 1")
        return self


class OffersBody(Parts):
    """Every offer a host makes in a round (an empty list says it has none), in one or more parts."""

    round: int = Field(ge=0)
    offers: list[OfferBody] = Field(default_factory=list, max_length=PART_ITEMS)


class BidsBody(Parts):
    """Every bid an origin sends one host in a round (empty: none for that host), in parts."""

    round: Round
    bids: list[BidBody] = Field(default_factory=list, max_length=PART_ITEMS)


class AwardsBody(Parts):
    """Every award a host makes one origin in a round (empty: none for that origin), in parts."""

    round: Round
    awards: list[AwardBody] = Field(default_factory=list, max_length=PART_ITEMS)


#: The list each message kind sent in parts carries.
PART_LISTS: dict[str, str] = {"OFFERS": "offers", "BIDS": "bids", "AWARDS": "awards"}


def in_parts(kind: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The bodies to send for one message of `kind` (`PART_LISTS`): one, or its list cut into parts
    of at most PART_ITEMS items, each body otherwise the same (an empty list is one part)."""
    key = PART_LISTS[kind]
    items = body[key]
    count = _slices_needed(items)
    if count > MOST_PARTS:
        raise ProtocolError(f"{kind}: {len(items)} items need {count} parts, more than {MOST_PARTS}")
    return [body | {key: _slice(items, k), "part": k, "parts": count} for k in range(count)]


def snapshot_slices(
    committed_seq: int, trades: list[dict[str, Any]], offers: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A SNAPSHOT's bodies: its trades and offers in slices of at most PART_ITEMS each, every slice a
    whole SNAPSHOT of its own (the receiver applies each listed trade by itself), so a planner with
    thousands of trades with one peer still fits every frame (one SNAPSHOT of 1,000 trades would pass
    256 KiB, and the frame was refused)."""
    return [
        {"committed_seq": committed_seq, "trades": _slice(trades, k), "offers": _slice(offers, k)}
        for k in range(_slices_needed(trades, offers))
    ]


def _slices_needed(*lists: list[Any]) -> int:
    """How many slices of PART_ITEMS the longest of `lists` takes (at least one)."""
    return max(1, *(-(-len(items) // PART_ITEMS) for items in lists))


def _slice(items: list[Any], k: int) -> list[Any]:
    """The `k`-th slice of PART_ITEMS of `items` (empty past its end)."""
    return items[k * PART_ITEMS : (k + 1) * PART_ITEMS]


class PartsInbox:
    """Holds the parts of OFFERS, BIDS and AWARDS messages until each message is whole."""

    def __init__(self) -> None:
        #: (sender, kind, round, parts) -> part -> body
        self._held: dict[tuple[str, str, int, int], dict[int, Any]] = {}

    def add(self, sender: str, kind: str, body: Any) -> Any | None:
        """The whole body once `body` completes its message (the lists joined in part order), else
        None. A body not in parts is whole already; a part received again replaces itself."""
        if kind not in PART_LISTS or body.parts == 1:
            return body
        key = (sender, kind, body.round, body.parts)
        held = self._held.setdefault(key, {})
        held[body.part] = body
        if len(held) < body.parts:
            return None
        ordered = [held[k] for k in sorted(self._held.pop(key))]
        items = [item for part in ordered for item in getattr(part, PART_LISTS[kind])]
        return ordered[0].model_copy(update={PART_LISTS[kind]: items, "part": 0, "parts": 1})

    def drop_before(self, round_: int) -> None:
        """Forget the parts of rounds before `round_` (a message that never became whole)."""
        self._held = {key: parts for key, parts in self._held.items() if key[2] >= round_}


class ConfirmBody(Record):
    """The origin's answer to LEASE: the units of the trade it still takes (0: none, the trade is void)."""

    trade_id: TradeId
    units: int = Field(ge=0, le=10_000_000)


class TradeBody(Record):
    """A trade, as SNAPSHOT lists it: `state` pending (committed, no lease yet), leased or void."""

    trade_id: TradeId
    host: Region
    origin: Region
    design: Name
    window: Window
    cell: Cell
    units: Units
    price: Money
    round: int = Field(ge=0)  # 0: a trade of the emergency fast path (SPEC.md section 10.8)
    priority: Priority = "routine"
    state: Literal["pending", "leased", "void"] = "leased"
    units_done: int = Field(default=0, ge=0)


class SnapshotBody(Record):
    """What the sender holds as committed with the asker, and its live offers."""

    committed_seq: int = Field(ge=0)
    trades: list[TradeBody] = Field(default_factory=list, max_length=100_000)
    offers: list[OfferBody] = Field(default_factory=list, max_length=100_000)


class LeaseBody(Record):
    """The host confirms it plans a committed trade on its labs (SPEC.md section 10.7)."""

    trade_id: TradeId
    units: Units
    expires_at: UtcDatetime


class ProgressBody(Record):
    """Units of a trade made so far."""

    trade_id: TradeId
    units_done: int = Field(ge=0)


class EmergencyBody(Record):
    """An origin asks for `units` of `design` delivered to `cell` by day `window`, for an emergency its
    own labs cannot make in time, paying at most `max_price` a unit; it waits for answers until
    `expires_at` (SPEC.md section 10.8). `day` is the UTC day `window` counts from (absent: the host's
    current day)."""

    request_id: RequestId
    design: Name
    units: Units
    window: Window
    cell: Cell
    max_price: Money
    expires_at: UtcDatetime
    day: date | None = None


class EmergencyOfferBody(Record):
    """A host's firm answer to an emergency request: `units` (0: none) at `price` a unit delivered to
    the request's cell, held for the origin until `expires_at`."""

    request_id: RequestId
    units: int = Field(ge=0, le=10_000_000)
    price: Money
    expires_at: UtcDatetime


class EmergencyTakeBody(Record):
    """The units of a host's answer the origin takes (0: none, the hold is released); with units, the
    trade `trade_id` is committed on both sides."""

    request_id: RequestId
    trade_id: TradeId
    units: int = Field(ge=0, le=10_000_000)


PEER_BODIES: dict[str, type[Record]] = {
    "PEER_HELLO": PeerHello,
    "HEARTBEAT": PeerHeartbeat,
    "OFFER": OfferBody,
    "BID": BidBody,
    "AWARD": AwardBody,
    "COST": CostBody,
    "VOTE": VoteBody,
    "COMMIT": RoundBody,
    "ABORT": RoundBody,
    "SNAPSHOT": SnapshotBody,
    "LEASE": LeaseBody,
    "PROGRESS": ProgressBody,
    "ROUND": RoundStart,
    "OFFERS": OffersBody,
    "BIDS": BidsBody,
    "AWARDS": AwardsBody,
    "CONFIRM": ConfirmBody,
    "EMERGENCY": EmergencyBody,
    "EMERGENCY_OFFER": EmergencyOfferBody,
    "EMERGENCY_TAKE": EmergencyTakeBody,
}


@dataclass(frozen=True)
class PeerEnvelope:
    """One peer message: its kind, sender region, per-stream sequence, sender's epoch and body."""

    kind: str
    sender: str
    seq: int
    epoch: int
    body: Record


def encode_peer(kind: str, sender: str, seq: int, epoch: int, body: dict[str, Any] | Record) -> bytes:
    """One msgpack frame for a peer message; the body is validated first (a clear error if it is bad)."""
    if kind not in PEER_BODIES:
        raise ProtocolError(f"kind: unknown peer message kind {kind!r}")
    record = body if isinstance(body, Record) else _validate(kind, body)
    frame = msgpack.packb(
        {
            "v": PEER_PROTOCOL_VERSION,
            "kind": kind,
            "sender": sender,
            "seq": seq,
            "epoch": epoch,
            "body": record.model_dump(mode="json"),
        },
        use_bin_type=True,
    )
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes")
    return frame


def decode_peer(frame: bytes) -> PeerEnvelope:
    """Parse and validate one peer frame; any bad input raises `ProtocolError` naming the problem."""
    raw = unpack_frame(frame)
    if not isinstance(raw, dict) or set(raw) != _ENVELOPE_KEYS:
        raise ProtocolError("envelope: must be a map with exactly v, kind, sender, seq, epoch, body")
    if type(raw["v"]) is not int or raw["v"] != PEER_PROTOCOL_VERSION:
        raise ProtocolError(f"v: peer protocol version {raw['v']!r} not supported")
    kind = raw["kind"]
    if not isinstance(kind, str) or kind not in PEER_BODIES:
        raise ProtocolError(f"kind: unknown peer message kind {kind!r}")
    sender = raw["sender"]
    if not isinstance(sender, str) or not 0 < len(sender) <= 64:
        raise ProtocolError("sender: must be a non-empty string of at most 64 characters")
    for name in ("seq", "epoch"):
        if type(raw[name]) is not int or not 0 <= raw[name] <= _MAX_SEQ:
            raise ProtocolError(f"{name}: must be a non-negative integer")
    if not isinstance(raw["body"], dict):
        raise ProtocolError("body: must be a map")
    return PeerEnvelope(kind, sender, raw["seq"], raw["epoch"], _validate(kind, raw["body"]))


def _validate(kind: str, body: dict[str, Any]) -> Record:
    try:
        return PEER_BODIES[kind].model_validate(body)
    except ValidationError as exc:
        raise ProtocolError(f"{kind} {describe_validation_error(exc, 'body')}") from None
    except Exception as exc:  # a validator must never take the process down
        raise ProtocolError(f"{kind} body invalid: {type(exc).__name__}") from None
