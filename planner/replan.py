"""The replanning loop: wakes on change, solves off the event loop, validates, commits, assigns.

The solve and its validation run in a worker process when the planner gives one (planner.app
does): a thread would keep them off the loop but not off the loop's interpreter lock, and the
model building is Python, so a long solve would slow every request and frame the planner answers.

Only this loop creates assignments, one solve at a time, so remaining demand can only grow while
a solve runs: a committed plan never hands out units twice. A plan the validator rejects is never
committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import replace
from datetime import timedelta

from planner.core import EMERGENCY_ORDER, PlannerCore
from planner.store import AssignmentRow
from protocol.model import Plan
from solver.allocation.allocate import solve
from solver.allocation.emergency import insert_urgent
from solver.check import check
from solver.large.path import TIME_REASON
from solver.model.late_window import REFILL_SHARE
from solver.model.problem import Problem, SolveParams

log = logging.getLogger(__name__)

#: Changes that arrive all the time (labs reporting progress): rate-limited. Anything else (a new
#: order, a refusal, a failure, a lost lab) is planned after the debounce alone.
ROUTINE_REASONS = frozenset({"capacity", "stock"})
#: Why a re-plan runs when nothing was heard for `Replanner.keep_planning_s`: a plan does not send
#: late work ahead (`solver.model.lines.to_dispatch`), so it needs a later plan even when no lab
#: reports anything (labs idle, or a clock that says they are booked).
WAITING_WORK = "planned work waiting"
#: Seconds without any change after which the planner plans again while demand waits unassigned.
KEEP_PLANNING_S = 60.0
#: The shortest such quiet spell in wall seconds, however fast the planner's clock runs.
KEEP_PLANNING_MIN_S = 2.0
#: A plan the clock cut short (units left short for time, `solver.large.path.TIME_REASON`) doubles
#: the solve's time limit, up to this many times the configured one; a plan made within a quarter of
#: the raised limit halves it again, down to the configured one. At 2,500 orders and 400 labs, four
#: planners on two cores, the default 2 s left the rounding no time: every other plan placed nothing
#: and was committed, so every order read as short and its labs got nothing to start.
MOST_LIMIT_FACTOR = 16.0
#: What a plan's solve may take of a raised limit before the limit comes down again.
LIMIT_DOWN_SHARE = 0.25


def keep_planning_after(clock_speed: float) -> float:
    """Wall seconds of quiet before demand still waiting is planned again: `KEEP_PLANNING_S` of the
    planner's own clock, at least `KEEP_PLANNING_MIN_S`. On a replay's compressed clock
    (`protocol.timeframe`) a minute of wall time is days: late work held for the next re-plan
    (`solver.model.lines.to_dispatch`) would wait days while its labs stood idle."""
    return max(KEEP_PLANNING_MIN_S, KEEP_PLANNING_S / clock_speed)


def quiet_spell_hours(clock_speed: float) -> float:
    """A quiet spell (`keep_planning_after`) in hours of the planner's own clock."""
    return keep_planning_after(clock_speed) * clock_speed / 3600.0


def late_work_window(hours: float, clock_speed: float) -> float | None:
    """The hours of a lab's machines the late work it is sent may fill (`solver.model.late_window`):
    `hours` (0: no window), but never less than two of the quiet spells after which the planner
    plans again (`keep_planning_after`) on its own clock. A lab sent less late work than lasts until
    the next plan stands idle meanwhile: at 40,000 times, 2 s of wall time is 22 hours.
    """
    if hours <= 0:
        return None
    return max(hours, 2 * quiet_spell_hours(clock_speed))


