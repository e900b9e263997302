"""Which backlog report holds a lab's accepted work: judged by the lab's own message numbers.

A lab sends its new backlog (CAPACITY) just before ACCEPT; the mesh applies CAPACITY in batches
and ACCEPT at once. These tests drive the planner's real mesh handler and core (no sockets
connected: the frames are handed to the handler as the receive loop would) through the orders a
lossy link or the rate limit produce, and check the backlog the solver is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import zmq.asyncio

from planner.core import PlannerCore
from planner.mesh import MeshServer
from planner.store import Ledger
from protocol.messages import Accept, Body, Capacity, Envelope, Hello
from protocol.model import Location, OrderRequest
from protocol.okh import catalogue
from scenarios.demo import free_port_pair
from tests.planner.plans import NOW, ONE_MACHINE_LAB, one_lab_plan

LAB = ONE_MACHINE_LAB
SPLINT_MINUTES = 28.0


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[MeshServer]:
    """A core at a clock three days after the lab's first work (so the hours account says nothing)
    behind a mesh bound to loopback ports nobody connects to."""
    now = [NOW]
    core = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: now[0])
    ctx = zmq.asyncio.Context()
    port = free_port_pair()
    server = MeshServer(core, ctx, f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}", epoch=1)
    server.core.lab_hello(LAB, {})  # first work three days ago, all of it done since
    order = core.submit_order(_request(5, NOW + timedelta(days=2)))
    [row] = core.commit_plan(one_lab_plan(order.id, 5))
    core.job_update("lab-a", row.id, "accepted")
    core.job_update("lab-a", row.id, "done", units_done=5)
    now[0] = NOW + timedelta(days=3)
    try:
        yield server
    finally:
        server.close()
        ctx.term()


def _request(quantity: int, due_at: datetime) -> OrderRequest:
    return OrderRequest.model_validate(
        {
            "design": "finger-splint",
            "quantity": quantity,
            "due_at": due_at,
            "delivery": Location(lat=45.2, lon=5.7),
            "priority": "urgent",
        }
    )


def _say(mesh: MeshServer, seq: int, body: Body) -> None:
    mesh._handle("lab-a", Envelope(sender="lab-a", seq=seq, body=body))


def _booked(mesh: MeshServer) -> float:
    """The minutes the solver would see booked on the lab's machine."""
    return mesh.core.problem().labs[0].backlog_minutes.get("p1", 0.0)


def _new_job(mesh: MeshServer, quantity: int) -> str:
    core = mesh.core
    order = core.submit_order(_request(quantity, core.clock() + timedelta(days=2)))
    [row] = core.commit_plan(one_lab_plan(order.id, quantity))
    return row.id


def test_accepted_work_counts_when_the_capacity_sent_with_its_accept_is_lost(mesh: MeshServer) -> None:
    """The CAPACITY a lab sends with ACCEPT dropped (lossy link, rate limit) while an older one waits
    at the mesh: that older report, applied after the ACCEPT, does not hold the job. Counting reports
    applied since the ACCEPT took it for one that did, and the lab's ten jobs' hours were free again."""
    _say(mesh, 1, Hello(lab=LAB, backlog_minutes={}))
    job = _new_job(mesh, 10)
    _say(mesh, 2, Capacity(backlog_minutes={"p1": 0.0}))  # a periodic report, before the job
    # seq 3: Capacity({"p1": 280}) sent with the ACCEPT, lost on the way
    _say(mesh, 4, Accept(assignment_id=job))
    assert mesh.apply_capacity() == 1
    assert _booked(mesh) == pytest.approx(10 * SPLINT_MINUTES)
    _say(mesh, 5, Capacity(backlog_minutes={"p1": 10 * SPLINT_MINUTES}))  # sent after: it holds the job
    mesh.apply_capacity()
    assert _booked(mesh) == pytest.approx(10 * SPLINT_MINUTES)  # once, not twice


def test_the_report_sent_with_the_accept_holds_the_work_and_the_next_alone_counts(mesh: MeshServer) -> None:
    _say(mesh, 1, Hello(lab=LAB, backlog_minutes={}))
    job = _new_job(mesh, 10)
    assert _booked(mesh) == pytest.approx(10 * SPLINT_MINUTES)  # assigned, unanswered
    _say(mesh, 2, Capacity(backlog_minutes={"p1": 10 * SPLINT_MINUTES}))
    _say(mesh, 3, Accept(assignment_id=job))
    mesh.apply_capacity()
    # The report sent just before ACCEPT cannot be told from an older one: counted twice (safe side)
    assert _booked(mesh) == pytest.approx(20 * SPLINT_MINUTES)
    _say(mesh, 4, Capacity(backlog_minutes={"p1": 6 * SPLINT_MINUTES}))
    mesh.apply_capacity()
    assert _booked(mesh) == pytest.approx(6 * SPLINT_MINUTES)


def test_a_report_overtaken_on_the_way_is_not_taken(mesh: MeshServer) -> None:
    """Reordered on a lossy link: the lab's older report, arriving last, neither replaces the newer
    one waiting at the mesh nor the one the planner holds."""
    _say(mesh, 1, Hello(lab=LAB, backlog_minutes={}))
    _say(mesh, 3, Capacity(backlog_minutes={"p1": 50.0}))
    _say(mesh, 2, Capacity(backlog_minutes={"p1": 900.0}))
    mesh.apply_capacity()
    assert mesh.core.labs["lab-a"].backlog == {"p1": 50.0}
    _say(mesh, 2, Capacity(backlog_minutes={"p1": 900.0}))  # duplicated, later still
    assert mesh.apply_capacity() == 0
    assert mesh.core.labs["lab-a"].backlog == {"p1": 50.0}
    assert mesh.core.backlog_reports_stale == 1


def test_a_hello_starts_the_numbers_again(mesh: MeshServer) -> None:
    """A restarted lab numbers its messages from 1 again; its HELLO's backlog holds its work."""
    _say(mesh, 1, Hello(lab=LAB, backlog_minutes={}))
    job = _new_job(mesh, 4)
    _say(mesh, 40, Accept(assignment_id=job))
    _say(mesh, 1, Hello(lab=LAB, backlog_minutes={"p1": 4 * SPLINT_MINUTES}))
    assert _booked(mesh) == pytest.approx(4 * SPLINT_MINUTES)
    _say(mesh, 2, Capacity(backlog_minutes={"p1": 3 * SPLINT_MINUTES}))
    assert mesh.apply_capacity() == 1
    assert _booked(mesh) == pytest.approx(3 * SPLINT_MINUTES)
