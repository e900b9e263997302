"""Problem records: the horizon definition and validation of inputs."""

from __future__ import annotations

import pytest

from solver.model.problem import Demand, Problem, SolveParams, commit_checkpoints, free_minutes, horizon_days
from tests.solver.factory import NEAR, NOW, lab, order, printer, problem


def test_horizon_runs_to_latest_due_date() -> None:
    p = problem(
        [lab("a", NEAR)], [order("o1", "finger-splint", 1, days=3), order("o2", "finger-splint", 1, days=7.5)]
    )
    assert horizon_days(p, SolveParams(late_window_days=0)) == pytest.approx(7.5)
    assert horizon_days(p, SolveParams(late_window_days=2)) == pytest.approx(9.5)


def test_horizon_is_at_least_one_day_and_at_most_the_cap() -> None:
    soon = problem([lab("a", NEAR)], [order("o1", "finger-splint", 1, days=-2)])
    late = problem([lab("a", NEAR)], [order("o1", "finger-splint", 1, days=400)])
    assert horizon_days(soon, SolveParams(late_window_days=0)) == 1.0
    assert horizon_days(late, SolveParams(max_horizon_days=60)) == 60.0
    assert horizon_days(problem([lab("a", NEAR)], []), SolveParams(late_window_days=0)) == 1.0
    assert horizon_days(soon, SolveParams(late_window_days=7)) == 8.0


def test_free_minutes_counts_speed_and_backlog() -> None:
    state = lab("a", NEAR, [printer("fast", speed=2.0), printer("busy")], backlog={"busy": 1000.0})
    assert free_minutes(state, 2.0) == {"fast": 2 * 480 * 2.0, "busy": 0.0}


def test_duplicate_labs_or_orders_are_refused() -> None:
    with pytest.raises(ValueError, match="repeated: a"):
        problem([lab("a", NEAR), lab("a", NEAR)], [])
    o = order("o1", "finger-splint", 2)
    with pytest.raises(ValueError, match="repeated: o1"):
        Problem(now=NOW, designs={}, labs=[], demands=[Demand(o, 1), Demand(o, 1)])


def test_demand_cannot_exceed_its_order() -> None:
    with pytest.raises(ValueError, match="o1"):
        Demand(order("o1", "finger-splint", 2), 3)
    with pytest.raises(ValueError):
        Demand(order("o1", "finger-splint", 2), 0)


def test_params_need_a_penalty_for_every_priority() -> None:
    with pytest.raises(ValueError, match="emergency"):
        SolveParams(shortage_penalty={"routine": 1.0, "urgent": 2.0})


def test_the_commit_window_is_the_first_time_checkpoint_then_whole_days() -> None:
    assert commit_checkpoints(6.0) == (0.25, 1.0)
    assert commit_checkpoints(24.0) == (1.0,)
    assert commit_checkpoints(48.0) == (2.0,)
    with pytest.raises(ValueError, match="above 0 hours, got 0"):
        commit_checkpoints(0.0)
