"""Simulated labs for the load benchmark: many per process, each a real DEALER socket with CurveZMQ.

A worker process (`run_labs`) speaks the mesh protocol for its share of the labs: HELLO, then a
HEARTBEAT every interval, a CAPACITY report every `capacity_s` (a backlog that moves), ACCEPT and
DONE for every ASSIGN. While the shared `phase` is `BLAST` each lab also sends CAPACITY at
`blast_per_s`, to measure how many reports a second the planner ingests.

`raw_receiver` and `raw_sender` measure the yardstick in the same run: bare pyzmq and msgpack on
loopback (a ROUTER receiving and unpacking the same CAPACITY frames, no CURVE, no validation).
"""

from __future__ import annotations

import contextlib
import heapq
import random
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import msgpack
import zmq

from protocol import transport
from protocol.codec import decode, encode
from protocol.errors import ProtocolError
from protocol.messages import (
    PROTOCOL_VERSION,
    Accept,
    Assign,
    Capacity,
    Done,
    Envelope,
    Error,
    Heartbeat,
    Hello,
    Welcome,
)
from protocol.model import Lab, Location, Machine
from protocol.security import ClientKeys, KeyPair

#: Values of the shared phase flag.
RUN, BLAST, STOP = 0, 1, 2
#: What a lab's entry in the heap of things due is for: its HEARTBEAT (or HELLO), its CAPACITY.
_BEAT, _REPORT = 0, 1
#: The longest a lab process waits for frames before it looks at what is due.
TICK_MS = 20
MACHINES = ("p1", "l1", "b1")


def make_lab(index: int, rng: random.Random) -> Lab:
    """A lab somewhere in France able to make a face shield (printer, laser, bench, stock)."""
    return Lab(
        id=f"load-{index:05d}",
        name=f"Load lab {index}",
        location=Location(lat=rng.uniform(43.5, 50.5), lon=rng.uniform(-1.0, 7.5)),
        machines=[
            Machine(id="p1", processes=["fdm"], tags={"bed_mm": 250}, hours_per_day=rng.choice([8, 12, 16])),
            Machine(id="l1", processes=["laser"], hours_per_day=8),
            Machine(id="b1", processes=["assembly"], hours_per_day=10),
        ],
        stock={"petg": 50.0, "pla": 50.0, "pet_sheet_0_5": 500.0, "elastic": 5000.0},
    )


@dataclass
class _SimLab:
    lab: Lab
    sock: zmq.Socket
    seq: int = 0
    welcomed: bool = False
    next_heartbeat: float = 0.0
    next_capacity: float = 0.0
    backlog: float = 0.0
    hello_wait: float = 2.0
    index: int = 0


