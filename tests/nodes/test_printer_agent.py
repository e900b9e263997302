"""A printer lab on the mesh (fake printer server, fast): the agent uploads and starts plates,
reports PROGRESS as plates finish, and a failed print becomes FAILED with the units really made;
no message ever counts a unit whose print did not end in success."""

from __future__ import annotations

import asyncio
from pathlib import Path

import zmq.asyncio

from nodes.printers import PrinterExecutor, PrinterLink, PrintFile
from protocol.messages import Failed
from protocol.model import Lab, Location, Machine
from tests.nodes.fake_planner import FakePlanner
from tests.nodes.fake_printer import FakePrinterServer
from tests.nodes.samples import assign
from tests.nodes.test_agent import agent_running, of, run, until

LAB = Lab(
    id="fablab-printers",
    name="Fablab Printers",
    location=Location(lat=45.75, lon=4.85),
    machines=[
        Machine(id="prusa-1", processes=["fdm"], tags={"bed_mm": 250}),
        Machine(id="bench", processes=["assembly"]),
    ],
    stock={"petg": 5.0},
)


def test_plates_become_progress_and_a_failed_print_becomes_failed(tmp_path: Path) -> None:
    gcode = tmp_path / "part-x2.gcode"
    gcode.write_bytes(b"G28\nG1 X10 Y10\n")
    server = FakePrinterServer(seconds_per_print=0.3)
    link = PrinterLink("prusa-1", "octoprint", "http://127.0.0.1:9", None)

    def printers(clock):  # type: ignore[no-untyped-def]
        return PrinterExecutor(
            LAB.machines,
            clock,
            {"prusa-1": link},
            [PrintFile("test-part", 0, gcode, 2)],
            poll_seconds=0.05,
            servers={"prusa-1": server},
        )

    async def scenario(ctx: zmq.asyncio.Context) -> None:
        async with (
            FakePlanner(ctx, heartbeat_ms=200) as planner,
            agent_running(LAB, planner.endpoint, speed=1.0, executor=printers) as agent,
        ):
            await until(lambda: agent.welcomed, "WELCOME")
            await planner.send(LAB.id, assign("a-1", quantity=6))
            await planner.wait_for("ACCEPT", of("a-1"))
            await planner.wait_for("PROGRESS", lambda m: of("a-1")(m) and m.body.units_done == 4, timeout=10)
            await until(lambda: len(server.started) == 3, "the third plate", timeout=10)
            server.fail("Thermal Runaway")  # the third plate fails mid-print
            failed = await planner.wait_for("FAILED", of("a-1"), timeout=10)
            assert isinstance(failed.body, Failed) and failed.body.units_done == 4
            assert "prusa-1" in failed.body.reason and "Thermal Runaway" in failed.body.reason
            reported = [m.body.units_done for m in planner.messages("PROGRESS") if of("a-1")(m)]
            assert max(reported) <= 4 and reported == sorted(reported)
            assert all(u % 2 == 0 for u in reported)  # whole plates only, never a fraction
            await asyncio.sleep(0.2)
            assert len(server.started) == 3  # nothing more started on a printer in error

    run(scenario)


def test_a_restarted_agent_finds_its_print_through_its_journal(tmp_path: Path) -> None:
    from nodes.journal import Journal

    gcode = tmp_path / "part-x2.gcode"
    gcode.write_bytes(b"G28\nG1 X10 Y10\n")
    server = FakePrinterServer(seconds_per_print=1.0)
    link = PrinterLink("prusa-1", "octoprint", "http://127.0.0.1:9", None)
    journal = Journal(tmp_path / "lab.journal.json", LAB.id)

    def printers(clock):  # type: ignore[no-untyped-def]
        return PrinterExecutor(
            LAB.machines,
            clock,
            {"prusa-1": link},
            [PrintFile("test-part", 0, gcode, 2)],
            poll_seconds=0.05,
            servers={"prusa-1": server},
        )

    async def scenario(ctx: zmq.asyncio.Context) -> None:
        async with FakePlanner(ctx, heartbeat_ms=200) as planner:
            async with agent_running(
                LAB, planner.endpoint, speed=1.0, executor=printers, journal=journal
            ) as agent:
                await until(lambda: agent.welcomed, "WELCOME")
                await planner.send(LAB.id, assign("a-1", quantity=2))
                await until(lambda: len(server.started) == 1, "the plate to start", timeout=10)
            saved = journal.load()
            assert (
                saved is not None and saved["jobs"][0]["execution"]["plates"][0]["name"] == server.started[0]
            )
            async with agent_running(LAB, planner.endpoint, speed=1.0, executor=printers, journal=journal):
                done = await planner.wait_for("DONE", of("a-1"), timeout=10)
                assert done.body.units_done == 2
        assert len(server.started) == 1  # found again, not printed twice

    run(scenario)


def test_a_finished_print_whose_record_is_written_late_is_not_judged_failed(tmp_path: Path) -> None:
    # The server writes how a print ended as it ends, and the write can lag (a real OctoPrint's did,
    # about one run in four, by more than five polls of 0.1 s). A print gone from the current job
    # with no record yet is waited for, in polls and in seconds, before it counts as failed.
    from datetime import UTC, datetime, timedelta

    from nodes.clock import SimClock
    from protocol.okh import catalogue
    from solver.jobshop.lab_schedule import Job

    gcode = tmp_path / "part-x2.gcode"
    gcode.write_bytes(b"G28\nG1 X10 Y10\n")
    server = FakePrinterServer(seconds_per_print=0.1, record_lag_s=1.0)
    start = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    executor = PrinterExecutor(
        LAB.machines[:1],
        SimClock(start, 1.0),
        {"prusa-1": PrinterLink("prusa-1", "octoprint", "http://127.0.0.1:9", None)},
        [PrintFile("face-shield", 0, gcode, 2)],
        poll_seconds=0.05,
        servers={"prusa-1": server},
    )

    async def scenario() -> None:
        await executor.start()
        try:
            executor.add(
                Job("a-1", catalogue()["face-shield"], 2, start + timedelta(days=2), "routine"), start
            )
            executor.limit({"a-1": 2})
            deadline = asyncio.get_running_loop().time() + 10.0
            while asyncio.get_running_loop().time() < deadline:
                executor.journaled()
                plates = executor.plates("a-1")
                if plates and plates[0].state in ("done", "failed"):
                    break
                await asyncio.sleep(0.05)
            assert [p.state for p in executor.plates("a-1")] == ["done"]
            assert executor.failure("a-1") is None
        finally:
            await executor.close()

    asyncio.run(scenario())
