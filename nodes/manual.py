"""Work done by hand: the operator reports the units made or failed (`cosmolocal node report`).

`ManualExecutor` counts a unit only when the operator reports it made; a report of failed units ends
the job as FAILED with the operator's reason and the units made so far (SPEC.md section 9). ETAs and
the machines' backlog come from the nominal minutes of the work left, scheduled as the simulated
executor would at the agent's clock (run at speed 1 for real work).

Reports reach a running agent through its *inbox*, a folder beside the lab file (`LAB.reports/`):
`cosmolocal node report` writes one JSON file per report (atomically: temporary file, then rename),
the agent reads it on its next tick, applies it, writes its journal, and only then deletes the file.
Each report has an id that the journal remembers, so a report read twice counts once.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nodes.clock import SimClock
from nodes.executor import Executor
from nodes.simulated import SimulatedExecutor
from protocol.model import Machine
from solver.jobshop.lab_schedule import Job

log = logging.getLogger(__name__)

_REASON_LIMIT = 400


@dataclass(frozen=True, slots=True)
class Report:
    """What the operator reports for one job: units made, units failed (ends the job), and why."""

    assignment_id: str
    made: int = 0
    failed: int = 0
    reason: str = ""
    id: str = ""

    def __post_init__(self) -> None:
        if self.made < 0 or self.failed < 0:
            raise ValueError("made and failed are counts of units: they cannot be negative")
        if self.made == 0 and self.failed == 0:
            raise ValueError("report at least one unit made or failed")
        if self.failed and not self.reason.strip():
            raise ValueError("say why the units failed (the planner and the requester read it)")
        if len(self.reason) > _REASON_LIMIT:
            raise ValueError(f"reason: at most {_REASON_LIMIT} characters")


class ReportInbox:
    """The folder where `cosmolocal node report` leaves reports for the running agent."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, report: Report) -> Report:
        """Leave a report for the agent (given a fresh id); returns it as written."""
        report = Report(report.assignment_id, report.made, report.failed, report.reason, uuid.uuid4().hex)
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{report.id}.tmp"
        temporary.write_text(json.dumps(asdict(report)), encoding="utf-8")
        os.replace(temporary, self.folder / f"{report.id}.json")
        return report

    def take(self) -> list[Report]:
        """Every report waiting, oldest first; a file that is not a report is set aside (`.bad`)."""
        try:
            files = sorted(self.folder.glob("*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        except OSError:
            return []
        reports = []
        for path in files:
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                reports.append(Report(**raw))
            except (OSError, ValueError, TypeError) as exc:
                log.error("%s: not a report (%s); set aside as %s.bad", path, exc, path.name)
                path.replace(path.with_suffix(".bad"))
        return reports

    def done(self, report: Report) -> None:
        """The report is applied and in the journal: remove its file."""
        (self.folder / f"{report.id}.json").unlink(missing_ok=True)


@dataclass(slots=True)
class _Handwork:
    quantity: int
    made: int = 0
    failed: int = 0
    reason: str | None = None
    applied: list[str] | None = None


class ManualExecutor(Executor):
    """Jobs done by hand, counted from the operator's reports (see the module docstring)."""

    def __init__(self, machines: list[Machine], clock: SimClock) -> None:
        self.machines = list(machines)
        self.clock = clock
        #: The nominal schedule, for ETAs and backlog only: units never count from it.
        self._plan = SimulatedExecutor(machines, clock, cp_time_limit_s=0)
        self._jobs: dict[str, _Handwork] = {}

    takes_machines_down = True

    def set_down(self, down: set[str]) -> None:
        self._plan.set_down(down)
        self.machines = self._plan.machines

    def needs_machine(self, job_id: str, machine_id: str, at: datetime) -> bool:
        """The nominal plan is no record of what was done by hand: a job with units still to report
        needs every machine its plan uses."""
        work = self._work(job_id)
        return work.made < work.quantity and any(
            op.machine_id == machine_id for op in self._plan.operations(job_id)
        )

    def units_started(self, job_id: str, at: datetime) -> int:
        work = self._work(job_id)
        return min(work.quantity, work.made + work.failed)

    def add(self, job: Job, at: datetime) -> datetime:
        eta = self._plan.add(job, at=at)
        self._jobs[job.id] = _Handwork(job.quantity, applied=[])
        return eta

    def resume(self, job: Job, units_done: int, saved: dict[str, Any] | None, at: datetime) -> datetime:
        eta = self._plan.resume(job, units_done, None, at)
        saved = saved or {}
        self._jobs[job.id] = _Handwork(
            job.quantity, units_done, int(saved.get("failed", 0)), None, list(saved.get("applied", []))
        )
        return eta

    def apply(self, report: Report) -> None:
        """Count an operator's report; one already counted (same id) is ignored.

        Raises ValueError naming the job when it would count more units than the job has."""
        work = self._work(report.assignment_id)
        assert work.applied is not None
        if report.id and report.id in work.applied:
            return
        if work.made + report.made > work.quantity:
            raise ValueError(
                f"job {report.assignment_id}: {work.made} of {work.quantity} units already reported made; "
                f"{report.made} more would be too many"
            )
        work.made += report.made
        if report.failed:
            work.failed += report.failed
            work.reason = f"the operator reports {report.failed} unit(s) failed: {report.reason.strip()}"
        if report.id:
            work.applied.append(report.id)
        log.info(
            "report for %s: %d made, %d failed (%d of %d made so far)",
            report.assignment_id,
            report.made,
            report.failed,
            work.made,
            work.quantity,
        )

    def stop(self, job_id: str, at: datetime) -> tuple[int, int]:
        work = self._work(job_id)
        self._plan.stop(job_id, at)
        return work.made, min(work.quantity, work.made + work.failed)

    def units_done(self, job_id: str, at: datetime) -> int:
        return self._work(job_id).made

    def units_by(self, job_id: str, until: datetime) -> int:
        """Anything may be reported at any time: the whole job (the planner holds it in doubt)."""
        return self._work(job_id).quantity

    def limit(self, promise: dict[str, int]) -> datetime | None:
        return None  # work by hand cannot be held by the agent

    def eta(self, job_id: str) -> datetime | None:
        work = self._work(job_id)
        if work.made >= work.quantity:
            return None
        planned = self._plan.eta(job_id)
        now = self.clock.now()
        return planned if planned is not None and planned > now else now

    def started_at(self, job_id: str) -> datetime | None:
        return self._plan.started_at(job_id)

    def backlog_minutes(self, at: datetime) -> dict[str, float]:
        return self._plan.backlog_minutes(at)

    def failure(self, job_id: str) -> str | None:
        return self._work(job_id).reason

    def saved(self, job_id: str) -> dict[str, Any] | None:
        work = self._work(job_id)
        return {"failed": work.failed, "applied": list(work.applied or [])}

    def _work(self, job_id: str) -> _Handwork:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise KeyError(f"unknown job {job_id!r}") from None
