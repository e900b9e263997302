"""Real printers: a lab's jobs printed plate by plate on printers driven through their servers.

`PrinterExecutor` turns each accepted job into *plates*: for every design step the lab prints, the
lab file names its own sliced G-code file and the units one print of it makes (a plate of 4
headbands makes 4), so a job of 10 headbands is 3 plates. One watcher task per printer asks its
server for its state every `poll_seconds` and, when the printer is ready and the lease allows it,
uploads the next plate under a name of its own (`cl-<job>-s<step>-p<n>-<nonce>.gcode`), starts it
and watches it to its end:

- a plate counts its units only when the server reports the print finished in success (OctoPrint:
  the file's `prints.success`; Moonraker: its job history says `completed`), never from progress;
- a plate that fails or is cancelled, on the server or by anyone, fails the job (`failure`), with
  the reason; the units of the plates that succeeded stand;
- progress and ETA come from the server's own estimate of the print under way;
- a plate is written to the journal before it is started, so an agent that restarts finds its
  print again by its name: still printing, finished (the server's record), or never started;
- a printer busy with a print that is not one of ours is never given a plate, and its remaining
  time counts in the CAPACITY backlog; a printer offline, in error, unreachable or refusing the key
  counts as down (`DOWN_BACKLOG_DAYS`) and comes back when its server says it is ready.

Steps of a design with no G-code file named are the lab's hand work (cutting, assembly): the agent
does not watch them, and a unit counts once its printed steps succeeded (SPEC.md section 9).
The servers' clients are in `nodes.octoprint` and `nodes.moonraker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from nodes.clock import SimClock
from nodes.executor import DOWN_BACKLOG_DAYS, Executor
from protocol.model import Machine, utcnow
from solver.jobshop.lab_schedule import Job
from solver.jobshop.ranking import dispatch_key

log = logging.getLogger(__name__)

PrinterState = Literal["ready", "printing", "paused", "error", "offline"]
DRIVERS = ("octoprint", "moonraker")
#: Polls, and seconds, after a print left the server's current job with no record of its end yet,
#: before it counts as failed: the server writes its record as the print ends, and the write can
#: lag. Both must pass: at a poll of 0.1 s, five polls (0.5 s) judged a real OctoPrint's finished
#: print failed about one run in four before its success was written.
_OUTCOME_GRACE_POLLS = 5
_OUTCOME_GRACE_S = 10.0
#: Most seconds `close` waits for the cancels of stopped jobs: two requests (status, then cancel) at
#: the servers' 5-s timeout each.
CANCEL_WAIT_S = 10.0


def _rank(job: Job) -> tuple[object, ...]:
    """The lab's one rule (solver.jobshop.ranking): the job whose first units must leave soonest."""
    return dispatch_key(job.deadline(0), job.due_at, job.priority, job.order_id, 0)


class PrinterError(Exception):
    """A printer server that cannot be used now; the text names the machine and what to do."""


class PrinterUnreachable(PrinterError):
    """No answer from the server (not running, wrong URL, network down)."""


class PrinterKeyRefused(PrinterError):
    """The server refused the API key."""


class PrinterBusy(PrinterError):
    """The server would not start a print: it is printing, or not connected to its printer."""


@dataclass(frozen=True, slots=True)
class PrinterLink:
    """How the lab reaches one machine's printer server (from the lab file)."""

    machine_id: str
    driver: str
    url: str
    #: File holding the API key (never the key itself in the lab file); None: no key (Moonraker
    #: with trusted clients).
    api_key_file: Path | None = None

    def api_key(self) -> str | None:
        """The key read from its file. Raises PrinterError naming the machine and what to do."""
        if self.api_key_file is None:
            return None
        try:
            key = self.api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PrinterError(
                f"machine {self.machine_id}: cannot read its API key file {self.api_key_file}: "
                f"{exc.strerror or exc}; put the {self.driver} API key in that file"
            ) from None
        if not key:
            raise PrinterError(
                f"machine {self.machine_id}: the API key file {self.api_key_file} is empty; "
                f"put the {self.driver} API key in it"
            )
        return key


