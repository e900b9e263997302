"""A lab's own machine schedule by a dispatching rule: which machine makes which step of which unit, when.

This is the fast, deterministic schedule a lab agent builds when it accepts a job, and the starting
point of `schedule_cp`, which improves it with CP-SAT (solver.jobshop.fjsp). Rule:

- work is taken earliest leave-by first (`solver.jobshop.ranking`, the rule the simulated replay's
  labs follow too): a job's units the plan counts on time must leave by the due date less the road
  (`Job.road_hours`), its units planned late by the plan's arrival for them (`Job.arrive_by`) less
  the same; so a job is two pieces when the plan placed some of its units late;
- each unit of a job is made step after step, in the design's order;
- each step goes to the eligible machine (`Step.can_run_on`) that can *finish* it earliest; a step of
  `m` nominal minutes takes `m / machine.speed` wall minutes.

Machines are taken to work continuously from `start`: a machine's `hours_per_day` limits how much
work the planner gives a lab per day (planning capacity), not when the lab's machines run here.

`schedule_cp` sequences the same jobs with CP-SAT, minimising weighted tardiness (see its docstring).

Pure: no clock, no sockets; data in, schedule out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from protocol.model import Design, Machine, Priority
from solver.jobshop import fjsp
from solver.jobshop.instance import FjJob, FjOperation, Instance
from solver.jobshop.ranking import dispatch_key, leave_by


@dataclass(frozen=True, slots=True)
class Job:
    """`quantity` units of `design` to make by `due_at` (UTC), with the order's priority.

    What the plan meant, when known (an ASSIGN may carry it): `road_hours` from the lab to the
    delivery place (handling included), how many units the plan counts on time (`on_time_units`;
    None: all of them; they are the first units made) and when the plan said the others arrive
    (`arrive_by`). `order_id` breaks ties between orders as the simulated replay does.
    """

    id: str
    design: Design
    quantity: int
    due_at: datetime
    priority: Priority = "routine"
    order_id: str = ""
    road_hours: float | None = None
    on_time_units: int | None = None
    arrive_by: datetime | None = None

    @property
    def on_time(self) -> int:
        """Units of the job the plan counts on time (all of them when not said)."""
        if self.on_time_units is None:
            return self.quantity
        return max(0, min(self.quantity, self.on_time_units))

    def deadline(self, unit: int) -> datetime:
        """When unit `unit` (0-based) must leave the lab: its piece's leave-by."""
        late = unit >= self.on_time
        return leave_by(self.due_at, self.road_hours, self.arrive_by, late=late)


@dataclass(frozen=True, slots=True)
class Piece:
    """Units `first` to `first + count - 1` of a job, which share one leave-by."""

    job: Job
    first: int
    count: int
    leave_by: datetime


def dispatch_pieces(jobs: list[Job]) -> list[Piece]:
    """Every job's pieces (units planned on time, units planned late) in the order the rule takes
    them: `solver.jobshop.ranking.dispatch_key`, the jobs' list order as their arrival order."""
    keyed = []
    for seq, job in enumerate(jobs):
        on_time = job.on_time
        for part, (first, count) in enumerate(((0, on_time), (on_time, job.quantity - on_time))):
            if count <= 0:
                continue
            leave = job.deadline(first)
            key = dispatch_key(leave, job.due_at, job.priority, job.order_id, seq)
            keyed.append(((key, part), Piece(job, first, count, leave)))
    keyed.sort(key=lambda item: item[0])
    return [piece for _, piece in keyed]


@dataclass(frozen=True, slots=True)
class Operation:
    """One step of one unit of one job on one machine, from `start` to `end`."""

    job_id: str
    unit: int
    step: int
    machine_id: str
    start: datetime
    end: datetime
    #: The step's nominal minutes (the design's figure, before the machine's speed factor).
    nominal_minutes: float


@dataclass(frozen=True, slots=True)
class Schedule:
    """Operations in dispatch order, with each job's unit completion times, end and tardiness."""

    operations: tuple[Operation, ...]
    #: job id -> completion time of each unit, sorted ascending.
    unit_ends: dict[str, tuple[datetime, ...]]
    #: job id -> completion time of its last unit.
    job_ends: dict[str, datetime]
    #: job id -> minutes its end falls after its due date (0 when on time).
    tardiness_minutes: dict[str, float]
    #: machine id -> when it is free again after this schedule (or as given, if it got no work).
    busy_until: dict[str, datetime] = field(default_factory=dict)

    @property
    def total_tardiness_minutes(self) -> float:
        """Sum of every job's tardiness in minutes."""
        return sum(self.tardiness_minutes.values())

    @property
    def end(self) -> datetime | None:
        """When the last operation finishes (None for an empty schedule)."""
        return max(self.job_ends.values(), default=None)


