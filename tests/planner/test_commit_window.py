"""The planner's commit window: the hours of work a plan sends at once, and its first time checkpoint
(the rule itself: tests/solver/test_problem.py)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cosmolocal.cli import app
from planner.app import PlannerSettings


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
