"""Data minimisation is enforced at the peer codec: nothing but the allowed forms can leave a region."""

from __future__ import annotations

import pytest

from protocol.errors import ProtocolError
from protocol.peers import decode_peer, encode_peer

BID = {
    "bid_id": "lombardy.r2.b0",
    "offer_id": "switzerland.r1.o3",
    "round": 2,
    "units": 5,
    "window": 3,
    "cell": "91:18",
    "max_price": 10.0,
    "priority": "routine",
}


def test_a_well_formed_bid_passes() -> None:
    assert decode_peer(encode_peer("BID", "lombardy", 1, 0, BID)).body.model_dump() == BID


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bid_id", "o-5f2a9c01d3e4b6a7"),  # an order id where a bid id goes
        ("offer_id", "lombardy-lab0001"),  # a lab id where an offer id goes
        ("cell", "45.58123:9.65012"),  # an exact point where a coarse cell goes
        ("cell", "Ospedale Niguarda"),  # a place's name
    ],
)
def test_an_id_or_a_place_that_is_not_of_the_allowed_form_is_refused_naming_the_field(
    field: str, value: str
) -> None:
    with pytest.raises(ProtocolError, match=field):
        encode_peer("BID", "lombardy", 1, 0, BID | {field: value})


@pytest.mark.parametrize("extra", ["order_id", "delivery", "lab_id", "requester", "lat"])
def test_a_field_the_protocol_does_not_know_is_refused(extra: str) -> None:
    with pytest.raises(ProtocolError, match=extra):
        encode_peer("BID", "lombardy", 1, 0, BID | {extra: "x"})


def test_a_trade_id_carries_only_its_bid() -> None:
    lease = {"trade_id": "t.lombardy.r2.b0", "units": 5, "expires_at": "2026-05-01T12:00:00Z"}
    assert decode_peer(encode_peer("LEASE", "switzerland", 1, 0, lease)).body.trade_id == lease["trade_id"]
    with pytest.raises(ProtocolError, match="trade_id"):
        encode_peer("LEASE", "switzerland", 1, 0, lease | {"trade_id": "t.o-5f2a9c01"})
    with pytest.raises(ProtocolError, match="region"):
        encode_peer(
            "PEER_HELLO",
            "x",
            1,
            0,
            {"region": "o-5f2a.lab", "epoch": 1, "heartbeat_ms": 500, "committed_seq": 0},
        )
