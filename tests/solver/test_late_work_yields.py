"""Late work a lab holds yields to work that must leave sooner, in the plan as at the lab.

A lab takes its work earliest leave-by first (`solver.jobshop.ranking`), and units a plan placed late
must leave only by the plan's arrival for them. So an order that can still be on time goes ahead of
them at the lab, and the plan counts them, by a checkpoint before they must leave, as not holding
the machines (`LabState.deferred_minutes`). Counted as the first thing a lab works, the late work
queued at the nearest labs left no room in the plans for the next batch of emergencies, which the
lab would have made on time.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from nodes.clock import SimClock
from nodes.simulated import SimulatedExecutor
from planner.hours import deferred_late_work, spread
from solver.allocation.allocate import solve
from solver.check import check
from solver.jobshop.lab_schedule import Job
from solver.model.problem import Problem, SolveParams, backlog_by, free_minutes
from tests.solver.factory import INSTANT, NEAR, NOW, lab, machine, order, problem

SMALL = replace(SolveParams(time_limit_s=2.0, workers=1, late_window_days=3.0), **INSTANT)
LARGE = replace(SMALL, decompose_above=0)
PATHS = [pytest.param(SMALL, id="one-model"), pytest.param(LARGE, id="relaxation")]

LATE_UNITS = 6
LATE_LEAVE_DAYS = 1.0  # the plan's arrival for the late units, a day from now


def valve_lab_holding_late_work(new_valves: int, due_days: float, defer: bool = True) -> Problem:
    """A lab of two medical SLA printers (16 h a day) and a bench (10 h), holding 6 valves the plan
    placed late, which must leave in a day; and a new order of valves due in `due_days`."""
    machines = [
        machine("sla1", "sla", hours=16.0, medical_grade=True),
        machine("sla2", "sla", hours=16.0, medical_grade=True),
        machine("bench", "assembly", hours=10.0),
    ]
    base = problem([lab("only", NEAR, machines)], [order("o1", "charlotte-valve", new_valves, days=due_days)])
    state = base.labs[0]
    valve = base.designs["charlotte-valve"]
    backlog = spread(state.lab, valve, LATE_UNITS)
    deferred = deferred_late_work(state.lab, [(valve, LATE_UNITS, LATE_LEAVE_DAYS)], backlog) if defer else {}
    return replace(base, labs=[replace(state, backlog_minutes=backlog, deferred_minutes=deferred)])


def test_late_work_is_deferred_but_for_the_unit_each_machine_may_be_running() -> None:
    p = valve_lab_holding_late_work(6, 0.3)
    state = p.labs[0]
    # 6 valves: 360 SLA minutes over two printers, 60 at the bench; one unit each may be under way.
    assert state.backlog_minutes == pytest.approx({"sla1": 180.0, "sla2": 180.0, "bench": 60.0})
    assert state.deferred_minutes == {
        "sla1": ((LATE_LEAVE_DAYS, pytest.approx(120.0)),),
        "sla2": ((LATE_LEAVE_DAYS, pytest.approx(120.0)),),
        "bench": ((LATE_LEAVE_DAYS, pytest.approx(50.0)),),
    }
    assert backlog_by(state, "sla1", 0.3) == pytest.approx(60.0)  # the running unit alone
    assert backlog_by(state, "sla1", LATE_LEAVE_DAYS) == pytest.approx(180.0)  # by its leave-by, all
    assert free_minutes(state, 0.3)["sla1"] == pytest.approx(16 * 60 * 0.3 - 60.0)


def test_work_that_must_leave_now_and_more_than_the_backlog_are_not_deferred() -> None:
    p = valve_lab_holding_late_work(6, 0.3, defer=False)
    state, valve = p.labs[0], p.designs["charlotte-valve"]
    assert deferred_late_work(state.lab, [(valve, 6, -0.1)], state.backlog_minutes) == {}
    # The lab reports less queued than the late work the planner counts: it made the earliest.
    reported = {"sla1": 90.0, "sla2": 90.0, "bench": 30.0}
    deferred = deferred_late_work(state.lab, [(valve, 2, 0.5), (valve, 4, 2.0)], reported)
    # Of 180 minutes a printer, 90 are made (the earliest first) and one unit may be running.
    assert deferred["sla1"] == ((2.0, pytest.approx(90.0 - 60.0)),)
    assert sum(m for _, m in deferred["bench"]) <= 30.0 - 10.0 + 1e-9


@pytest.mark.parametrize("params", PATHS)
def test_new_emergency_valves_go_ahead_of_late_work_and_leave_on_time(params: SolveParams) -> None:
    p = valve_lab_holding_late_work(6, 0.3)
    due = p.demands[0].order.due_at
    valve = p.designs["charlotte-valve"]
    plan = solve(p, params)
    assert check(p, plan, params) == []
    (line,) = plan.allocations
    assert (line.quantity, line.late_units) == (6, 0)
    # Counted as the first thing the lab works, the late work leaves room for 2 valves on time.
    (blocked,) = solve(valve_lab_holding_late_work(6, 0.3, defer=False), params).allocations
    assert blocked.quantity - blocked.late_units <= 2

    # The lab, unit by unit, earliest leave-by first: the late job came first and took both printers.
    executor = SimulatedExecutor(p.labs[0].lab.machines, SimClock(NOW), cp_time_limit_s=0, working_hours=True)
    late_order_due = NOW - timedelta(hours=2)
    late_by = NOW + timedelta(days=LATE_LEAVE_DAYS)
    executor.add(Job("late", valve, LATE_UNITS, late_order_due, on_time_units=0, arrive_by=late_by), at=NOW)
    executor.add(Job("new", valve, 6, due, on_time_units=6), at=NOW)
    assert max(executor.unit_ends("new")) <= due
    assert max(executor.unit_ends("late")) <= late_by


@pytest.mark.parametrize("params", PATHS)
def test_the_validator_counts_late_work_by_the_time_it_must_leave(params: SolveParams) -> None:
    # Due in a day and a half, after the late work must leave: it holds the machines by then.
    held = valve_lab_holding_late_work(46, 1.5)
    free = replace(held, labs=[replace(held.labs[0], backlog_minutes={}, deferred_minutes={})])
    plan = solve(free, params)
    on_time = sum(a.quantity - a.late_units for a in plan.allocations)
    assert check(free, plan, params) == [] and on_time > 0
    assert check(held, plan, params) != []
    fitted = solve(held, params)
    assert check(held, fitted, params) == []
    assert sum(a.quantity - a.late_units for a in fitted.allocations) <= on_time - LATE_UNITS
