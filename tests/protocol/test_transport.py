"""Endpoint helpers and socket options both ends rely on."""

from __future__ import annotations

import pytest
import zmq

from protocol import transport


def test_field_endpoint_is_next_to_the_mesh_endpoint() -> None:
    assert transport.field_endpoint_for("tcp://127.0.0.1:5570") == "tcp://127.0.0.1:5571"
    assert transport.field_endpoint_for("ipc:///tmp/mesh") == "ipc:///tmp/mesh-field"
    with pytest.raises(ValueError, match="expected tcp://HOST:PORT"):
        transport.field_endpoint_for("udp://x:1")


def test_bind_endpoints_become_connectable() -> None:
    assert transport.connectable("tcp://*:5571") == "tcp://127.0.0.1:5571"
    assert transport.connectable("tcp://0.0.0.0:5571") == "tcp://127.0.0.1:5571"
    assert transport.connectable("tcp://10.1.2.3:5571") == "tcp://10.1.2.3:5571"


def test_sockets_carry_linger_and_size_guard() -> None:
    ctx = zmq.Context()
    try:
        router = transport.bind_router(ctx, "tcp://127.0.0.1:*")
        dealer = transport.connect_dealer(ctx, router.getsockopt_string(zmq.LAST_ENDPOINT), "lab-1")
        for sock in (router, dealer):
            assert sock.getsockopt(zmq.LINGER) == transport.LINGER_MS
            assert sock.getsockopt(zmq.MAXMSGSIZE) == transport.HARD_FRAME_LIMIT
        assert dealer.getsockopt(zmq.IDENTITY) == b"lab-1"
        router.close()
        dealer.close()
    finally:
        ctx.term()
