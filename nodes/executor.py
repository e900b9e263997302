"""A simulated executor: the lab's machines working through their schedule in simulated time.

`SimClock` maps a monotonic clock to simulated UTC time (`start + worked × speed`), so a scenario can
run a day of work in minutes and tests can drive time by hand. `Executor` keeps the schedule of every
accepted job and answers, at any simulated instant, how many units of a job are made, when the job
will end, and how much work each machine still has queued.

When a job is added, units not yet started are scheduled again together with the new job (so an
emergency job goes before routine units still waiting); units already started keep their machine and
times. The schedule is `solver.schedule.schedule_cp`: the dispatching rule, improved by CP-SAT within a
small time budget (`cp_time_limit_s`) when some job would be late, and never worse than the rule; with
`cp_time_limit_s=0` the dispatching rule alone is used.

By default machines run around the clock. With `working_hours`, a machine works only its
`hours_per_day`, spread evenly over the day (a step takes `24 / hours_per_day` times longer): the
capacity the planner and the simulated replay count per day, so a live replay has the labs the plan
assumes. Given the clock, everything here is
deterministic except which of several equally good CP-SAT schedules is kept when CP-SAT runs out of time.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from protocol.model import Machine
from solver.schedule import CP_MAX_OPERATIONS, Job, Operation, schedule, schedule_cp


class SimClock:
    """Simulated time: `start + worked wall seconds × speed`.

    `speed` 60 makes one wall second a simulated minute. `monotonic` is injectable so tests can move
    time by hand instead of sleeping. Wall time counts as worked unless one of these stops it:

    - `hold` (until `release`): the owner stops work, e.g. to wait for the planner's word.
    - A lease (`lease`): no time after the lease's monotonic deadline is worked, and simulated time
      does not pass its simulated limit, until a new lease is given. Both are enforced by the clock
      itself, at the instant they pass, however late the owner's loop looks; so a lab never works
      past what its planner vouched for.
    - A stall: with `stall_seconds`, a jump of the monotonic clock longer than that between two
      readings (the process was suspended, the machine slept) is never worked: the clock takes the
      jump out and holds itself at once, whoever reads it first, so no unit can be made in that time
      before the owner notices (`notice_stall`) and decides when work may go on (`release`).
    """

    def __init__(
        self,
        start: datetime,
        speed: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        stall_seconds: float | None = None,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock start must carry a time zone (UTC)")
        if not speed > 0:
            raise ValueError(f"SimClock speed must be positive, got {speed}")
        if stall_seconds is not None and not stall_seconds > 0:
            raise ValueError(f"SimClock stall_seconds must be positive, got {stall_seconds}")
        self.start = start
        self.speed = speed
        #: A gap between readings longer than this is a stall (None: every gap is worked).
        self.stall_seconds = stall_seconds
        self._monotonic = monotonic
        #: Wall seconds worked up to the monotonic instant `_counted_to`.
        self._worked = 0.0
        self._counted_to = monotonic()
        self._last_read = self._counted_to
        self._held = False
        #: Monotonic instant after which nothing is worked (None: no lease limits the work).
        self._lease_until: float | None = None
        #: Wall seconds worked beyond which simulated time stands still (None: no limit).
        self._worked_limit: float | None = None
        self._stall_unseen: float | None = None

    def _count(self, at: float) -> None:
        """Add the wall time worked since the last count, up to `at`."""
        if not self._held:
            end = at if self._lease_until is None else min(at, self._lease_until)
            self._worked += max(0.0, end - self._counted_to)
            if self._worked_limit is not None:
                self._worked = min(self._worked, max(self._worked_limit, 0.0))
        self._counted_to = max(self._counted_to, at)

    def _read(self) -> None:
        """Count the work up to now; a stall since the last reading is taken out and holds the clock."""
        at = self._monotonic()
        gap = at - self._last_read
        if self.stall_seconds is not None and gap > self.stall_seconds:
            self._stall_unseen = gap + (self._stall_unseen or 0.0)
            self._count(self._last_read)
            self._counted_to = at  # the gap is not worked
            self._held = True
        self._last_read = at
        self._count(at)

    def now(self) -> datetime:
        """The current simulated instant (UTC)."""
        self._read()
        return self.start + timedelta(seconds=self._worked * self.speed)

    def notice_stall(self) -> float | None:
        """Read the clock; the wall seconds of stalls found since the last call, or None if none.

        After a stall the clock is held: the caller releases it when work may go on.
        """
        self._read()
        gap, self._stall_unseen = self._stall_unseen, None
        return gap

    @property
    def held(self) -> bool:
        """True while the clock is held (see `hold`; a stall holds it too)."""
        return self._held

    @property
    def lapsed(self) -> bool:
        """True once the lease's deadline or its simulated limit has passed (until a new lease)."""
        if self._lease_until is not None and self._monotonic() >= self._lease_until:
            return True
        if self._worked_limit is not None:
            self._read()
            return self._worked >= self._worked_limit
        return False

    def hold(self) -> None:
        """Stop simulated time until `release`: e.g. a lab waiting for its planner's word."""
        self._read()
        self._held = True

    def release(self) -> None:
        """Let simulated time run again from where it was held (the held span is not worked).

        A lapsed lease still stops it until `lease` gives a new one.
        """
        if self._held:
            at = self._monotonic()
            self._last_read = self._counted_to = max(self._counted_to, at)
            self._held = False

    def lease(self, until: float | None, sim_until: datetime | None = None) -> None:
        """Let wall time be worked up to the monotonic instant `until` (None: without limit), and
        simulated time run up to `sim_until` at most (None: without limit).

        Time between a lapsed lease and the new one is not worked. A deadline that is already past
        stops the work at once; simulated time never goes back.
        """
        self._read()
        self._lease_until = until
        if sim_until is None:
            self._worked_limit = None
        else:
            limit = (sim_until - self.start).total_seconds() / self.speed
            self._worked_limit = max(limit, self._worked)

    def wall_seconds_until(self, instant: datetime) -> float:
        """Wall seconds until the simulated `instant` (0 when it is already past)."""
        return max(0.0, (instant - self.now()).total_seconds() / self.speed)


