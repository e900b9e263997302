"""The printer executor against a real OctoPrint (PyPI, its Virtual Printer) on loopback.

Fault cases: a print that fails (the Virtual Printer's `!!DEBUG:` fault injection), the server going
away mid-print, a wrong API key, a missing G-code file, a printer busy with a stranger's job. In
every one, no unit is counted from a print that did not end in success.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nodes.clock import SimClock
from nodes.printers import PrinterExecutor, PrinterKeyRefused, PrintFile
from protocol.model import Machine
from protocol.okh import catalogue
from solver.jobshop.lab_schedule import Job
from tests.nodes.printer_servers import OctoPrint, plate_gcode

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
SHIELD = catalogue()["face-shield"]
PRINTER = Machine(id="prusa-1", processes=["fdm"], tags={"bed_mm": 250})


#: The executors of the running test: `until` stands for their agent's journal (always written at once).
LIVE: list[PrinterExecutor] = []


def executor(octoprint: OctoPrint, gcode: Path, units: int = 2, **link: Any) -> PrinterExecutor:
    clock = SimClock(T0, 1.0)
    LIVE.append(
        PrinterExecutor(
            [PRINTER],
            clock,
            {PRINTER.id: octoprint.link(**link)},
            [PrintFile("face-shield", 0, gcode, units)],
            poll_seconds=0.1,
        )
    )
    return LIVE[-1]


def job(job_id: str, quantity: int) -> Job:
    return Job(job_id, SHIELD, quantity, T0 + timedelta(days=2), "routine")


async def until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        for live in LIVE:
            live.journaled()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def first_plate_printing(ex: PrinterExecutor, job_id: str, quantity: int) -> None:
    """Give the executor a job of `quantity` shields, allowed in full, and wait until its first plate
    prints with progress from OctoPrint."""
    ex.add(job(job_id, quantity), T0)
    ex.limit({job_id: quantity})
    await until(lambda: ex.plates(job_id) and ex.plates(job_id)[0].state == "printing", 30.0, "printing")
    await until(lambda: ex.plates(job_id)[0].progress > 0, 30.0, "progress from OctoPrint")


def test_a_job_prints_plate_by_plate_and_counts_only_finished_prints(
    octoprint: OctoPrint, tmp_path: Path
) -> None:
    gcode = tmp_path / "headband-x2.gcode"
    gcode.write_bytes(plate_gcode(40))

    async def scenario() -> None:
        ex = executor(octoprint, gcode, units=2)
        await ex.start()
        try:
            ex.add(job("a-1", 5), T0)  # 3 plates of 2: the last makes one more than needed
            ex.limit({"a-1": 5})
            seen: list[int] = []

            def finished() -> bool:
                ex.journaled()
                done = ex.units_done("a-1", T0)
                succeeded = sum(p.units for p in ex.plates("a-1") if octoprint.prints(p.name).get("success"))
                assert done <= succeeded  # never ahead of OctoPrint's own record
                seen.append(done)
                return done == 5

            await until(finished, 60.0, "3 plates printed")
            assert ex.eta("a-1") is None and ex.failure("a-1") is None
            assert sorted(set(seen)) == [0, 2, 4, 5] or set(seen) <= {0, 2, 4, 5}
        finally:
            await ex.close()
        plates = ex.plates("a-1")
        assert [p.state for p in plates] == ["done"] * 3
        for plate in plates:  # OctoPrint's own job history shows each print, once, in success
            assert octoprint.prints(plate.name) | {"last": None} == {"success": 1, "failure": 0, "last": None}

    asyncio.run(scenario())


def test_a_print_that_fails_reports_the_reason_and_counts_nothing(
    octoprint: OctoPrint, tmp_path: Path
) -> None:
    gcode = tmp_path / "slow.gcode"
    gcode.write_bytes(plate_gcode(40, dwell_ms=1000))

    async def scenario() -> None:
        ex = executor(octoprint, gcode, units=4)
        await ex.start()
        try:
            await first_plate_printing(ex, "a-2", 4)
            eta = ex.eta("a-2")
            assert eta is not None
            octoprint.api(
                "POST", "/api/printer/command", json={"command": "!!DEBUG:trigger_fatal_error_marlin"}
            )
            reason = await until(lambda: ex.failure("a-2"), 30.0, "the failure")
            assert "prusa-1" in reason and ex.units_done("a-2", T0) == 0
            assert ex.problems()["prusa-1"].startswith("machine prusa-1")  # down until reconnected
            assert ex.backlog_minutes(T0)["prusa-1"] >= PRINTER.minutes_per_day()
            assert ex.stop("a-2", T0) == (0, 4)
        finally:
            await ex.close()

    asyncio.run(scenario())


def test_a_printer_busy_with_a_strangers_job_gets_no_plate_and_counts_busy(
    octoprint: OctoPrint, tmp_path: Path
) -> None:
    gcode = tmp_path / "headband.gcode"
    gcode.write_bytes(plate_gcode(20))
    octoprint.print_file("someone-elses-bracket.gcode", plate_gcode(40, dwell_ms=600))

    async def scenario() -> None:
        ex = executor(octoprint, gcode, units=1)
        await ex.start()
        try:
            ex.add(job("a-3", 1), T0)
            ex.limit({"a-3": 1})
            ex.journaled()
            await until(lambda: ex.printers["prusa-1"].status is not None, 10.0, "a status")
            assert ex.printers["prusa-1"].status.file == "someone-elses-bracket.gcode"  # type: ignore[union-attr]
            assert ex.backlog_minutes(T0)["prusa-1"] > 0 and not ex.problems()
            await asyncio.sleep(0.5)
            assert ex.plates("a-3") == [] and ex.units_by("a-3", T0) == 0
            octoprint.api("POST", "/api/job", json={"command": "cancel"})  # the stranger gives up
            await until(lambda: ex.units_done("a-3", T0) == 1, 60.0, "our plate after the stranger's")
        finally:
            await ex.close()
        assert octoprint.prints("someone-elses-bracket.gcode").get("success", 0) == 0

    asyncio.run(scenario())


def test_a_wrong_api_key_counts_the_printer_down_and_names_the_machine(
    octoprint: OctoPrint, tmp_path: Path
) -> None:
    gcode = tmp_path / "headband.gcode"
    gcode.write_bytes(plate_gcode(20))
    wrong = tmp_path / "wrong.apikey"
    wrong.write_text("not-the-key")

    async def scenario() -> None:
        ex = executor(octoprint, gcode, key_file=wrong)
        with pytest.raises(
            PrinterKeyRefused, match=r"machine prusa-1: .*refused the API key in .*wrong.apikey"
        ):
            await ex.printers["prusa-1"].server.status()
        await ex.start()
        try:
            ex.add(job("a-4", 2), T0)
            ex.limit({"a-4": 2})
            ex.journaled()
            await until(lambda: ex.problems(), 10.0, "the refused key")
            assert ex.backlog_minutes(T0)["prusa-1"] >= PRINTER.minutes_per_day()
            assert ex.plates("a-4") == [] and ex.units_done("a-4", T0) == 0
        finally:
            await ex.close()

    asyncio.run(scenario())


def test_a_missing_gcode_file_fails_the_job_naming_machine_and_file(
    octoprint: OctoPrint, tmp_path: Path
) -> None:
    gcode = tmp_path / "gone.gcode"

    async def scenario() -> None:
        ex = executor(octoprint, gcode)
        await ex.start()
        try:
            ex.add(job("a-5", 2), T0)
            ex.limit({"a-5": 2})
            ex.journaled()
            reason = await until(lambda: ex.failure("a-5"), 10.0, "the failure")
            assert "machine prusa-1" in reason and "gone.gcode" in reason and "lab file" in reason
            assert ex.units_done("a-5", T0) == 0
        finally:
            await ex.close()

    asyncio.run(scenario())


def test_a_restarted_agent_finds_its_print_again_and_prints_it_once(
    octoprint: OctoPrint, tmp_path: Path
) -> None:
    gcode = tmp_path / "slow.gcode"
    gcode.write_bytes(plate_gcode(24, dwell_ms=500))

    async def scenario() -> None:
        first = executor(octoprint, gcode, units=2)
        await first.start()
        first.add(job("a-6", 2), T0)
        first.limit({"a-6": 2})
        first.journaled()
        await until(
            lambda: first.plates("a-6") and first.plates("a-6")[0].state == "printing", 30.0, "printing"
        )
        saved = first.saved("a-6")
        await first.close()  # the agent stops; the print goes on
        second = executor(octoprint, gcode, units=2)
        second.resume(job("a-6", 2), 0, saved, T0)
        await second.start()
        try:
            second.limit({"a-6": 2})
            await until(lambda: second.units_done("a-6", T0) == 2, 60.0, "the print found again to end")
        finally:
            await second.close()
        (plate,) = second.plates("a-6")
        assert octoprint.prints(plate.name)["success"] == 1
        assert [f["name"] for f in octoprint.files()].count(plate.name) == 1

    asyncio.run(scenario())


def test_no_plate_starts_without_a_lease(octoprint: OctoPrint, tmp_path: Path) -> None:
    gcode = tmp_path / "headband.gcode"
    gcode.write_bytes(plate_gcode(20))

    async def scenario() -> None:
        ex = executor(octoprint, gcode)
        await ex.start()
        try:
            ex.add(job("a-7", 2), T0)
            ex.journaled()
            await until(lambda: ex.printers["prusa-1"].status is not None, 10.0, "a status")
            await asyncio.sleep(0.5)
            assert ex.plates("a-7") == []  # no promise yet: nothing starts
            assert ex.units_by("a-7", T0) == 2  # what a HEARTBEAT would promise: one plate
        finally:
            await ex.close()

    asyncio.run(scenario())


def test_the_server_going_away_mid_print_counts_nothing(tmp_path: Path) -> None:
    server = OctoPrint(tmp_path / "octoprint").start()
    gcode = tmp_path / "slow.gcode"
    gcode.write_bytes(plate_gcode(40, dwell_ms=1000))

    async def scenario() -> None:
        ex = executor(server, gcode, units=2)
        await ex.start()
        try:
            ex.add(job("a-8", 2), T0)
            ex.limit({"a-8": 2})
            ex.journaled()
            await until(
                lambda: ex.plates("a-8") and ex.plates("a-8")[0].state == "printing", 30.0, "printing"
            )
            server.stop(kill=True)
            await until(lambda: ex.problems(), 10.0, "the server to count as down")
            assert "does not answer" in ex.problems()["prusa-1"] and ex.failure("a-8") is None
            assert ex.units_done("a-8", T0) == 0
            server.start()  # back, without the print: its end was never recorded as a success
            reason = await until(lambda: ex.failure("a-8"), 60.0, "the lost print to fail")
            assert "no record" in reason and ex.units_done("a-8", T0) == 0
            assert not ex.problems()
        finally:
            await ex.close()
            server.stop()

    asyncio.run(scenario())


def test_a_job_stopped_just_before_the_lab_closes_is_still_cancelled_on_the_printer(
    octoprint: OctoPrint, tmp_path: Path
) -> None:
    """The cancel a stop sends is work the executor owes the printer: closing waits for it."""
    gcode = tmp_path / "long.gcode"
    gcode.write_bytes(plate_gcode(40, dwell_ms=1000))

    async def scenario() -> str:
        ex = executor(octoprint, gcode, units=4)
        await ex.start()
        try:
            await first_plate_printing(ex, "a-9", 4)
            assert ex.stop("a-9", T0) == (0, 4)
        finally:
            await ex.close()  # at once: the lab shuts down right after the stop
        return ex.plates("a-9")[0].name

    name = asyncio.run(scenario())
    deadline = time.monotonic() + 10.0
    while octoprint.state() != "Operational" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert octoprint.state() == "Operational", "the stopped print is still running on the printer"
    assert octoprint.prints(name).get("failure") == 1
