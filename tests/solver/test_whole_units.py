"""Whole units: what a plan counts on time by a due date, a lab's machines can make by it.

A pool of machines summed as one fluid stock of minutes holds units split between machines, which
no machine makes. The plan counts pooled machines in whole units at due dates, and a lab that
schedules the plan's work unit by unit (`nodes.simulated.SimulatedExecutor`, as labs run in a live
replay) finishes every unit the plan counts on time by its due date.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from nodes.clock import SimClock
from nodes.simulated import SimulatedExecutor
from solver.allocation.allocate import solve
from solver.check import check
from solver.jobshop.lab_schedule import Job
from solver.model.capability import flow_days, step_groups
from solver.model.problem import (
    Problem,
    SolveParams,
    free_minutes,
    in_whole_units,
    is_due_checkpoint,
    with_whole_units,
)
from tests.solver.factory import INSTANT, NEAR, NOW, lab, machine, order, printer, problem

SMALL = replace(SolveParams(time_limit_s=2.0, workers=1, late_window_days=3.0), **INSTANT)
LARGE = replace(SMALL, decompose_above=0)
PATHS = [pytest.param(SMALL, id="one-model"), pytest.param(LARGE, id="relaxation")]


def three_printer_lab() -> Problem:
    # Three printers of 8 h a day: by 0.6 days each has 288 minutes, room for 2 headbands of 120
    # minutes (6 in all), where the summed 864 minutes hold 7.
    machines = [
        printer("p1"),
        printer("p2"),
        printer("p3"),
        machine("laser", "laser"),
        machine("bench", "assembly"),
    ]
    return problem([lab("only", NEAR, machines)], [order("o1", "face-shield", 7, days=0.6)])


@pytest.mark.parametrize("params", PATHS)
def test_units_a_pool_of_machines_cannot_finish_whole_are_planned_late(params: SolveParams) -> None:
    p = three_printer_lab()
    plan = solve(p, params)
    assert check(p, plan, params) == []
    assert [(a.quantity, a.late_units) for a in plan.allocations] == [(7, 1)]
    # Counted as one fluid pool, the seventh is promised on time.
    fluid = solve(p, replace(params, whole_units=False))
    assert [(a.quantity, a.late_units) for a in fluid.allocations] == [(7, 0)]


@pytest.mark.parametrize("params", PATHS)
def test_a_lab_scheduling_unit_by_unit_makes_what_the_plan_counts_on_time(params: SolveParams) -> None:
    p = three_printer_lab()
    (line,) = solve(p, params).allocations
    on_time = line.quantity - line.late_units
    executor = SimulatedExecutor(p.labs[0].lab.machines, SimClock(NOW), cp_time_limit_s=0, working_hours=True)
    design = p.designs["face-shield"]
    due = p.demands[0].order.due_at
    executor.add(Job("o1-a1", design, line.quantity, due, on_time_units=on_time), at=NOW)
    ends = executor.unit_ends("o1-a1")
    assert ends[on_time - 1] <= due < ends[on_time]


def test_one_machine_is_already_whole_and_time_checkpoints_stay_fluid() -> None:
    # A lone printer's units are whole in any plan: nothing is held back from it. Between pooled
    # ones, only the due dates' checkpoints count whole units.
    alone = with_whole_units(problem([lab("one", NEAR, [printer("p1")])], [order("o", "face-shield", 1)]))
    assert alone.labs[0].unit_minutes == {}
    pooled = with_whole_units(three_printer_lab()).labs[0]
    assert pooled.unit_minutes == {"p1": 120.0, "p2": 120.0, "p3": 120.0}
    # Designs of different lengths on the same printers: the shortest step is the unit.
    both = problem(
        list(three_printer_lab().labs), [order("s", "face-shield", 1), order("f", "finger-splint", 1)]
    )
    assert with_whole_units(both).labs[0].unit_minutes["p1"] == 25.0
    assert free_minutes(pooled, 0.6, whole=True)["p1"] == 240.0
    assert free_minutes(pooled, 0.6)["p1"] == pytest.approx(288.0)
    assert in_whole_units(359.9, 120.0) == 240.0 and in_whole_units(360.0, 120.0) == 360.0
    assert is_due_checkpoint(0.6, 3.6, (1.0,))
    assert not is_due_checkpoint(1.0, 3.6, (1.0,)) and not is_due_checkpoint(3.6, 3.6, (1.0,))


def test_the_lab_is_not_sent_less_work_than_it_can_do_by_the_next_plan() -> None:
    # 30 headbands due in 3 days on three printers of 9 h a day: the work sent now (made by the
    # first day's checkpoint) is what their summed 1,620 minutes hold (13), not the 12 whole ones, so
    # no printer idles before the next plan.
    machines = [printer(f"p{i}", hours=9.0) for i in (1, 2, 3)]
    machines += [machine("laser", "laser"), machine("bench", "assembly")]
    p = problem([lab("only", NEAR, machines)], [order("o1", "face-shield", 30, days=3.0)])
    (line,) = solve(p, SMALL).allocations
    assert (line.quantity, line.late_units, line.early_units) == (30, 0, 13)
    assert line.arrive_by - NOW <= timedelta(days=3)


def two_printers_and_a_bench() -> Problem:
    # Valves (a 60-minute print, then a 10-minute assembly) due in 6 hours at a lab of two medical
    # SLA printers of 16 hours a day and a bench of 10: by then each printer has made 4 valves, but
    # the last two still need the bench, 24 minutes each at its pace.
    machines = [
        machine("sla1", "sla", hours=16.0, medical_grade=True),
        machine("sla2", "sla", hours=16.0, medical_grade=True),
        machine("bench", "assembly", hours=10.0),
    ]
    return problem([lab("only", NEAR, machines)], [order("o1", "charlotte-valve", 8, days=0.25)])


def test_flow_time_is_the_steps_apart_from_the_busiest_machines() -> None:
    valve_lab = two_printers_and_a_bench()
    state, valve = valve_lab.labs[0], valve_lab.designs["charlotte-valve"]
    assert flow_days(state.lab, valve, step_groups(state.lab, valve)) == pytest.approx(10.0 / 600.0)
    # One machine doing every step queues them there: no flow time.
    alone = lab("one", NEAR, [machine("all", "sla", "assembly", hours=16.0, medical_grade=True)])
    assert flow_days(alone.lab, valve, step_groups(alone.lab, valve)) == 0.0
    # A bench slower than the printers is the busiest: the print comes before its first assembly.
    slow = lab(
        "slow",
        NEAR,
        [machine("sla", "sla", hours=16.0, medical_grade=True), machine("b", "assembly", speed=0.1)],
    )
    assert flow_days(slow.lab, valve, step_groups(slow.lab, valve)) == pytest.approx(60.0 / 960.0)


@pytest.mark.parametrize("params", PATHS)
def test_units_promised_on_time_leave_on_time_when_the_steps_run_in_turn(params: SolveParams) -> None:
    p = two_printers_and_a_bench()
    due = p.demands[0].order.due_at
    design = p.designs["charlotte-valve"]

    def unit_ends(on_time: int) -> list[datetime]:
        executor = SimulatedExecutor(
            p.labs[0].lab.machines, SimClock(NOW), cp_time_limit_s=0, working_hours=True
        )
        executor.add(Job("o1-a1", design, 8, due, on_time_units=on_time), at=NOW)
        return executor.unit_ends("o1-a1")

    (line,) = solve(p, params).allocations
    assert check(p, plan := solve(p, params), params) == [] and plan.allocations == [line]
    on_time = line.quantity - line.late_units
    assert (line.quantity, on_time) == (8, 6)
    ends = unit_ends(on_time)
    assert ends[on_time - 1] <= due < ends[on_time]
    # Counting the machines' minutes alone, all 8 are promised, and the last two leave late.
    (fluid,) = solve(p, replace(params, flow_time=False)).allocations
    assert fluid.late_units == 0 and unit_ends(8)[-1] > due