def unrunnable_step(design: Design, machines: list[Machine]) -> str | None:
    """Describe the first step of `design` that no machine can run, or None when every step can run.

    The text says which step, which process and tags it needs, and what the machines offer, so that
    it can be shown to the lab operator or sent as a refusal reason as it is.
    """
    for index, step in enumerate(design.steps):
        if any(step.can_run_on(m) for m in machines):
            continue
        needs = f"process {step.process}"
        if step.requires:
            needs += " with " + ", ".join(f"{k}={v}" for k, v in sorted(step.requires.items()))
        offered = sorted({p for m in machines for p in m.processes})
        return (
            f"step {index} ({step.process}) of design {design.id} can run on no machine here: "
            f"it needs {needs}; machines offer {', '.join(offered) or 'nothing'}"
        )
    return None


def schedule(
    machines: list[Machine],
    jobs: list[Job],
    start: datetime,
    busy_until: dict[str, datetime] | None = None,
) -> Schedule:
    """Schedule every unit of every job on `machines` from `start` (see the module docstring).

    `busy_until` gives, per machine id, when that machine is free (work already committed); a time
    before `start` counts as `start`. Raises ValueError naming the job and step when a step can run
    on no machine, or when a job's quantity is not positive, or job ids repeat.
    """
    _check_jobs(machines, jobs)
    free_at: dict[str, datetime] = {m.id: start for m in machines}
    for machine_id, instant in (busy_until or {}).items():
        if machine_id in free_at:
            free_at[machine_id] = max(start, instant)

    operations: list[Operation] = []
    ends: dict[str, list[datetime]] = {job.id: [] for job in jobs}
    for piece in dispatch_pieces(jobs):
        job = piece.job
        eligible = [[m for m in machines if step.can_run_on(m)] for step in job.design.steps]
        for unit in range(piece.first, piece.first + piece.count):
            ready = start
            for index, step in enumerate(job.design.steps):
                machine, begin, finish = _earliest_finish(eligible[index], step.minutes, ready, free_at)
                free_at[machine.id] = finish
                operations.append(
                    Operation(job.id, unit, index, machine.id, begin, finish, nominal_minutes=step.minutes)
                )
                ready = finish
            ends[job.id].append(ready)
    unit_ends = {job_id: tuple(sorted(values)) for job_id, values in ends.items()}
    job_ends = {job_id: values[-1] for job_id, values in unit_ends.items()}
    tardiness = {job.id: max(0.0, (job_ends[job.id] - job.due_at).total_seconds() / 60.0) for job in jobs}
    return Schedule(tuple(operations), unit_ends, job_ends, tardiness, busy_until=dict(free_at))


def _check_jobs(machines: list[Machine], jobs: list[Job]) -> None:
    """Raise ValueError on repeated ids, non-positive quantities or a step no machine can run."""
    ids = [j.id for j in jobs]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"job ids must be unique; repeated: {', '.join(repeated)}")
    for job in jobs:
        if job.quantity <= 0:
            raise ValueError(f"job {job.id}: quantity must be positive, got {job.quantity}")
        problem = unrunnable_step(job.design, machines)
        if problem is not None:
            raise ValueError(f"job {job.id}: {problem}")


def _earliest_finish(
    candidates: list[Machine], nominal_minutes: float, ready: datetime, free_at: dict[str, datetime]
) -> tuple[Machine, datetime, datetime]:
    """The candidate machine that finishes this step first (first in list order on ties)."""
    best: tuple[Machine, datetime, datetime] | None = None
    for machine in candidates:
        begin = max(ready, free_at[machine.id])
        finish = begin + timedelta(minutes=nominal_minutes / machine.speed)
        if best is None or finish < best[2]:
            best = (machine, begin, finish)
    assert best is not None  # candidates are never empty: checked before dispatching
    return best


# --- CP-SAT lab schedule ------------------------------------------------------------------------------

