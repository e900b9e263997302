"""The lab agent against a real ZeroMQ ROUTER + PUB bound by the test (a minimal fake planner)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
import zmq.asyncio

from nodes.agent import LabAgent, _reachable, run_agent
from nodes.clock import SimClock
from nodes.journal import Journal
from protocol.codec import MAX_FRAME_BYTES, encode
from protocol.messages import (
    Accept,
    CapacityTrace,
    Done,
    Envelope,
    Error,
    Failed,
    Field_,
    Heartbeat,
    Hello,
    Progress,
    Refuse,
    Stock,
)
from protocol.model import Lab, Location
from protocol.timeframe import compressed
from tests.nodes.fake_planner import FakePlanner, free_port
from tests.nodes.samples import assign, lab

pytestmark = pytest.mark.timeout(30)
SPEED = 3000.0  # a 10-minute print takes 0.2 s


def run(scenario: Callable[[zmq.asyncio.Context], Awaitable[None]]) -> None:
    """Run a scenario with a fresh context for the fake planner, destroyed whatever happens."""
    ctx = zmq.asyncio.Context()
    try:
        asyncio.run(scenario(ctx))
    finally:
        ctx.destroy(linger=0)


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait until `condition()` holds, polling, and fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def agent_running(the_lab: Lab, endpoint: str, **options: Any) -> AsyncIterator[LabAgent]:
    """A LabAgent serving in a task of this loop; stopped (BYE) and awaited on exit."""
    options.setdefault("speed", SPEED)
    agent = LabAgent(the_lab, endpoint, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 5.0)


def of(assignment_id: str) -> Callable[[Envelope], bool]:
    return lambda m: getattr(m.body, "assignment_id", None) == assignment_id


def test_join_take_a_job_run_it_and_leave() -> None:
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        async with FakePlanner(ctx, heartbeat_ms=200) as planner:
            async with agent_running(the_lab, planner.endpoint) as agent:
                hello = await planner.wait_for("HELLO")
                assert isinstance(hello.body, Hello) and hello.body.lab == the_lab
                assert hello.body.backlog_minutes == {"prusa-1": 0.0, "bench": 0.0}
                assert hello.sender == the_lab.id and hello.epoch == 0
                await until(lambda: agent.welcomed, "WELCOME to be applied")
                assert (agent.epoch, agent.field_seq, agent.heartbeat_seconds) == (7, 3, 0.2)
                await planner.wait_for("HEARTBEAT")  # idle: heartbeats every interval

                await planner.send(the_lab.id, assign("a-1", quantity=3))
                accept = await planner.wait_for("ACCEPT", of("a-1"))
                assert isinstance(accept.body, Accept) and accept.body.eta is not None
                stock = await planner.wait_for("STOCK", lambda m: m.body.stock["petg"] < 5.0)
                assert isinstance(stock.body, Stock) and stock.body.stock["petg"] == pytest.approx(4.7)
                busy = await planner.wait_for("CAPACITY", lambda m: m.body.backlog_minutes["prusa-1"] > 0)
                assert busy.body.backlog_minutes["prusa-1"] <= 30.0
                progress = await planner.wait_for("PROGRESS", of("a-1"))
                assert isinstance(progress.body, Progress) and 1 <= progress.body.units_done < 3
                done = await planner.wait_for("DONE", of("a-1"))
                assert done.body == Done(assignment_id="a-1", units_done=3)
                await planner.wait_for("CAPACITY", lambda m: set(m.body.backlog_minutes.values()) == {0.0})
                assert agent.jobs["a-1"].state == "done" and agent.jobs["a-1"].units_done == 3
                assert agent.stock["petg"] == pytest.approx(4.7)
            bye = await planner.wait_for("BYE")
        sent = planner.messages()
        assert [m.seq for m in sent] == list(range(1, len(sent) + 1))  # no gap, no repeat
        assert all(m.epoch == 7 for m in sent[1:]) and bye is sent[-1]
        assert agent.counters.frames_rejected == 0

    run(scenario)


def test_not_enough_stock_is_refused_with_the_reason() -> None:
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 1.0})
        async with FakePlanner(ctx) as planner, agent_running(the_lab, planner.endpoint) as agent:
            await until(lambda: agent.welcomed, "WELCOME")
            await planner.send(the_lab.id, assign("a-big", quantity=33))
            refuse = await planner.wait_for("REFUSE", of("a-big"))
            assert refuse.body == Refuse(
                assignment_id="a-big", reason="not enough stock: petg needs 3.300 kg, 1.000 free"
            )
            assert agent.stock == {"petg": 1.0} and agent.jobs["a-big"].state == "refused"

    run(scenario)


def test_a_duplicate_assign_is_answered_the_same_and_executed_once() -> None:
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        async with FakePlanner(ctx) as planner:
            async with agent_running(the_lab, planner.endpoint) as agent:
                await until(lambda: agent.welcomed, "WELCOME")
                await planner.send(the_lab.id, assign("a-1", quantity=2))
                await planner.send(the_lab.id, assign("a-1", quantity=2))
                second = await planner.wait_for("ACCEPT", of("a-1"), count=2)
                first = planner.messages("ACCEPT", of("a-1"))[0]
                assert first.body == second.body and first.seq < second.seq
                await planner.wait_for("DONE", of("a-1"))
                assert agent.counters.assignments_received == 2 and agent.counters.duplicates == 1
                assert agent.stock["petg"] == pytest.approx(4.8)  # reserved once
                assert len(agent.workshop.executor.operations("a-1")) == 4  # 2 units x 2 steps
            await planner.wait_for("BYE")
        assert len(planner.messages("ACCEPT")) == 2
        assert len(planner.messages("DONE")) == 1

    run(scenario)


def test_garbage_from_the_planner_is_counted_and_the_agent_keeps_serving() -> None:
    rng = random.Random(42)
    wrong_version = msgpack.packb(
        {"v": 2, "kind": "HEARTBEAT", "sender": "planner", "seq": 1, "epoch": 7, "body": {}}
    )
    bad_assign = msgpack.packb(
        {
            "v": 1,
            "kind": "ASSIGN",
            "sender": "planner",
            "seq": 2,
            "epoch": 7,
            "body": {"assignment_id": "x", "quantity": -1},
        }
    )
    garbage = [
        (rng.randbytes(64),),
        (b"",),
        (msgpack.packb("x" * (MAX_FRAME_BYTES + 10)),),  # over the codec's limit, under the hard guard
        (wrong_version,),
        (bad_assign,),
        (msgpack.packb([1, 2, 3]),),
        (b"two", b"frames"),
    ]

    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        async with FakePlanner(ctx) as planner, agent_running(the_lab, planner.endpoint) as agent:
            await until(lambda: agent.welcomed, "WELCOME")
            for frames in garbage:
                await planner.send_raw(the_lab.id, *frames)
            hello_kind = Envelope(sender="planner", seq=99, epoch=7, body=Hello(lab=the_lab))
            await planner.send_raw(the_lab.id, encode(hello_kind))
            expected = len(garbage) + 1
            await until(lambda: agent.counters.frames_rejected >= expected, "garbage to be counted")
            await planner.send(the_lab.id, assign("a-ok", quantity=1))
            await planner.wait_for("ACCEPT", of("a-ok"))
            assert agent.counters.frames_rejected == expected
            assert agent.counters.frames_rejected_by_peer == {planner.endpoint: expected}

            # the field: junk is counted, a newer FIELD is applied, an older one ignored
            other = CapacityTrace(lab_id="other", location=Location(lat=1, lon=2), free_minutes_per_day=60)
            newer = Field_(capacity=[other])

            def field_applied() -> bool:
                return agent.field_seq == 10

            deadline = time.monotonic() + 5
            while not field_applied() and time.monotonic() < deadline:  # the SUB may still be joining
                await planner.publish_raw(b"field", b"\xc1junk")
                await planner.publish_raw(b"field")
                await planner.publish(10, newer)
                await asyncio.sleep(0.05)  # publish again until the subscription is up
            assert field_applied() and agent.field == newer
            await planner.publish(5, Field_())
            await planner.publish(11, Field_())
            await until(lambda: agent.field_seq == 11, "FIELD 11")
            assert agent.field == Field_()
            field_peer = agent.field_endpoint
            assert field_peer is not None and agent.counters.frames_rejected_by_peer[field_peer] >= 2

    run(scenario)


def test_a_frame_over_the_hard_limit_costs_a_reconnection_only() -> None:
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        async with FakePlanner(ctx) as planner, agent_running(the_lab, planner.endpoint) as agent:
            await until(lambda: agent.welcomed, "WELCOME")
            await planner.send_raw(the_lab.id, b"\x00" * (2 * 1024 * 1024))
            deadline = time.monotonic() + 10
            while not planner.messages("ACCEPT") and time.monotonic() < deadline:
                with contextlib.suppress(zmq.ZMQError):  # unroutable while the lab reconnects
                    await planner.send(the_lab.id, assign("a-after", quantity=1))
                with contextlib.suppress(AssertionError):
                    await planner.wait_for("ACCEPT", timeout=0.3)
            assert planner.messages("ACCEPT", of("a-after"))
            assert agent.counters.assignments_received >= 1

    run(scenario)


def test_hello_is_retried_with_backoff_until_the_planner_binds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="nodes.agent")
    endpoint = f"tcp://127.0.0.1:{free_port()}"

    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab()
        async with agent_running(the_lab, endpoint) as agent:
            await until(lambda: agent.counters.hello_retries >= 1, "a HELLO retry")
            assert not agent.welcomed and agent.counters.hellos_sent == 0
            async with FakePlanner(ctx, endpoint=endpoint) as planner:
                await planner.wait_for("HELLO", timeout=8)
                await until(lambda: agent.welcomed, "WELCOME", timeout=5)

    run(scenario)
    retries = [r.getMessage() for r in caplog.records if "HELLO again" in r.getMessage()]
    assert retries and retries[0].startswith(f"planner at {endpoint} not reachable yet")
    assert "next retry in 1.0 s" in retries[0]


def test_hello_again_when_the_planner_falls_silent_or_restarts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="nodes.agent")

    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        planner = FakePlanner(ctx, heartbeat_ms=200)
        async with planner, agent_running(the_lab, planner.endpoint) as agent:
            await until(lambda: agent.welcomed, "WELCOME")
            await planner.send(the_lab.id, assign("a-1", quantity=20))
            await planner.wait_for("ACCEPT", of("a-1"))

            planner.heartbeats_on = False  # silent: after 3 intervals the lab says HELLO again
            second_hello = await planner.wait_for("HELLO", count=2, timeout=3)
            assert agent.counters.resyncs >= 1
            assert isinstance(second_hello.body, Hello)
            assert second_hello.body.lab.stock["petg"] == pytest.approx(3.0)  # free stock
            assert second_hello.body.backlog_minutes["prusa-1"] > 0
            planner.heartbeats_on = True
            # after the new WELCOME the lab re-sends where it stands
            welcomes = agent.counters.welcomes
            await until(lambda: agent.counters.welcomes > welcomes or agent.welcomed, "re-WELCOME")
            await planner.wait_for("PROGRESS", of("a-1"))

            # a planner answering from another epoch has restarted: HELLO again
            hellos = len(planner.messages("HELLO"))
            await planner.send(the_lab.id, Heartbeat(), epoch=8)
            await planner.wait_for("HELLO", count=hellos + 1, timeout=3)

            # a planner that lost the lab answers ERROR: HELLO again
            await until(lambda: agent.welcomed, "WELCOME after the restart")
            await planner.send(
                the_lab.id,
                Error(reason="HEARTBEAT before HELLO: say HELLO first", code="not_welcomed", ref_seq=3),
            )
            await planner.wait_for("HELLO", count=hellos + 2, timeout=3)

    run(scenario)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "silent for" in text and "epoch 8" in text and "forgot this lab" in text


def test_a_lab_the_planner_no_longer_hears_stops_though_it_still_hears_the_planner(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The lab's frames are lost on the way while the planner's arrive: the planner gives the lab up
    # 3 intervals after it last read from it and hands its jobs to others. Hearing heartbeats is not
    # enough to go on: the lab stops 2 intervals after sending the last message the planner read.
    caplog.set_level(logging.INFO, logger="nodes.agent")

    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        planner = FakePlanner(ctx, heartbeat_ms=200)
        async with planner, agent_running(the_lab, planner.endpoint) as agent:
            await until(lambda: agent.welcomed, "WELCOME")
            await planner.send(the_lab.id, assign("a-1", quantity=40))
            await planner.wait_for("PROGRESS", of("a-1"))
            planner.deaf = True
            deaf_at = time.monotonic()
            # An echo of a heartbeat the planner read before it went deaf may still be on its way, and
            # leases work up to 2 intervals (0.4 s) after that heartbeat was sent, also after a first
            # lapse on a busy host. Past them and two more echoes, the lease is final.
            await until(
                lambda: agent.clock.lapsed and time.monotonic() > deaf_at + 0.8,
                "the lease to run out",
                timeout=3,
            )
            # The units made before the lease ran out: the clock stands still from then on, so this is
            # final; the job's count reaches it at the next tick, however late a busy host runs it.
            made = agent.workshop.executor.units_done("a-1", agent.clock.now())
            await until(lambda: agent.jobs["a-1"].units_done == made, "the units made before it counted")
            beats = planner.heartbeats_sent
            await asyncio.sleep(0.6)
            assert planner.heartbeats_sent > beats and agent.welcomed  # the lab heard the planner
            assert agent.clock.lapsed and agent.jobs["a-1"].units_done == made < 40
            planner.deaf = False
            await until(lambda: agent.jobs["a-1"].units_done > made, "work to go on once heard again")
            assert agent.counters.holds >= 1

    run(scenario)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "holding work until it does" in text and "hears this lab again" in text


def test_a_job_taken_after_the_last_heartbeat_read_is_not_worked_until_one_promises_it() -> None:
    # The planner, if it lost the lab now, would hold out of re-plans only the units the lab's last
    # heartbeat it read promised; a job taken since then must not get a unit made before then.
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        planner = FakePlanner(ctx, heartbeat_ms=200)
        async with planner, agent_running(the_lab, planner.endpoint) as agent:
            await until(lambda: agent.welcomed and not agent.clock.lapsed, "WELCOME and a lease")
            planner.deaf = True
            await planner.send(the_lab.id, assign("a-1", quantity=10))
            await until(lambda: "a-1" in agent.jobs, "the ASSIGN")
            await asyncio.sleep(0.8)  # the lease ran out meanwhile; a unit takes 0.2 s
            assert agent.jobs["a-1"].units_done == 0
            planner.deaf = False
            await until(lambda: agent.jobs["a-1"].units_done > 0, "work once a heartbeat promises it")
            promised = [m.body.promise for m in planner.messages("HEARTBEAT") if m.body.promise]
            assert any("a-1" in p for p in promised)

    run(scenario)


def test_a_lab_the_planner_speaks_to_before_any_welcome_says_hello_again_soon() -> None:
    # The WELCOME was lost but the planner is up (here, its heartbeat arrives): waiting out a long
    # HELLO backoff would leave the lab unwelcomed, and soon given up, for nothing.
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        planner = FakePlanner(ctx, heartbeat_ms=200, auto_welcome=False)
        async with planner, agent_running(the_lab, planner.endpoint, hello_backoff=(0.2, 30.0)) as agent:
            await planner.wait_for("HELLO", count=5, timeout=8)  # retries 0.2, 0.4, 0.8, 1.6 s apart
            hellos = len(planner.messages("HELLO"))
            asked = time.monotonic()
            await planner.send(the_lab.id, Heartbeat())
            await planner.wait_for("HELLO", count=hellos + 1, timeout=3)
            assert time.monotonic() - asked < 1.5 and not agent.welcomed  # the next retry was 3.2 s away

    run(scenario)


def test_nothing_is_worked_before_the_first_welcome(tmp_path: Path) -> None:
    # A lab that restarts from its journal resumes its jobs only once the planner welcomes it: while
    # it was down the planner may have given those jobs to others.
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        journal = Journal(tmp_path / "lab.journal.json", the_lab.id)
        planner = FakePlanner(ctx, heartbeat_ms=200)
        async with planner:
            async with agent_running(the_lab, planner.endpoint, journal=journal) as agent:
                await until(lambda: agent.welcomed, "WELCOME")
                await planner.send(the_lab.id, assign("a-1", quantity=40))
                await planner.wait_for("PROGRESS", of("a-1"))
            planner.auto_welcome = False
            async with agent_running(the_lab, planner.endpoint, journal=journal) as again:
                await planner.wait_for("HELLO", count=2)
                resumed = again.jobs["a-1"].units_done
                await asyncio.sleep(0.5)
                assert again.jobs["a-1"].units_done == resumed and again.clock.lapsed
                await planner.welcome([i for i, m in planner.received if m.kind == "HELLO"][-1])
                await until(lambda: again.jobs["a-1"].units_done > resumed, "work after WELCOME")

    run(scenario)


def test_after_a_suspension_the_lab_holds_until_a_new_welcome(caplog: pytest.LogCaptureFixture) -> None:
    # A planner heartbeat queued while the process is suspended must not count as news: the planner
    # may have given the lab up meanwhile. The lab holds, says HELLO again, and works on only once
    # that HELLO is answered.
    caplog.set_level(logging.WARNING, logger="nodes.agent")

    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        planner = FakePlanner(ctx, heartbeat_ms=200)
        async with planner, agent_running(the_lab, planner.endpoint) as agent:
            await until(lambda: agent.welcomed, "WELCOME")
            await planner.send(the_lab.id, assign("a-1", quantity=20))
            await planner.wait_for("PROGRESS", of("a-1"))
            planner.auto_welcome = False
            hellos = len(planner.messages("HELLO"))
            await planner.send(the_lab.id, Heartbeat(active=["a-1"]))  # read only after the pause
            time.sleep(1.5)  # the whole event loop stops, as in a suspended process
            await planner.wait_for("HELLO", count=hellos + 1, timeout=3)
            made = agent.jobs["a-1"].units_done
            await asyncio.sleep(0.6)  # three heartbeat intervals without an answer
            assert agent.counters.stalls == 1 and agent.clock.held
            assert agent.jobs["a-1"].units_done == made < 20
            identity = [i for i, m in planner.received if m.kind == "HELLO"][-1]
            await planner.welcome(identity)
            await until(lambda: agent.jobs["a-1"].units_done > made, "work to go on after WELCOME")

    run(scenario)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "suspended for" in text and "saying HELLO again after the suspension" in text


def test_an_end_is_repeated_until_the_planner_acknowledges_it() -> None:
    # The planner may have ended the job itself (lab lost) and lost the lab's DONE on the way: with
    # no acknowledgement the lab sends it again, waiting longer each time, and stops once told.
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        planner = FakePlanner(ctx, heartbeat_ms=100)
        async with planner, agent_running(the_lab, planner.endpoint) as agent:
            await until(lambda: agent.welcomed, "WELCOME")
            await planner.send(the_lab.id, assign("a-1", quantity=2))
            first = await planner.wait_for("DONE", of("a-1"))
            again = await planner.wait_for("DONE", of("a-1"), count=2, timeout=3)
            third = await planner.wait_for("DONE", of("a-1"), count=3, timeout=3)
            assert first.body == again.body == third.body == Done(assignment_id="a-1", units_done=2)
            assert third.seq > again.seq > first.seq
            await planner.send(the_lab.id, Heartbeat(active=[], ended=["a-1"]))
            await until(lambda: not agent.workshop.unacknowledged_ends(), "the acknowledgement")
            sent = len(planner.messages("DONE", of("a-1")))
            await asyncio.sleep(1.5)  # more than the next wait (1.2 s)
            assert len(planner.messages("DONE", of("a-1"))) == sent

    run(scenario)


def test_failure_injection_reports_failed() -> None:
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        planner = FakePlanner(ctx)
        async with planner, agent_running(the_lab, planner.endpoint, fail_rate=1.0, seed=3) as agent:
            await until(lambda: agent.welcomed, "WELCOME")
            await planner.send(the_lab.id, assign("a-1", quantity=4))
            failed = await planner.wait_for("FAILED", of("a-1"))
            assert isinstance(failed.body, Failed) and failed.body.units_done < 4
            assert "simulated failure" in failed.body.reason
            assert agent.jobs["a-1"].state == "failed"

    run(scenario)


def test_run_agent_stops_cleanly_when_asked() -> None:
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab()
        async with FakePlanner(ctx) as planner:
            stop = asyncio.Event()
            task = asyncio.create_task(run_agent(the_lab, planner.endpoint, 1.0, stop))
            await planner.wait_for("HELLO")
            stop.set()
            agent = await asyncio.wait_for(task, 5)
            await planner.wait_for("BYE")
            assert agent.welcomed

    run(scenario)


def test_a_field_endpoint_in_bind_form_points_at_the_planner_host() -> None:
    assert _reachable("tcp://*:5571", "tcp://10.0.0.2:5570") == "tcp://10.0.0.2:5571"
    assert _reachable("tcp://0.0.0.0:5571", "tcp://planner.example:5570") == "tcp://planner.example:5571"
    assert _reachable("tcp://10.0.0.9:6000", "tcp://10.0.0.2:5570") == "tcp://10.0.0.9:6000"
    assert _reachable("tcp://[::1", "tcp://10.0.0.2:5570") == "tcp://[::1"  # left for libzmq to refuse


def test_an_idle_lab_in_a_shared_frame_keeps_its_clock_at_the_frame() -> None:
    """A replay's lab waits for its planner's first lease before it works (and holds when it does
    not hear it): with nothing under way that cost no work, so its clock catches up with the frame,
    or every unit it makes later counts as made that much later (valve-lombardy live: 0.2 to 0.4
    simulated hours at 2,000x). With a job under way the lost time stands: its machines stopped."""
    speed = 60.0
    anchor = datetime.now(UTC) - timedelta(seconds=10)
    wall = [0.0]
    behind = compressed(anchor, speed) - timedelta(hours=1)  # a lab an hour behind its frame
    idle = LabAgent(
        lab(),
        "tcp://127.0.0.1:1",
        speed=speed,
        clock=SimClock(behind, speed, lambda: wall[0]),
        clock_anchor=anchor,
    )
    idle._apply_lease()
    assert abs(idle.clock.now() - compressed(anchor, speed)) < timedelta(minutes=1)

    busy = LabAgent(
        lab(),
        "tcp://127.0.0.1:1",
        speed=speed,
        clock=SimClock(behind, speed, lambda: wall[0]),
        clock_anchor=anchor,
    )
    busy.workshop.receive(assign(), busy.clock.now())  # accepted: a job under way
    busy._apply_lease()
    assert busy.clock.now() == behind
    unframed = LabAgent(
        lab(), "tcp://127.0.0.1:1", speed=speed, clock=SimClock(behind, speed, lambda: wall[0])
    )
    unframed._apply_lease()  # no shared frame: its clock is its own
    assert unframed.clock.now() == behind
