"""The real printer servers for the tests (`scenarios.printer_servers`), skipped with the reason where
their install could not happen; the Klipper data dictionary is read from the shared folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios import printer_servers
from scenarios.printer_servers import PrinterServerMissing, free_port, plate_gcode, wait_until
from tests.shared import SHARED

KLIPPER_DICT = SHARED / "klipper" / "klipper.dict"

__all__ = ["Moonraker", "OctoPrint", "free_port", "plate_gcode", "wait_until"]


class OctoPrint(printer_servers.OctoPrint):
    def __init__(self, basedir: Path) -> None:
        try:
            super().__init__(basedir)
        except PrinterServerMissing as exc:
            pytest.skip(str(exc))


class Moonraker(printer_servers.Moonraker):
    def __init__(self, basedir: Path) -> None:
        try:
            super().__init__(basedir, KLIPPER_DICT)
        except PrinterServerMissing as exc:
            pytest.skip(str(exc))