#: Weight of one minute of tardiness, by priority: an emergency minute outweighs any routine lateness a
#: lab plausibly has, an urgent minute outweighs a hundred routine ones.
PRIORITY_WEIGHT: dict[str, int] = {"emergency": 10_000, "urgent": 100, "routine": 1}

#: Above this many operations (units x steps) `schedule_cp` keeps the dispatch rule: within a time
#: budget of a fraction of a second CP-SAT rarely improves a model that size, and building it costs time.
CP_MAX_OPERATIONS = 300

#: Unavailable intervals of a machine: (from, until), UTC.
Calendar = Sequence[tuple[datetime, datetime]]


def schedule_cp(
    machines: list[Machine],
    jobs: list[Job],
    start: datetime,
    busy_until: dict[str, datetime] | None = None,
    *,
    calendars: dict[str, Calendar] | None = None,
    time_limit_s: float = 0.3,
    workers: int = 1,
    seed: int = 0,
    max_operations: int = CP_MAX_OPERATIONS,
) -> Schedule:
    """Schedule every unit of every job with CP-SAT, minimising priority-weighted tardiness.

    Each unit of each job is a job-shop job whose operations are the design's steps; a step may run on
    any machine with `Step.can_run_on`, taking `nominal minutes / machine.speed` (rounded up to whole
    minutes in the model; the returned times are exact). Each unit's tardiness counts, weighted by
    `PRIORITY_WEIGHT`; the end of the last operation breaks ties. `busy_until` makes a machine
    unavailable until then; `calendars` give further unavailable intervals per machine id (an
    operation never overlaps them). Without calendars, machines work continuously from `start`, as in
    `schedule`.

    The result is never worse than the dispatching rule (compared by weighted job tardiness, then
    weighted unit tardiness, then end): CP-SAT starts from the rule's schedule, and the rule's schedule
    is returned unchanged when CP-SAT finds nothing strictly better. It is also returned as is, without
    running CP-SAT, when every job is already on time (nothing to improve on the objective) or when
    the jobs have more than `max_operations` operations in all (too big for the time budget).
    Raises ValueError like `schedule`.
    """
    _check_jobs(machines, jobs)
    if calendars is None:
        base = schedule(machines, jobs, start, busy_until)
    else:
        base = _from_jobshop(machines, jobs, start, busy_until, calendars, None)
    if not jobs or _lab_key(jobs, base)[0] == 0:
        return base
    operations = sum(job.quantity * len(job.design.steps) for job in jobs)
    if operations > max_operations:
        return base
    candidate = _from_jobshop(
        machines,
        jobs,
        start,
        busy_until,
        calendars,
        {"time_limit_s": time_limit_s, "workers": workers, "seed": seed},
    )
    return candidate if _lab_key(jobs, candidate) < _lab_key(jobs, base) else base


def _lab_key(jobs: list[Job], result: Schedule) -> tuple[float, float, datetime | None]:
    """What `schedule_cp` compares schedules by: weighted job tardiness, weighted unit tardiness, end.

    A unit is late when it ends after its leave-by (`Job.deadline`: the due date less the road, or
    the plan's own date for units it placed late); the units finished first count as the ones the
    plan counted on time. A job's tardiness is its latest unit's.
    """
    job_late = 0.0
    unit_late = 0.0
    for job in jobs:
        weight = PRIORITY_WEIGHT.get(job.priority, 1)
        lateness = [
            max(0.0, (end - job.deadline(unit)).total_seconds() / 60.0)
            for unit, end in enumerate(result.unit_ends[job.id])
        ]
        job_late += weight * max(lateness, default=0.0)
        unit_late += weight * sum(lateness)
    return round(job_late, 6), round(unit_late, 6), result.end


def _minutes(instant: datetime, start: datetime) -> float:
    return (instant - start).total_seconds() / 60.0