def late_work_refill(window: float | None, clock_speed: float) -> float | None:
    """The hours of queue under which a lab is topped up with late work (`solver.model.late_window`):
    `REFILL_SHARE` of the `window`, but never less than two quiet spells on the planner's own clock,
    nor more than the window. None when there is no window.

    The next plan may come only a spell or more later (at 2,000 times a spell is 1.1 hours; live in
    valve-lombardy in France, seed 133, plans came 1.11 hours apart at the median, 1.96 at most): a
    lab topped up only under one spell can run dry before the next plan. So topped up, Rennes made
    41.9 and 41.7 % of the valves in two runs where it made 43.0 % before, and 42.3 % with two spells
    (docs/live-vs-sim.md, "Late work topped up").
    """
    if window is None:
        return None
    return min(window, max(window * REFILL_SHARE, 2 * quiet_spell_hours(clock_speed)))


def solve_and_check(problem: Problem, params: SolveParams) -> tuple[Plan, list[str]]:
    """Solve, then validate independently: what a worker process runs (plain data in and out)."""
    plan = solve(problem, params)
    return plan, check(problem, plan, params)


def exit_with_planner(planner_pid: int, every_s: float = 1.0) -> None:
    """Pool initializer: end this solve worker when the planner that started it is gone.

    A planner killed with -9 cannot shut its pool down, and its worker would live on as an orphan,
    holding a core's worth of solving for nobody. The worker notices it was re-parented and exits.
    """

    def watch() -> None:
        while os.getppid() == planner_pid:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-planner", daemon=True).start()


def start_solve_worker(planner_pid: int, niceness: int) -> None:
    """Pool initializer: lower this solve worker's CPU priority by `niceness`, then end it with the
    planner (`exit_with_planner`).

    The planner's event loop answers every HTTP request and mesh frame; a solve is batch work that
    can finish a little later. On a machine short of cores the two compete, and a request waited
    behind a solve: orders at 200 a second with a 1,000-lab mesh had a p99 of 673 ms and /health of
    179 ms while the worker took 42 CPU s in 65 s.
    """
    if niceness > 0:
        os.nice(niceness)
    exit_with_planner(planner_pid)


def warm_up() -> bool:
    """Import the solver in a worker process before the first solve needs it."""
    import solver.allocation.allocate  # noqa: F401

    return True


