"""A printer server in memory, for fast tests of the printer executor.

It answers as OctoPrint and Moonraker do (`test_printer_fakes.py` runs the same script against it
and against both real servers, and compares the answers): ready → printing → ready, the file of the
last job stays the current file after it ends, a start while printing is refused (`PrinterBusy`),
and the server keeps a record of how each file's print ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from nodes.printers import (
    PrinterBusy,
    PrinterKeyRefused,
    PrinterServer,
    PrinterStatus,
    PrinterUnreachable,
)


class FakePrinterServer(PrinterServer):
    """Prints take `seconds_per_print` of the `monotonic` clock; faults are set by hand."""

    kind = "fake printer server"

    def __init__(
        self,
        seconds_per_print: float = 0.05,
        monotonic: Callable[[], float] = time.monotonic,
        record_lag_s: float = 0.0,
    ) -> None:
        self.seconds_per_print = seconds_per_print
        #: Seconds after a print ends before its record is written (a real server's write can lag).
        self.record_lag_s = record_lag_s
        self._monotonic = monotonic
        self.files: dict[str, bytes] = {}
        #: File name -> "success" or "failed" (the server's record of how its print ended).
        self.records: dict[str, str] = {}
        self.current: str | None = None
        self._started = 0.0
        self._printing = False
        self.paused = False
        self.away = False
        self.key_refused = False
        self.error: str | None = None
        self.started: list[str] = []

    def _check(self) -> None:
        if self.away:
            raise PrinterUnreachable("machine fake: the fake server does not answer")
        if self.key_refused:
            raise PrinterKeyRefused("machine fake: the fake server refused the API key")
        long = b"G4 P" in self.files.get(self.current or "", b"")  # dwells: a print that lasts
        duration = 3600.0 if long else self.seconds_per_print
        if self._printing and not self.paused and self._monotonic() - self._started >= duration:
            self._printing = False
            assert self.current is not None
            self.records[self.current] = "success"

    async def status(self) -> PrinterStatus:
        self._check()
        if self.error is not None:
            return PrinterStatus(state="error", file=self.current, message=self.error)
        if self._printing:
            done = min(1.0, (self._monotonic() - self._started) / self.seconds_per_print)
            left = max(0.0, self.seconds_per_print - (self._monotonic() - self._started))
            return PrinterStatus(
                state="paused" if self.paused else "printing",
                file=self.current,
                progress=done,
                time_left_s=left,
            )
        return PrinterStatus(state="ready", file=self.current, progress=1.0 if self.current else None)

    async def upload(self, name: str, data: bytes) -> None:
        self._check()
        self.files[name] = data

    async def start(self, name: str) -> None:
        self._check()
        if self._printing or self.error is not None:
            raise PrinterBusy(f"machine fake: cannot start {name} now")
        self.current, self._printing, self._started = name, True, self._monotonic()
        self.paused = b"PAUSE" in self.files.get(name, b"")  # as Klipper stops at a PAUSE line
        self.started.append(name)

    async def cancel(self) -> None:
        self._check()
        if self._printing:
            self._printing, self.paused = False, False
            assert self.current is not None
            self.records[self.current] = "failed"

    async def outcome(self, name: str) -> tuple[str, str] | None:
        self._check()
        record = self.records.get(name)
        ended = self._started + self.seconds_per_print
        if record is None or (name == self.current and self._monotonic() < ended + self.record_lag_s):
            return None
        return ("success", "") if record == "success" else ("failed", "the fake records the print as failed")

    # --- faults, set by tests ------------------------------------------------------------------

    def pause(self) -> None:
        self.paused = True

    def fail(self, message: str = "Thermal Runaway") -> None:
        """The printer stops with an error mid-print (as the Virtual Printer's fatal error does)."""
        if self._printing and self.current is not None:
            self._printing = False
        self.error = message

    def print_as_stranger(self, name: str) -> None:
        """Someone else starts a print on this printer."""
        self.files[name] = b""
        self.current, self._printing, self._started = name, True, self._monotonic()
