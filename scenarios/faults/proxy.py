"""A lossy link for fault injection: a ZeroMQ proxy between labs and the planner that drops,
duplicates and reorders a share of the frames passing through, both ways.

Labs connect their DEALER to the proxy's ROUTER; for each lab the proxy opens a DEALER with the
lab's id to the planner's ROUTER and relays frames. It sees message frames, not bytes: what it tests
is the protocol's answer to lost, repeated and late messages (idempotent ids, re-sent ASSIGNs,
heartbeats listing a lab's work), which is what flaky networks do to messages once TCP gives up.
It needs an insecure mesh: CurveZMQ, by design, lets no one in the middle read or replay frames.

The relay runs in a process of its own. A link must add only the faults it is asked for: in a
thread it would share an interpreter lock with whatever else the caller runs (the chaos harness
polls HTTP, probes /health and sends garbage), and the frames would wait for that lock; with a
300 ms heartbeat, a link that stalls for 900 ms loses every lab behind it. The caller's handle
(`LossyProxy`) starts it, asks it for one-way cuts and its counters over a pipe, and stops it.

When a lab reconnects under its own id, libzmq hands the id over to the new connection and gives
the old one a generated id (a zero byte and four more) under which the frames still queued on it
are delivered. Those frames are *stale*: the lab has moved on, so they are dropped and counted,
as a real link loses what was in flight on a closed connection; relaying them would open a
connection to the planner under a made-up id for each of them.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import zmq

from protocol import transport

log = logging.getLogger(__name__)
Send = Callable[[bytes], None]
#: Per (lab, direction): the frame held back, since when, and how to send it.
Held = dict[tuple[bytes, str], tuple[float, bytes, Send]]
#: How long the handle waits for the relay process to answer (start, a command, stop).
ANSWER_TIMEOUT_S = 30.0


@dataclass
class LinkStats:
    """What the proxy did to the frames, per direction ("up": lab to planner, "down": back)."""

    relayed: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    dropped: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    duplicated: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    reordered: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    #: Frames dropped by a one-way cut (`LossyProxy.cut`), not by chance.
    cut: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    #: Frames from a lab's replaced connection (generated routing id, see the module docstring).
    stale: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    unsent: int = 0
    #: Frames whose relaying raised (logged and dropped; the relay goes on).
    errors: int = 0
    #: The longest the relay loop went between two turns, in ms: the link's own delay.
    loop_gap_max_ms: float = 0.0

    def total(self, what: str) -> int:
        """Both directions of one counter (relayed, dropped, duplicated, reordered, cut or stale)."""
        counts: dict[str, int] = getattr(self, what)
        return sum(counts.values())


class ProxyStopped(RuntimeError):
    """The relay process is gone (or never answered): every lab behind it has lost its link."""


class LossyProxy:
    """Relays frames between `listen` (labs) and `planner_endpoint`, mistreating `rate` of each kind.

    Each frame is dropped with probability `rate`, else duplicated with probability `rate`, else
    held back with probability `rate` and sent after the next frame of the same lab and direction
    (or after `hold_ms` if none comes). Seeded, so a run can be repeated. The relay runs in its own
    process (module docstring); `log_path` gets its log.
    """

    def __init__(
        self,
        listen: str,
        planner_endpoint: str,
        rate: float = 0.05,
        seed: int = 0,
        hold_ms: int = 200,
        log_path: Path | None = None,
    ) -> None:
        if not 0.0 <= rate < 1.0 / 3.0:
            raise ValueError(f"rate must be in [0, 1/3), got {rate}")
        self.listen = listen
        self.planner_endpoint = planner_endpoint
        self.rate = rate
        self.seed = seed
        self.hold_ms = hold_ms
        self.log_path = log_path
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._final: LinkStats | None = None

    def start_and_wait(self) -> None:
        """Start the relay process; return once its socket is bound (ProxyStopped if it is not)."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        config = {
            "listen": self.listen,
            "planner_endpoint": self.planner_endpoint,
            "rate": self.rate,
            "seed": self.seed,
            "hold_ms": self.hold_ms,
            "log_path": str(self.log_path) if self.log_path else None,
        }
        self._process = context.Process(
            target=_relay_main, args=(config, theirs), name="lossy-proxy", daemon=True
        )
        self._process.start()
        theirs.close()
        self._conn = ours
        answer = self._receive("start")
        if answer != "ready":
            self.stop()
            raise ProxyStopped(f"the proxy could not bind {self.listen}: {answer}")

    @property
    def alive(self) -> bool:
        """True while the relay process runs."""
        return self._process is not None and self._process.is_alive()

    def cut(self, lab_id: str, direction: str, seconds: float) -> None:
        """Drop every frame of `lab_id` going `direction` ("up": to the planner) for `seconds`.

        A one-way partition: the other direction still passes (with the usual faults).
        """
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        self._ask(("cut", lab_id, direction, seconds), "a cut")

    @property
    def stats(self) -> LinkStats:
        """The relay's counters now (the last ones it gave, once stopped)."""
        if self._final is not None:
            return self._final
        answer = self._ask(("stats",), "its counters")
        return LinkStats(**answer)

    def stop(self) -> None:
        """Stop relaying (keeping the last counters) and end the process."""
        if self._process is None:
            return
        if self._final is None and self.alive:
            with contextlib.suppress(ProxyStopped):  # gone already: its last counters are lost with it
                self._final = LinkStats(**self._ask(("stop",), "stopping"))
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _ask(self, command: tuple[Any, ...], what: str) -> Any:
        if self._conn is None or not self.alive:
            raise ProxyStopped(self._gone(what))
        try:
            self._conn.send(command)
        except (OSError, EOFError) as exc:
            raise ProxyStopped(self._gone(what)) from exc
        return self._receive(what)

    def _receive(self, what: str) -> Any:
        assert self._conn is not None
        try:
            if not self._conn.poll(ANSWER_TIMEOUT_S):
                raise ProxyStopped(f"the lossy proxy did not answer ({what}) within {ANSWER_TIMEOUT_S:g} s")
            return self._conn.recv()
        except (OSError, EOFError) as exc:
            raise ProxyStopped(self._gone(what)) from exc

    def _gone(self, what: str) -> str:
        code = self._process.exitcode if self._process is not None else None
        where = f"; its log: {self.log_path}" if self.log_path else ""
        return f"the lossy proxy has stopped (exit code {code}) when asked for {what}{where}"


