"""The transfer messages (SPEC.md section 11): round trips, and bad bodies named by field."""

from __future__ import annotations

from datetime import UTC, datetime

import msgpack
import pytest

from protocol.codec import decode, encode
from protocol.errors import ProtocolError
from protocol.messages import Arrived, Envelope, Incoming, Ship, Shipped, ShipRefused

ARRIVE = datetime(2026, 5, 1, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    "body",
    [
        Ship(transfer_id="t3-1", material="petg", quantity=2.5, to_lab="lab-b", arrive_at=ARRIVE),
        Incoming(transfer_id="t3-1", material="petg", quantity=2.5, from_lab="lab-a", arrive_at=ARRIVE),
        Shipped(transfer_id="t3-1"),
        ShipRefused(transfer_id="t3-1", reason="not enough stock: petg needs 2.5 kg, 1.0 free"),
        Arrived(transfer_id="t3-1"),
    ],
)
def test_transfer_messages_round_trip(body: object) -> None:
    message = Envelope(sender="lab-a", seq=4, epoch=2, body=body)  # type: ignore[arg-type]
    assert decode(encode(message)) == message


AT = "2026-05-01T20:00:00Z"
SHIP = {"transfer_id": "t1", "material": "petg", "quantity": 1.0, "to_lab": "b", "arrive_at": AT}


def _frame(kind: str, body: dict[str, object]) -> bytes:
    return msgpack.packb({"v": 1, "kind": kind, "sender": "planner", "seq": 1, "epoch": 1, "body": body})


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("SHIP", SHIP | {"quantity": 0}, "quantity"),
        ("SHIP", SHIP | {"quantity": float("nan")}, "quantity"),
        ("SHIP", SHIP | {"arrive_at": "2026-05-01T20:00:00"}, "arrive_at"),
        ("SHIP", SHIP | {"transfer_id": "T 1"}, "transfer_id"),
        ("INCOMING", {"transfer_id": "t1", "material": "petg", "quantity": 1.0, "arrive_at": AT}, "from_lab"),
        ("SHIP_REFUSED", {"transfer_id": "t1", "reason": ""}, "reason"),
        ("ARRIVED", {"transfer_id": "t1", "extra": 1}, "extra"),
    ],
)
def test_bad_transfer_bodies_name_the_field(kind: str, body: dict[str, object], field: str) -> None:
    with pytest.raises(ProtocolError, match=field):
        decode(_frame(kind, body))