def _from_jobshop(
    machines: list[Machine],
    jobs: list[Job],
    start: datetime,
    busy_until: dict[str, datetime] | None,
    calendars: dict[str, Calendar] | None,
    cp: dict[str, float | int] | None,
) -> Schedule:
    """The lab's jobs as a job-shop instance in whole minutes, solved (or dispatched when `cp` is None),
    then re-timed with exact durations on the same machines in the same order."""
    index = {m.id: i for i, m in enumerate(machines)}
    # Exact unavailable intervals in minutes from `start`, per machine index.
    blocked: list[list[tuple[float, float]]] = [[] for _ in machines]
    for machine_id, until in (busy_until or {}).items():
        if machine_id in index and until > start:
            blocked[index[machine_id]].append((0.0, _minutes(until, start)))
    for machine_id, intervals in (calendars or {}).items():
        if machine_id not in index:
            raise ValueError(f"calendar for unknown machine {machine_id!r}")
        for begin, end in intervals:
            if end <= begin:
                raise ValueError(f"calendar of machine {machine_id}: interval ends before it starts")
            if end > start:
                blocked[index[machine_id]].append((max(0.0, _minutes(begin, start)), _minutes(end, start)))
    integer_calendars = {
        i: [(math.floor(a), math.ceil(b)) for a, b in spans] for i, spans in enumerate(blocked) if spans
    }

    units: list[tuple[Job, int]] = []
    fj_jobs: list[FjJob] = []
    for piece in dispatch_pieces(jobs):
        job = piece.job
        ops = tuple(
            FjOperation(
                {
                    index[m.id]: math.ceil(step.minutes / m.speed - 1e-9)
                    for m in machines
                    if step.can_run_on(m)
                }
            )
            for step in job.design.steps
        )
        due = math.floor(_minutes(piece.leave_by, start) + 1e-9)
        for unit in range(piece.first, piece.first + piece.count):
            units.append((job, unit))
            fj_jobs.append(
                FjJob(ops, due=due, weight=PRIORITY_WEIGHT.get(job.priority, 1), name=f"{job.id}#{unit}")
            )
    instance = Instance(tuple(fj_jobs), len(machines), integer_calendars)
    if cp is None:
        result = fjsp.dispatch(instance, "weighted_tardiness")
    else:
        result = fjsp.solve(
            instance,
            "weighted_tardiness",
            time_limit_s=float(cp["time_limit_s"]),
            workers=int(cp["workers"]),
            seed=int(cp["seed"]),
        )

    # Re-time exactly: operations in order of their model start keep both job and machine order.
    merged = [sorted(spans) for spans in blocked]
    placed = sorted(
        (op for job_ops in result.operations for op in job_ops), key=lambda op: (op.start, op.job)
    )
    ready = [0.0] * len(fj_jobs)
    free = [0.0] * len(machines)
    timed: dict[tuple[int, int], tuple[float, float]] = {}
    for op in placed:
        job, _ = units[op.job]
        machine = machines[op.machine]
        duration = job.design.steps[op.operation].minutes / machine.speed
        begin = _fit(merged[op.machine], max(ready[op.job], free[op.machine]), duration)
        timed[(op.job, op.operation)] = (begin, begin + duration)
        ready[op.job] = free[op.machine] = begin + duration

    operations: list[Operation] = []
    ends: dict[str, list[datetime]] = {job.id: [] for job in jobs}
    for op in sorted(placed, key=lambda op: (timed[(op.job, op.operation)][0], op.machine)):
        job, unit = units[op.job]
        begin, finish = timed[(op.job, op.operation)]
        operations.append(
            Operation(
                job.id,
                unit,
                op.operation,
                machines[op.machine].id,
                start + timedelta(minutes=begin),
                start + timedelta(minutes=finish),
                nominal_minutes=job.design.steps[op.operation].minutes,
            )
        )
        if op.operation == len(job.design.steps) - 1:
            ends[job.id].append(start + timedelta(minutes=finish))
    free_at = {m.id: start for m in machines}
    for machine_id, until in (busy_until or {}).items():
        if machine_id in free_at:
            free_at[machine_id] = max(start, until)
    for op in operations:
        free_at[op.machine_id] = max(free_at[op.machine_id], op.end)
    unit_ends = {job_id: tuple(sorted(values)) for job_id, values in ends.items()}
    job_ends = {job_id: values[-1] for job_id, values in unit_ends.items()}
    tardiness = {job.id: max(0.0, (job_ends[job.id] - job.due_at).total_seconds() / 60.0) for job in jobs}
    return Schedule(tuple(operations), unit_ends, job_ends, tardiness, busy_until=free_at)


def _fit(blocks: list[tuple[float, float]], ready: float, duration: float) -> float:
    """Earliest start >= `ready` at which [start, start + duration) overlaps none of the sorted `blocks`."""
    begin = ready
    for b_start, b_end in blocks:
        if b_end <= begin:
            continue
        if begin + duration <= b_start:
            return begin
        begin = max(begin, b_end)
    return begin
