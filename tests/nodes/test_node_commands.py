"""`cosmolocal node init` and the error paths of `node join` through typer's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import cosmolocal.node_commands as commands
from cosmolocal.node_commands import node_app
from nodes.config import load_lab

runner = CliRunner()
FULL = [
    "--id",
    "fablab-lyon",
    "--name",
    "Fablab Lyon",
    "--lat",
    "45.75",
    "--lon",
    "4.85",
    "--place",
    "Lyon",
    "--machine",
    "prusa-1:fdm:1.0:10:bed_mm=250",
    "-m",
    "trotec:laser:1.5:8",
    "--stock",
    "petg=5",
    "-s",
    "pet_sheet_0_5=2.5",
]


def test_init_writes_a_lab_file_that_loads(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    result = runner.invoke(node_app, ["init", str(path), *FULL])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "prusa-1" in result.output and "node join" in result.output
    lab = load_lab(path)
    assert lab.id == "fablab-lyon" and lab.location.place == "Lyon"
    assert [m.id for m in lab.machines] == ["prusa-1", "trotec"]
    assert lab.machines[0].tags == {"bed_mm": 250}
    assert lab.stock == {"petg": 5.0, "pet_sheet_0_5": 2.5}


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    assert runner.invoke(node_app, ["init", str(path), *FULL]).exit_code == 0
    again = runner.invoke(node_app, ["init", str(path), *FULL])
    assert again.exit_code == 2 and "already exists" in again.output and "--force" in again.output
    forced = runner.invoke(node_app, ["init", str(path), *FULL, "--name", "New name", "--force"])
    assert forced.exit_code == 0, forced.output
    assert load_lab(path).name == "New name"


def test_init_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    result = runner.invoke(node_app, ["init", str(path), *FULL, "-m", "bad:fdm:1:30"])
    assert result.exit_code == 2
    assert "machines.2.hours_per_day" in result.output and "less than or equal to 24" in result.output
    assert "Traceback" not in result.output and not path.exists()
    no_machine = runner.invoke(node_app, ["init", str(path), *FULL[:10]])
    assert no_machine.exit_code == 2 and "missing --machine" in no_machine.output


def test_init_without_a_terminal_says_what_is_missing(tmp_path: Path) -> None:
    result = runner.invoke(node_app, ["init", str(tmp_path / "lab.toml"), "--id", "x"])
    assert result.exit_code == 2
    assert "missing --name, --lat, --lon, --machine" in result.output


def test_init_asks_in_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "_interactive", lambda: True)
    path = tmp_path / "lab.toml"
    answers = "fablab-lyon\nFablab Lyon\n45.75\n4.85\nprusa-1:fdm\n"
    result = runner.invoke(node_app, ["init", str(path)], input=answers)
    assert result.exit_code == 0, result.output
    lab = load_lab(path)
    assert (lab.id, lab.location.lat, lab.machines[0].id) == ("fablab-lyon", 45.75, "prusa-1")


def test_join_reports_lab_file_errors_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text('id = "x"\nname = "X"\n', encoding="utf-8")
    result = runner.invoke(node_app, ["join", str(path), "--planner", "tcp://127.0.0.1:5570"])
    assert result.exit_code == 2
    assert f"{path}: location: Field required" in result.output.replace("\n", "")
    assert "Traceback" not in result.output
    missing = runner.invoke(node_app, ["join", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    bad_endpoint = runner.invoke(node_app, ["join", str(path), "--planner", "localhost:5570"])
    assert bad_endpoint.exit_code == 2 and "expected a ZeroMQ endpoint" in bad_endpoint.output
    bad_speed = runner.invoke(node_app, ["join", str(path), "--speed", "0"])
    assert bad_speed.exit_code == 2 and "--speed" in bad_speed.output


def test_join_refuses_a_clock_anchor_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    assert runner.invoke(node_app, ["init", str(path), *FULL]).exit_code == 0
    for anchor, words in (("yesterday", "expected an ISO 8601 instant"), ("2026-05-04T08:00", "time zone")):
        result = runner.invoke(node_app, ["join", str(path), "--insecure", "--clock-anchor", anchor])
        assert result.exit_code == 2, result.output
        assert "--clock-anchor" in result.output and words in result.output.replace("\n", "")
        assert "Traceback" not in result.output


def test_help_texts_show_examples() -> None:
    init_help = runner.invoke(node_app, ["init", "--help"])
    assert init_help.exit_code == 0 and "prusa-1:fdm" in init_help.output
    join_help = runner.invoke(node_app, ["join", "--help"])
    assert join_help.exit_code == 0 and "--planner" in join_help.output


def test_node_control_names_what_is_wrong(tmp_path: Path) -> None:
    result = runner.invoke(node_app, ["control", "tcp://127.0.0.1:5999", "--down", "printer-1"])
    assert result.exit_code == 2 and "expected a local socket" in result.output
    result = runner.invoke(node_app, ["control", f"ipc://{tmp_path}/lab.control", "--supply", "petg"])
    assert result.exit_code == 2 and "--supply 'petg': expected MATERIAL=AMOUNT" in result.output
    result = runner.invoke(
        node_app, ["control", f"ipc://{tmp_path}/lab.control", "--timeout", "0.2", "--up", "x"]
    )
    assert result.exit_code == 2 and "no answer from the lab agent" in result.output


def test_working_hours_are_for_simulated_labs_only(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    assert runner.invoke(node_app, ["init", str(path), *FULL]).exit_code == 0
    result = runner.invoke(node_app, ["join", str(path), "--by-hand", "--working-hours"])
    assert result.exit_code == 2 and "--working-hours is for simulated labs" in result.output