def run_labs(
    labs: list[dict[str, Any]],
    keys: list[tuple[bytes, bytes]],
    endpoint: str,
    planner_public: bytes,
    phase: Synchronized,  # type: ignore[type-arg]
    results: Any,
    heartbeat_s: float = 1.0,
    capacity_s: float = 2.0,
    blast_per_s: float = 40.0,
    seed: int = 0,
) -> None:
    """Run the given labs (as `Lab` JSON, with their key pairs) until `phase` is STOP; put counters
    (`sent`, `send_dropped`, `received`, `welcomed`, `assigns`) on `results`."""
    rng = random.Random(seed)
    ctx = zmq.Context()
    sims: list[_SimLab] = []
    for raw, (public, secret) in zip(labs, keys, strict=True):
        lab = Lab.model_validate(raw)
        curve = ClientKeys(own=KeyPair(public=public, secret=secret), server_public=planner_public)
        sock = transport.connect_dealer(ctx, endpoint, lab.id, curve)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sims.append(_SimLab(lab, sock, index=len(sims)))
    by_socket = {s.sock: s for s in sims}
    poller = zmq.Poller()
    for s in sims:
        poller.register(s.sock, zmq.POLLIN)
    counts = {"sent": 0, "send_dropped": 0, "received": 0, "welcomed": 0, "assigns": 0}

    def send(sim: _SimLab, body: Any) -> None:
        sim.seq += 1
        if isinstance(body, Heartbeat | Capacity):  # the frequent two, without the model's dump
            frame = quick_frame(sim.lab.id, sim.seq, body)
        else:
            frame = encode(Envelope(sender=sim.lab.id, seq=sim.seq, body=body))
        try:
            sim.sock.send(frame, flags=zmq.NOBLOCK)
            counts["sent"] += 1
        except zmq.Again:
            counts["send_dropped"] += 1

    # Each lab's next HEARTBEAT (or HELLO) and CAPACITY wait in one heap: a turn of the loop costs
    # the frames due, not a look at every lab (the labs' processes share the planner's cores: a
    # harness that spends them on itself understates what the planner can do).
    now = time.monotonic()
    due: list[tuple[float, int, int]] = []
    for index in range(len(sims)):
        due.append((now + rng.uniform(0, heartbeat_s), index, _BEAT))
        due.append((now + rng.uniform(0, capacity_s), index, _REPORT))
    heapq.heapify(due)
    blast_tick = 0.05
    next_blast = now
    try:
        while phase.value != STOP:
            for sock, _ in poller.poll(timeout=TICK_MS):
                sim = by_socket[sock]  # type: ignore[index]
                while True:
                    try:
                        frame = sim.sock.recv(flags=zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    counts["received"] += 1
                    was_welcomed = sim.welcomed
                    if _answer(sim, frame, send, counts):  # lost: HELLO again now
                        heapq.heappush(due, (time.monotonic(), sim.index, _BEAT))
                    elif sim.welcomed and not was_welcomed:
                        # Welcomed: heartbeat from now on, not at the HELLO's retry (2 s, then 4, ...),
                        # which a planner beating every 0.5 s takes for silence and loses the lab.
                        sim.next_heartbeat = time.monotonic() + heartbeat_s
                        heapq.heappush(due, (sim.next_heartbeat, sim.index, _BEAT))
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, index, kind = heapq.heappop(due)
                sim = sims[index]
                if kind == _BEAT:
                    if sim.next_heartbeat > now + 1e-6:
                        continue  # an older entry: this lab was rescheduled since
                    if not sim.welcomed:  # HELLO until WELCOME, backing off as a real lab does
                        sim.next_heartbeat = now + sim.hello_wait
                        sim.hello_wait = min(30.0, sim.hello_wait * 2)
                        send(sim, Hello(lab=sim.lab))
                    else:
                        sim.next_heartbeat = now + heartbeat_s
                        send(sim, Heartbeat())
                    heapq.heappush(due, (sim.next_heartbeat, index, _BEAT))
                else:
                    if sim.welcomed:
                        sim.backlog = max(0.0, sim.backlog + rng.uniform(-30, 30))
                        send(sim, Capacity(backlog_minutes={"p1": round(sim.backlog, 1)}))
                    heapq.heappush(due, (now + capacity_s, index, _REPORT))
            if phase.value == BLAST and now >= next_blast:
                per_tick = max(1, round(blast_per_s * blast_tick))
                next_blast = now + blast_tick
                for sim in sims:
                    if sim.welcomed:
                        for _ in range(per_tick):
                            sim.backlog = max(0.0, sim.backlog + rng.uniform(-1, 1))
                            send(sim, Capacity(backlog_minutes={"p1": round(sim.backlog, 1)}))
    finally:
        results.put(counts)
        for sim in sims:
            sim.sock.close(linger=0)
        ctx.term()


def _answer(sim: _SimLab, frame: bytes, send: Any, counts: dict[str, int]) -> bool:
    """What a cooperative lab answers: nothing to a heartbeat, ACCEPT then DONE to an ASSIGN.
    True when the planner lost the lab (it must say HELLO again now)."""
    try:
        message = decode(frame)
    except ProtocolError:
        return False
    body = message.body
    if isinstance(body, Welcome):
        if not sim.welcomed:
            counts["welcomed"] += 1
        sim.welcomed = True
    elif isinstance(body, Error) and body.code == "not_welcomed" and sim.welcomed:
        sim.welcomed, sim.hello_wait, sim.next_heartbeat = False, 2.0, 0.0
        return True
    elif isinstance(body, Assign):
        counts["assigns"] += 1
        send(sim, Accept(assignment_id=body.assignment_id))
        send(sim, Done(assignment_id=body.assignment_id, units_done=body.quantity))
    return False


def quick_frame(sender: str, seq: int, body: Heartbeat | Capacity) -> bytes:
    """The frame `protocol.codec.encode` makes of a lab's HEARTBEAT or CAPACITY, packed directly
    (about a fifth of the CPU: the simulated labs share the planner's cores, so what they spend is
    taken from it). tests/load checks both give the same bytes."""
    if isinstance(body, Heartbeat):
        kind = "HEARTBEAT"
        fields = {"active": body.active, "ended": body.ended, "heard": body.heard, "promise": body.promise}
    else:
        kind = "CAPACITY"
        fields = {"backlog_minutes": body.backlog_minutes}
    envelope = {"v": PROTOCOL_VERSION, "kind": kind, "sender": sender, "seq": seq, "epoch": 0, "body": fields}
    return msgpack.packb(envelope, use_bin_type=True)


def capacity_frame(lab_id: str = "load-00000") -> bytes:
    """The CAPACITY frame the raw yardstick sends: the same bytes a simulated lab sends."""
    return encode(Envelope(sender=lab_id, seq=1, body=Capacity(backlog_minutes={"p1": 123.4})))


def raw_receiver(endpoint: str, seconds: float, results: Any) -> None:
    """Bind a bare ROUTER, receive and msgpack-unpack frames; put the best rate over `seconds` of
    steady receiving (after the first frame) on `results`."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.bind(endpoint)
    count = 0
    try:
        if sock.poll(timeout=30_000):
            began = time.monotonic()
            deadline = began + seconds
            while time.monotonic() < deadline:
                if not sock.poll(timeout=100):
                    continue
                while True:
                    try:
                        _, frame = sock.recv_multipart(flags=zmq.NOBLOCK, copy=True)
                    except zmq.Again:
                        break
                    msgpack.unpackb(frame, raw=False)
                    count += 1
            results.put(count / (time.monotonic() - began))
        else:
            results.put(0.0)
    finally:
        sock.close(linger=0)
        ctx.term()


def raw_sender(endpoint: str, sockets: int, seconds: float) -> None:
    """Blast the CAPACITY frame from `sockets` bare DEALERs for `seconds` (drops at HWM are fine:
    the receiver's rate is what is measured)."""
    ctx = zmq.Context()
    socks = []
    for _ in range(sockets):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.SNDHWM, 10_000)
        sock.connect(endpoint)
        socks.append(sock)
    frame = capacity_frame()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for sock in socks:
                for _ in range(50):
                    with contextlib.suppress(zmq.Again):
                        sock.send(frame, flags=zmq.NOBLOCK)
    finally:
        for sock in socks:
            sock.close(linger=0)
        ctx.term()
