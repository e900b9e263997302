"""A lab's own machine schedule by a dispatching rule: which machine makes which step of which unit, when.

This is the fast, deterministic schedule a lab agent builds when it accepts a job (and the starting
point a CP-SAT schedule can improve on). Rule:

- jobs are taken in order of priority (emergency, then urgent, then routine), then due date, then the
  order they were given in;
- each unit of a job is made step after step, in the design's order;
- each step goes to the eligible machine (`Step.can_run_on`) that can *finish* it earliest; a step of
  `m` nominal minutes takes `m / machine.speed` wall minutes.

Machines are taken to work continuously from `start`: a machine's `hours_per_day` limits how much
work the planner gives a lab per day (planning capacity), not when the lab's machines run here.

Pure: no clock, no sockets; data in, schedule out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from protocol.model import Design, Machine, Priority

#: Dispatch rank of each priority: lower goes first.
PRIORITY_RANK: dict[str, int] = {"emergency": 0, "urgent": 1, "routine": 2}


@dataclass(frozen=True, slots=True)
class Job:
    """`quantity` units of `design` to make by `due_at` (UTC), with the order's priority."""

    id: str
    design: Design
    quantity: int
    due_at: datetime
    priority: Priority = "routine"


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


def dispatch_order(jobs: list[Job]) -> list[Job]:
    """Jobs in the order the rule takes them: priority, then due date, then as given."""
    return sorted(jobs, key=lambda j: (PRIORITY_RANK.get(j.priority, len(PRIORITY_RANK)), j.due_at))


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

    free_at: dict[str, datetime] = {m.id: start for m in machines}
    for machine_id, instant in (busy_until or {}).items():
        if machine_id in free_at:
            free_at[machine_id] = max(start, instant)

    operations: list[Operation] = []
    unit_ends: dict[str, tuple[datetime, ...]] = {}
    job_ends: dict[str, datetime] = {}
    tardiness: dict[str, float] = {}
    for job in dispatch_order(jobs):
        eligible = [[m for m in machines if step.can_run_on(m)] for step in job.design.steps]
        ends: list[datetime] = []
        for unit in range(job.quantity):
            ready = start
            for index, step in enumerate(job.design.steps):
                machine, begin, finish = _earliest_finish(eligible[index], step.minutes, ready, free_at)
                free_at[machine.id] = finish
                operations.append(
                    Operation(job.id, unit, index, machine.id, begin, finish, nominal_minutes=step.minutes)
                )
                ready = finish
            ends.append(ready)
        ends.sort()
        unit_ends[job.id] = tuple(ends)
        job_ends[job.id] = ends[-1]
        late = (ends[-1] - job.due_at).total_seconds() / 60.0
        tardiness[job.id] = max(0.0, late)
    return Schedule(tuple(operations), unit_ends, job_ends, tardiness, busy_until=dict(free_at))


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
