"""The lossy link (scenarios.faults.proxy): a relay process between real ZeroMQ sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import zmq

from scenarios.demo import free_port
from scenarios.faults.proxy import LossyProxy, ProxyStopped


@pytest.fixture
def link(tmp_path) -> Iterator[tuple[LossyProxy, zmq.Socket, zmq.Context, str]]:
    """A proxy (no random faults) in front of a planner-side ROUTER."""
    ctx = zmq.Context()
    planner = ctx.socket(zmq.ROUTER)
    planner.setsockopt(zmq.LINGER, 0)
    planner_port = planner.bind_to_random_port("tcp://127.0.0.1")
    front = f"tcp://127.0.0.1:{free_port()}"
    proxy = LossyProxy(front, f"tcp://127.0.0.1:{planner_port}", rate=0.0, log_path=tmp_path / "proxy.log")
    proxy.start_and_wait()
    try:
        yield proxy, planner, ctx, front
    finally:
        proxy.stop()
        planner.close(linger=0)
        ctx.term()


def _lab(ctx: zmq.Context, endpoint: str, identity: bytes) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.connect(endpoint)
    return sock


def _received(sock: zmq.Socket, timeout_ms: int = 5000) -> list[bytes] | None:
    return sock.recv_multipart() if sock.poll(timeout_ms) else None


def _first(lab: zmq.Socket, planner: zmq.Socket, frame: bytes) -> list[bytes]:
    """Send `frame` until the planner reads it, as a lab repeats HELLO: the link opens its planner
    connection on a lab's first frame, and (as a lab's own socket would) loses what it is given
    before that connection is up."""
    for _ in range(50):
        lab.send(frame)
        got = _received(planner, 200)
        if got is not None:
            return got
    raise AssertionError(f"{frame!r} never reached the planner")


def test_frames_pass_both_ways_under_the_lab_id(link) -> None:
    proxy, planner, ctx, front = link
    lab = _lab(ctx, front, b"lab-1")
    try:
        assert _first(lab, planner, b"hello") == [b"lab-1", b"hello"]
        planner.send_multipart([b"lab-1", b"welcome"])
        assert _received(lab) == [b"welcome"]
        lab.send(b"heartbeat")
        assert _received(planner) == [b"lab-1", b"heartbeat"]
        while planner.poll(0):  # any repeated hello that got through after the first
            planner.recv_multipart()
    finally:
        lab.close(linger=0)
    stats = proxy.stats
    assert stats.relayed["up"] >= 2 and stats.relayed["down"] == 1
    assert stats.errors == 0


def test_frames_of_a_replaced_connection_are_dropped_as_stale(link) -> None:
    # libzmq gives a replaced connection a generated id (a zero byte first) and still delivers
    # what was queued on it; the proxy must not pass those on as if a new lab had come.
    proxy, planner, ctx, front = link
    stale = _lab(ctx, front, b"\x00\x01\x02\x03\x04")
    lab = _lab(ctx, front, b"lab-1")
    try:
        stale.send(b"old heartbeat")
        deadline = time.monotonic() + 10
        while proxy.stats.total("stale") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _first(lab, planner, b"new hello") == [b"lab-1", b"new hello"]  # nothing came before it
    finally:
        stale.close(linger=0)
        lab.close(linger=0)
    stats = proxy.stats
    assert stats.stale["up"] == 1
    assert stats.relayed["up"] >= 1


def test_a_one_way_cut_drops_one_direction_only(link) -> None:
    proxy, planner, ctx, front = link
    lab = _lab(ctx, front, b"lab-1")
    try:
        assert _first(lab, planner, b"first") == [b"lab-1", b"first"]
        while planner.poll(300):  # repeats of the first frame still on the way
            planner.recv_multipart()
        proxy.cut("lab-1", "up", 30.0)
        lab.send(b"lost")
        planner.send_multipart([b"lab-1", b"still heard"])
        assert _received(lab) == [b"still heard"]
        deadline = time.monotonic() + 10
        while proxy.stats.total("cut") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert planner.poll(0) == 0
    finally:
        lab.close(linger=0)
    assert proxy.stats.cut == {"up": 1, "down": 0}


def test_a_relay_that_is_gone_says_so(link) -> None:
    proxy, _, _, _ = link
    assert proxy.alive
    assert proxy._process is not None
    proxy._process.kill()
    proxy._process.join(10)
    with pytest.raises(ProxyStopped, match="has stopped"):
        proxy.cut("lab-1", "up", 1.0)
