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


# The emergency fast path's messages (SPEC.md section 10.8) pass the same checks.
REQUEST = {
    "request_id": "lombardy.e17",
    "design": "face-shield",
    "units": 12,
    "window": 2,
    "cell": "90:18",
    "max_price": 50_000.0,
    "expires_at": "2026-05-01T12:00:02Z",
    "day": "2026-05-01",
}
ANSWER = {"request_id": "lombardy.e17", "units": 12, "price": 640.5, "expires_at": "2026-05-01T12:00:12Z"}
TAKE = {"request_id": "lombardy.e17", "trade_id": "t1.lombardy.e17", "units": 12}
EMERGENCY_MESSAGES = [("EMERGENCY", REQUEST), ("EMERGENCY_OFFER", ANSWER), ("EMERGENCY_TAKE", TAKE)]


@pytest.mark.parametrize(("kind", "body"), EMERGENCY_MESSAGES)
def test_a_well_formed_emergency_message_passes(kind: str, body: dict[str, object]) -> None:
    assert decode_peer(encode_peer(kind, "lombardy", 1, 0, body)).body.model_dump(mode="json") == body


@pytest.mark.parametrize(
    ("kind", "body", "field", "value"),
    [
        ("EMERGENCY", REQUEST, "request_id", "o-5f2a9c01d3e4b6a7"),  # an order id where a request id goes
        ("EMERGENCY", REQUEST, "request_id", "lombardy.o-5f2a9c01"),  # one riding behind the region
        ("EMERGENCY", REQUEST, "cell", "45.58123:9.65012"),  # an exact point
        ("EMERGENCY", REQUEST, "cell", "Ospedale Niguarda"),  # a place's name
        ("EMERGENCY_OFFER", ANSWER, "request_id", "lombardy-lab0001"),  # a lab id
        ("EMERGENCY_TAKE", TAKE, "trade_id", "t1.o-5f2a9c01"),  # an order id where a trade id goes
    ],
)
def test_an_emergency_message_with_an_id_or_place_not_of_the_allowed_form_is_refused(
    kind: str, body: dict[str, object], field: str, value: str
) -> None:
    with pytest.raises(ProtocolError, match=field):
        encode_peer(kind, "lombardy", 1, 0, body | {field: value})


@pytest.mark.parametrize(("kind", "body"), EMERGENCY_MESSAGES)
@pytest.mark.parametrize("extra", ["order_id", "delivery", "lab_id", "requester", "lat"])
def test_an_emergency_message_with_a_field_the_protocol_does_not_know_is_refused(
    kind: str, body: dict[str, object], extra: str
) -> None:
    with pytest.raises(ProtocolError, match=extra):
        encode_peer(kind, "lombardy", 1, 0, body | {extra: "x"})


def test_an_emergency_trade_id_is_a_trade_id_everywhere_a_trade_is_named() -> None:
    lease = {"trade_id": "t1.lombardy.e17", "units": 12, "expires_at": "2026-05-01T12:00:12Z"}
    assert decode_peer(encode_peer("LEASE", "switzerland", 1, 0, lease)).body.trade_id == "t1.lombardy.e17"
    progress = {"trade_id": "t1.lombardy.e17", "units_done": 3}
    assert decode_peer(encode_peer("PROGRESS", "switzerland", 1, 0, progress)).body.units_done == 3
