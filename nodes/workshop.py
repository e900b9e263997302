"""The lab's job book: decides on assignments, reserves stock, and turns execution into messages.

`Workshop` is the part of the lab agent that needs no socket: given an ASSIGN it answers ACCEPT or
REFUSE (idempotently by assignment id), reserves the stock an accepted job needs, schedules it on the
`Executor`, and, as simulated time passes, produces the PROGRESS, DONE and FAILED bodies to send.
The agent (`nodes.agent`) only moves these bodies over the wire.

In manual mode (`manual=True`) a new ASSIGN is held as offered, unanswered, until the operator's
decision arrives as a DECIDE (`decide`): accept runs the usual accept path, refuse sends REFUSE with
the operator's reason (SPEC.md section 7).

The lab's own changes go through the book too (`supply`, `lose_stock`, `machine_down`, `machine_up`;
the agent takes them from its control socket, `nodes.control`): material arriving, a material lost,
a machine down or back. A job that can no longer be finished stops at once and reports what it made
(FAILED), so the planner re-plans the rest; new jobs are judged on the machines that work. Machines
down are not journaled: after a restart the operator says so again. Machines go down by word on the
executors that take it (simulated, by hand: `Executor.takes_machines_down`); a printer is down when
its own server says so, and a lab with printers takes supply and stock lost only.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nodes.executor import Executor
from nodes.manual import ManualExecutor, Report
from nodes.simulated import SimulatedExecutor
from protocol.messages import Accept, Assign, Body, Decide, Done, Failed, Progress, Refuse, Stock
from protocol.model import JobState, Lab
from protocol.okh import materials
from solver.jobshop.lab_schedule import Job, unrunnable_step

log = logging.getLogger(__name__)

#: Units, and unit steps, beyond which one assignment is refused rather than scheduled: a guard
#: against absurd input (scheduling 50,000 operations takes a few tenths of a second).
MAX_UNITS_PER_JOB = 10_000
MAX_OPERATIONS_PER_JOB = 50_000
#: Stock arithmetic tolerance, in the material's unit.
_EPSILON = 1e-9
_REASON_LIMIT = 500
#: The refusal reason sent when the operator refuses without giving one.
OPERATOR_REFUSED = "refused by the lab's operator"


@dataclass(slots=True)
class JobStatus:
    """One assignment as this lab sees it: the request, the lab's answer, and how far it got."""

    assignment_id: str
    order_id: str
    design_id: str
    quantity: int
    due_at: datetime
    priority: str
    state: JobState
    units_done: int = 0
    eta: datetime | None = None
    reason: str | None = None
    #: material -> amount reserved for this job (taken off the free stock on accept).
    reserved: dict[str, float] = field(default_factory=dict)
    #: With failure injection: the job fails once this many units are done.
    fail_after_units: int | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """What to send for one ASSIGN, and whether it was a duplicate."""

    messages: list[Body]
    duplicate: bool


def job_of(assign: Assign) -> Job:
    """The job to schedule for an ASSIGN, with what the plan meant when the ASSIGN says it (the
    road, the units counted on time, the planned arrival), so the lab ranks it as the plan did."""
    return Job(
        assign.assignment_id,
        assign.design,
        assign.quantity,
        assign.due_at,
        assign.priority,
        order_id=assign.order_id,
        road_hours=assign.road_hours,
        on_time_units=assign.on_time_units,
        arrive_by=assign.arrive_by,
    )


def _unit_of(material: str) -> str:
    known = materials().get(material)
    return f" {known.unit}" if known else ""


def _clip(reason: str) -> str:
    return reason if len(reason) <= _REASON_LIMIT else reason[: _REASON_LIMIT - 3] + "..."


