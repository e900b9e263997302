"""OFFERS, BIDS and AWARDS longer than one part: cut by the sender, joined by the receiver.

A region of 400 labs offers more than a thousand (design, window, cell) capacities in a round (1,334
in the 4 x 2,500 x 400 federation, seed 1); one message of them was refused by the codec, and the
round with it.
"""

from __future__ import annotations

import random

import pytest

from protocol.codec import MAX_FRAME_BYTES
from protocol.errors import ProtocolError
from protocol.peers import (
    MOST_PARTS,
    PART_ITEMS,
    PartsInbox,
    decode_peer,
    encode_peer,
    in_parts,
    snapshot_slices,
)


def _offers(count: int) -> list[dict[str, object]]:
    return [
        {
            "offer_id": f"switzerland.r12.o{k}",
            "round": 12,
            "design": "face-shield-frame",
            "window": 13,
            "cell": f"{k % 180}:{k // 180}",
            "units": 100_000 + k,
            "price": 12345.678901 + k,
            "expires_at": "2026-12-06T13:00:00.123456Z",
        }
        for k in range(count)
    ]


@pytest.mark.parametrize("count", [0, 1, PART_ITEMS, PART_ITEMS + 1, 1334, 5 * PART_ITEMS + 7])
def test_a_long_list_travels_in_parts_each_within_the_frame_limit_and_comes_back_whole(count: int) -> None:
    offers = _offers(count)
    bodies = in_parts("OFFERS", {"round": 12, "offers": offers})
    assert len(bodies) == max(1, -(-count // PART_ITEMS))
    frames = [encode_peer("OFFERS", "switzerland", 1 + k, 0, b) for k, b in enumerate(bodies)]
    assert all(len(frame) <= MAX_FRAME_BYTES for frame in frames)
    inbox = PartsInbox()
    order = list(range(len(frames)))
    random.Random(count).shuffle(order)
    whole = []
    for k in order:
        message = decode_peer(frames[k])
        got = inbox.add(message.sender, message.kind, message.body)
        whole.append(got)
    assert all(w is None for w in whole[:-1])  # nothing is taken before its last part
    assert whole[-1] is not None and (whole[-1].part, whole[-1].parts) == (0, 1)
    assert [o.model_dump(mode="json") for o in whole[-1].offers] == offers


def test_a_part_sent_twice_counts_once_and_senders_and_rounds_are_kept_apart() -> None:
    inbox = PartsInbox()
    first, second = [
        decode_peer(encode_peer("BIDS", "lombardy", k + 1, 0, b)).body
        for k, b in enumerate(in_parts("BIDS", {"round": 3, "bids": _bids(PART_ITEMS + 2)}))
    ]
    assert inbox.add("lombardy", "BIDS", first) is None
    assert inbox.add("lombardy", "BIDS", first) is None  # a retry of part 0
    assert inbox.add("bavaria", "BIDS", second) is None  # another sender's part 1 completes nothing
    whole = inbox.add("lombardy", "BIDS", second)
    assert whole is not None and len(whole.bids) == PART_ITEMS + 2
    inbox.drop_before(4)
    assert inbox.add("bavaria", "BIDS", first) is None  # bavaria's part 1 was dropped with round 3


def _bids(count: int) -> list[dict[str, object]]:
    return [
        {
            "bid_id": f"lombardy.r3.b{k}",
            "offer_id": f"switzerland.r2.o{k}",
            "round": 3,
            "units": 5,
            "window": 3,
            "cell": "91:18",
            "max_price": 10.0,
            "priority": "routine",
        }
        for k in range(count)
    ]


@pytest.mark.parametrize(("part", "parts"), [(1, 1), (2, 2), (-1, 2), (0, 0), (0, MOST_PARTS + 1)])
def test_a_part_outside_its_count_is_refused_naming_it(part: int, parts: int) -> None:
    body = {"round": 3, "awards": [], "part": part, "parts": parts}
    with pytest.raises(ProtocolError, match="part"):
        encode_peer("AWARDS", "switzerland", 1, 0, body)


def test_one_part_more_than_a_list_may_take_is_refused() -> None:
    with pytest.raises(ProtocolError, match="parts"):
        in_parts("OFFERS", {"round": 1, "offers": [{}] * (PART_ITEMS * MOST_PARTS + 1)})


def _trades(count: int) -> list[dict[str, object]]:
    return [
        {
            "trade_id": f"t.lombardy.r{3 + k // 200}.b{k}",
            "host": "switzerland",
            "origin": "lombardy",
            "design": "face-shield-frame",
            "window": 13,
            "cell": "91:18",
            "units": 140,
            "price": 12345.678901,
            "round": 3 + k // 200,
            "priority": "routine",
            "state": "leased",
            "units_done": 17,
        }
        for k in range(count)
    ]


@pytest.mark.parametrize(("trades", "offers"), [(0, 0), (3, 0), (1_200, 0), (40, 1_334), (2_000, 600)])
def test_a_snapshot_of_thousands_of_trades_goes_in_slices_that_each_fit_a_frame(
    trades: int, offers: int
) -> None:
    """The trades with one peer are never forgotten: after a few sessions of ~200 trades a returning
    peer's SNAPSHOT would pass the frame limit, and the encoder would raise in the peer reader."""
    listed, offered = _trades(trades), _offers(offers)
    slices = snapshot_slices(7, listed, offered)
    frames = [encode_peer("SNAPSHOT", "lombardy", 1 + k, 0, body) for k, body in enumerate(slices)]
    assert all(len(frame) <= MAX_FRAME_BYTES for frame in frames)
    bodies = [decode_peer(frame).body for frame in frames]
    assert all(b.committed_seq == 7 for b in bodies)
    assert [t.model_dump(mode="json") for b in bodies for t in b.trades] == listed
    assert [o.model_dump(mode="json") for b in bodies for o in b.offers] == offered
