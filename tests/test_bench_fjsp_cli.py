"""`cosmolocal bench fjsp`: the Brandimarte instances through the command line (cosmolocal.bench_fjsp)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cosmolocal.cli import app
from tests.shared import SHARED

MK01 = SHARED / "benchmarks" / "fjsp" / "mk01.txt"
KEYS = {"instance", "objective", "bound", "best_known", "gap_pct", "seconds", "feasible"}
runner = CliRunner()


@pytest.mark.skipif(not MK01.is_file(), reason="shared benchmark folder absent")
def test_json_line_for_mk01() -> None:
    result = runner.invoke(app, ["bench", "fjsp", str(MK01), "--time-limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert set(row) == KEYS
    assert row["instance"] == "mk01" and row["best_known"] == 40 and row["feasible"] is True
    assert row["bound"] <= 40 <= row["objective"]
    assert row["gap_pct"] == pytest.approx(100 * (row["objective"] - 40) / 40, abs=1e-3)


@pytest.mark.skipif(not MK01.is_file(), reason="shared benchmark folder absent")
def test_table_and_explicit_best_known() -> None:
    result = runner.invoke(app, ["bench", "fjsp", str(MK01), "--time-limit", "1", "--best-known", "20"])
    assert result.exit_code == 0, result.output
    assert "mk01" in result.stdout and "yes" in result.stdout and "20" in result.stdout


def test_bad_files_exit_2_with_a_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("2 3\n1 1 7 4\n1 1 0 1\n")
    result = runner.invoke(app, ["bench", "fjsp", str(broken), "--json"])
    assert result.exit_code == 2
    assert "machine 7 does not exist" in result.stderr
    assert "Traceback" not in result.output
    missing = runner.invoke(app, ["bench", "fjsp", str(tmp_path / "missing.txt")])
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
