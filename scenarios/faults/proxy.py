"""A lossy link for fault injection: a ZeroMQ proxy between labs and the planner that drops,
duplicates and reorders a share of the frames passing through, both ways.

Labs connect their DEALER to the proxy's ROUTER; for each lab the proxy opens a DEALER with the
lab's id to the planner's ROUTER and relays frames. It sees message frames, not bytes: what it tests
is the protocol's answer to lost, repeated and late messages (idempotent ids, re-sent ASSIGNs,
heartbeats listing a lab's work), which is what flaky networks do to messages once TCP gives up.
It needs an insecure mesh: CurveZMQ, by design, lets no one in the middle read or replay frames.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from protocol import transport

Send = Callable[[bytes], None]
#: Per (lab, direction): the frame held back, since when, and how to send it.
Held = dict[tuple[bytes, str], tuple[float, bytes, Send]]


@dataclass
class LinkStats:
    """What the proxy did to the frames, per direction ("up": lab to planner, "down": back)."""

    relayed: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    dropped: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    duplicated: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    reordered: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    #: Frames dropped by a one-way cut (`LossyProxy.cut`), not by chance.
    cut: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    unsent: int = 0

    def total(self, what: str) -> int:
        """Both directions of one counter (relayed, dropped, duplicated, reordered or cut)."""
        counts: dict[str, int] = getattr(self, what)
        return sum(counts.values())


class LossyProxy(threading.Thread):
    """Relays frames between `listen` (labs) and `planner_endpoint`, mistreating `rate` of each kind.

    Each frame is dropped with probability `rate`, else duplicated with probability `rate`, else
    held back with probability `rate` and sent after the next frame of the same lab and direction
    (or after `hold_ms` if none comes). Seeded, so a run can be repeated.
    """

    def __init__(
        self, listen: str, planner_endpoint: str, rate: float = 0.05, seed: int = 0, hold_ms: int = 200
    ) -> None:
        super().__init__(name="lossy-proxy", daemon=True)
        if not 0.0 <= rate < 1.0 / 3.0:
            raise ValueError(f"rate must be in [0, 1/3), got {rate}")
        self.listen = listen
        self.planner_endpoint = planner_endpoint
        self.rate = rate
        self.hold_ms = hold_ms
        self.stats = LinkStats()
        self._rng = random.Random(seed)
        self._halt = threading.Event()
        self._ready = threading.Event()
        #: (lab id, direction) -> monotonic instant until which all its frames are dropped.
        self._cuts: dict[tuple[bytes, str], float] = {}

    def start_and_wait(self) -> None:
        """Start relaying; return once the proxy's socket is bound."""
        self.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the proxy could not bind {self.listen}")

    def cut(self, lab_id: str, direction: str, seconds: float) -> None:
        """Drop every frame of `lab_id` going `direction` ("up": to the planner) for `seconds`.

        A one-way partition: the other direction still passes (with the usual faults).
        """
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        self._cuts[(lab_id.encode(), direction)] = time.monotonic() + seconds

    def stop(self) -> None:
        """Stop relaying and close the sockets."""
        self._halt.set()
        self.join(5)

    def run(self) -> None:
        ctx = zmq.Context()
        front = ctx.socket(zmq.ROUTER)
        front.setsockopt(zmq.LINGER, 0)
        front.setsockopt(zmq.ROUTER_HANDOVER, 1)
        front.bind(self.listen)
        backs: dict[bytes, zmq.Socket] = {}
        owner: dict[zmq.Socket, bytes] = {}
        held: Held = {}
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        self._ready.set()
        try:
            while not self._halt.is_set():
                events = dict(poller.poll(50))
                if front in events:
                    for _ in range(1000):
                        try:
                            lab, payload = front.recv_multipart(zmq.NOBLOCK)[:2]
                        except zmq.Again:
                            break
                        except ValueError:
                            continue
                        back = backs.get(lab)
                        if back is None:
                            back = transport.connect_dealer(
                                ctx, self.planner_endpoint, lab.decode(errors="replace")
                            )
                            backs[lab], owner[back] = back, lab
                            poller.register(back, zmq.POLLIN)
                        self._pass(_sender(back), payload, lab, "up", held)
                for back, lab in list(owner.items()):
                    if back not in events:
                        continue
                    for _ in range(1000):
                        try:
                            payload = back.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._pass(_sender(front, lab), payload, lab, "down", held)
                self._release_stale(held)
        finally:
            for sock in [front, *backs.values()]:
                sock.close(linger=0)
            ctx.term()

    def _pass(self, send: Send, payload: bytes, lab: bytes, direction: str, held: Held) -> None:
        """Apply the link's faults to one frame, then send what is left (and anything it releases)."""
        draw = self._rng.random()
        key = (lab, direction)
        if self._cuts.get(key, 0.0) > time.monotonic():
            self.stats.cut[direction] += 1
            return
        if draw < self.rate:
            self.stats.dropped[direction] += 1
            return
        copies = [payload]
        if draw < 2 * self.rate:
            self.stats.duplicated[direction] += 1
            copies.append(payload)
        elif draw < 3 * self.rate and key not in held:
            self.stats.reordered[direction] += 1
            held[key] = (time.monotonic(), payload, send)
            return
        late = held.pop(key, None)
        for frame in copies:
            self._send(send, frame, direction)
        if late is not None:
            self._send(late[2], late[1], direction)

    def _send(self, send: Send, frame: bytes, direction: str) -> None:
        try:
            send(frame)
            self.stats.relayed[direction] += 1
        except zmq.ZMQError:
            self.stats.unsent += 1

    def _release_stale(self, held: Held) -> None:
        """Frames held back longer than `hold_ms` go out anyway (late, but not lost)."""
        now = time.monotonic()
        for key, (since, payload, send) in list(held.items()):
            if now - since >= self.hold_ms / 1000.0:
                del held[key]
                self._send(send, payload, key[1])


def _sender(sock: zmq.Socket, routing_id: bytes | None = None) -> Send:
    """Send one frame on `sock` without blocking (to `routing_id` on a ROUTER)."""
    if routing_id is None:
        return lambda frame: sock.send(frame, zmq.NOBLOCK)
    return lambda frame: sock.send_multipart([routing_id, frame], zmq.NOBLOCK)
