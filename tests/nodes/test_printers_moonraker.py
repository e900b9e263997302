"""The printer executor against a real Moonraker with a board-less Klippy (kalico) on loopback.

In file-output mode Klippy does not pace moves, so a print ends almost at once; a `PAUSE` line holds
it paused, as a print waiting for the operator would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodes.clock import SimClock
from nodes.printers import PrinterExecutor, PrintFile
from protocol.model import Machine
from tests.nodes.printer_servers import Moonraker
from tests.nodes.test_printers_octoprint import LIVE, T0, job, until

VORON = Machine(id="voron-1", processes=["fdm"], tags={"bed_mm": 300})
PLATE = b"G28\nG90\nG1 X10 Y10 F6000\nG1 X60 Y40\nG1 X20 Y80\n"


@pytest.fixture(scope="module")
def moonraker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moonraker]:
    server = Moonraker(tmp_path_factory.mktemp("moonraker")).start()
    yield server
    server.stop()


def executor(moonraker: Moonraker, gcode: Path, units: int) -> PrinterExecutor:
    LIVE.append(
        PrinterExecutor(
            [VORON],
            SimClock(T0, 1.0),
            {VORON.id: moonraker.link()},
            [PrintFile("face-shield", 0, gcode, units)],
            poll_seconds=0.1,
        )
    )
    return LIVE[-1]


def test_a_job_prints_on_klipper_and_moonraker_records_each_plate(
    moonraker: Moonraker, tmp_path: Path
) -> None:
    gcode = tmp_path / "headband-x2.gcode"
    gcode.write_bytes(PLATE)

    async def scenario() -> None:
        ex = executor(moonraker, gcode, units=2)
        await ex.start()
        try:
            ex.add(job("m-1", 3), T0)
            ex.limit({"m-1": 3})
            await until(lambda: ex.units_done("m-1", T0) == 3, 60.0, "two plates printed")
            assert ex.failure("m-1") is None and ex.eta("m-1") is None
        finally:
            await ex.close()
        # Each plate printed once. (Moonraker's history may miss a print that Klippy, unpaced in
        # file-output mode, ends before Moonraker sees it printing; none is recorded otherwise.)
        history = {j["filename"]: j["status"] for j in moonraker.history()}
        assert all(history.get(p.name, "completed") == "completed" for p in ex.plates("m-1"))
        assert [p.state for p in ex.plates("m-1")] == ["done", "done"]

    asyncio.run(scenario())


def test_a_print_cancelled_on_the_printer_fails_the_job_with_no_unit(
    moonraker: Moonraker, tmp_path: Path
) -> None:
    gcode = tmp_path / "waits.gcode"
    gcode.write_bytes(b"G28\nG1 X10 Y10 F3000\nPAUSE\nG1 X50 Y50\n")

    async def scenario() -> None:
        ex = executor(moonraker, gcode, units=4)
        await ex.start()
        try:
            ex.add(job("m-2", 4), T0)
            ex.limit({"m-2": 4})
            await until(
                lambda: (
                    ex.printers["voron-1"].status is not None
                    and ex.printers["voron-1"].status.state == "paused"
                ),
                30.0,
                "the print to pause",
            )
            assert ex.backlog_minutes(T0)["voron-1"] > 0
            moonraker.api("POST", "/printer/print/cancel")  # the operator cancels it at the printer
            reason = await until(lambda: ex.failure("m-2"), 30.0, "the failure")
            assert "voron-1" in reason and "cancelled" in reason
            assert ex.units_done("m-2", T0) == 0
        finally:
            await ex.close()

    asyncio.run(scenario())