def _relay_main(config: dict[str, Any], conn: Connection) -> None:
    """The relay process: set up its log, bind, then relay until told to stop."""
    if config["log_path"]:
        logging.basicConfig(
            filename=config["log_path"],
            level=logging.INFO,
            format="%(asctime)s proxy %(levelname)s %(message)s",
        )
    relay = _Relay(
        config["listen"], config["planner_endpoint"], config["rate"], config["seed"], config["hold_ms"]
    )
    try:
        relay.run(conn)
    except Exception:
        log.exception("the relay stopped")
        raise


class _Relay:
    """The relay loop itself (one process): sockets, faults, cuts and the command pipe."""

    def __init__(self, listen: str, planner_endpoint: str, rate: float, seed: int, hold_ms: int) -> None:
        self.listen = listen
        self.planner_endpoint = planner_endpoint
        self.rate = rate
        self.hold_ms = hold_ms
        self.stats = LinkStats()
        self._rng = random.Random(seed)
        #: (lab id, direction) -> monotonic instant until which all its frames are dropped.
        self._cuts: dict[tuple[bytes, str], float] = {}
        self._logged_stale: set[bytes] = set()

    def run(self, conn: Connection) -> None:
        ctx = zmq.Context()
        front = ctx.socket(zmq.ROUTER)
        front.setsockopt(zmq.LINGER, 0)
        front.setsockopt(zmq.ROUTER_HANDOVER, 1)
        try:
            front.bind(self.listen)
        except zmq.ZMQError as exc:
            conn.send(str(exc))
            front.close(linger=0)
            ctx.term()
            return
        backs: dict[bytes, zmq.Socket] = {}
        owner: dict[zmq.Socket, bytes] = {}
        held: Held = {}
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        poller.register(conn.fileno(), zmq.POLLIN)
        conn.send("ready")
        log.info(
            "relaying %s -> %s (rate %.3f, hold %d ms)",
            self.listen,
            self.planner_endpoint,
            self.rate,
            self.hold_ms,
        )
        last_turn = time.monotonic()
        try:
            while True:
                events = dict(poller.poll(50))
                now = time.monotonic()
                self.stats.loop_gap_max_ms = max(self.stats.loop_gap_max_ms, (now - last_turn - 0.05) * 1000)
                last_turn = now
                if conn.fileno() in events and not self._command(conn):
                    return
                if front in events:
                    self._from_labs(ctx, front, backs, owner, poller, held)
                for back, lab in list(owner.items()):
                    if back in events:
                        self._from_planner(front, back, lab, held)
                self._release_held(held)
        finally:
            for sock in [front, *backs.values()]:
                sock.close(linger=0)
            ctx.term()

    def _command(self, conn: Connection) -> bool:
        """Carry out one command from the handle; False when it says stop."""
        try:
            command = conn.recv()
        except (EOFError, OSError):  # the handle is gone: so is the reason to relay
            return False
        if command[0] == "cut":
            _, lab_id, direction, seconds = command
            self._cuts[(lab_id.encode(), direction)] = time.monotonic() + seconds
            conn.send(True)
            return True
        conn.send(asdict(self.stats))
        return command[0] != "stop"

    def _from_labs(
        self,
        ctx: zmq.Context,
        front: zmq.Socket,
        backs: dict[bytes, zmq.Socket],
        owner: dict[zmq.Socket, bytes],
        poller: zmq.Poller,
        held: Held,
    ) -> None:
        for _ in range(1000):
            try:
                parts = front.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) < 2:
                continue
            lab, payload = parts[0], parts[1]
            if lab.startswith(b"\x00"):  # a connection its lab replaced (module docstring)
                self.stats.stale["up"] += 1
                if lab not in self._logged_stale:
                    self._logged_stale.add(lab)
                    log.info("frames from a replaced connection (%r) dropped as stale", lab)
                continue
            try:
                back = backs.get(lab)
                if back is None:
                    back = _back_socket(ctx, self.planner_endpoint, lab)
                    backs[lab], owner[back] = back, lab
                    poller.register(back, zmq.POLLIN)
                self._pass(_sender(back), payload, lab, "up", held)
            except Exception:  # one frame must not end the link for every lab
                self.stats.errors += 1
                log.exception("relaying a frame from %r to the planner failed; frame dropped", lab)

    def _from_planner(self, front: zmq.Socket, back: zmq.Socket, lab: bytes, held: Held) -> None:
        for _ in range(1000):
            try:
                payload = back.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._pass(_sender(front, lab), payload, lab, "down", held)
            except Exception:
                self.stats.errors += 1
                log.exception("relaying a frame from the planner to %r failed; frame dropped", lab)

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

    def _release_held(self, held: Held) -> None:
        """Frames held back longer than `hold_ms` go out anyway (late, but not lost)."""
        now = time.monotonic()
        for key, (since, payload, send) in list(held.items()):
            if now - since >= self.hold_ms / 1000.0:
                del held[key]
                self._send(send, payload, key[1])


def _back_socket(ctx: zmq.Context, endpoint: str, lab: bytes) -> zmq.Socket:
    """The proxy's connection to the planner for one lab, under the lab's id.

    Like a lab's own DEALER it takes nothing while it has no connection (IMMEDIATE): frames sent then
    are lost, as they would be on the lab's own socket. Queuing them instead delivered every HELLO a
    lab had repeated while the planner restarted, all at once to the new planner (a lab re-joined 12
    times in 0.2 s in one run, at the moment the planner was busiest). It reconnects within half a
    second: the link adds no reconnection backoff of its own to the planner's restart.
    """
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, transport.HARD_FRAME_LIMIT)
    sock.setsockopt(zmq.IDENTITY, lab)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
    sock.connect(endpoint)
    return sock


def _sender(sock: zmq.Socket, routing_id: bytes | None = None) -> Send:
    """Send one frame on `sock` without blocking (to `routing_id` on a ROUTER)."""
    if routing_id is None:
        return lambda frame: sock.send(frame, zmq.NOBLOCK)
    return lambda frame: sock.send_multipart([routing_id, frame], zmq.NOBLOCK)