@dataclass(frozen=True, slots=True)
class PrintFile:
    """The lab's own sliced G-code for one step of a design, and the units one print of it makes."""

    design: str
    #: The step's index in the design's steps (0-based; the lab file counts from 1).
    step: int
    gcode: Path
    units: int


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """A printer server's answer: its state, its current job's file, and its own estimate."""

    state: PrinterState
    file: str | None = None
    #: Fraction of the current print done (0..1), as the server estimates it.
    progress: float | None = None
    #: Seconds the server expects the current print still to take.
    time_left_s: float | None = None
    message: str = ""


class PrinterServer(ABC):
    """The calls the executor makes to one printer server (see `nodes.octoprint`, `nodes.moonraker`).

    Each raises `PrinterUnreachable`, `PrinterKeyRefused` or `PrinterError` with the machine named."""

    kind: str = "printer server"

    @abstractmethod
    async def status(self) -> PrinterStatus:
        """The printer's state and current job."""

    @abstractmethod
    async def upload(self, name: str, data: bytes) -> None:
        """Store a G-code file on the server under `name`."""

    @abstractmethod
    async def start(self, name: str) -> None:
        """Start printing the stored file `name` (raises `PrinterBusy` when it cannot start now)."""

    @abstractmethod
    async def cancel(self) -> None:
        """Cancel the print under way."""

    @abstractmethod
    async def outcome(self, name: str) -> tuple[str, str] | None:
        """How the print of `name` ended, from the server's own records: ("success", "") or
        ("failed", why); None while the server has no record of its end."""

    async def close(self) -> None:
        """Release the connection."""
        return None


def connect(link: PrinterLink, timeout_s: float = 5.0) -> PrinterServer:
    """The client for a machine's printer server, by its driver."""
    if link.driver == "octoprint":
        from nodes.octoprint import OctoPrintServer

        return OctoPrintServer(link, timeout_s)
    if link.driver == "moonraker":
        from nodes.moonraker import MoonrakerServer

        return MoonrakerServer(link, timeout_s)
    raise PrinterError(
        f"machine {link.machine_id}: driver {link.driver!r}: choose one of {', '.join(DRIVERS)}"
    )


PlateState = Literal["starting", "printing", "done", "failed", "cancelled"]


@dataclass(slots=True)
class Plate:
    """One print of one G-code file for one job: what the journal keeps to find it again."""

    job_id: str
    step: int
    number: int
    units: int
    machine_id: str
    name: str
    state: PlateState = "starting"
    reason: str | None = None
    progress: float = 0.0
    time_left_s: float | None = None
    started_at: str | None = None
    #: Polls since the print left the server's current job with no record of its end (not saved).
    unresolved: int = 0


@dataclass(slots=True)
class _PrintJob:
    job: Job
    #: Printed step index -> its G-code file.
    files: dict[int, PrintFile]
    plates: list[Plate] = field(default_factory=list)
    stopped: bool = False
    failure: str | None = None
    #: Units the current lease allows (None: no lease given yet, nothing may start).
    allowance: int | None = None

    def plates_needed(self, step: int) -> int:
        return math.ceil(self.job.quantity / self.files[step].units)

    def units_of(self, step: int, states: tuple[str, ...]) -> int:
        return sum(p.units for p in self.plates if p.step == step and p.state in states)


@dataclass(slots=True)
class _Printer:
    machine: Machine
    link: PrinterLink
    server: PrinterServer
    status: PrinterStatus | None = None
    #: Why the printer is down (None: it answers and is usable).
    problem: str | None = None
    task: asyncio.Task[None] | None = None


