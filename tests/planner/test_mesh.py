"""The planner's mesh endpoint against a raw DEALER: garbage is counted and dropped, HELLO still works."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import msgpack
import pytest
import zmq
from fastapi.testclient import TestClient

from planner.app import PlannerSettings
from protocol import transport
from protocol.codec import MAX_FRAME_BYTES, decode, encode
from protocol.messages import (
    Accept,
    Assign,
    Body,
    Capacity,
    Done,
    Envelope,
    Heartbeat,
    Hello,
    Shipped,
    Stock,
    Welcome,
)
from protocol.model import Lab, Location, Machine


@pytest.fixture
def dealer(settings: PlannerSettings) -> Iterator[zmq.Socket]:
    ctx = zmq.Context()
    sock = transport.connect_dealer(ctx, settings.mesh_endpoint, "lab-test")
    yield sock
    sock.close(linger=0)
    ctx.term()


def _recv(sock: zmq.Socket, timeout_ms: int = 5000) -> Envelope:
    assert sock.poll(timeout_ms), "no answer from the planner"
    return decode(sock.recv())


def _recv_kind(sock: zmq.Socket, kind: str, timeout_s: float = 5.0) -> Envelope:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = _recv(sock, int((deadline - time.monotonic()) * 1000) + 1)
        if message.kind == kind:
            return message
    raise AssertionError(f"no {kind} within {timeout_s} s")


LAB = Lab(
    id="lab-test",
    name="Test lab",
    location=Location(lat=48.1, lon=-1.7, place="Rennes"),
    machines=[Machine(id="p1", processes=["fdm"], tags={"bed_mm": 250})],
    stock={"pla": 1.0},
)


def test_garbage_is_counted_answered_and_mesh_keeps_serving(client: TestClient, dealer: zmq.Socket) -> None:
    garbage = [
        b"",
        os.urandom(64),
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"v": 99, "kind": "HELLO", "sender": "lab-test", "seq": 1, "epoch": 0, "body": {}}),
        msgpack.packb({"v": 1, "kind": "LAUNCH", "sender": "lab-test", "seq": 1, "epoch": 0, "body": {}}),
        msgpack.packb(
            {
                "v": 1,
                "kind": "STOCK",
                "sender": "lab-test",
                "seq": 1,
                "epoch": 0,
                "body": {"stock": {"pla": "lots"}},
            }
        ),
        b"\x00" * (MAX_FRAME_BYTES + 1),
    ]
    for frame in garbage:
        dealer.send(frame)
    first_error = _recv_kind(dealer, "ERROR")
    assert first_error.body.reason and first_error.body.code == "malformed"  # the lab can read why
    deadline = time.monotonic() + 5
    while client.get("/health").json()["frames_rejected"] < len(garbage) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/health").json()["frames_rejected"] == len(garbage)
    # Messages before HELLO are refused too, then a proper HELLO is welcomed.
    dealer.send(encode(Envelope(sender="lab-test", seq=1, body=Heartbeat())))
    dealer.send(encode(Envelope(sender="lab-test", seq=2, body=Hello(lab=LAB))))
    welcome = _recv_kind(dealer, "WELCOME")
    assert isinstance(welcome.body, Welcome) and welcome.body.epoch == 1
    assert client.get("/labs/lab-test").json()["live"] is True


def test_impersonation_on_a_connection_is_refused(client: TestClient, dealer: zmq.Socket) -> None:
    other = LAB.model_copy(update={"id": "someone-else"})
    dealer.send(encode(Envelope(sender="lab-test", seq=1, body=Hello(lab=other))))
    error = _recv_kind(dealer, "ERROR")
    assert "someone-else" in error.body.reason and error.body.code == "invalid"
    assert client.get("/labs").json() == []


def test_silent_lab_is_lost(client: TestClient, dealer: zmq.Socket, settings: PlannerSettings) -> None:
    dealer.send(encode(Envelope(sender="lab-test", seq=1, body=Hello(lab=LAB))))
    _recv_kind(dealer, "WELCOME")
    assert client.get("/labs/lab-test").json()["live"] is True
    deadline = time.monotonic() + settings.heartbeat_ms / 1000 * (settings.liveness + 3)
    while client.get("/labs/lab-test").json()["live"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/labs/lab-test").json()["live"] is False


def test_a_flood_of_garbage_is_rate_limited_counted_and_the_planner_keeps_answering(
    client: TestClient, dealer: zmq.Socket
) -> None:
    flood = 10_000
    # Sent while /health is asked: the mesh reads frames as they come, and must leave turns to HTTP.
    sender = threading.Thread(target=lambda: [dealer.send(os.urandom(16 + i % 48)) for i in range(flood)])
    sender.start()
    slowest = 0.0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        started = time.monotonic()
        health = client.get("/health").json()
        slowest = max(slowest, time.monotonic() - started)
        if health["frames_rejected"] >= flood:
            break
        time.sleep(0.02)
    sender.join()
    assert health["frames_rejected"] == flood, "every frame is counted, none crashes the planner"
    assert health["frames_rate_limited"] > 0, "a lab sending thousands a second is held back"
    assert slowest < 1.0, f"/health took {slowest:.2f} s during the flood"
    codes = set()
    while dealer.poll(200):
        codes.add(decode(dealer.recv()).body.code)
    assert codes <= {"malformed", "rate_limited"} and codes, codes
    time.sleep(2.5)  # the bucket refills; the lab is served again
    dealer.send(encode(Envelope(sender="lab-test", seq=1, body=Hello(lab=LAB))))
    assert isinstance(_recv_kind(dealer, "WELCOME").body, Welcome)


def test_every_end_is_acknowledged_in_the_next_heartbeat(client: TestClient, dealer: zmq.Socket) -> None:
    # A lab repeats DONE/FAILED until acknowledged (SPEC.md section 5), even for an assignment the
    # planner does not know, where repeating could never help.
    splint_lab = LAB.model_copy(
        update={
            "machines": [Machine(id="p1", processes=["fdm"]), Machine(id="bench", processes=["assembly"])],
            "stock": {"pla": 1.0},
        }
    )
    seq = iter(range(1, 100))

    def say(body: Body) -> None:
        dealer.send(encode(Envelope(sender="lab-test", seq=next(seq), epoch=1, body=body)))

    say(Hello(lab=splint_lab))
    _recv_kind(dealer, "WELCOME")
    order = {
        "design": "finger-splint",
        "quantity": 2,
        "due_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        "delivery": {"lat": 48.1, "lon": -1.7, "place": "Rennes"},
    }
    assert client.post("/orders", json=order).status_code == 201
    assign = _recv_kind(dealer, "ASSIGN", timeout_s=15).body
    assert isinstance(assign, Assign)
    say(Accept(assignment_id=assign.assignment_id))
    say(Done(assignment_id=assign.assignment_id, units_done=2))
    say(Done(assignment_id="a-never-given", units_done=1))
    assert _recv_kind(dealer, "ERROR").body.code == "invalid"
    acknowledged: set[str] = set()
    deadline = time.monotonic() + 5
    while acknowledged != {assign.assignment_id, "a-never-given"} and time.monotonic() < deadline:
        heartbeat = _recv_kind(dealer, "HEARTBEAT").body
        acknowledged |= set(heartbeat.ended or ())
        say(Heartbeat())
    assert acknowledged == {assign.assignment_id, "a-never-given"}
    assert client.get("/orders").json()[0]["units_made"] == 2


def test_the_planner_answers_each_heartbeat_with_the_latest_one_it_read(
    client: TestClient, dealer: zmq.Socket
) -> None:
    # SPEC.md section 5: `heard` is the lab's work lease; only a lab HEARTBEAT earns one, and the
    # planner answers each at once.
    def say(seq: int, body: Body) -> None:
        dealer.send(encode(Envelope(sender="lab-test", seq=seq, epoch=1, body=body)))

    def answer_to(seq: int) -> Heartbeat:
        while True:
            heartbeat = _recv_kind(dealer, "HEARTBEAT").body
            assert isinstance(heartbeat, Heartbeat)
            if heartbeat.heard == seq:
                return heartbeat
            assert heartbeat.heard is None or heartbeat.heard < seq  # a periodic one, sent before

    say(5, Hello(lab=LAB))
    assert isinstance(_recv_kind(dealer, "WELCOME").body, Welcome)
    for seq in (6, 9, 12):  # seqs may skip: messages lost on the way
        say(seq, Heartbeat())
        answer_to(seq)
    say(13, Stock(stock={"pla": 1.0}))  # not a heartbeat: earns no lease
    periodic = _recv_kind(dealer, "HEARTBEAT").body
    assert isinstance(periodic, Heartbeat) and periodic.heard == 12


def test_capacity_reports_are_coalesced_per_lab_and_the_newest_is_applied(
    client: TestClient, dealer: zmq.Socket
) -> None:
    dealer.send(encode(Envelope(sender="lab-test", seq=1, body=Hello(lab=LAB))))
    _recv_kind(dealer, "WELCOME")
    for seq in range(2, 152):  # a burst far faster than the reports are applied (every 0.2 s)
        dealer.send(encode(Envelope(sender="lab-test", seq=seq, body=Capacity(backlog_minutes={"p1": seq}))))
    core = client.app.state.planner.core  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while core.labs["lab-test"].backlog.get("p1") != 151 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert core.labs["lab-test"].backlog == {"p1": 151}, "the newest report wins"
    health = client.get("/health").json()
    assert health["capacity_applied"] + health["capacity_coalesced"] == 150
    assert health["capacity_coalesced"] > 0 and health["capacity_applied"] < 150


def test_transfer_answers_about_unknown_transfers_are_refused_and_bad_ones_counted(
    client: TestClient, dealer: zmq.Socket
) -> None:
    dealer.send(encode(Envelope(sender="lab-test", seq=1, body=Hello(lab=LAB))))
    _recv_kind(dealer, "WELCOME")
    dealer.send(encode(Envelope(sender="lab-test", seq=2, epoch=0, body=Shipped(transfer_id="t9-9"))))
    error = _recv_kind(dealer, "ERROR")
    assert error.body.code == "invalid" and "t9-9" in error.body.reason
    before = client.get("/health").json()["frames_rejected"]
    bad = {"v": 1, "kind": "ARRIVED", "sender": "lab-test", "seq": 3, "epoch": 0, "body": {"transfer_id": 7}}
    dealer.send(msgpack.packb(bad))
    deadline = time.monotonic() + 5
    while client.get("/health").json()["frames_rejected"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    health = client.get("/health").json()
    assert health["frames_rejected"] == before + 1 and health["transfers_under_way"] == 0
    assert client.get("/labs/lab-test").json()["live"] is True  # the mesh keeps serving the lab


def test_an_assign_and_an_end_leave_only_once_they_are_in_the_ledger(
    client: TestClient, dealer: zmq.Socket, settings: PlannerSettings
) -> None:
    """With another connection holding the file's write lock, the plan is made but its ASSIGN waits,
    and so does the acknowledgement of a DONE: a planner killed then would know of neither."""
    planner = client.app.state.planner  # type: ignore[attr-defined]
    seq = iter(range(1, 10_000))
    heard: list[Envelope] = []

    def say(body: Body) -> None:
        dealer.send(encode(Envelope(sender="lab-test", seq=next(seq), epoch=1, body=body)))

    def heartbeat_until(done: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
        """Heartbeat every 50 ms (the lab stays live), keeping what the planner says, until `done`."""
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            say(Heartbeat())
            while dealer.poll(50):
                heard.append(decode(dealer.recv()))

    def kinds() -> list[str]:
        return [m.kind for m in heard]

    machines = [Machine(id="p1", processes=["fdm"]), Machine(id="bench", processes=["assembly"])]
    say(Hello(lab=LAB.model_copy(update={"machines": machines, "stock": {"pla": 1.0}})))
    heartbeat_until(lambda: "WELCOME" in kinds(), "WELCOME")
    blocker = sqlite3.connect(settings.db_path, isolation_level=None, timeout=30.0)
    blocker.execute("BEGIN IMMEDIATE")
    order = {
        "design": "finger-splint",
        "quantity": 1,
        "due_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        "delivery": {"lat": 48.1, "lon": -1.7, "place": "Rennes"},
    }
    posting = threading.Thread(target=lambda: client.post("/orders", json=order))
    posting.start()
    heartbeat_until(lambda: bool(planner.core.assignments), "a plan that assigns the order")
    answered = len(heard)
    heartbeat_until(lambda: len(heard) >= answered + 5, "five answers after the plan")
    assert "ASSIGN" not in kinds(), "an ASSIGN left before its plan was in the file"
    blocker.execute("COMMIT")
    heartbeat_until(lambda: "ASSIGN" in kinds(), "the ASSIGN once the plan is in the file")
    posting.join(30)
    assign = next(m.body for m in heard if isinstance(m.body, Assign))
    blocker.execute("BEGIN IMMEDIATE")
    say(Accept(assignment_id=assign.assignment_id))
    say(Done(assignment_id=assign.assignment_id, units_done=1))
    state = planner.core.assignments[assign.assignment_id]
    heartbeat_until(lambda: state.state == "done", "the DONE to be read")

    def acknowledged() -> bool:
        ends = (m.body.ended or () for m in heard if isinstance(m.body, Heartbeat))
        return any(assign.assignment_id in ended for ended in ends)

    answered = len(heard)
    heartbeat_until(lambda: len(heard) >= answered + 5, "five answers after the DONE")
    assert not acknowledged(), "a DONE was acknowledged before it was in the file"
    blocker.execute("COMMIT")
    blocker.close()
    heartbeat_until(acknowledged, "the DONE's acknowledgement once it is in the file")