class Workshop:
    """A lab's free stock and jobs, and the rules for taking work (see the module docstring)."""

    def __init__(
        self,
        lab: Lab,
        executor: Executor,
        fail_rate: float = 0.0,
        rng: random.Random | None = None,
        manual: bool = False,
    ) -> None:
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be between 0 and 1, got {fail_rate}")
        self.lab = lab
        self.executor = executor
        self.fail_rate = fail_rate
        self.rng = rng or random.Random()
        #: Manual mode: new assignments wait for the operator's DECIDE instead of an automatic answer.
        self.manual = manual
        #: Assignments held as offered (manual mode), waiting for the operator's decision.
        self.offered: set[str] = set()
        #: material -> free amount (reserved amounts already taken off).
        self.stock: dict[str, float] = dict(lab.stock)
        self.jobs: dict[str, JobStatus] = {}
        self._answers: dict[str, Accept | Refuse] = {}
        self._requests: dict[str, Assign] = {}
        #: Progress already reported per job: (units done, eta).
        self._reported: dict[str, tuple[int, datetime | None]] = {}
        #: Jobs that ended but whose DONE/FAILED the planner has not acknowledged yet (HEARTBEAT `ended`).
        self._unacknowledged_ends: set[str] = set()
        #: Machines the operator said are down (see `machine_down`).
        self.down: set[str] = set()

    # --- assignments ---------------------------------------------------------------------------

    def receive(self, assign: Assign, now: datetime) -> Reply:
        """Answer an ASSIGN: STOCK then ACCEPT, or REFUSE; a duplicate gets the first answer again.

        A duplicate of a job that has already ended also gets its DONE or FAILED again, so a planner
        that lost it learns the outcome. A job is never scheduled twice.
        """
        if assign.assignment_id in self.offered:
            if assign != self._requests[assign.assignment_id]:
                log.warning(
                    "ASSIGN %s repeated with different content; keeping the first one on offer",
                    assign.assignment_id,
                )
            return Reply([], duplicate=True)
        first = self._answers.get(assign.assignment_id)
        if first is not None:
            if assign != self._requests[assign.assignment_id]:
                log.warning(
                    "ASSIGN %s repeated with different content; keeping the first one and its answer",
                    assign.assignment_id,
                )
            messages: list[Body] = [first]
            end = self.end_message(assign.assignment_id)
            if end is not None:
                messages.append(end)
            return Reply(messages, duplicate=True)

        self._requests[assign.assignment_id] = assign
        job = JobStatus(
            assignment_id=assign.assignment_id,
            order_id=assign.order_id,
            design_id=assign.design.id,
            quantity=assign.quantity,
            due_at=assign.due_at,
            priority=assign.priority,
            state="assigned",
        )
        self.jobs[assign.assignment_id] = job
        if self.manual:
            self.offered.add(assign.assignment_id)
            log.info(
                "offered %s: %d × %s for order %s, due %s; waiting for the operator's decision",
                assign.assignment_id,
                assign.quantity,
                assign.design.id,
                assign.order_id,
                assign.due_at.isoformat(),
            )
            return Reply([], duplicate=False)
        return self._answer(assign, job, now)

    def decide(self, decision: Decide, now: datetime) -> Reply:
        """Apply the operator's decision on an offered assignment (manual mode).

        Accept runs the usual accept path (it may still refuse, e.g. for stock, with that reason);
        refuse answers REFUSE with the operator's reason. A decision on an assignment already
        answered repeats the first answer (`duplicate`); on one never received it answers nothing.
        """
        aid = decision.assignment_id
        if aid not in self.offered:
            first = self._answers.get(aid)
            if first is None:
                log.warning("DECIDE for %s, an assignment this lab never received; ignored", aid)
                return Reply([], duplicate=True)
            messages: list[Body] = [first]
            end = self.end_message(aid)
            if end is not None:
                messages.append(end)
            return Reply(messages, duplicate=True)
        self.offered.discard(aid)
        assign, job = self._requests[aid], self.jobs[aid]
        if decision.accept:
            log.info("operator accepted %s", aid)
            return self._answer(assign, job, now)
        job.state, job.reason = "refused", _clip(decision.reason.strip() or OPERATOR_REFUSED)
        answer = Refuse(assignment_id=aid, reason=job.reason)
        self._answers[aid] = answer
        log.info("operator refused %s (order %s): %s", aid, assign.order_id, job.reason)
        return Reply([answer], duplicate=False)

    def _answer(self, assign: Assign, job: JobStatus, now: datetime) -> Reply:
        """Decide on a new assignment by the lab's rules: STOCK then ACCEPT, or REFUSE with the reason."""
        reason = self._refusal_reason(assign)
        eta: datetime | None = None
        if reason is None:
            try:
                eta = self.executor.add(job_of(assign), at=now)
            except ValueError as exc:
                reason = str(exc)
        if reason is not None or eta is None:
            job.state, job.reason = "refused", _clip(reason or "cannot schedule")
            answer: Accept | Refuse = Refuse(assignment_id=assign.assignment_id, reason=job.reason)
            self._answers[assign.assignment_id] = answer
            log.info("refused %s (order %s): %s", assign.assignment_id, assign.order_id, job.reason)
            return Reply([answer], duplicate=False)

        need = self._needs(assign)
        for material, amount in need.items():
            self.stock[material] = max(0.0, round(self.stock.get(material, 0.0) - amount, 9))
        job.reserved = need
        job.state, job.eta = "accepted", eta
        if self.fail_rate and self.rng.random() < self.fail_rate:
            job.fail_after_units = self.rng.randrange(assign.quantity)
        answer = Accept(assignment_id=assign.assignment_id, eta=eta)
        self._answers[assign.assignment_id] = answer
        self._reported[assign.assignment_id] = (0, eta)
        late = " (after its due date)" if eta > assign.due_at else ""
        log.info(
            "accepted %s: %d × %s for order %s, due %s, ETA %s%s",
            assign.assignment_id,
            assign.quantity,
            assign.design.id,
            assign.order_id,
            assign.due_at.isoformat(),
            eta.isoformat(),
            late,
        )
        # STOCK first: the planner must see the reservation before it stops counting the assignment.
        return Reply([self.stock_message(), answer], duplicate=False)

    def _needs(self, assign: Assign) -> dict[str, float]:
        return {m: a * assign.quantity for m, a in sorted(assign.design.materials_per_unit().items())}

    def _refusal_reason(self, assign: Assign) -> str | None:
        if assign.quantity > MAX_UNITS_PER_JOB:
            return f"quantity {assign.quantity} exceeds what this lab schedules at once ({MAX_UNITS_PER_JOB})"
        operations = assign.quantity * len(assign.design.steps)
        if operations > MAX_OPERATIONS_PER_JOB:
            return (
                f"{assign.quantity} units x {len(assign.design.steps)} steps = {operations} operations "
                f"exceeds what this lab schedules at once ({MAX_OPERATIONS_PER_JOB})"
            )
        problem = unrunnable_step(assign.design, self.working_lab().machines)
        if problem is not None:
            return problem
        short = []
        for material, amount in self._needs(assign).items():
            free = self.stock.get(material, 0.0)
            if amount > free + _EPSILON:
                unit = _unit_of(material)
                short.append(f"{material} needs {amount:.3f}{unit}, {free:.3f} free")
        if short:
            return "not enough stock: " + "; ".join(short)
        return None

    # --- execution -----------------------------------------------------------------------------

    def advance(self, now: datetime) -> list[Body]:
        """Bring every job to simulated instant `now`; return the PROGRESS/DONE/FAILED/STOCK to send.

        PROGRESS goes out when a job's units done or its ETA changed (another job can move it);
        DONE when every unit is made; FAILED when failure injection stops a job (its unused stock
        goes back to the free stock, hence a STOCK).
        """
        messages: list[Body] = []
        stock_changed = False
        for job in self.jobs.values():
            if job.state not in ("accepted", "running"):
                continue
            fail_at = self._fail_at(job)
            if fail_at is not None and fail_at <= now:
                messages.append(self._fail(job, fail_at, None))
                stock_changed = True
                continue
            failure = self.executor.failure(job.assignment_id)
            if failure is not None:
                messages.append(self._fail(job, now, failure))
                stock_changed = True
                continue
            units = self.executor.units_done(job.assignment_id, now)
            job.units_done = units
            job.eta = self.executor.eta(job.assignment_id)
            if units >= job.quantity:
                job.state = "done"
                self._unacknowledged_ends.add(job.assignment_id)
                messages.append(Done(assignment_id=job.assignment_id, units_done=units))
                log.info("done %s: %d × %s made", job.assignment_id, units, job.design_id)
                continue
            started = self.executor.started_at(job.assignment_id)
            if started is not None and started < now:
                job.state = "running"
            if (units, job.eta) != self._reported.get(job.assignment_id):
                self._reported[job.assignment_id] = (units, job.eta)
                messages.append(Progress(assignment_id=job.assignment_id, units_done=units, eta=job.eta))
        if stock_changed:
            messages.append(self.stock_message())
        return messages

    def promise(self, until: datetime) -> dict[str, int]:
        """Per job under way: the units made by simulated instant `until` on the current schedule.

        What a HEARTBEAT promises (SPEC.md section 5): the lab makes no more before the planner
        has heard a newer promise (see `limit`).
        """
        return {
            aid: min(job.quantity, self._units_by(job, until))
            for aid, job in self.jobs.items()
            if job.state in ("accepted", "running")
        }

    def _units_by(self, job: JobStatus, at: datetime) -> int:
        """Units of a job under way made by `at` (for a promise: the most that can be made by then)."""
        return self.executor.units_by(job.assignment_id, at)

    def limit(self, promise: dict[str, int]) -> datetime | None:
        """Hold to the lease's `promise` (SPEC.md section 5): the executor makes no unit beyond it.

        Returns the simulated instant the clock must stop at (None: no such limit). A job missing from
        `promise` (taken after it was made) has promised the units it had then. The schedule may have
        changed since the promise, so this is asked again after each change.
        """
        return self.executor.limit(promise)

    def _fail_at(self, job: JobStatus) -> datetime | None:
        """With failure injection: the instant the job stops (when its fail_after_units-th unit ends)."""
        if job.fail_after_units is None or not isinstance(self.executor, SimulatedExecutor):
            return None
        if job.fail_after_units == 0:
            return self.executor.started_at(job.assignment_id)
        return self.executor.unit_ends(job.assignment_id)[job.fail_after_units - 1]

    def _fail(self, job: JobStatus, at: datetime, reason: str | None) -> Failed:
        """End a job the executor could not finish: units not started give their stock back."""
        done, started = self.executor.stop(job.assignment_id, at)
        unused = job.quantity - started
        per_unit = self._requests[job.assignment_id].design.materials_per_unit()
        for material, amount in per_unit.items():
            back = amount * unused
            self.stock[material] = round(self.stock.get(material, 0.0) + back, 9)
            job.reserved[material] = max(0.0, round(job.reserved.get(material, 0.0) - back, 9))
        job.state, job.units_done, job.eta = "failed", done, None
        if reason is None:
            reason = f"simulated failure (fail_rate {self.fail_rate:g}): machine stopped after {done}"
        job.reason = _clip(f"{reason} ({done} of {job.quantity} units made)")
        self._unacknowledged_ends.add(job.assignment_id)
        log.warning("failed %s: %s", job.assignment_id, job.reason)
        return Failed(assignment_id=job.assignment_id, units_done=done, reason=job.reason)

    def report(self, report: Report, now: datetime) -> list[Body]:
        """Count an operator's report of work done by hand; the next `advance` sends what it implies.

        Raises ValueError naming the job when this lab's work is not reported by hand, or the job is
        not under way."""
        if not isinstance(self.executor, ManualExecutor):
            raise ValueError("this lab's work is not reported by hand (start it with `node join --by-hand`)")
        job = self.jobs.get(report.assignment_id)
        if job is None or job.state not in ("accepted", "running"):
            state = "unknown to this lab" if job is None else f"{job.state}, not under way"
            raise ValueError(f"job {report.assignment_id} is {state}")
        self.executor.apply(report)
        return []

    # --- the lab's own changes: supply, stock lost, machines down ---------------------------------

    def working_lab(self) -> Lab:
        """The lab as it stands: its machines that are not down, its free stock."""
        machines = [m for m in self.lab.machines if m.id not in self.down]
        return self.lab.model_copy(update={"machines": machines, "stock": dict(self.stock)})

    def supply(self, material: str, amount: float) -> Stock:
        """Material arrives (a delivery from the supply chain): the free stock grows; the STOCK to send."""
        if not amount > 0:
            raise ValueError(f"supply of {material}: the amount must be positive, got {amount}")
        self.stock[material] = round(self.stock.get(material, 0.0) + amount, 9)
        log.info("supply: %g%s of %s arrived", amount, _unit_of(material), material)
        return self.stock_message()

    def lose_stock(self, material: str, now: datetime) -> list[Body]:
        """All of a material is lost (spoiled, used elsewhere, never came): free and reserved alike.

        Jobs that still need it for units not started stop now and report what they made (FAILED);
        units already started have their material in the machine and are counted as made or lost
        by the executor. The other materials those jobs reserved go back to the free stock.
        """
        self.stock[material] = 0.0
        messages: list[Body] = []
        for job in self.jobs.values():
            if job.state not in ("accepted", "running"):
                continue
            if self._requests[job.assignment_id].design.materials_per_unit().get(material, 0.0) <= 0:
                continue
            started = self.executor.units_started(job.assignment_id, now)
            if started < job.quantity:
                messages.append(self._stop_early(job, now, f"{material} lost", lost=material))
        log.warning("stock lost: no %s left; %d jobs stopped", material, len(messages))
        return [*messages, self.stock_message()]

    def machine_down(self, machine_id: str, now: datetime) -> list[Body]:
        """A machine stops working: jobs with work left on it stop now and report what they made.

        New jobs are scheduled on the other machines (or refused when none can run a step). Raises
        ValueError for a machine the lab does not have, or when its executor does not take machines
        down by word (printers: their servers say when they are down).
        """
        self._known_machine(machine_id)
        if machine_id in self.down:
            return []
        self.executor.set_down(self.down | {machine_id})  # raises first when the executor cannot
        self.down.add(machine_id)
        messages: list[Body] = []
        for job in self.jobs.values():
            if job.state not in ("accepted", "running"):
                continue
            if self.executor.needs_machine(job.assignment_id, machine_id, now):
                messages.append(self._stop_early(job, now, f"machine {machine_id} down"))
        log.warning("machine %s down; %d jobs stopped", machine_id, len(messages))
        if messages:
            messages.append(self.stock_message())
        return messages

    def machine_up(self, machine_id: str) -> bool:
        """A machine works again (True if it was down); new jobs may use it."""
        self._known_machine(machine_id)
        if machine_id not in self.down:
            return False
        self.executor.set_down(self.down - {machine_id})
        self.down.discard(machine_id)
        log.info("machine %s works again", machine_id)
        return True

    def _known_machine(self, machine_id: str) -> None:
        known = [m.id for m in self.lab.machines]
        if machine_id not in known:
            raise ValueError(
                f"no machine {machine_id!r} in lab {self.lab.id}; its machines: {', '.join(known)}"
            )

    def _stop_early(self, job: JobStatus, now: datetime, why: str, lost: str | None = None) -> Failed:
        """Stop a job the lab can no longer finish; its units made stand, unused stock goes back
        (except the `lost` material, which is gone)."""
        aid = job.assignment_id
        done, started = self.executor.stop(aid, now)
        for material, amount in self._requests[aid].design.materials_per_unit().items():
            back = amount * (job.quantity - started)
            if material != lost:
                self.stock[material] = round(self.stock.get(material, 0.0) + back, 9)
            job.reserved[material] = max(0.0, round(job.reserved.get(material, 0.0) - back, 9))
        job.state, job.units_done, job.eta = "failed", done, None
        job.reason = f"{why}: stopped after {done} of {job.quantity} units"
        self._unacknowledged_ends.add(aid)
        log.warning("stopped %s: %s", aid, job.reason)
        return Failed(assignment_id=aid, units_done=done, reason=job.reason)

    # --- the planner's view of this lab's work --------------------------------------------------

    def reconcile(self, active: set[str], judgeable: Callable[[str], bool], now: datetime) -> list[Body]:
        """Bring the lab's jobs in line with the work the planner still counts on (SPEC.md section 5).

        A job under way (or on offer) that is missing from `active` was withdrawn by the planner (the
        lab was lost, its lease lapsed, or the order was covered): it stops now, its unused stock goes
        back, and FAILED reports the units actually made so none is made again elsewhere. Only jobs
        for which `judgeable(assignment_id)` holds are withdrawn (the list must be newer than their
        ASSIGN). An ended job still in `active` gets its DONE, FAILED or REFUSE again: the first was
        lost on the way.
        """
        messages: list[Body] = []
        stock_changed = False
        for job in list(self.jobs.values()):
            aid = job.assignment_id
            if aid in active:
                if job.state in ("done", "failed"):
                    end = self.end_message(aid)
                    if end is not None:
                        messages.append(end)
                elif job.state == "refused" and aid in self._answers:
                    messages.append(self._answers[aid])
                continue
            if job.state not in ("assigned", "accepted", "running") or not judgeable(aid):
                continue
            messages.append(self._withdraw(job, now))
            stock_changed = True
        if stock_changed:
            messages.append(self.stock_message())
        return messages

    def _withdraw(self, job: JobStatus, now: datetime) -> Done | Failed:
        """Stop a job the planner no longer counts on; the units made so far stand."""
        aid = job.assignment_id
        self.offered.discard(aid)
        if job.state == "assigned":  # on offer, never started
            job.state, job.reason = "failed", "withdrawn by the planner before the operator decided"
            self._unacknowledged_ends.add(aid)
            log.warning("offer %s withdrawn by the planner", aid)
            return Failed(assignment_id=aid, units_done=0, reason=job.reason)
        done = self.executor.units_done(aid, now)
        if done >= job.quantity:
            job.state, job.units_done, job.eta = "done", done, None
            self._unacknowledged_ends.add(aid)
            return Done(assignment_id=aid, units_done=done)
        done, started = self.executor.stop(aid, now)
        per_unit = self._requests[aid].design.materials_per_unit()
        for material, amount in per_unit.items():
            back = amount * (job.quantity - started)
            self.stock[material] = round(self.stock.get(material, 0.0) + back, 9)
            job.reserved[material] = max(0.0, round(job.reserved.get(material, 0.0) - back, 9))
        job.state, job.units_done, job.eta = "failed", done, None
        job.reason = f"withdrawn by the planner after {done} of {job.quantity} units"
        self._unacknowledged_ends.add(aid)
        log.warning("stopped %s: %s", aid, job.reason)
        return Failed(assignment_id=aid, units_done=done, reason=job.reason)

    # --- the journal: what a restarted agent must remember --------------------------------------

    def to_journal(self) -> dict[str, Any]:
        """Everything needed to pick up after a restart: free stock, every job, its answer and end."""
        jobs = []
        for job in self.jobs.values():
            aid = job.assignment_id
            answer = self._answers.get(aid)
            jobs.append(
                {
                    "assign": self._requests[aid].model_dump(mode="json"),
                    "state": job.state,
                    "units_done": job.units_done,
                    "reason": job.reason,
                    "reserved": job.reserved,
                    "offered": aid in self.offered,
                    "answer": None
                    if answer is None
                    else {"accept": isinstance(answer, Accept)} | answer.model_dump(mode="json"),
                    # (the key keeps its first name, so journals written before acknowledgements load)
                    "end_unreported": aid in self._unacknowledged_ends,
                    "execution": self.executor.saved(aid) if job.state in ("accepted", "running") else None,
                }
            )
        return {"stock": dict(self.stock), "jobs": jobs}

    def from_journal(self, saved: dict[str, Any], now: datetime) -> None:
        """Take up the state of `to_journal` after a restart; jobs under way resume from `now`.

        Units made before the restart stand; a unit that was under way is started again. Raises
        ValueError (or a pydantic ValidationError) when the journal is not one this lab wrote.
        """
        self.stock = {str(m): float(a) for m, a in saved["stock"].items()}
        for entry in saved["jobs"]:
            assign = Assign.model_validate(entry["assign"])
            aid = assign.assignment_id
            job = JobStatus(
                assignment_id=aid,
                order_id=assign.order_id,
                design_id=assign.design.id,
                quantity=assign.quantity,
                due_at=assign.due_at,
                priority=assign.priority,
                state=entry["state"],
                units_done=int(entry["units_done"]),
                reason=entry["reason"],
                reserved={str(m): float(a) for m, a in entry["reserved"].items()},
            )
            self._requests[aid], self.jobs[aid] = assign, job
            answer = entry["answer"]
            if answer is not None:
                fields = {k: v for k, v in answer.items() if k != "accept"}
                self._answers[aid] = (Accept if answer["accept"] else Refuse).model_validate(fields)
            if entry["offered"]:
                self.offered.add(aid)
            if entry["end_unreported"]:
                self._unacknowledged_ends.add(aid)
            if job.state in ("accepted", "running") and job.units_done >= job.quantity:
                job.state = "done"
                self._unacknowledged_ends.add(aid)
            elif job.state in ("accepted", "running"):
                whole = job_of(assign)
                job.eta = self.executor.resume(whole, job.units_done, entry.get("execution"), now)
                self._reported[aid] = (job.units_done, job.eta)

    # --- state for messages --------------------------------------------------------------------

    def stock_message(self) -> Stock:
        """The free stock, as a STOCK body."""
        return Stock(stock={m: round(a, 9) for m, a in sorted(self.stock.items())})

    def backlog_minutes(self, now: datetime) -> dict[str, float]:
        """Per machine, nominal minutes of scheduled work not finished at `now` (rounded to 0.01)."""
        return {m: round(v, 2) for m, v in self.executor.backlog_minutes(now).items()}

    def end_message(self, assignment_id: str) -> Done | Failed | None:
        """The DONE or FAILED body of an ended job; None while it runs (or when it was refused)."""
        job = self.jobs.get(assignment_id)
        if job is None:
            return None
        if job.state == "done":
            return Done(assignment_id=assignment_id, units_done=job.units_done)
        if job.state == "failed":
            reason = job.reason or "failed"
            return Failed(assignment_id=assignment_id, units_done=job.units_done, reason=reason)
        return None

    def acknowledge_end(self, assignment_id: str) -> bool:
        """The planner has the job's DONE/FAILED in its ledger; True if that was news."""
        if assignment_id not in self._unacknowledged_ends:
            return False
        self._unacknowledged_ends.discard(assignment_id)
        return True

    def awaits_acknowledgement(self, assignment_id: str) -> bool:
        """True while the job's DONE/FAILED has not been acknowledged by the planner."""
        return assignment_id in self._unacknowledged_ends

    def unacknowledged_ends(self) -> list[Done | Failed]:
        """The DONE/FAILED of every ended job the planner has not acknowledged yet."""
        ends = (self.end_message(aid) for aid in sorted(self._unacknowledged_ends))
        return [end for end in ends if end is not None]

    def resync_messages(self) -> list[Body]:
        """After a (new) WELCOME: the latest PROGRESS of unfinished jobs and the ends not acknowledged."""
        messages: list[Body] = []
        for job in self.jobs.values():
            if job.state in ("accepted", "running"):
                messages.append(
                    Progress(assignment_id=job.assignment_id, units_done=job.units_done, eta=job.eta)
                )
            elif job.assignment_id in self._unacknowledged_ends:
                end = self.end_message(job.assignment_id)
                if end is not None:
                    messages.append(end)
        return messages