class Replanner:
    """Coalesces change notifications into solves (see module docstring)."""

    def __init__(
        self,
        core: PlannerCore,
        send_assignments: Callable[[list[AssignmentRow]], None],
        params: SolveParams,
        debounce_s: float = 0.05,
        min_interval_s: float = 2.0,
        retry_after_s: float = 2.0,
        emergency_budget_s: float = 0.15,
        executor: Executor | None = None,
        executor_ready: Future[bool] | None = None,
        keep_planning_s: float = KEEP_PLANNING_S,
        clock_speed: float = 1.0,
    ) -> None:
        self.core = core
        self.send_assignments = send_assignments
        self.params = params
        #: The time limit the planner was configured with; `params` may hold a raised one.
        self.base_time_limit_s = params.time_limit_s
        #: Plans the clock cut short, and of them those not committed (they placed nothing).
        self.cut_short = 0
        self.cut_short_dropped = 0
        self.debounce_s = debounce_s
        self.min_interval_s = min_interval_s
        self.retry_after_s = retry_after_s
        #: Longest quiet spell before demand still waiting for a lab is planned again (`WAITING_WORK`).
        self.keep_planning_s = keep_planning_s
        self.emergency_budget_s = emergency_budget_s
        #: How many times faster the planner's clock runs than the wall (a replay's compressed time,
        #: `protocol.timeframe`): the wall seconds a solve may take are that many on its clock.
        self.clock_speed = clock_speed
        #: Where solves run: a worker process, or a thread of this process when None.
        self.executor = executor
        #: Done once the worker process has started and imported the solver; until then (a few
        #: seconds, more on a busy machine) solves run in a thread, so the first orders never wait.
        self.executor_ready = executor_ready
        self.emergency_inserts = 0
        self.failures = 0
        self.solves = 0
        self.solving = False
        self.last_solve_seconds = 0.0
        self._wake = asyncio.Event()
        #: Set by a change that is not a lab's routine report: it cuts short the reports' spacing.
        self._news = asyncio.Event()
        self._reasons: set[str] = set()

    def request(self, reason: str) -> None:
        """Something changed; a solve will follow soon if there is unplanned demand."""
        self._reasons.add(reason)
        if reason not in ROUTINE_REASONS:
            self._news.set()
        self._wake.set()

    async def _news_within(self, seconds: float) -> bool:
        """Wait up to `seconds` for a change that is not a lab's routine report (`ROUTINE_REASONS`):
        True when one came."""
        try:
            await asyncio.wait_for(self._news.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Solve whenever woken, until `stop` is set."""
        last_start = -1e9
        while not stop.is_set():
            waiter = asyncio.create_task(self._wake.wait())
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait(
                {waiter, stopper}, timeout=self.keep_planning_s, return_when=asyncio.FIRST_COMPLETED
            )
            for task in (waiter, stopper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if stop.is_set():
                return
            if not done:  # quiet for keep_planning_s: plan again if work still waits for a lab
                if not self.core.has_unplanned_demand():
                    continue
                self._reasons.add(WAITING_WORK)
            pause = 0.0 if EMERGENCY_ORDER in self._reasons else self.debounce_s
            if self._reasons <= ROUTINE_REASONS:  # only reports: keep solves at least min_interval_s apart
                spacing = last_start + self.min_interval_s - time.monotonic()
                if spacing > pause:
                    # An order (or a refusal, a lost lab) that comes meanwhile is not held back by
                    # the reports' spacing: an emergency waited up to its 2 s, an hour of a
                    # valve's window at 2,000x (docs/live-vs-sim.md).
                    self._news.clear()
                    news = await self._news_within(spacing)
                    pause = (0.0 if EMERGENCY_ORDER in self._reasons else self.debounce_s) if news else 0.0
            await asyncio.sleep(pause)
            self._wake.clear()
            reasons, self._reasons = self._reasons, set()
            if not self.core.has_unplanned_demand():
                continue
            last_start = time.monotonic()
            try:
                if EMERGENCY_ORDER in reasons:
                    await self._insert_emergencies()
                await self._solve_once(sorted(reasons))
            except Exception:  # a failed solve is logged and tried again, never left to stall orders
                self.failures += 1
                log.exception("re-plan failed; trying again in %.1f s", self.retry_after_s)
                asyncio.get_running_loop().call_later(self.retry_after_s, self.request, "retry after failure")

    def _cut_short(self, plan: Plan) -> bool:
        """Whether the clock, not the labs, left some of a plan's units short; the time limit is
        raised then (see MOST_LIMIT_FACTOR) and a re-plan asked for, and the limit lowered again
        after a plan made well within it. At the cap no re-plan is asked for: the same problem would
        be cut short the same way, again and again; the next change plans again."""
        limit = self.params.time_limit_s
        for_time = sum(s.quantity for s in plan.shortages if s.reason == TIME_REASON)
        if for_time == 0:
            if limit > self.base_time_limit_s and plan.solve_seconds < LIMIT_DOWN_SHARE * limit:
                self.params = replace(self.params, time_limit_s=max(self.base_time_limit_s, limit / 2))
            return False
        self.cut_short += 1
        raised = min(limit * 2, self.base_time_limit_s * MOST_LIMIT_FACTOR)
        log.warning(
            "plan cut short by its %.1f-s time limit: %d units not placed for want of time (%d "
            "allocations)%s",
            limit,
            for_time,
            len(plan.allocations),
            f"; solving again with {raised:.1f} s" if raised > limit else "",
        )
        self.params = replace(self.params, time_limit_s=raised)
        if raised > limit:
            self.request("the last plan was cut short by its time limit")
        return True

    def _same_shortages(self, plan: Plan) -> bool:
        current = self.core.plan
        if current is None:
            return False
        return {(s.order_id, s.quantity) for s in plan.shortages} == {
            (s.order_id, s.quantity) for s in current.shortages
        }

    @property
    def emergency_params(self) -> SolveParams:
        """The fast path's settings: the planner's, without material transfers.

        The fast path exists to send work at once. Units made from shipped material cannot go at once
        (they are held back until it arrives, `planner.shipping.held_back`), so the full re-plan that
        follows places them again; a transfer the fast path planned would leave all the same, chosen
        by a solve that sees only the order's neighbourhood and offers transfers to every urgent
        demand, where the full re-plan offers them only to demands otherwise short or late. On
        valve-lombardy 38 of the live planner's 39 parcels came from the fast path, none from the
        simulation (which has no fast path), and 28 of that run's 52 late valves were made at the lab
        they went to (docs/live-vs-sim.md). Units the fast path cannot place from stock are left to
        the full re-plan, which ships material when it is needed.
        """
        return replace(self.params, transfer_radius_km=0.0)

    def plan_lead(self, budget_s: float) -> timedelta:
        """How far ahead of the clock a plan solved within `budget_s` wall seconds is made: its work
        starts when it reaches the labs, not when the solve began.

        Planned from the instant the solve began, a plan counted the lab hours that passed while it
        was solved. In real time that is a second; in a replay's compressed time it is not: at
        2,000x the one-second solve of each batch of emergency valves took 35 simulated minutes, and
        a lab promised six valves for the 4.9 hours before they had to leave got them 35 minutes
        into that window and sent the last an hour late (valve-lombardy in Great Britain, seed 8;
        docs/live-vs-sim.md). So a plan counts from the end of its budget, the latest it reaches the
        labs."""
        return timedelta(seconds=budget_s * self.clock_speed)

    async def _insert_emergencies(self) -> None:
        """Place open emergency demands first, on their own neighbourhoods, within the latency budget,
        from the stock the labs hold (`emergency_params`)."""
        problem = self.core.problem(ahead=self.plan_lead(self.emergency_budget_s))
        # A rate's forecast is not an order yet: it waits for the full re-plan.
        urgent = {
            d.order.id for d in problem.demands if d.order.priority == "emergency" and d.release_at is None
        }
        if not urgent:
            return
        plan = await asyncio.to_thread(
            insert_urgent, problem, urgent, self.emergency_params, self.emergency_budget_s
        )
        focus = Problem(
            problem.now, problem.designs, problem.labs, [d for d in problem.demands if d.order.id in urgent]
        )
        violations = await asyncio.to_thread(check, focus, plan, self.params)
        if violations:
            self.core.reject_plan(plan, violations)
            return
        if plan.allocations:
            self.emergency_inserts += 1
            log.info(
                "emergency fast path: %d allocations in %.3f s", len(plan.allocations), plan.solve_seconds
            )
            self.send_assignments(self.core.commit_plan(plan))

    async def _solve_once(self, reasons: list[str]) -> None:
        problem = self.core.problem(ahead=self.plan_lead(self.params.time_limit_s))
        if not problem.demands:
            return
        log.info("re-planning %d open demands (%s)", len(problem.demands), ", ".join(reasons) or "start")
        self.solving = True
        started = time.perf_counter()
        try:
            ready = self.executor_ready is None or (
                self.executor_ready.done() and self.executor_ready.exception() is None
            )
            if self.executor is not None and ready:
                loop = asyncio.get_running_loop()
                plan, violations = await loop.run_in_executor(
                    self.executor, solve_and_check, problem, self.params
                )
            else:
                plan, violations = await asyncio.to_thread(solve_and_check, problem, self.params)
        finally:
            self.solving = False
        self.solves += 1
        self.last_solve_seconds = time.perf_counter() - started
        if violations:
            self.core.reject_plan(plan, violations)
            return
        if self._cut_short(plan) and not plan.allocations:
            self.cut_short_dropped += 1
            return  # nothing to send, and every order would read as short: not committed
        if not plan.allocations and self._same_shortages(plan):
            log.debug("re-plan changed nothing (same shortages); no new plan version")
            return
        rows = self.core.commit_plan(plan)
        self.send_assignments(rows)
