"""The lab's control socket: a real agent, a real ipc socket, the fake planner hearing the result."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from nodes.agent import LabAgent
from nodes.clock import SimClock
from nodes.control import ControlError, ControlRequest, check_endpoint, parse_request, send_control
from nodes.manual import ManualExecutor
from nodes.printers import PrinterExecutor, PrinterLink
from protocol.messages import Failed, Hello, Stock
from tests.nodes.fake_planner import FakePlanner
from tests.nodes.fake_printer import FakePrinterServer
from tests.nodes.samples import assign, lab
from tests.nodes.test_agent import agent_running, of, run, until

pytestmark = pytest.mark.timeout(30)


async def control(endpoint: str, request: ControlRequest) -> dict[str, object]:
    """Send a request from a thread: the agent answers from this loop."""
    return await asyncio.to_thread(send_control, endpoint, request, 5.0)


def test_supply_machine_down_and_back_reach_the_planner(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/lab.control"

    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 1.0})
        async with (
            FakePlanner(ctx, heartbeat_ms=200) as planner,
            agent_running(the_lab, planner.endpoint, speed=300.0, control=endpoint) as agent,
        ):
            await until(lambda: agent.welcomed, "WELCOME")
            answer = await control(endpoint, ControlRequest(supply={"petg": 0.5, "pla": 2.0}))
            assert answer == {"ok": True, "stock": {"petg": 1.5, "pla": 2.0}, "down": []}
            await planner.wait_for("STOCK", lambda m: m.body.stock.get("pla") == 2.0)

            await planner.send(the_lab.id, assign("a-1", quantity=5))  # 12 min a unit: 12 s at 300x
            await planner.wait_for("ACCEPT", of("a-1"))
            answer = await control(endpoint, ControlRequest(down=["prusa-1"]))
            assert answer["ok"] and answer["down"] == ["prusa-1"]
            failed = await planner.wait_for("FAILED", of("a-1"))
            assert isinstance(failed.body, Failed) and "machine prusa-1 down" in failed.body.reason
            hello = await planner.wait_for("HELLO", lambda m: len(m.body.lab.machines) == 1)
            assert isinstance(hello.body, Hello) and [m.id for m in hello.body.lab.machines] == ["bench"]
            stock = planner.messages("STOCK")[-1].body
            # the units not started give their petg back; one started keeps it
            assert isinstance(stock, Stock) and stock.stock["petg"] == pytest.approx(agent.stock["petg"])
            assert 1.0 + 0.1 * (5 - 1) <= stock.stock["petg"] <= 1.5 + 1e-9

            answer = await control(endpoint, ControlRequest(up=["prusa-1"]))
            assert answer["down"] == []
            # the second HELLO with both machines (the first was the one of joining)
            await planner.wait_for("HELLO", lambda m: len(m.body.lab.machines) == 2, count=2)
            # the planner's WELCOME to it must reach the agent before it leaves (else it goes to no one)
            await until(lambda: agent.counters.welcomes == 3, "WELCOME after the machine came back")
            assert agent.counters.controls_applied == 3

    run(scenario)


def test_a_bad_request_is_refused_whole_and_counted(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/lab.control"

    async def scenario(ctx: zmq.asyncio.Context) -> None:
        async with (
            FakePlanner(ctx) as planner,
            agent_running(lab({"petg": 1.0}), planner.endpoint, control=endpoint) as agent,
        ):
            await until(lambda: agent.welcomed, "WELCOME")
            answer = await control(endpoint, ControlRequest(supply={"petg": 1.0}, down=["laser-9"]))
            assert answer["ok"] is False and "no machine laser-9" in str(answer["error"])
            assert agent.stock == {"petg": 1.0}  # nothing of it applied

            def raw(frame: bytes) -> list[bytes]:
                sock = zmq.Context.instance().socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                try:
                    sock.connect(endpoint)
                    sock.send_multipart([b"", frame])
                    assert sock.poll(5000)
                    return sock.recv_multipart()
                finally:
                    sock.close()

            reply = await asyncio.to_thread(raw, b"\xff not json")
            assert b'"ok": false' in reply[-1] and b"not a JSON object" in reply[-1]
            assert agent.counters.frames_rejected == 2 and agent.counters.controls_applied == 0

    run(scenario)


def test_requests_and_endpoints_are_checked() -> None:
    assert parse_request(b'{"lose": ["petg"]}') == ControlRequest(lose=["petg"])
    with pytest.raises(ControlError, match="supply"):
        parse_request(b'{"supply": {"petg": -1}}')
    with pytest.raises(ControlError, match="bogus"):
        parse_request(b'{"bogus": 1}')
    with pytest.raises(ControlError, match="ipc://"):
        check_endpoint("tcp://0.0.0.0:5999")


def test_no_agent_listening_is_a_timeout(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError, match="no answer"):
        send_control(f"ipc://{tmp_path}/nobody.control", ControlRequest(), timeout_s=0.2)


def test_a_printer_lab_refuses_machines_down_by_word_but_takes_supply(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/lab.control"
    the_lab = lab({"petg": 1.0})
    link = PrinterLink("prusa-1", "octoprint", "http://127.0.0.1:9", None)

    def printers(clock: SimClock) -> PrinterExecutor:
        return PrinterExecutor(
            the_lab.machines,
            clock,
            {"prusa-1": link},
            [],
            poll_seconds=0.05,
            servers={"prusa-1": FakePrinterServer()},
        )

    async def scenario(ctx: zmq.asyncio.Context) -> None:
        async with (
            FakePlanner(ctx) as planner,
            agent_running(the_lab, planner.endpoint, control=endpoint, executor=printers) as agent,
        ):
            await until(lambda: agent.welcomed, "WELCOME")
            answer = await control(endpoint, ControlRequest(supply={"petg": 1.0}, down=["prusa-1"]))
            assert answer["ok"] is False and "printers" in str(answer["error"])
            assert agent.stock == {"petg": 1.0} and agent.workshop.down == set()  # nothing of it applied
            answer = await control(endpoint, ControlRequest(supply={"petg": 1.0}))
            assert answer == {"ok": True, "stock": {"petg": 2.0}, "down": []}

    run(scenario)


def test_working_hours_are_for_simulated_execution_only() -> None:
    the_lab = lab()
    with pytest.raises(ValueError, match="working_hours"):
        LabAgent(
            the_lab,
            "ipc://nowhere",
            executor=lambda clock: ManualExecutor(the_lab.machines, clock),
            working_hours=True,
        )
