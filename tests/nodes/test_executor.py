"""Simulated execution driven by a hand-moved monotonic clock (nodes.executor)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nodes.clock import SimClock
from nodes.simulated import SimulatedExecutor as Executor
from solver.jobshop.lab_schedule import Job
from tests.nodes.samples import T0, lab, part


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def test_sim_clock_runs_speed_times_faster() -> None:
    mono = FakeMonotonic()
    clock = SimClock(T0, speed=60.0, monotonic=mono)
    assert clock.now() == T0
    mono.advance(2.0)
    assert clock.now() == T0 + timedelta(minutes=2)
    assert clock.wall_seconds_until(T0 + timedelta(minutes=5)) == pytest.approx(3.0)
    assert clock.wall_seconds_until(T0) == 0.0
    with pytest.raises(ValueError, match="time zone"):
        SimClock(T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="positive"):
        SimClock(T0, speed=0)


def executor(speed: float = 60.0) -> tuple[Executor, FakeMonotonic]:
    mono = FakeMonotonic()
    return Executor(lab().machines, SimClock(T0, speed, mono)), mono


def test_units_done_eta_and_backlog_follow_the_clock() -> None:
    ex, mono = executor()
    eta = ex.add(Job("j", part(), 2, T0 + timedelta(hours=1)))
    # one printer: unit 0 printed 0-10, assembled 10-12; unit 1 printed 10-20, assembled 20-22
    assert eta == T0 + timedelta(minutes=22)
    assert ex.units_done("j") == 0
    assert ex.backlog_minutes() == {"prusa-1": 20.0, "bench": 4.0}
    mono.advance(5.0)  # 5 simulated minutes
    assert ex.backlog_minutes() == {"prusa-1": pytest.approx(15.0), "bench": 4.0}
    assert ex.units_started("j") == 1
    mono.advance(7.0)  # minute 12
    assert ex.units_done("j") == 1
    mono.advance(10.0)  # minute 22
    assert ex.units_done("j") == 2
    assert ex.backlog_minutes() == {"prusa-1": 0.0, "bench": 0.0}
    assert ex.eta("j") == eta


def test_new_work_goes_after_started_units_and_urgent_work_overtakes_waiting_units() -> None:
    ex, mono = executor()
    ex.add(Job("routine", part(), 3, T0 + timedelta(hours=5), "routine"))
    mono.advance(1.0)  # minute 1: unit 0 of routine is printing
    ex.add(Job("emergency", part(), 1, T0 + timedelta(hours=1), "emergency"))
    ops = ex.operations()
    printer = [(op.job_id, op.unit) for op in ops if op.machine_id == "prusa-1"]
    assert printer == [("routine", 0), ("emergency", 0), ("routine", 1), ("routine", 2)]
    first = ex.operations("routine")[0]
    assert (first.start, first.end) == (T0, T0 + timedelta(minutes=10))  # started: unchanged
    assert ex.eta("emergency") == T0 + timedelta(minutes=22)
    assert ex.eta("routine") == T0 + timedelta(minutes=42)
    with pytest.raises(ValueError, match="already scheduled"):
        ex.add(Job("routine", part(), 1, T0))


def test_a_job_that_cannot_run_changes_nothing() -> None:
    ex, _ = executor()
    ex.add(Job("ok", part(), 1, T0))
    before = ex.operations()
    with pytest.raises(ValueError, match="bed_mm=500"):
        ex.add(Job("too-big", part(fdm_bed_mm=500), 1, T0))
    assert ex.operations() == before


def test_stop_drops_unfinished_units() -> None:
    ex, mono = executor()
    ex.add(Job("j", part(), 3, T0 + timedelta(hours=1)))
    mono.advance(15.0)  # unit 0 done at 12, unit 1 printing since 10
    assert ex.stop("j") == (1, 2)
    assert ex.is_stopped("j")
    assert ex.units_done("j") == 1
    assert ex.backlog_minutes() == {"prusa-1": 0.0, "bench": 0.0}
    eta = ex.add(Job("next", part(), 1, T0 + timedelta(hours=1)))
    assert eta == T0 + timedelta(minutes=15 + 12)  # the printer is free again at once
    with pytest.raises(KeyError, match="unknown job"):
        ex.units_done("nope")


def test_sim_clock_holds_time_that_was_not_worked() -> None:
    wall = [0.0]
    clock = SimClock(T0, 60.0, monotonic=lambda: wall[0])
    wall[0] = 1.0
    assert clock.now() == T0 + timedelta(minutes=1)
    clock.hold()
    wall[0] = 5.0
    assert clock.held and clock.now() == T0 + timedelta(minutes=1)
    clock.release()
    wall[0] = 6.0
    assert not clock.held and clock.now() == T0 + timedelta(minutes=2)
    wall[0] = 60.0  # without stall_seconds every gap is worked
    assert clock.notice_stall() is None and clock.now() == T0 + timedelta(minutes=56)


def test_sim_clock_takes_a_stall_out_and_holds_whoever_reads_it_first() -> None:
    wall = [0.0]
    clock = SimClock(T0, 60.0, monotonic=lambda: wall[0], stall_seconds=1.0)
    for step in range(1, 5):  # readings 0.5 s apart are work
        wall[0] = step * 0.5
        assert clock.now() == T0 + timedelta(seconds=30 * step)
    wall[0] = 9.0  # suspended 7 s: the first reading (here: now) finds it
    assert clock.now() == T0 + timedelta(minutes=2) and clock.held
    wall[0] = 9.5
    assert clock.now() == T0 + timedelta(minutes=2)
    assert clock.notice_stall() == pytest.approx(7.0)
    assert clock.notice_stall() is None  # reported once
    clock.release()
    wall[0] = 10.0
    assert not clock.held and clock.now() == T0 + timedelta(minutes=2, seconds=30)
    clock.hold()
    wall[0] = 20.0  # a stall while held is still reported, and the clock stays held
    assert clock.notice_stall() == pytest.approx(10.0) and clock.held
    with pytest.raises(ValueError, match="stall_seconds"):
        SimClock(T0, stall_seconds=0)


def test_sim_clock_works_only_within_its_lease_however_late_it_is_read() -> None:
    wall = [0.0]
    clock = SimClock(T0, 60.0, monotonic=lambda: wall[0])
    clock.lease(2.0)
    wall[0] = 1.0
    assert not clock.lapsed and clock.now() == T0 + timedelta(minutes=1)
    wall[0] = 5.0  # read long after the deadline: only up to it was worked
    assert clock.lapsed and clock.now() == T0 + timedelta(minutes=2)
    clock.lease(8.0)  # a new lease: the lapsed span is not worked
    wall[0] = 6.0
    assert not clock.lapsed and clock.now() == T0 + timedelta(minutes=3)
    clock.lease(9.0)  # extended before it lapsed: no gap
    wall[0] = 8.5
    assert clock.now() == T0 + timedelta(minutes=5, seconds=30)
    clock.hold()  # a hold within the lease stops the work too, and a release does not end the lease
    wall[0] = 8.75
    clock.release()
    wall[0] = 20.0
    assert clock.now() == T0 + timedelta(minutes=5, seconds=45) and clock.lapsed
    clock.lease(None)
    wall[0] = 21.0
    assert clock.now() == T0 + timedelta(minutes=6, seconds=45)


def test_sim_clock_stands_still_at_the_simulated_limit_of_its_lease() -> None:
    wall = [0.0]
    clock = SimClock(T0, 60.0, monotonic=lambda: wall[0])
    clock.lease(10.0, sim_until=T0 + timedelta(minutes=2))
    wall[0] = 5.0
    assert clock.now() == T0 + timedelta(minutes=2) and clock.lapsed
    clock.lease(10.0, sim_until=T0 + timedelta(minutes=4))  # a new promise: time runs on from there
    wall[0] = 6.0
    assert clock.now() == T0 + timedelta(minutes=3) and not clock.lapsed
    clock.lease(10.0, sim_until=T0)  # a limit in the past never takes time back
    assert clock.now() == T0 + timedelta(minutes=3) and clock.lapsed


def test_sim_clock_catches_up_with_an_instant_never_back_nor_past_its_limit() -> None:
    wall = [0.0]
    clock = SimClock(T0, 60.0, monotonic=lambda: wall[0])
    clock.lease(0.0)  # no lease yet: nothing is worked
    wall[0] = 3.0
    assert clock.now() == T0
    assert clock.catch_up(T0 + timedelta(minutes=3)) == pytest.approx(180.0)  # idle: 3 min gained
    assert clock.now() == T0 + timedelta(minutes=3)
    assert clock.catch_up(T0 + timedelta(minutes=1)) == 0.0 and clock.now() == T0 + timedelta(minutes=3)
    clock.lease(10.0, sim_until=T0 + timedelta(minutes=5))
    assert clock.catch_up(T0 + timedelta(minutes=9)) == pytest.approx(120.0)  # up to the limit only
    assert clock.now() == T0 + timedelta(minutes=5) and clock.lapsed


def test_with_working_hours_a_machine_makes_its_hours_a_day_and_no_more() -> None:
    clock = SimClock(T0, 1.0, monotonic=FakeMonotonic())
    the_lab = lab()  # printer 10 h a day, bench 8 h a day
    around_the_clock = Executor(the_lab.machines, clock, cp_time_limit_s=0)
    working = Executor(the_lab.machines, clock, cp_time_limit_s=0, working_hours=True)
    job = Job("j", part(minutes=60.0), 10, T0 + timedelta(days=5), "routine")
    assert around_the_clock.add(job, at=T0) == T0 + timedelta(hours=10, minutes=2)
    # 10 printed hours take a day at 10 h a day; the last unit's 2-minute check, 6 minutes at 8 h a day
    assert working.add(job, at=T0) == T0 + timedelta(days=1, minutes=6)
    day = T0 + timedelta(days=1)
    assert working.units_done("j", day) == 9 and around_the_clock.units_done("j", day) == 10
    assert working.backlog_minutes(T0) == {"prusa-1": 600.0, "bench": 20.0}  # nominal minutes, as before
