"""What runs a lab's accepted jobs: one interface, one module per kind (SPEC.md section 9).

- `nodes.simulated.SimulatedExecutor`: the machines work through a schedule in simulated time;
- `nodes.printers.PrinterExecutor`: real printers driven through their servers, OctoPrint
  (`nodes.octoprint`) or Moonraker (`nodes.moonraker`);
- `nodes.manual.ManualExecutor`: the operator reports the units made or failed by hand.

The `Workshop` (the lab's job book) speaks only this interface. What every executor guarantees:

- a unit counts as made only once the work that makes it has ended in success (a print that the
  server reports finished, an operator's report), never from a progress fraction;
- a job the executor cannot finish (a print failed or was cancelled, the operator reports a
  failure) is reported by `failure` with the reason, and `units_done` then says the units really made;
- ETAs come from the best estimate at hand: the schedule (simulated), the printer server's own
  estimate of the print under way (printers), the nominal minutes of the work left (by hand).

Times are UTC instants. For the simulated executor they are simulated instants of its `SimClock`;
the real executors run at the wall clock's pace (the agent runs them with speed 1).

The lab's operator may say a machine is down or works again (`set_down`, through the agent's control
socket, `nodes.control`): the simulated executor and work by hand take it (`takes_machines_down`);
a printer's state comes from its own server, which says when it is offline or in error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from protocol.model import Machine
from solver.jobshop.lab_schedule import Job

#: Backlog reported for a machine that is down (offline, in error, unreachable): this many days of
#: its working time, so the planner counts none of its time until it is back.
DOWN_BACKLOG_DAYS = 30.0


class Executor(ABC):
    """Runs accepted jobs on the lab's machines and says how far each got (see the module docstring)."""

    machines: list[Machine]

    @abstractmethod
    def add(self, job: Job, at: datetime) -> datetime:
        """Take a new job from `at` and return its ETA. Raises ValueError (naming the step or the
        file) when it cannot run here; nothing changes then."""

    @abstractmethod
    def resume(self, job: Job, units_done: int, saved: dict[str, Any] | None, at: datetime) -> datetime:
        """Take up a job after the agent restarted: `units_done` were reported before, `saved` is what
        `saved(job_id)` returned then (None if nothing). Returns its ETA."""

    @abstractmethod
    def stop(self, job_id: str, at: datetime) -> tuple[int, int]:
        """Stop a job (withdrawn, or failed): return (units done, units started). Work under way is
        abandoned (a print is cancelled); its material counts as used."""

    @abstractmethod
    def units_done(self, job_id: str, at: datetime) -> int:
        """Units of the job made by `at` (for the real executors: made so far)."""

    @abstractmethod
    def units_by(self, job_id: str, until: datetime) -> int:
        """The most units of the job that can be made by `until` (what a HEARTBEAT promises)."""

    @abstractmethod
    def limit(self, promise: dict[str, int]) -> datetime | None:
        """Make no unit of a job beyond `promise[job_id]` (a job missing from it: beyond its units now)
        until the next call. Returns the simulated instant just before the first unit beyond the
        promise would be finished, for the clock to stop at (None: the executor holds by itself)."""

    @abstractmethod
    def eta(self, job_id: str) -> datetime | None:
        """When the job is expected to end; None when it has no work left."""

    @abstractmethod
    def started_at(self, job_id: str) -> datetime | None:
        """When the job's first work started (None: not yet)."""

    @abstractmethod
    def backlog_minutes(self, at: datetime) -> dict[str, float]:
        """Per machine, the nominal minutes of work not finished at `at` (every machine appears).

        A machine busy with work that is not the lab's counts it; a machine that is down counts
        `DOWN_BACKLOG_DAYS` of its working time."""

    #: True when the operator may take machines down by word (`set_down`); see the module docstring.
    takes_machines_down: bool = False

    def units_started(self, job_id: str, at: datetime) -> int:
        """Units of the job begun by `at`, finished ones included (their material is in the machine)."""
        return self.units_done(job_id, at)

    def set_down(self, down: set[str]) -> None:
        """Take work only on the machines not in `down` from now on (the operator's word).

        Raises ValueError when this executor does not take machines down by word."""
        raise ValueError(
            "this lab's machines are down when their printer server says so (offline, in error); "
            "machines down or up by word are for simulated labs and work by hand"
        )

    def needs_machine(self, job_id: str, machine_id: str, at: datetime) -> bool:
        """True when the job still has work on `machine_id` after `at` (it cannot finish with it down)."""
        return False

    def failure(self, job_id: str) -> str | None:
        """Why the executor itself could not finish the job (None while it can)."""
        return None

    def saved(self, job_id: str) -> dict[str, Any] | None:
        """The job's execution state for the journal (what `resume` needs after a restart)."""
        return None

    @property
    def journal_dirty(self) -> bool:
        """True when execution state changed that the journal must hold before anything else happens."""
        return False

    def journaled(self) -> None:
        """The journal now holds the execution state (clears `journal_dirty`)."""
        return None

    async def start(self) -> None:
        """Begin talking to the machines (printer servers); nothing for the others."""
        return None

    async def close(self) -> None:
        """Stop talking to the machines."""
        return None