@dataclass(slots=True)
class _JobRecord:
    job: Job
    #: unit index -> its operations in step order; units dropped by `stop` are removed.
    units: dict[int, list[Operation]]
    #: completion time of every unit still scheduled, sorted.
    unit_ends: list[datetime]
    stopped: bool = False


class Executor:
    """Runs accepted jobs on the lab's machines in simulated time (see the module docstring)."""

    def __init__(
        self,
        machines: list[Machine],
        clock: SimClock,
        *,
        cp_time_limit_s: float = 0.1,
        cp_max_operations: int = CP_MAX_OPERATIONS,
        working_hours: bool = False,
    ) -> None:
        if not machines:
            raise ValueError("an executor needs at least one machine")
        if cp_time_limit_s < 0:
            raise ValueError(f"cp_time_limit_s must not be negative, got {cp_time_limit_s}")
        #: Machines work only their hours_per_day (see the module docstring).
        self.working_hours = working_hours
        self.machines = list(machines)
        self.clock = clock
        #: CP-SAT's budget per added job, in wall seconds (0: the dispatching rule only).
        self.cp_time_limit_s = cp_time_limit_s
        #: Above this many operations to (re)schedule, the dispatching rule alone is used.
        self.cp_max_operations = cp_max_operations
        self._jobs: dict[str, _JobRecord] = {}

    @property
    def machines(self) -> list[Machine]:
        """The machines that take work (the lab's, less those down)."""
        return self._machines

    @machines.setter
    def machines(self, machines: list[Machine]) -> None:
        self._machines = list(machines)
        #: As the scheduler sees them: slowed to their hours a day when only those are worked.
        self._timed = [
            m.model_copy(update={"speed": m.speed * m.hours_per_day / 24.0}) if self.working_hours else m
            for m in self._machines
        ]

    # --- changing the work ---------------------------------------------------------------------

    def add(self, job: Job, at: datetime | None = None) -> datetime:
        """Schedule a new job from `at` (default: now) and return its ETA (simulated).

        Raises ValueError (naming the step) when the job cannot run on these machines, or when the
        id is already known; nothing changes in that case.
        """
        if job.id in self._jobs:
            raise ValueError(f"job {job.id} is already scheduled")
        now = self.clock.now() if at is None else at
        busy_until: dict[str, datetime] = {}
        pending: dict[str, list[int]] = {}
        for job_id, record in self._jobs.items():
            if not record.unit_ends or record.unit_ends[-1] <= now:
                continue  # finished or stopped: nothing to move, machines already free
            waiting = []
            for unit, ops in record.units.items():
                if ops[0].start < now:  # started: keeps its machines and times
                    for op in ops:
                        busy_until[op.machine_id] = max(busy_until.get(op.machine_id, now), op.end)
                else:
                    waiting.append(unit)
            if waiting:
                pending[job_id] = waiting
        batch = [
            Job(job_id, r.job.design, len(pending[job_id]), r.job.due_at, r.job.priority)
            for job_id, r in self._jobs.items()
            if job_id in pending
        ]
        batch.append(job)
        if self.cp_time_limit_s > 0:  # either raises before any change
            result = schedule_cp(
                self._timed,
                batch,
                now,
                busy_until,
                time_limit_s=self.cp_time_limit_s,
                max_operations=self.cp_max_operations,
            )
        else:
            result = schedule(self._timed, batch, now, busy_until)
        new_units: dict[str, dict[int, list[Operation]]] = {}
        for op in result.operations:
            unit = pending[op.job_id][op.unit] if op.job_id in pending else op.unit
            moved = Operation(op.job_id, unit, op.step, op.machine_id, op.start, op.end, op.nominal_minutes)
            new_units.setdefault(op.job_id, {}).setdefault(unit, []).append(moved)
        self._jobs[job.id] = _JobRecord(job, {}, [])
        for job_id, units in new_units.items():
            record = self._jobs[job_id]
            record.units.update(units)
            record.unit_ends = sorted(ops[-1].end for ops in record.units.values())
        return self._jobs[job.id].unit_ends[-1]

    def stop(self, job_id: str, at: datetime | None = None) -> tuple[int, int]:
        """Stop a job at `at` (default: now): drop its unfinished units; return (units done, started).

        Units in progress are abandoned (their material counts as used); their machines are free for
        whatever is scheduled next.
        """
        record = self._record(job_id)
        now = self.clock.now() if at is None else at
        done = self.units_done(job_id, now)
        started = self.units_started(job_id, now)
        record.units = {u: ops for u, ops in record.units.items() if ops[-1].end <= now}
        record.unit_ends = sorted(ops[-1].end for ops in record.units.values())
        record.stopped = True
        return done, started

    # --- reading the state ---------------------------------------------------------------------

    def units_done(self, job_id: str, at: datetime | None = None) -> int:
        """How many units of the job are finished at `at` (default: now)."""
        now = self.clock.now() if at is None else at
        return bisect.bisect_right(self._record(job_id).unit_ends, now)

    def units_started(self, job_id: str, at: datetime | None = None) -> int:
        """How many units of the job have begun (finished ones included) at `at` (default: now)."""
        now = self.clock.now() if at is None else at
        return sum(1 for ops in self._record(job_id).units.values() if ops[0].start < now)

    def eta(self, job_id: str) -> datetime | None:
        """When the job's last scheduled unit ends (simulated); None for a stopped job with no units."""
        ends = self._record(job_id).unit_ends
        return ends[-1] if ends else None

    def unit_ends(self, job_id: str) -> tuple[datetime, ...]:
        """Completion time of every scheduled unit of the job, sorted."""
        return tuple(self._record(job_id).unit_ends)

    def started_at(self, job_id: str) -> datetime | None:
        """When the job's first operation starts (simulated); None when it has no units."""
        starts = [ops[0].start for ops in self._record(job_id).units.values()]
        return min(starts, default=None)

    def is_stopped(self, job_id: str) -> bool:
        """True once `stop` was called for the job."""
        return self._record(job_id).stopped

    def operations(self, job_id: str | None = None) -> list[Operation]:
        """Scheduled operations (of one job, or of all), sorted by start then machine."""
        records = [self._record(job_id)] if job_id is not None else list(self._jobs.values())
        ops = [op for r in records for unit_ops in r.units.values() for op in unit_ops]
        return sorted(ops, key=lambda op: (op.start, op.machine_id))

    def backlog_minutes(self, at: datetime | None = None) -> dict[str, float]:
        """Per machine, the nominal minutes of scheduled work not finished at `at` (default: now).

        An operation under way counts by the part still to do; every machine appears, idle ones at 0.
        """
        now = self.clock.now() if at is None else at
        backlog = {m.id: 0.0 for m in self.machines}
        for record in self._jobs.values():
            if not record.unit_ends or record.unit_ends[-1] <= now:
                continue
            for ops in record.units.values():
                if ops[-1].end <= now:
                    continue
                for op in ops:
                    if op.end <= now:
                        continue
                    if op.start >= now:
                        backlog[op.machine_id] += op.nominal_minutes
                    else:
                        left = (op.end - now) / (op.end - op.start)
                        backlog[op.machine_id] += op.nominal_minutes * left
        return backlog

    def _record(self, job_id: str) -> _JobRecord:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise KeyError(f"unknown job {job_id!r}") from None
