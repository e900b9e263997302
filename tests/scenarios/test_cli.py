"""`cosmolocal scenario ...` and `cosmolocal labs ...` as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cosmolocal.cli import app
from scenarios.spec import builtin_scenarios
from tests.scenarios.conftest import TINY

runner = CliRunner()


def test_scenario_list_names_the_builtin_scenarios() -> None:
    result = runner.invoke(app, ["scenario", "list"])
    assert result.exit_code == 0, result.output
    for name in builtin_scenarios():
        assert name in result.output


def test_scenario_run_json_prints_one_object_per_policy(tiny: Path) -> None:
    result = runner.invoke(app, ["scenario", "run", str(tiny), "--json", "--seed", "3"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [m["policy"] for m in lines] == ["cosmolocal", "central-factory", "nearest-greedy", "board"]
    assert all(m["seed"] == 3 and m["scenario"] == "tiny" for m in lines)


def test_scenario_run_table_and_report(tiny: Path, tmp_path: Path) -> None:
    report = tmp_path / "out" / "tiny.html"
    result = runner.invoke(
        app, ["scenario", "run", str(tiny), "--policy", "cosmolocal", "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert "fill rate" in result.stdout
    assert report.exists() and report.stat().st_size > 1_000_000  # plotly.js inlined


def test_bad_scenario_file_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("days = 4", "days = -1"), encoding="utf-8")
    result = runner.invoke(app, ["scenario", "run", str(path)])
    assert result.exit_code == 2
    assert "bad.toml" in result.stderr and "days" in result.stderr
    assert "Traceback" not in result.output


def test_unknown_scenario_exits_2() -> None:
    result = runner.invoke(app, ["scenario", "run", "no-such-scenario"])
    assert result.exit_code == 2
    assert "neither a built-in scenario" in result.stderr


def test_labs_import_then_export_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "labs.json"
    source.write_text(
        json.dumps(
            [
                {
                    "name": "Atelier Test",
                    "location": {
                        "address": {"locality": "Lyon", "country": "FR"},
                        "gps-coordinates": "45.75,4.85",
                    },
                    "equipment": [
                        {"equipment-type": "3D printer", "quantity": 2},
                        {"equipment-type": "Laser cutter"},
                    ],
                }
            ]
        ),
        encoding="utf-8",
    )
    folder = tmp_path / "labs"
    result = runner.invoke(app, ["labs", "import", str(source), "--out-dir", str(folder)])
    assert result.exit_code == 0, result.output
    (lab_file,) = folder.glob("*.toml")
    exported = tmp_path / "okw.json"
    result = runner.invoke(app, ["labs", "export", str(lab_file), "--out", str(exported)])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(exported.read_text(encoding="utf-8"))
    assert record["name"] == "Atelier Test"
    assert record["x-cosmolocal"]["minutes_per_day"] == 4 * 8 * 60
    assert sorted(record["manufacturing-processes"]) == ["assembly", "fdm", "laser"]


def test_labs_import_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["labs", "import", str(tmp_path / "none.json")])
    assert result.exit_code == 2
    assert "none.json" in result.stderr


def test_labs_import_scenario_block_feeds_a_scenario(tmp_path: Path) -> None:
    source = tmp_path / "labs.json"
    source.write_text(
        json.dumps(
            [
                {
                    "name": "Lab A",
                    "slug": "lab-a",
                    "latitude": 45.8,
                    "longitude": 4.85,
                    "capabilities": ["laser"],
                },
                {"name": "Lab B", "slug": "lab-b", "latitude": 45.7, "longitude": 4.85, "capabilities": []},
            ]
        ),
        encoding="utf-8",
    )
    okw = tmp_path / "labs.okw.json"
    result = runner.invoke(app, ["labs", "import", str(source), "--scenario-block", str(okw)])
    assert result.exit_code == 0, result.output
    assert 'source = "okw"' in result.stdout
    scenario = tmp_path / "s.toml"
    head, rest = TINY.split("[labs]", 1)
    scenario.write_text(
        head
        + f'[labs]\nsource = "okw"\nfile = "{okw.name}"\ncount = 2\n'
        + rest[rest.index("[[labs.machines]]") :],
        encoding="utf-8",
    )
    result = runner.invoke(app, ["scenario", "run", str(scenario), "--json", "--policy", "cosmolocal"])
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert line["labs_available"] == 2 and line["units_delivered"] > 0
