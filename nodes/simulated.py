"""The simulated executor: the lab's machines working through their schedule in simulated time.

`SimulatedExecutor` keeps the schedule of every accepted job and answers, at any simulated instant,
how many units of a job are made, when the job will end, and how much work each machine still has
queued (the clock is `nodes.clock.SimClock`).

When a job is added, units not yet started are scheduled again together with the new job (so a job
that must leave sooner goes before units still waiting: `solver.jobshop.ranking`); units already
started keep their machine and times. The schedule is `solver.jobshop.lab_schedule.schedule_cp`: the
dispatching rule, improved by CP-SAT within a small time budget (`cp_time_limit_s`) when some job
would be late, and never worse than the rule; with `cp_time_limit_s=0` the dispatching rule alone is
used.

By default machines run around the clock. With `working_hours`, a machine works only its
`hours_per_day`, spread evenly over the day (a step takes `24 / hours_per_day` times longer): the
capacity the planner and the simulated replay count per day, so a live replay has the labs the plan
assumes. Machines the operator says are down (`set_down`) take no new work. Given the clock,
everything here is deterministic except which of several equally good CP-SAT schedules is kept when
CP-SAT runs out of time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from nodes.clock import SimClock
from nodes.executor import Executor
from protocol.model import Machine
from solver.jobshop.lab_schedule import CP_MAX_OPERATIONS, Job, Operation, schedule, schedule_cp

#: CP-SAT's default budget per added job, in wall seconds (0: the dispatching rule alone).
DEFAULT_CP_SECONDS = 0.1
#: A unit the lease does not cover is stopped this much before it would be finished.
_JUST_BEFORE = timedelta(microseconds=1)


@dataclass(slots=True)
class _JobRecord:
    job: Job
    #: unit index -> its operations in step order; units dropped by `stop` are removed.
    units: dict[int, list[Operation]]
    #: completion time of every unit still scheduled, sorted.
    unit_ends: list[datetime]
    stopped: bool = False
    #: Units made before the agent restarted (from its journal); the schedule holds only the rest.
    before: int = 0


class SimulatedExecutor(Executor):
    """Runs accepted jobs on the lab's machines in simulated time (see the module docstring)."""

    def __init__(
        self,
        machines: list[Machine],
        clock: SimClock,
        *,
        cp_time_limit_s: float = DEFAULT_CP_SECONDS,
        cp_max_operations: int = CP_MAX_OPERATIONS,
        working_hours: bool = False,
    ) -> None:
        if not machines:
            raise ValueError("an executor needs at least one machine")
        if cp_time_limit_s < 0:
            raise ValueError(f"cp_time_limit_s must not be negative, got {cp_time_limit_s}")
        #: Machines work only their hours_per_day (see the module docstring).
        self.working_hours = working_hours
        #: Every machine of the lab, down or not.
        self._all_machines = list(machines)
        self.machines = list(machines)
        self.clock = clock
        #: CP-SAT's budget per added job, in wall seconds (0: the dispatching rule only).
        self.cp_time_limit_s = cp_time_limit_s
        #: Above this many operations to (re)schedule, the dispatching rule alone is used.
        self.cp_max_operations = cp_max_operations
        self._jobs: dict[str, _JobRecord] = {}

    takes_machines_down = True

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

    def set_down(self, down: set[str]) -> None:
        """New work goes to the machines not in `down` (work already scheduled is the caller's to stop)."""
        self.machines = [m for m in self._all_machines if m.id not in down]

    def needs_machine(self, job_id: str, machine_id: str, at: datetime) -> bool:
        """True when an operation of the job on `machine_id` ends after `at`."""
        return any(op.machine_id == machine_id and op.end > at for op in self.operations(job_id))

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
            for unit, ops in sorted(record.units.items()):
                if ops[0].start < now:  # started: keeps its machines and times
                    for op in ops:
                        busy_until[op.machine_id] = max(busy_until.get(op.machine_id, now), op.end)
                else:
                    waiting.append(unit)
            if waiting:
                pending[job_id] = waiting
        # Units waiting keep their place in the plan: those the plan counted on time stay so.
        batch = [
            replace(
                r.job,
                quantity=len(pending[job_id]),
                on_time_units=sum(1 for unit in pending[job_id] if unit < r.job.on_time),
            )
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
        record = self._record(job_id)
        return record.before + bisect.bisect_right(record.unit_ends, now)

    def units_started(self, job_id: str, at: datetime | None = None) -> int:
        """How many units of the job have begun (finished ones, and those made before a restart,
        included) at `at` (default: now)."""
        now = self.clock.now() if at is None else at
        record = self._record(job_id)
        return record.before + sum(1 for ops in record.units.values() if ops[0].start < now)

    def units_by(self, job_id: str, until: datetime) -> int:
        """Units made by `until` on the current schedule (the schedule is what the lab will do)."""
        return self.units_done(job_id, until)

    def resume(self, job: Job, units_done: int, saved: dict[str, Any] | None, at: datetime) -> datetime:
        """Schedule the units not made before the restart; a unit that was under way starts again."""
        left = job.quantity - units_done
        # the units made first were the ones the plan counted on time
        eta = self.add(replace(job, quantity=left, on_time_units=max(0, job.on_time - units_done)), at=at)
        self._jobs[job.id].before = units_done
        return eta

    def limit(self, promise: dict[str, int]) -> datetime | None:
        """The instant just before the first unit beyond `promise` would be finished (None: never).

        A job missing from `promise` (taken after it was made) has promised the units it had then.
        The schedule may have changed since the promise, so this is asked again after each change.
        """
        earliest: datetime | None = None
        now = self.clock.now()
        for job_id, record in self._jobs.items():
            if record.stopped or not record.unit_ends or record.unit_ends[-1] <= now:
                continue  # stopped or finished: nothing more to make
            beyond = promise.get(job_id, record.before) - record.before
            ends = record.unit_ends
            if 0 <= beyond < len(ends) and (earliest is None or ends[beyond] < earliest):
                earliest = ends[beyond]
        return None if earliest is None else earliest - _JUST_BEFORE

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
                    if op.machine_id not in backlog:
                        continue  # a machine down: its work was stopped (see `set_down`)
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
