"""The codec: every message round-trips; any bytes at all decode or raise ProtocolError, nothing else."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codec import MAX_FRAME_BYTES, decode, encode
from protocol.errors import ProtocolError
from protocol.messages import (
    BODY_TYPES,
    Accept,
    Assign,
    Capacity,
    DemandTrace,
    Done,
    Envelope,
    Failed,
    Field_,
    Heartbeat,
    Hello,
    Progress,
    Refuse,
    Stock,
)
from protocol.model import Lab, Location, Machine
from protocol.okh import catalogue

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
LAB = Lab(
    id="fablab-lyon",
    name="Fablab Lyon",
    location=Location(lat=45.75, lon=4.85, place="Lyon"),
    machines=[
        Machine(id="p1", processes=["fdm"], tags={"bed_mm": 250}),
        Machine(id="l1", processes=["laser"], hours_per_day=6),
    ],
    stock={"petg": 3.5, "elastic": 40.0},
)

ids = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True)
counts = st.integers(min_value=0, max_value=10_000)
reasons = st.text(min_size=1, max_size=100)
bodies = st.one_of(
    st.just(Heartbeat()),
    st.builds(Hello, lab=st.just(LAB), backlog_minutes=st.dictionaries(ids, st.floats(0, 1e6), max_size=3)),
    st.builds(Capacity, backlog_minutes=st.dictionaries(ids, st.floats(0, 1e6), max_size=5)),
    st.builds(Stock, stock=st.dictionaries(ids, st.floats(0, 1e6), max_size=5)),
    st.builds(Accept, assignment_id=ids),
    st.builds(Refuse, assignment_id=ids, reason=reasons),
    st.builds(Progress, assignment_id=ids, units_done=counts),
    st.builds(Done, assignment_id=ids, units_done=counts),
    st.builds(Failed, assignment_id=ids, units_done=counts, reason=reasons),
    st.builds(
        Assign,
        assignment_id=ids,
        order_id=ids,
        design=st.sampled_from(list(catalogue().values())),
        quantity=st.integers(1, 1000),
        due_at=st.just(NOW + timedelta(days=2)),
        delivery=st.just(LAB.location),
        priority=st.sampled_from(["routine", "urgent", "emergency"]),
    ),
    st.builds(  # with what the plan meant (the optional fields)
        Assign,
        assignment_id=ids,
        order_id=ids,
        design=st.sampled_from(list(catalogue().values())),
        quantity=st.just(1000),
        due_at=st.just(NOW + timedelta(days=2)),
        delivery=st.just(LAB.location),
        priority=st.sampled_from(["routine", "urgent", "emergency"]),
        road_hours=st.floats(0.0, 200.0),
        on_time_units=st.integers(0, 1000),
        arrive_by=st.just(NOW + timedelta(days=3, hours=5)),
    ),
)


@given(body=bodies, seq=st.integers(0, 2**40), epoch=st.integers(0, 1000), sender=ids)
def test_every_message_round_trips(body, seq, epoch, sender) -> None:
    message = Envelope(sender=sender, seq=seq, body=body, epoch=epoch)
    assert decode(encode(message)) == message


@settings(max_examples=500)
@given(frame=st.binary(max_size=2048))
def test_random_bytes_never_raise_anything_but_protocol_error(frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(frame)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=500)
@given(kind=st.sampled_from(sorted(BODY_TYPES)), body=msgpack_values, extra=st.booleans())
def test_well_formed_envelopes_with_random_bodies_never_crash(kind: str, body: object, extra: bool) -> None:
    raw = {"v": 1, "kind": kind, "sender": "lab-x", "seq": 1, "epoch": 0, "body": body}
    if extra:
        raw["surprise"] = 1
    with contextlib.suppress(ProtocolError):
        decode(msgpack.packb(raw))


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"v": 2, "kind": "HEARTBEAT", "sender": "a", "seq": 1, "epoch": 0, "body": {}}, "version"),
        ({"v": 1, "kind": "NOPE", "sender": "a", "seq": 1, "epoch": 0, "body": {}}, "unknown message kind"),
        ({"v": 1, "kind": "HEARTBEAT", "sender": "", "seq": 1, "epoch": 0, "body": {}}, "sender"),
        ({"v": 1, "kind": "HEARTBEAT", "sender": "a", "seq": -1, "epoch": 0, "body": {}}, "seq"),
        ({"v": 1, "kind": "HEARTBEAT", "sender": "a", "seq": 1, "body": {}}, "missing ['epoch']"),
        (
            {
                "v": 1,
                "kind": "PROGRESS",
                "sender": "a",
                "seq": 1,
                "epoch": 0,
                "body": {"assignment_id": "x", "units_done": -2},
            },
            "body.units_done",
        ),
        ({"v": 1, "kind": "HEARTBEAT", "sender": "a", "seq": 1, "epoch": 0, "body": {"x": 1}}, "body.x"),
    ],
)
def test_errors_name_the_field(raw: dict, words: str) -> None:
    with pytest.raises(ProtocolError, match=None) as caught:
        decode(msgpack.packb(raw))
    assert words in str(caught.value)


def test_size_limit_both_ways() -> None:
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decode(b"\x80" * (MAX_FRAME_BYTES + 1))
    huge = Field_(
        demand=[
            DemandTrace(
                order_id=f"o-{i}", design="face-shield", location=LAB.location, unmet=1, priority="routine"
            )
            for i in range(5000)
        ]
    )
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        encode(Envelope(sender="planner", seq=1, body=huge))


def test_timestamps_travel_as_iso8601_utc() -> None:
    design = catalogue()["finger-splint"]
    assign = Assign(
        assignment_id="a1",
        order_id="o1",
        design=design,
        quantity=3,
        due_at=NOW,
        delivery=LAB.location,
        priority="urgent",
    )
    raw = msgpack.unpackb(encode(Envelope(sender="planner", seq=1, body=assign)))
    assert raw["body"]["due_at"] in {"2026-05-01T12:00:00Z", "2026-05-01T12:00:00+00:00"}


def _assign_frame(**extra: object) -> bytes:
    """An ASSIGN frame as a planner sends it: without the optional fields unless given."""
    body = {
        "assignment_id": "o1-a1",
        "order_id": "o1",
        "design": catalogue()["finger-splint"].model_dump(mode="json"),
        "quantity": 5,
        "due_at": "2026-05-01T12:00:00Z",
        "delivery": LAB.location.model_dump(mode="json"),
        "priority": "urgent",
        **extra,
    }
    return msgpack.packb({"v": 1, "kind": "ASSIGN", "sender": "planner", "seq": 1, "epoch": 0, "body": body})


def test_an_assign_without_the_plans_dates_still_decodes_and_one_with_them_keeps_them() -> None:
    old = decode(_assign_frame()).body
    assert isinstance(old, Assign)
    assert (old.road_hours, old.on_time_units, old.arrive_by) == (None, None, None)
    new = decode(_assign_frame(road_hours=7.5, on_time_units=3, arrive_by="2026-05-02T08:00:00Z")).body
    assert isinstance(new, Assign)
    assert (new.road_hours, new.on_time_units) == (7.5, 3)
    assert new.arrive_by == datetime(2026, 5, 2, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"on_time_units": 6}, "on_time_units 6 exceeds quantity 5"),
        ({"on_time_units": -1}, "body.on_time_units"),
        ({"road_hours": -2.0}, "body.road_hours"),
        ({"arrive_by": "soon"}, "body.arrive_by"),
    ],
)
def test_an_assign_with_bad_plan_fields_is_refused_naming_the_field(extra: dict, words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(_assign_frame(**extra))
    assert words in str(caught.value)
