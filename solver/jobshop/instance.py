"""A flexible job-shop instance: jobs of operations with machine alternatives, and machine calendars.

The data every job-shop solver here reads (the CP-SAT model and dispatch rules in `solver.jobshop.fjsp`,
the tabu search in `solver.jobshop.tabu`, the Brandimarte reader): kept apart so that none of them
imports another to name an instance. Construction checks everything and names the job at fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FjOperation:
    """One operation: machine index -> processing time on that machine (at least one machine)."""

    alternatives: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class FjJob:
    """Operations in precedence order, with optional release, due date and weight."""

    operations: Sequence[FjOperation]
    release: int = 0
    due: int | None = None
    weight: int = 1
    name: str = ""


@dataclass(frozen=True, slots=True)
class Instance:
    """A flexible job-shop instance: jobs, number of machines and optional machine calendars.

    `calendars` maps a machine index to its unavailable [start, end) intervals. Construction checks
    everything and raises ValueError naming the job and operation at fault.
    """

    jobs: Sequence[FjJob]
    num_machines: int
    calendars: Mapping[int, Sequence[tuple[int, int]]] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def num_operations(self) -> int:
        """Operations over all jobs."""
        return sum(len(job.operations) for job in self.jobs)


# --- validation ---------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(instance: Instance) -> None:
    if not _is_int(instance.num_machines) or instance.num_machines <= 0:
        raise ValueError(f"the number of machines must be a positive integer, got {instance.num_machines!r}")
    if not instance.jobs:
        raise ValueError("an instance needs at least one job")
    for j, job in enumerate(instance.jobs):
        label = f"job {j}" + (f" ({job.name})" if job.name else "")
        if not job.operations:
            raise ValueError(f"{label}: has no operations")
        if not _is_int(job.release) or job.release < 0:
            raise ValueError(f"{label}: release must be a non-negative integer, got {job.release!r}")
        if job.due is not None and not _is_int(job.due):
            raise ValueError(f"{label}: due date must be an integer or None, got {job.due!r}")
        if not _is_int(job.weight) or job.weight < 0:
            raise ValueError(f"{label}: weight must be a non-negative integer, got {job.weight!r}")
        for o, op in enumerate(job.operations):
            if not op.alternatives:
                raise ValueError(f"{label}, operation {o}: has no eligible machine")
            for machine, duration in op.alternatives.items():
                if not _is_int(machine) or not 0 <= machine < instance.num_machines:
                    raise ValueError(
                        f"{label}, operation {o}: machine {machine!r} does not exist "
                        f"({instance.num_machines} machines)"
                    )
                if not _is_int(duration) or duration < 0:
                    raise ValueError(
                        f"{label}, operation {o}: processing time on machine {machine} must be a "
                        f"non-negative integer, got {duration!r}"
                    )
    for machine, blocks in instance.calendars.items():
        if not _is_int(machine) or not 0 <= machine < instance.num_machines:
            raise ValueError(f"calendar of machine {machine!r}: no such machine ({instance.num_machines})")
        for start, end in blocks:
            if not (_is_int(start) and _is_int(end)) or not 0 <= start < end:
                raise ValueError(
                    f"calendar of machine {machine}: unavailable interval [{start!r}, {end!r}) must be "
                    "integers with 0 <= start < end"
                )
