"""The ZeroMQ socket factory both ends of the mesh use, so socket options agree by construction.

Every socket gets LINGER (so shutdown never hangs) and MAXMSGSIZE (a hard memory guard set above
the codec's limit, so that oversized-but-bounded frames reach the codec and are counted there).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import zmq

from protocol.codec import MAX_FRAME_BYTES
from protocol.security import ClientKeys, KeyPair, make_client, make_server

#: libzmq disconnects a peer whose frame exceeds this; the codec's smaller limit is the one counted.
HARD_FRAME_LIMIT = 4 * MAX_FRAME_BYTES
LINGER_MS = 200
FIELD_TOPIC = b"field"
#: ZAP domains: the planner's authenticator judges a lab's conversation and its field subscription.
MESH_DOMAIN = "mesh"
FIELD_DOMAIN = "field"


def _common(sock: zmq.Socket) -> zmq.Socket:
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.MAXMSGSIZE, HARD_FRAME_LIMIT)
    return sock


def bind_router(
    ctx: zmq.Context, endpoint: str, curve: KeyPair | None = None, rcv_hwm: int = 100_000
) -> zmq.Socket:
    """The planner's conversation socket: addresses labs by identity; unroutable sends raise.

    With `curve` (the planner's key pair) it is a CurveZMQ server: every connection is encrypted
    and judged by the ZAP handler before any frame arrives. `rcv_hwm` bounds the frames queued
    unread per connection; past it libzmq stops reading that connection (TCP back-pressure).
    """
    sock = _common(ctx.socket(zmq.ROUTER))
    if curve is not None:
        make_server(sock, curve, MESH_DOMAIN)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.setsockopt(zmq.SNDHWM, 10_000)
    sock.setsockopt(zmq.RCVHWM, rcv_hwm)
    sock.bind(endpoint)
    return sock


def connect_dealer(
    ctx: zmq.Context, endpoint: str, identity: str, curve: ClientKeys | None = None
) -> zmq.Socket:
    """A lab's conversation socket; libzmq reconnects with backoff.

    Without `curve` the lab id is the socket's routing id. With `curve` the planner knows the lab by
    its admitted key instead (ZAP User-Id), and the routing id is left to the planner's ROUTER, so
    no peer can take over another lab's route by claiming its id.
    """
    sock = _common(ctx.socket(zmq.DEALER))
    if curve is not None:
        make_client(sock, curve)
    else:
        sock.setsockopt(zmq.IDENTITY, identity.encode())
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5_000)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.connect(endpoint)
    return sock


def bind_pub(ctx: zmq.Context, endpoint: str, curve: KeyPair | None = None) -> zmq.Socket:
    """The planner's field broadcast (readable by admitted labs only when `curve` is given)."""
    sock = _common(ctx.socket(zmq.PUB))
    if curve is not None:
        make_server(sock, curve, FIELD_DOMAIN)
    sock.setsockopt(zmq.SNDHWM, 1_000)
    sock.bind(endpoint)
    return sock


def connect_sub(
    ctx: zmq.Context, endpoint: str, topic: bytes = FIELD_TOPIC, curve: ClientKeys | None = None
) -> zmq.Socket:
    """A lab's subscription to the field."""
    sock = _common(ctx.socket(zmq.SUB))
    if curve is not None:
        make_client(sock, curve)
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5_000)
    sock.connect(endpoint)
    return sock


def field_endpoint_for(mesh_endpoint: str) -> str:
    """The default field endpoint: the mesh endpoint's port plus one (tcp) or a sibling name (ipc)."""
    parts = urlsplit(mesh_endpoint)
    if parts.scheme == "tcp" and parts.port is not None:
        return f"tcp://{parts.hostname}:{parts.port + 1}"
    if parts.scheme in {"ipc", "inproc"}:
        return f"{mesh_endpoint}-field"
    raise ValueError(f"mesh endpoint {mesh_endpoint!r}: expected tcp://HOST:PORT, ipc:// or inproc://")


def connectable(endpoint: str) -> str:
    """Turn a bind endpoint (tcp://*:5570, tcp://0.0.0.0:5570) into one a local peer can connect to."""
    return endpoint.replace("://*:", "://127.0.0.1:").replace("://0.0.0.0:", "://127.0.0.1:")
