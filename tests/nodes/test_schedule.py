"""The dispatching-rule schedule of a lab's jobs (solver.jobshop.lab_schedule)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.model import Design, Machine, Step
from solver.jobshop.lab_schedule import PRIORITY_WEIGHT, Job, Schedule, schedule, schedule_cp, unrunnable_step
from tests.nodes.samples import T0, part


def machines() -> list[Machine]:
    return [
        Machine(id="slow", processes=["fdm"], speed=1.0, tags={"bed_mm": 250}),
        Machine(id="fast", processes=["fdm"], speed=2.0, tags={"bed_mm": 180}),
        Machine(id="bench", processes=["assembly"]),
    ]


def test_one_unit_runs_its_steps_in_order_on_the_machine_that_finishes_first() -> None:
    result = schedule(machines(), [Job("j", part(), 1, T0 + timedelta(hours=1))], T0)
    fdm, assembly = result.operations
    assert (fdm.machine_id, fdm.start, fdm.end) == ("fast", T0, T0 + timedelta(minutes=5))
    assert (assembly.machine_id, assembly.start) == ("bench", fdm.end)
    assert assembly.end == T0 + timedelta(minutes=7)
    assert result.unit_ends["j"] == (assembly.end,)
    assert result.job_ends["j"] == assembly.end
    assert result.tardiness_minutes["j"] == 0.0


def test_units_spread_over_eligible_machines_and_respect_required_tags() -> None:
    result = schedule(machines(), [Job("j", part(), 3, T0 + timedelta(hours=1))], T0)
    fdm_machines = [op.machine_id for op in result.operations if op.step == 0]
    # unit 0: fast ends at 5; unit 1: slow and fast both end at 10, the first listed wins; unit 2: fast
    assert fdm_machines == ["fast", "slow", "fast"]
    assert len(result.unit_ends["j"]) == 3
    assert list(result.unit_ends["j"]) == sorted(result.unit_ends["j"])

    big_bed = schedule(machines(), [Job("k", part(fdm_bed_mm=200), 2, T0)], T0)
    assert {op.machine_id for op in big_bed.operations if op.step == 0} == {"slow"}


def test_leave_by_then_due_date_then_priority_decide_the_order() -> None:
    jobs = [
        Job("routine-early", part(), 1, T0 + timedelta(hours=1), "routine"),
        Job("emergency-late", part(), 1, T0 + timedelta(hours=9), "emergency"),
        Job("routine-earlier", part(), 1, T0 + timedelta(minutes=30), "routine"),
        Job("urgent-same-due", part(), 1, T0 + timedelta(hours=1), "urgent"),
        # due last, but 10 hours of road: it must leave first
        Job("far", part(), 1, T0 + timedelta(hours=10), "routine", road_hours=10.0),
    ]
    result = schedule(machines()[1:], jobs, T0)  # one printer: order is visible
    firsts = [op.job_id for op in result.operations if op.step == 0]
    assert firsts == ["far", "routine-earlier", "urgent-same-due", "routine-early", "emergency-late"]


def test_units_the_plan_placed_late_leave_by_its_own_date() -> None:
    # 3 units: 1 on time (leaves by due - 1 h), 2 planned late, to arrive 20 h after the due date.
    split = Job(
        "split",
        part(),
        3,
        T0 + timedelta(hours=2),
        road_hours=1.0,
        on_time_units=1,
        arrive_by=T0 + timedelta(hours=22),
    )
    other = Job("other", part(), 1, T0 + timedelta(hours=5), road_hours=1.0)
    result = schedule(machines()[1:], [split, other], T0)
    order = [(op.job_id, op.unit) for op in result.operations if op.step == 0]
    assert order == [("split", 0), ("other", 0), ("split", 1), ("split", 2)]
    assert split.deadline(0) == T0 + timedelta(hours=1)
    assert split.deadline(2) == T0 + timedelta(hours=21)


def test_busy_machines_start_later_and_tardiness_is_counted() -> None:
    busy = {"fast": T0 + timedelta(hours=2), "slow": T0 - timedelta(hours=1)}
    result = schedule(machines(), [Job("j", part(), 1, T0 + timedelta(minutes=10))], T0, busy)
    fdm = result.operations[0]
    assert fdm.machine_id == "slow" and fdm.start == T0  # a past busy_until counts as start
    assert result.job_ends["j"] == T0 + timedelta(minutes=12)
    assert result.tardiness_minutes["j"] == pytest.approx(2.0)
    assert result.total_tardiness_minutes == pytest.approx(2.0)
    assert result.busy_until["fast"] == T0 + timedelta(hours=2)


def test_a_step_no_machine_can_run_is_named() -> None:
    printers_only = [Machine(id="p", processes=["fdm"], tags={"bed_mm": 250})]
    assert unrunnable_step(part(), printers_only) is not None
    with pytest.raises(ValueError, match=r"job j: step 1 \(assembly\) of design test-part"):
        schedule(printers_only, [Job("j", part(), 1, T0)], T0)
    small_bed = [Machine(id="p", processes=["fdm", "assembly"], tags={"bed_mm": 100})]
    with pytest.raises(ValueError, match="bed_mm=200"):
        schedule(small_bed, [Job("j", part(fdm_bed_mm=200), 1, T0)], T0)


def test_bad_jobs_are_refused() -> None:
    with pytest.raises(ValueError, match="quantity must be positive"):
        schedule(machines(), [Job("j", part(), 0, T0)], T0)
    with pytest.raises(ValueError, match="repeated: j"):
        schedule(machines(), [Job("j", part(), 1, T0), Job("j", part(), 1, T0)], T0)


def test_empty_schedule() -> None:
    result = schedule(machines(), [], T0)
    assert result.operations == () and result.end is None


@settings(max_examples=60, deadline=None)
@given(
    quantities=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    speeds=st.lists(st.sampled_from([0.5, 1.0, 1.5, 3.0]), min_size=1, max_size=3),
)
def test_schedules_are_feasible(quantities: list[int], speeds: list[float]) -> None:
    lab_machines = [
        Machine(id=f"p{i}", processes=["fdm"], speed=s, tags={"bed_mm": 250}) for i, s in enumerate(speeds)
    ]
    lab_machines.append(Machine(id="bench", processes=["assembly"]))
    jobs = [Job(f"j{i}", part(), q, T0 + timedelta(hours=i)) for i, q in enumerate(quantities)]
    result = schedule(lab_machines, jobs, T0)
    assert len(result.operations) == 2 * sum(quantities)
    by_machine: dict[str, list[tuple]] = {}
    speed = {m.id: m.speed for m in lab_machines}
    for op in result.operations:
        assert op.start >= T0
        wall = (op.end - op.start).total_seconds() / 60
        assert wall == pytest.approx(op.nominal_minutes / speed[op.machine_id])
        by_machine.setdefault(op.machine_id, []).append((op.start, op.end))
    for spans in by_machine.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end  # a machine does one thing at a time
    ops = {(op.job_id, op.unit, op.step): op for op in result.operations}
    for (job_id, unit, step), op in ops.items():
        if step == 1:
            assert op.start >= ops[(job_id, unit, 0)].end  # steps of a unit run in order
    for job in jobs:
        assert result.job_ends[job.id] == max(result.unit_ends[job.id])


# --- schedule_cp: the CP-SAT lab schedule ---------------------------------------------------------------


def one_step(design_id: str, minutes: float) -> Design:
    return Design(
        id=design_id,
        name=design_id,
        licence="CC0-1.0",
        source="https://example.org/" + design_id,
        steps=[Step(process="fdm", minutes=minutes)],
    )


def weighted_tardiness(jobs: list[Job], result: Schedule) -> float:
    return sum(PRIORITY_WEIGHT[j.priority] * result.tardiness_minutes[j.id] for j in jobs)


def test_cp_beats_the_due_date_rule_when_the_rule_is_late() -> None:
    printer = [Machine(id="p", processes=["fdm"])]
    jobs = [  # earliest due date first makes all three late (150 min); short jobs first: only x (70)
        Job("x", one_step("long", 100), 1, T0 + timedelta(minutes=50)),
        Job("y", one_step("short-a", 10), 1, T0 + timedelta(minutes=60)),
        Job("z", one_step("short-b", 10), 1, T0 + timedelta(minutes=70)),
    ]
    rule = schedule(printer, jobs, T0)
    assert rule.total_tardiness_minutes == pytest.approx(150.0)
    cp = schedule_cp(printer, jobs, T0, time_limit_s=5.0)
    assert cp.total_tardiness_minutes == pytest.approx(70.0)
    assert [op.job_id for op in sorted(cp.operations, key=lambda op: op.start)][-1] == "x"
    fallback = schedule_cp(printer, jobs, T0, time_limit_s=5.0, max_operations=2)
    assert fallback == rule  # too big for CP-SAT: the dispatch rule as is


def test_cp_puts_the_emergency_first() -> None:
    printer = [Machine(id="p", processes=["fdm"], speed=2.0)]
    jobs = [
        Job("routine", one_step("r", 60), 2, T0 + timedelta(minutes=30), "routine"),
        Job("emergency", one_step("e", 60), 1, T0 + timedelta(minutes=30), "emergency"),
    ]
    cp = schedule_cp(printer, jobs, T0, time_limit_s=5.0)
    assert cp.tardiness_minutes["emergency"] == 0.0
    first = min(cp.operations, key=lambda op: op.start)
    assert first.job_id == "emergency" and first.end == T0 + timedelta(minutes=30)  # speed 2: 60 -> 30


def test_cp_respects_calendars_and_busy_machines() -> None:
    lab_machines = machines()
    closed = {"fast": [(T0 + timedelta(minutes=3), T0 + timedelta(hours=3))]}
    busy = {"slow": T0 + timedelta(minutes=20)}
    jobs = [Job("j", part(), 2, T0 + timedelta(minutes=5))]
    cp = schedule_cp(lab_machines, jobs, T0, busy, calendars=closed, time_limit_s=5.0)
    for op in cp.operations:
        if op.machine_id == "fast":
            assert op.end <= T0 + timedelta(minutes=3) or op.start >= T0 + timedelta(hours=3)
        if op.machine_id == "slow":
            assert op.start >= T0 + timedelta(minutes=20)
    assert len(cp.operations) == 4
    with pytest.raises(ValueError, match="unknown machine"):
        schedule_cp(lab_machines, jobs, T0, calendars={"nope": []})


@settings(max_examples=25, deadline=None)
@given(
    quantities=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    dues=st.lists(st.integers(0, 90), min_size=4, max_size=4),
    priorities=st.lists(st.sampled_from(["routine", "urgent", "emergency"]), min_size=4, max_size=4),
    speeds=st.lists(st.sampled_from([0.5, 1.0, 1.5, 3.0]), min_size=1, max_size=3),
)
def test_cp_is_never_worse_than_the_rule_and_always_feasible(
    quantities: list[int], dues: list[int], priorities: list[str], speeds: list[float]
) -> None:
    lab_machines = [
        Machine(id=f"p{i}", processes=["fdm"], speed=s, tags={"bed_mm": 250}) for i, s in enumerate(speeds)
    ]
    lab_machines.append(Machine(id="bench", processes=["assembly"]))
    jobs = [
        Job(f"j{i}", part(minutes=7.0), q, T0 + timedelta(minutes=dues[i]), priorities[i])  # type: ignore[arg-type]
        for i, q in enumerate(quantities)
    ]
    rule = schedule(lab_machines, jobs, T0)
    cp = schedule_cp(lab_machines, jobs, T0, time_limit_s=0.2)
    assert weighted_tardiness(jobs, cp) <= weighted_tardiness(jobs, rule) + 1e-6
    speed = {m.id: m.speed for m in lab_machines}
    spans: dict[str, list[tuple]] = {}
    for op in cp.operations:
        assert op.start >= T0
        wall = (op.end - op.start).total_seconds() / 60
        assert wall == pytest.approx(op.nominal_minutes / speed[op.machine_id])
        spans.setdefault(op.machine_id, []).append((op.start, op.end))
    for machine_spans in spans.values():
        machine_spans.sort()
        for (_, end), (start, _) in itertools.pairwise(machine_spans):
            assert start >= end
    ops = {(op.job_id, op.unit, op.step): op for op in cp.operations}
    assert len(ops) == 2 * sum(quantities)
    for (job_id, unit, step), op in ops.items():
        if step == 1:
            assert op.start >= ops[(job_id, unit, 0)].end
