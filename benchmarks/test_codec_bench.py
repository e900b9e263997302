"""Codec throughput: encode + decode of mesh messages, against bare msgpack on the same data.

Run: make bench   (or .venv/bin/pytest benchmarks -k codec --benchmark-enable)
The difference between the two is the price of validation: what a bad frame costs us to catch.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgpack
import pytest

from protocol.codec import decode, encode
from protocol.messages import Assign, Capacity, Envelope, Progress
from protocol.model import Location
from protocol.okh import catalogue

BATCH = 1000
MESSAGES = {
    "capacity": Capacity(backlog_minutes={f"printer-{i}": 1234.5 + i for i in range(8)}),
    "progress": Progress(assignment_id="o-3fa9c1d2e4aa0b17-a1", units_done=17),
    "assign": Assign(
        assignment_id="o-3fa9c1d2e4aa0b17-a1",
        order_id="o-3fa9c1d2e4aa0b17",
        design=catalogue()["face-shield"],
        quantity=60,
        due_at=datetime(2026, 5, 1, tzinfo=UTC),
        delivery=Location(lat=45.75, lon=4.85, place="Lyon"),
        priority="urgent",
    ),
}


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_codec_roundtrip(benchmark, kind: str) -> None:
    message = Envelope(sender="fablab-lyon", seq=42, body=MESSAGES[kind], epoch=3)
    benchmark.group = f"codec {kind}"
    benchmark.extra_info["frame_bytes"] = len(encode(message))

    def roundtrip() -> None:
        for _ in range(BATCH):
            decode(encode(message))

    benchmark(roundtrip)
    assert decode(encode(message)) == message


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_bare_msgpack_roundtrip(benchmark, kind: str) -> None:
    message = Envelope(sender="fablab-lyon", seq=42, body=MESSAGES[kind], epoch=3)
    raw = msgpack.unpackb(encode(message))
    benchmark.group = f"codec {kind}"

    def roundtrip() -> None:
        for _ in range(BATCH):
            msgpack.unpackb(msgpack.packb(raw, use_bin_type=True), raw=False)

    benchmark(roundtrip)
    assert msgpack.unpackb(msgpack.packb(raw)) == raw
