"""The fake printer server answers as the real ones do: one script, three servers, the same answers.

The script is what the printer executor relies on: an idle printer is ready; a file never printed
has no record; a print runs and the server records its success; the last job's file stays current
after it ends; a start while a print is under way is refused; a cancelled print is recorded failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nodes.moonraker import MoonrakerServer
from nodes.octoprint import OctoPrintServer
from nodes.printers import PrinterBusy, PrinterServer
from tests.nodes.fake_printer import FakePrinterServer
from tests.nodes.printer_servers import Moonraker, OctoPrint, plate_gcode

EXPECTED = [
    ("idle", "ready"),
    ("never printed", None),
    ("short print", "success"),
    ("after it", "ready", "cl-short.gcode"),
    ("long print", "cl-long.gcode"),
    ("start while printing", "busy"),
    ("cancelled", "failed"),
    ("after cancel", "ready"),
]


async def poll(read: Callable[[], Awaitable[Any]], good: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        value = await read()
        if good(value):
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def script(server: PrinterServer, long: bytes) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = [("idle", (await server.status()).state)]
    seen.append(("never printed", await server.outcome("cl-never.gcode")))
    await server.upload("cl-short.gcode", plate_gcode(10))
    await server.start("cl-short.gcode")
    ended = await poll(lambda: server.outcome("cl-short.gcode"), lambda v: v is not None, "the short print")
    seen.append(("short print", ended[0]))
    status = await poll(server.status, lambda s: s.state == "ready", "ready after the short print")
    seen.append(("after it", status.state, status.file))
    await server.upload("cl-long.gcode", long)
    await server.start("cl-long.gcode")
    status = await poll(server.status, lambda s: s.state in ("printing", "paused"), "the long print")
    seen.append(("long print", status.file))
    try:
        await server.start("cl-short.gcode")
        seen.append(("start while printing", "started"))
    except PrinterBusy:
        seen.append(("start while printing", "busy"))
    await server.cancel()
    ended = await poll(
        lambda: server.outcome("cl-long.gcode"), lambda v: v is not None, "the cancelled print"
    )
    seen.append(("cancelled", ended[0]))
    status = await poll(server.status, lambda s: s.state == "ready", "ready after the cancel")
    seen.append(("after cancel", status.state))
    await server.close()
    return seen


LONG_OCTOPRINT = plate_gcode(40, dwell_ms=1000)
LONG_KLIPPER = b"G28\nG1 X10 Y10 F3000\nPAUSE\nG1 X50 Y50\n"


def test_the_fake_answers_the_script() -> None:
    assert asyncio.run(script(FakePrinterServer(), LONG_OCTOPRINT)) == EXPECTED
    assert asyncio.run(script(FakePrinterServer(), LONG_KLIPPER)) == EXPECTED


def test_octoprint_answers_as_the_fake(octoprint: OctoPrint) -> None:
    assert asyncio.run(script(OctoPrintServer(octoprint.link()), LONG_OCTOPRINT)) == EXPECTED


def test_moonraker_answers_as_the_fake(tmp_path: Path) -> None:
    server = Moonraker(tmp_path).start()
    try:
        assert asyncio.run(script(MoonrakerServer(server.link()), LONG_KLIPPER)) == EXPECTED
        statuses = {job["filename"]: job["status"] for job in server.history()}
        assert statuses == {"cl-short.gcode": "completed", "cl-long.gcode": "cancelled"}
    finally:
        server.stop()
