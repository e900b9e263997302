"""A minimal planner for agent tests: a real ROUTER and PUB on 127.0.0.1, driven by the test.

It answers HELLO with WELCOME (unless told not to), heartbeats every welcomed lab and answers its
heartbeats, naming the latest heartbeat read (`heard`, the lab's work lease) like the real planner,
records every message it receives, and lets the test send bodies or raw bytes to a lab. With `deaf`
it goes on heartbeating but reads nothing new: as if the lab's frames were lost on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import zmq
import zmq.asyncio

from protocol import transport
from protocol.codec import decode, encode
from protocol.errors import ProtocolError
from protocol.messages import Body, Envelope, Field_, Heartbeat, Hello, Welcome


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (for a planner that binds later)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    try:
        port = sock.bind_to_random_port("tcp://127.0.0.1")
    finally:
        sock.close(linger=0)
        ctx.term()
    return port


class FakePlanner:
    """ROUTER + PUB bound by the test; records what labs say and answers HELLO with WELCOME."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str = "tcp://127.0.0.1:*",
        heartbeat_ms: int = 1000,
        epoch: int = 7,
        field_seq: int = 3,
        auto_welcome: bool = True,
    ) -> None:
        self.ctx = ctx
        self.heartbeat_ms = heartbeat_ms
        self.epoch = epoch
        self.field_seq = field_seq
        self.auto_welcome = auto_welcome
        self.heartbeats_on = True
        self.deaf = False
        self.heartbeats_sent = 0
        self._heard: dict[bytes, int] = {}
        self.received: list[tuple[bytes, Envelope]] = []
        self.bad_frames = 0
        self._seq = 0
        self._arrived = asyncio.Event()
        self._welcomed: set[bytes] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.router = transport.bind_router(ctx, endpoint)
        self.endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.pub = transport.bind_pub(ctx, "tcp://127.0.0.1:*")
        self.field_endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)

    async def __aenter__(self) -> FakePlanner:
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._beat())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.router.close(linger=0)
        self.pub.close(linger=0)

    # --- sending ---

    def envelope(self, body: Body, epoch: int | None = None) -> bytes:
        self._seq += 1
        return encode(
            Envelope(sender="planner", seq=self._seq, epoch=self.epoch if epoch is None else epoch, body=body)
        )

    async def send(self, lab_id: str, body: Body, epoch: int | None = None) -> None:
        await self.router.send_multipart([lab_id.encode(), self.envelope(body, epoch)])

    async def send_raw(self, lab_id: str, *frames: bytes) -> None:
        await self.router.send_multipart([lab_id.encode(), *frames])

    async def welcome(self, identity: bytes) -> None:
        body = Welcome(
            epoch=self.epoch,
            heartbeat_ms=self.heartbeat_ms,
            field_endpoint=self.field_endpoint,
            field_seq=self.field_seq,
            field=Field_(),
        )
        await self.router.send_multipart([identity, self.envelope(body)])
        self._welcomed.add(identity)

    async def publish(self, seq: int, body: Body | None = None) -> None:
        frame = encode(Envelope(sender="planner", seq=seq, epoch=self.epoch, body=body or Field_()))
        await self.pub.send_multipart([transport.FIELD_TOPIC, frame])

    async def publish_raw(self, *frames: bytes) -> None:
        await self.pub.send_multipart(list(frames))

    # --- reading ---

    def messages(
        self, kind: str | None = None, where: Callable[[Envelope], bool] | None = None
    ) -> list[Envelope]:
        """Every message received so far, of `kind` and matching `where` when given."""
        found = [m for _, m in self.received if kind is None or m.kind == kind]
        return [m for m in found if where is None or where(m)]

    async def wait_for(
        self,
        kind: str,
        where: Callable[[Envelope], bool] | None = None,
        timeout: float = 5.0,
        count: int = 1,
    ) -> Envelope:
        """The `count`-th message of `kind` (matching `where`), waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(kind, where)
            if len(found) >= count:
                return found[count - 1]
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [m.kind for _, m in self.received]
                raise AssertionError(f"no {kind} (#{count}) within {timeout} s; received {seen}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def _read(self) -> None:
        while True:
            frames = await self.router.recv_multipart()
            if len(frames) != 2:
                self.bad_frames += 1
                continue
            identity, payload = frames
            try:
                message = decode(payload)
            except ProtocolError:
                self.bad_frames += 1
                continue
            if self.deaf:
                continue
            self.received.append((identity, message))
            self._arrived.set()
            if isinstance(message.body, Hello):
                self._heard.pop(identity, None)
                if self.auto_welcome:
                    await self.welcome(identity)
            elif isinstance(message.body, Heartbeat):
                self._heard[identity] = message.seq
                if self.heartbeats_on and identity in self._welcomed:
                    await self._heartbeat(identity)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_ms / 1000.0)
            if not self.heartbeats_on:
                continue
            for identity in list(self._welcomed):
                await self._heartbeat(identity)

    async def _heartbeat(self, identity: bytes) -> None:
        with contextlib.suppress(zmq.ZMQError):
            body = Heartbeat(heard=self._heard.get(identity))
            await self.router.send_multipart([identity, self.envelope(body)])
            self.heartbeats_sent += 1
