"""Printer adapter overhead per job, on loopback against a real OctoPrint (its Virtual Printer).

Run: make bench   (or .venv/bin/pytest benchmarks -k printer --benchmark-enable)

- `adapter`: the OctoPrint client alone: upload a plate's G-code, start it, and read the first
  status that shows it printing with OctoPrint's progress (what a lab pays per plate in HTTP);
- `executor`: the printer executor end to end, from a job taken to its first plate printing with
  progress (adds the watcher's wake-up and the journal's turn; polls every 0.1 s here, 0.5 s in a lab).

Between rounds the print is cancelled and the printer waits idle again (not timed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nodes.clock import SimClock
from nodes.octoprint import OctoPrintServer
from nodes.printers import PrinterExecutor, PrintFile
from protocol.model import Machine
from protocol.okh import catalogue
from solver.jobshop.lab_schedule import Job
from tests.nodes.printer_servers import OctoPrint, plate_gcode, wait_until

#: Targets on loopback (asserted under `make bench`, measured under contention: worst figure counts).
ADAPTER_TARGET_S = 0.5
EXECUTOR_TARGET_S = 1.0
ROUNDS = 8
PLATE = plate_gcode(16, dwell_ms=2000)  # lasts long enough to be seen printing
T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def octoprint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctoPrint]:
    server = OctoPrint(tmp_path_factory.mktemp("octoprint-bench")).start()
    yield server
    server.stop()


def idle(octoprint: OctoPrint) -> None:
    octoprint.api("POST", "/api/job", json={"command": "cancel"})
    wait_until(lambda: octoprint.state() == "Operational", 30.0, "the printer idle again", 0.05)


def test_adapter_overhead_upload_start_first_progress(benchmark, octoprint: OctoPrint) -> None:
    counter = iter(range(10_000))

    async def one_job() -> float:
        server = OctoPrintServer(octoprint.link())
        name = f"cl-bench-a-p{next(counter)}.gcode"
        started = time.perf_counter()
        await server.upload(name, PLATE)
        await server.start(name)
        while True:
            status = await server.status()
            if status.file == name and status.state == "printing" and status.progress is not None:
                break
        elapsed = time.perf_counter() - started
        await server.close()
        return elapsed

    times: list[float] = []
    benchmark.group = "printer adapter"
    benchmark.pedantic(
        lambda: times.append(asyncio.run(one_job())),
        setup=lambda: idle(octoprint),
        rounds=ROUNDS,
        iterations=1,
    )
    idle(octoprint)
    benchmark.extra_info["worst_s"] = max(times)
    if benchmark.enabled:
        assert max(times) < ADAPTER_TARGET_S, times


def test_executor_overhead_job_to_first_progress(benchmark, octoprint: OctoPrint, tmp_path: Path) -> None:
    gcode = tmp_path / "plate.gcode"
    gcode.write_bytes(PLATE)
    printer = Machine(id="prusa-1", processes=["fdm"], tags={"bed_mm": 250})
    shield = catalogue()["face-shield"]
    counter = iter(range(10_000))

    async def one_job() -> float:
        ex = PrinterExecutor(
            [printer],
            SimClock(T0, 1.0),
            {printer.id: octoprint.link()},
            [PrintFile("face-shield", 0, gcode, 4)],
            poll_seconds=0.1,
        )
        await ex.start()
        job_id = f"bench-{next(counter)}"
        started = time.perf_counter()
        ex.add(Job(job_id, shield, 4, T0 + timedelta(days=1), "routine"), T0)
        ex.limit({job_id: 4})
        while True:
            ex.journaled()  # the agent writes its journal on its next tick
            plates = ex.plates(job_id)
            if plates and plates[0].state == "printing" and plates[0].progress > 0:
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        ex.stop(job_id, T0)
        await ex.close()
        return elapsed

    times: list[float] = []
    benchmark.group = "printer adapter"
    benchmark.pedantic(
        lambda: times.append(asyncio.run(one_job())),
        setup=lambda: idle(octoprint),
        rounds=ROUNDS,
        iterations=1,
    )
    idle(octoprint)
    benchmark.extra_info["worst_s"] = max(times)
    if benchmark.enabled:
        assert max(times) < EXECUTOR_TARGET_S, times