class PrinterExecutor(Executor):
    """Prints the lab's jobs on its printers through their servers (see the module docstring)."""

    def __init__(
        self,
        machines: list[Machine],
        clock: SimClock,
        links: dict[str, PrinterLink],
        prints: list[PrintFile],
        *,
        poll_seconds: float = 0.5,
        servers: dict[str, PrinterServer] | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        if not links:
            raise ValueError("a printer executor needs at least one machine with a driver")
        self.machines = list(machines)
        self.clock = clock
        self.poll_seconds = poll_seconds
        self._now = now
        by_id = {m.id: m for m in machines}
        servers = servers or {}
        self.printers = {
            mid: _Printer(by_id[mid], link, servers.get(mid) or connect(link)) for mid, link in links.items()
        }
        self.prints = {(p.design, p.step): p for p in prints}
        self._jobs: dict[str, _PrintJob] = {}
        self._dirty = 0
        self._journaled = 0
        self._wake = asyncio.Event()
        self._closing = False
        #: Cancels sent to printers for stopped jobs, still under way: `close` waits for them.
        self._cancelling: set[asyncio.Task[None]] = set()
        #: Per plate name, when its print was first seen gone with no record of its end (monotonic).
        self._unresolved_since: dict[str, float] = {}

    # --- the interface -------------------------------------------------------------------------

    def add(self, job: Job, at: datetime) -> datetime:
        if job.id in self._jobs:
            raise ValueError(f"job {job.id} is already scheduled")
        files = self._files_for(job)
        self._jobs[job.id] = _PrintJob(job, files)
        self._wake.set()
        return self._eta(self._jobs[job.id])

    def resume(self, job: Job, units_done: int, saved: dict[str, Any] | None, at: datetime) -> datetime:
        files = self._files_for(job)
        record = _PrintJob(job, files)
        for entry in (saved or {}).get("plates", []):
            plate = Plate(**{k: v for k, v in entry.items() if k != "unresolved"})
            record.plates.append(plate)
            if plate.state in ("starting", "printing"):
                log.info("looking for print %s of job %s on %s again", plate.name, job.id, plate.machine_id)
        self._jobs[job.id] = record
        self._wake.set()
        return self._eta(record)

    def stop(self, job_id: str, at: datetime) -> tuple[int, int]:
        record = self._record(job_id)
        done = self._units(record, ("done",))
        started = self._units(record, ("done", "starting", "printing", "failed", "cancelled"))
        record.stopped = True
        for plate in record.plates:
            if plate.state in ("starting", "printing"):
                plate.state, plate.reason = "cancelled", "job stopped"
                self._cancel_later(plate)
        self._dirty += 1
        self._wake.set()
        return done, min(record.job.quantity, started)

    def units_done(self, job_id: str, at: datetime) -> int:
        return self._units(self._record(job_id), ("done",))

    def units_started(self, job_id: str, at: datetime) -> int:
        record = self._record(job_id)
        started = self._units(record, ("done", "starting", "printing", "failed", "cancelled"))
        return min(record.job.quantity, started)

    def units_by(self, job_id: str, until: datetime) -> int:
        """Units done, plus those of plates under way, plus one plate per printer free for the job."""
        record = self._record(job_id)
        if record.stopped or record.failure:
            return self.units_done(job_id, until)
        counts = []
        for step, print_file in record.files.items():
            free = sum(
                1
                for p in self.printers.values()
                if self._usable_for(p, record, step) and self._plate_on(p.machine.id) is None
            )
            left = record.plates_needed(step) - sum(
                1 for p in record.plates if p.step == step and p.state in ("starting", "printing", "done")
            )
            extra = min(free, max(0, left)) * print_file.units
            counts.append(record.units_of(step, ("done", "starting", "printing")) + extra)
        return min(record.job.quantity, min(counts))

    def limit(self, promise: dict[str, int]) -> datetime | None:
        for job_id, record in self._jobs.items():
            now_units = min(self._units(record, ("done", "starting", "printing")), record.job.quantity)
            record.allowance = promise.get(job_id, now_units)
        self._wake.set()
        return None  # the executor holds by itself: no plate starts beyond the allowance

    def eta(self, job_id: str) -> datetime | None:
        record = self._record(job_id)
        if record.stopped or self.units_done(job_id, self._now()) >= record.job.quantity:
            return None
        return self._eta(record)

    def started_at(self, job_id: str) -> datetime | None:
        starts = [p.started_at for p in self._record(job_id).plates if p.started_at]
        return datetime.fromisoformat(min(starts)) if starts else None

    def backlog_minutes(self, at: datetime) -> dict[str, float]:
        backlog = {m.id: 0.0 for m in self.machines}
        queued: dict[int, float] = {}
        for printer in self.printers.values():
            mid, machine = printer.machine.id, printer.machine
            if printer.problem is not None:
                backlog[mid] = machine.minutes_per_day() * DOWN_BACKLOG_DAYS
                continue
            status = printer.status
            plate = self._plate_on(mid)
            if status is not None and status.state in ("printing", "paused"):
                left_s = status.time_left_s
                if left_s is None and plate is not None:
                    left_s = self._nominal_seconds(plate) * (1.0 - plate.progress)
                backlog[mid] += (left_s or 3600.0) / 60.0 * machine.speed
        for record in self._active():
            for step in record.files:
                left = record.plates_needed(step) - sum(
                    1 for p in record.plates if p.step == step and p.state in ("starting", "printing", "done")
                )
                minutes = left * record.files[step].units * record.job.design.steps[step].minutes
                capable = [p.machine.id for p in self.printers.values() if self._can_print(p, record, step)]
                for mid in capable:
                    if backlog[mid] < machine_down_minutes(self.printers[mid].machine):
                        backlog[mid] += minutes / len(capable)
                queued[step] = minutes
        return {mid: round(v, 2) for mid, v in backlog.items()}

    def failure(self, job_id: str) -> str | None:
        return self._record(job_id).failure

    def saved(self, job_id: str) -> dict[str, Any] | None:
        record = self._record(job_id)
        return {"plates": [{k: v for k, v in asdict(p).items() if k != "unresolved"} for p in record.plates]}

    @property
    def journal_dirty(self) -> bool:
        return self._dirty > self._journaled

    def journaled(self) -> None:
        self._journaled = self._dirty
        self._wake.set()

    async def start(self) -> None:
        for printer in self.printers.values():
            printer.task = asyncio.create_task(self._watch(printer), name=f"printer {printer.machine.id}")

    async def close(self) -> None:
        # The flag, not only the cancel: before 3.12, wait_for may swallow a cancel that meets a wake-up.
        self._closing = True
        self._wake.set()
        if self._cancelling:  # a stopped job's print must not outlive the lab that stopped it
            _, late = await asyncio.wait(set(self._cancelling), timeout=CANCEL_WAIT_S)
            for task in late:
                log.warning("closing before a printer confirmed a cancel: %s", task.get_name())
                task.cancel()
        for printer in self.printers.values():
            if printer.task is not None:
                printer.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await printer.task
                printer.task = None
            await printer.server.close()

    # --- state for operators and tests ---------------------------------------------------------

    def plates(self, job_id: str) -> list[Plate]:
        """The job's plates so far (a copy of the records)."""
        return [Plate(**asdict(p)) for p in self._record(job_id).plates]

    def problems(self) -> dict[str, str]:
        """Machine id -> why it is down, for the printers that are."""
        return {mid: p.problem for mid, p in self.printers.items() if p.problem is not None}

    # --- the watchers --------------------------------------------------------------------------

    async def _watch(self, printer: _Printer) -> None:
        """Poll one printer's server and move its plates along, until `close`."""
        while not self._closing:
            self._wake.clear()
            try:
                await self._visit(printer)
            except PrinterError as exc:
                self._set_problem(printer, str(exc))
            except Exception:  # a bug here must not stop the lab's other printers
                log.exception("internal error while watching %s", printer.machine.id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def _visit(self, printer: _Printer) -> None:
        mid = printer.machine.id
        status = await printer.server.status()
        printer.status = status
        if status.state in ("error", "offline"):
            self._set_problem(
                printer,
                f"machine {mid}: {printer.server.kind} says the printer is "
                f"{status.state}{': ' + status.message if status.message else ''}; "
                "it counts as down until it is ready again",
            )
        else:
            self._set_problem(printer, None)
        plate = self._plate_on(mid)
        if plate is not None and plate.state == "printing":
            await self._follow(printer, plate, status)
        elif plate is not None and plate.state == "starting":
            await self._begin(printer, plate, status)
        elif plate is None and status.state == "ready" and self._may_start():
            self._choose_plate(printer)

    async def _follow(self, printer: _Printer, plate: Plate, status: PrinterStatus) -> None:
        """A plate of ours printing: take the server's progress, or its record of how it ended."""
        if status.file == plate.name and status.state in ("printing", "paused"):
            plate.progress = status.progress if status.progress is not None else plate.progress
            plate.time_left_s = status.time_left_s
            plate.unresolved = 0
            self._unresolved_since.pop(plate.name, None)
            return
        ended = await printer.server.outcome(plate.name)
        if ended is None and status.state in ("error", "offline"):
            ended = (
                "failed",
                f"the printer went {status.state}" + (f": {status.message}" if status.message else ""),
            )
        if ended is None:
            plate.unresolved += 1
            since = self._unresolved_since.setdefault(plate.name, time.monotonic())
            if plate.unresolved < _OUTCOME_GRACE_POLLS or time.monotonic() - since < _OUTCOME_GRACE_S:
                return
            ended = (
                "failed",
                "the print is no longer on the printer and the server has no record that it finished",
            )
        self._unresolved_since.pop(plate.name, None)
        self._end_plate(printer, plate, *ended)

    async def _begin(self, printer: _Printer, plate: Plate, status: PrinterStatus) -> None:
        """A plate in the journal but maybe not started (a restart can land here): start it, or find it."""
        if status.file == plate.name and status.state in ("printing", "paused"):
            plate.state = "printing"
            return
        ended = await printer.server.outcome(plate.name)
        if ended is not None:  # it ran while the agent was away
            plate.state = "printing"
            self._end_plate(printer, plate, *ended)
            return
        if self._dirty > self._journaled or status.state != "ready":
            return  # the journal must hold the plate first; or the printer is not free
        record = self._record(plate.job_id)
        print_file = record.files[plate.step]
        try:
            data = print_file.gcode.read_bytes()
        except OSError as exc:
            plate.state, plate.reason = (
                "failed",
                f"G-code file {print_file.gcode} cannot be read: {exc.strerror or exc}",
            )
            record.failure = (
                f"machine {printer.machine.id}: the G-code file {print_file.gcode} for design "
                f"{print_file.design} step {print_file.step + 1} cannot be read ({exc.strerror or exc}); "
                "put the sliced file back at that path or fix [[prints]] in the lab file"
            )
            self._dirty += 1
            return
        await printer.server.upload(plate.name, data)
        try:
            await printer.server.start(plate.name)
        except PrinterBusy as exc:
            log.info("%s", exc)
            return
        plate.state, plate.started_at = "printing", self._now().isoformat()
        plate.progress, plate.time_left_s = 0.0, None
        self._dirty += 1
        log.info(
            "started %s (%d unit(s) of job %s) on %s",
            plate.name,
            plate.units,
            plate.job_id,
            printer.machine.id,
        )

    def _end_plate(self, printer: _Printer, plate: Plate, outcome: str, why: str) -> None:
        record = self._record(plate.job_id)
        self._dirty += 1
        if outcome == "success":
            plate.state, plate.progress, plate.time_left_s = "done", 1.0, 0.0
            log.info(
                "print %s on %s finished: %d unit(s) of job %s made",
                plate.name,
                printer.machine.id,
                plate.units,
                plate.job_id,
            )
            return
        plate.state, plate.reason = "failed", why
        if not record.stopped and record.failure is None:
            record.failure = f"print {plate.name} on {printer.machine.id} failed: {why}"
            log.warning("job %s: %s", plate.job_id, record.failure)

    def _choose_plate(self, printer: _Printer) -> None:
        """Give a free printer the next plate of the most pressing job it can print, within the lease."""
        candidates = sorted(self._active(), key=lambda r: (_rank(r.job), r.job.id))
        for record in candidates:
            for step, print_file in sorted(record.files.items()):
                if not self._can_print(printer, record, step):
                    continue
                made = sum(
                    1 for p in record.plates if p.step == step and p.state in ("starting", "printing", "done")
                )
                if made >= record.plates_needed(step):
                    continue
                after = min(
                    record.job.quantity,
                    record.units_of(step, ("done", "starting", "printing")) + print_file.units,
                )
                if record.allowance is None or after > record.allowance:
                    continue  # the lease does not cover it yet
                number = 1 + max((p.number for p in record.plates if p.step == step), default=0)
                name = f"cl-{record.job.id}-s{step + 1}-p{number}-{secrets.token_hex(3)}.gcode"
                record.plates.append(
                    Plate(record.job.id, step, number, print_file.units, printer.machine.id, name)
                )
                self._dirty += 1
                return

    # --- helpers -------------------------------------------------------------------------------

    def _files_for(self, job: Job) -> dict[int, PrintFile]:
        files = {
            index: self.prints[(job.design.id, index)]
            for index in range(len(job.design.steps))
            if (job.design.id, index) in self.prints
        }
        if not files:
            raise ValueError(
                f"this lab prints its jobs and names no G-code file for design {job.design.id}: add a "
                "[[prints]] entry (design, step, gcode, units) to the lab file"
            )
        for index in files:
            step = job.design.steps[index]
            if not any(step.can_run_on(p.machine) for p in self.printers.values()):
                raise ValueError(
                    f"step {index + 1} of design {job.design.id} ({step.process}) runs on none of this "
                    "lab's driven printers"
                )
        return files

    def _active(self) -> list[_PrintJob]:
        return [
            r
            for r in self._jobs.values()
            if not r.stopped and r.failure is None and self._units(r, ("done",)) < r.job.quantity
        ]

    def _units(self, record: _PrintJob, states: tuple[str, ...]) -> int:
        return min(min(record.units_of(step, states) for step in record.files), record.job.quantity)

    def _plate_on(self, machine_id: str) -> Plate | None:
        for record in self._jobs.values():
            for plate in record.plates:
                if plate.machine_id == machine_id and plate.state in ("starting", "printing"):
                    return plate
        return None

    def _can_print(self, printer: _Printer, record: _PrintJob, step: int) -> bool:
        return record.job.design.steps[step].can_run_on(printer.machine)

    def _usable_for(self, printer: _Printer, record: _PrintJob, step: int) -> bool:
        status = printer.status
        return (
            printer.problem is None
            and status is not None
            and status.state == "ready"
            and self._can_print(printer, record, step)
        )

    def _may_start(self) -> bool:
        """No plate starts while the agent holds its work (no lease, lease lapsed, suspended)."""
        return not self.clock.held and not self.clock.lapsed

    def _nominal_seconds(self, plate: Plate) -> float:
        record = self._record(plate.job_id)
        machine = self.printers[plate.machine_id].machine
        return record.job.design.steps[plate.step].minutes * plate.units * 60.0 / machine.speed

    def _eta(self, record: _PrintJob) -> datetime:
        """Now plus the longest print under way (the server's estimate) plus the plates left, shared
        among the printers that can print them (nominal minutes); to the whole minute, so that an
        estimate that moves by seconds at each poll is not a new PROGRESS each time."""
        now = self._now()
        under_way = 0.0
        for plate in record.plates:
            if plate.state in ("starting", "printing"):
                left = plate.time_left_s
                if left is None:
                    left = self._nominal_seconds(plate) * (1.0 - plate.progress)
                under_way = max(under_way, left)
        queued = 0.0
        for step, print_file in record.files.items():
            capable = [p for p in self.printers.values() if self._can_print(p, record, step)]
            left = record.plates_needed(step) - sum(
                1 for p in record.plates if p.step == step and p.state in ("starting", "printing", "done")
            )
            speed = sum(p.machine.speed for p in capable) or 1.0
            queued = max(
                queued, left * print_file.units * record.job.design.steps[step].minutes * 60.0 / speed
            )
        eta = now + timedelta(seconds=under_way + queued)
        return eta.replace(second=0, microsecond=0) + timedelta(minutes=1)

    def _set_problem(self, printer: _Printer, problem: str | None) -> None:
        if problem != printer.problem:
            if problem is None:
                log.info("machine %s: %s answers and is ready again", printer.machine.id, printer.server.kind)
            else:
                log.error("%s", problem)
            printer.problem = problem

    def _cancel_later(self, plate: Plate) -> None:
        printer = self.printers[plate.machine_id]

        async def cancel() -> None:
            try:
                status = await printer.server.status()
                if status.file == plate.name and status.state in ("printing", "paused"):
                    await printer.server.cancel()
                    log.info("cancelled %s on %s", plate.name, plate.machine_id)
            except PrinterError as exc:
                log.warning("could not cancel %s on %s: %s", plate.name, plate.machine_id, exc)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no running loop (unit tests): nothing to cancel
            return
        task = loop.create_task(cancel(), name=f"cancel {plate.name} on {plate.machine_id}")
        self._cancelling.add(task)
        task.add_done_callback(self._cancelling.discard)

    def _record(self, job_id: str) -> _PrintJob:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise KeyError(f"unknown job {job_id!r}") from None


def machine_down_minutes(machine: Machine) -> float:
    """The backlog a machine that is down reports."""
    return machine.minutes_per_day() * DOWN_BACKLOG_DAYS
