"""Manual mode: a job waits as offered until the operator's DECIDE; DECIDE travels the wire intact."""

from __future__ import annotations

import asyncio
import random

import pytest
import zmq.asyncio
from typer.testing import CliRunner

from cosmolocal.node_commands import node_app
from nodes.clock import SimClock
from nodes.simulated import SimulatedExecutor as Executor
from nodes.workshop import OPERATOR_REFUSED, Workshop
from protocol.codec import decode, encode
from protocol.messages import BODY_TYPES, KIND_OF, Accept, Decide, Envelope, Refuse, Stock
from tests.nodes.fake_planner import FakePlanner
from tests.nodes.samples import T0, assign, lab
from tests.nodes.test_agent import agent_running, of, run, until


def manual_workshop(stock: dict[str, float]) -> Workshop:
    the_lab = lab(stock)
    clock = SimClock(T0, 1.0, monotonic=lambda: 0.0)
    return Workshop(the_lab, Executor(the_lab.machines, clock), 0.0, random.Random(1), manual=True)


def test_decide_round_trips_through_the_codec() -> None:
    assert BODY_TYPES["DECIDE"] is Decide and KIND_OF[Decide] == "DECIDE"
    for body in (
        Decide(assignment_id="o-1-a1", accept=True),
        Decide(assignment_id="o-1-a1", accept=False, reason="printer under repair"),
    ):
        message = Envelope(sender="planner", seq=3, epoch=2, body=body)
        assert decode(encode(message)) == message


def test_an_offered_job_waits_and_duplicates_stay_silent() -> None:
    shop = manual_workshop({"petg": 1.0})
    first = shop.receive(assign("a-1", quantity=3), T0)
    assert first.messages == [] and not first.duplicate
    again = shop.receive(assign("a-1", quantity=3), T0)
    assert again.messages == [] and again.duplicate
    assert shop.offered == {"a-1"} and shop.jobs["a-1"].state == "assigned"
    assert shop.stock == {"petg": 1.0}  # nothing reserved before the decision
    assert shop.advance(T0) == [] and shop.resync_messages() == []


def test_accept_runs_the_usual_path_and_may_still_refuse_for_stock() -> None:
    shop = manual_workshop({"petg": 1.0})
    shop.receive(assign("a-1", quantity=3), T0)
    shop.receive(assign("a-2", quantity=9), T0)
    stock, accept = shop.decide(Decide(assignment_id="a-1", accept=True), T0).messages
    assert isinstance(stock, Stock) and isinstance(accept, Accept) and shop.jobs["a-1"].state == "accepted"
    (refuse,) = shop.decide(Decide(assignment_id="a-2", accept=True), T0).messages
    assert isinstance(refuse, Refuse) and refuse.reason.startswith("not enough stock")
    # A decision repeated, or a duplicate ASSIGN after it, gets the first answer again.
    repeat = shop.decide(Decide(assignment_id="a-1", accept=False, reason="too late"), T0)
    assert repeat.duplicate and repeat.messages == [accept]
    assert shop.receive(assign("a-1", quantity=3), T0).messages == [accept]


def test_refuse_sends_the_operators_reason() -> None:
    shop = manual_workshop({"petg": 1.0})
    shop.receive(assign("a-1"), T0)
    shop.receive(assign("a-2"), T0)
    (refuse,) = shop.decide(
        Decide(assignment_id="a-1", accept=False, reason="printer under repair"), T0
    ).messages
    assert refuse == Refuse(assignment_id="a-1", reason="printer under repair")
    (blank,) = shop.decide(Decide(assignment_id="a-2", accept=False), T0).messages
    assert isinstance(blank, Refuse) and blank.reason == OPERATOR_REFUSED
    assert shop.decide(Decide(assignment_id="a-9", accept=True), T0).messages == []
    assert shop.stock == {"petg": 1.0}


def test_the_agent_holds_offers_until_decide_over_the_wire() -> None:
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        async with (
            FakePlanner(ctx, heartbeat_ms=200) as planner,
            agent_running(the_lab, planner.endpoint, manual=True) as agent,
        ):
            await until(lambda: agent.welcomed, "WELCOME")
            for _ in range(3):  # the planner re-sends unanswered ASSIGNs: harmless
                await planner.send(the_lab.id, assign("a-1", quantity=2))
                await planner.send(the_lab.id, assign("a-2", quantity=1))
            await until(lambda: agent.counters.assignments_received == 6, "the ASSIGNs")
            await asyncio.sleep(0.3)
            assert planner.messages("ACCEPT") == [] and planner.messages("REFUSE") == []
            await planner.send(the_lab.id, Decide(assignment_id="a-1", accept=True))
            await planner.wait_for("DONE", of("a-1"))
            await planner.send(the_lab.id, Decide(assignment_id="a-2", accept=False, reason="no time"))
            refuse = await planner.wait_for("REFUSE", of("a-2"))
            assert refuse.body == Refuse(assignment_id="a-2", reason="no time")
            assert agent.stock["petg"] == pytest.approx(4.8)
        assert len(planner.messages("ACCEPT")) == 1

    run(scenario)


def test_join_offers_manual_mode() -> None:
    result = CliRunner().invoke(node_app, ["join", "--help"])
    assert result.exit_code == 0 and "--manual" in result.output
