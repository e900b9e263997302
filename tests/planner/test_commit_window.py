"""The planner's commit window: the hours of work a plan sends at once, and its first time checkpoint
(the rule itself: tests/solver/test_problem.py); and the window of late work within it
(the rule itself: tests/solver/test_late_window.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cosmolocal.cli import app
from planner.app import PlannerSettings
from planner.core import PlannerCore
from planner.replan import late_work_refill, late_work_window
from planner.store import Ledger
from protocol.model import Location, OrderRequest
from protocol.okh import catalogue
from tests.planner.plans import NOW, ONE_MACHINE_LAB, one_lab_plan


def test_a_planner_plans_on_its_commit_window_a_day_unless_told(tmp_path: Path) -> None:
    assert PlannerSettings(db_path=tmp_path / "a.db").solve_params().time_checkpoints_days == (1.0,)
    six = PlannerSettings(db_path=tmp_path / "b.db", commit_hours=6.0)
    assert six.solve_params().time_checkpoints_days == (0.25, 1.0)


def test_serve_refuses_a_commit_window_of_no_time(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["planner", "serve", "--db", str(tmp_path / "p.db"), "--commit-hours", "0"]
    )
    assert result.exit_code == 2
    assert "commit-hours" in result.output


def test_a_lab_is_sent_its_late_work_for_the_window_and_the_rest_stays_planned(tmp_path: Path) -> None:
    # One printer of 8 hours a day: 120 minutes in 6 hours, 4 finger splints of 28 minutes.
    core = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: NOW)
    core.lab_hello(ONE_MACHINE_LAB, {})
    order = core.submit_order(splints(20))
    late = one_lab_plan(order.id, 20)
    late.allocations[0] = late.allocations[0].model_copy(update={"late_units": 20})
    [row] = core.commit_plan(late)
    assert (row.quantity, row.on_time_units) == (4, 0)
    assert [(a.order_id, a.quantity, a.late_units) for a in core.unsent] == [(order.id, 16, 16)]


def test_a_lab_with_late_work_still_queued_is_sent_no_more_until_it_runs_low(tmp_path: Path) -> None:
    # 2 late splints sent first are 56 minutes of a printer that works 20 minutes an hour: 2.8 hours
    # queued, over the hour under which a lab is topped up. The 6-hour window would still hold 2
    # more, but the next plan's late units wait, planned, so that an order the lab could still make
    # on time does not queue behind them.
    core = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: NOW)
    core.lab_hello(ONE_MACHINE_LAB, {})
    first, second = core.submit_order(splints(2)), core.submit_order(splints(6))
    late = one_lab_plan(first.id, 2)
    late.allocations[0] = late.allocations[0].model_copy(update={"late_units": 2})
    assert [row.quantity for row in core.commit_plan(late)] == [2]
    more = one_lab_plan(second.id, 6)
    more.allocations[0] = more.allocations[0].model_copy(update={"late_units": 6})
    assert core.commit_plan(more) == []
    assert [(a.order_id, a.quantity) for a in core.unsent] == [(second.id, 6)]
    # Topped up under 3 hours instead, the lab gets the 2 the window still holds.
    core.late_work_refill_hours = 3.0
    assert [row.quantity for row in core.commit_plan(more)] == [2]


def test_without_a_late_work_window_the_whole_commit_window_is_sent(tmp_path: Path) -> None:
    core = PlannerCore(
        ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: NOW, late_work_hours=None
    )
    core.lab_hello(ONE_MACHINE_LAB, {})
    order = core.submit_order(splints(20))
    late = one_lab_plan(order.id, 20)
    late.allocations[0] = late.allocations[0].model_copy(update={"late_units": 20})
    [row] = core.commit_plan(late)
    assert row.quantity == 20 and core.unsent == []


def test_work_planned_on_time_is_sent_as_planned(tmp_path: Path) -> None:
    core = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: NOW)
    core.lab_hello(ONE_MACHINE_LAB, {})
    order = core.submit_order(splints(20))
    [row] = core.commit_plan(one_lab_plan(order.id, 20))
    assert row.quantity == 20


def test_serve_takes_a_late_work_window_of_six_hours_unless_told(tmp_path: Path) -> None:
    assert PlannerSettings(db_path=tmp_path / "a.db").late_work_hours == 6.0
    result = CliRunner().invoke(app, ["planner", "serve", "--help"])
    assert "--late-work-hours" in result.output
    result = CliRunner().invoke(
        app, ["planner", "serve", "--db", str(tmp_path / "p.db"), "--late-work-hours", "-1"]
    )
    assert result.exit_code == 2 and "late-work-hours" in result.output


def splints(quantity: int) -> OrderRequest:
    return OrderRequest.model_validate(
        {
            "design": "finger-splint",
            "quantity": quantity,
            "due_at": NOW + timedelta(days=2),
            "delivery": Location(lat=45.2, lon=5.7),
            "priority": "urgent",
        }
    )


def test_a_job_whose_late_units_wait_promises_its_on_time_units_by_the_due_date(tmp_path: Path) -> None:
    # The plan line: 2 splints on time, 20 late, arriving (the latest of them) a week on. The late
    # units do not fit the window; the job sent holds the 2 on time and promises them by the due date.
    core = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: NOW)
    core.lab_hello(ONE_MACHINE_LAB, {"p1": 8 * 60.0})
    order = core.submit_order(splints(22))
    plan = one_lab_plan(order.id, 22)
    week = NOW + timedelta(days=7)
    plan.allocations[0] = plan.allocations[0].model_copy(update={"late_units": 20, "arrive_by": week})
    [row] = core.commit_plan(plan)
    assert (row.quantity, row.on_time_units) == (2, 2)
    assert row.arrive_by == order.due_at.isoformat()
    [later] = core.unsent
    assert (later.quantity, later.late_units, later.arrive_by) == (20, 20, week)


def test_the_late_work_window_lasts_at_least_until_the_next_plan_on_a_fast_clock() -> None:
    # The planner plans again after 60 s of quiet on its clock, and never sooner than 2 s of wall time.
    assert late_work_window(6.0, 1.0) == 6.0
    assert late_work_window(6.0, 2_000.0) == 6.0  # 2 s are 1.1 hours: two of them fit in 6
    assert late_work_window(6.0, 40_000.0) == pytest.approx(2 * 2 * 40_000 / 3600)  # 44.4 hours
    assert late_work_window(0.0, 40_000.0) is None  # no window at all


def test_a_lab_is_topped_up_before_it_can_run_dry_between_two_plans() -> None:
    # A sixth of the window, but never under two quiet spells (2 s of wall time each) on the
    # planner's clock, nor over the window.
    assert late_work_refill(6.0, 1.0) == pytest.approx(1.0)
    assert late_work_refill(6.0, 2_000.0) == pytest.approx(2 * 2 * 2_000 / 3600)  # 2.2 hours
    window = late_work_window(6.0, 40_000.0)
    assert late_work_refill(window, 40_000.0) == pytest.approx(window)  # 44.4 hours: every plan
    assert late_work_refill(None, 40_000.0) is None
