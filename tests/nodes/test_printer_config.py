"""The lab file's printers: driver, URL and API key file per machine, G-code file per printed step;
`node join` stops on a missing file or a refused key with what to do, naming the machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cosmolocal.node_commands import node_app
from nodes.config import LabFileError, check_lab_setup, load_lab, load_lab_setup
from protocol.okh import catalogue
from tests.nodes.printer_servers import OctoPrint, free_port

LAB = """\
id = "fablab-paris"
name = "Fablab Paris"
[location]
lat = 48.86
lon = 2.35
[[machines]]
id = "prusa-1"
processes = ["fdm"]
tags = {{ bed_mm = 250 }}
driver = "octoprint"
url = "{url}"
api_key_file = "{key}"
[[machines]]
id = "laser-1"
processes = ["laser"]
[[machines]]
id = "bench-1"
processes = ["assembly"]
[[prints]]
design = "face-shield"
step = 1
gcode = "gcode/headband-x4.gcode"
units = 4
"""


def write(
    folder: Path, url: str = "http://127.0.0.1:9", key: str = "prusa-1.apikey", text: str = LAB
) -> Path:
    path = folder / "lab.toml"
    path.write_text(text.format(url=url, key=key))
    return path


def test_the_lab_file_names_printers_and_gcode_and_keeps_them_local(tmp_path: Path) -> None:
    setup = load_lab_setup(write(tmp_path))
    assert [m.id for m in setup.lab.machines] == ["prusa-1", "laser-1", "bench-1"]
    assert "driver" not in setup.lab.machines[0].model_dump()  # never sent to the planner
    link = setup.links["prusa-1"]
    assert (link.driver, link.url, link.api_key_file) == (
        "octoprint",
        "http://127.0.0.1:9",
        tmp_path / "prusa-1.apikey",
    )
    (entry,) = setup.prints
    assert (entry.design, entry.step, entry.gcode, entry.units) == (
        "face-shield",
        0,
        tmp_path / "gcode" / "headband-x4.gcode",
        4,
    )
    assert load_lab(tmp_path / "lab.toml") == setup.lab
    problems = check_lab_setup(setup, catalogue())
    assert problems == [
        f"machine prusa-1: no API key file at {tmp_path / 'prusa-1.apikey'}; put the octoprint API key in "
        "that file (or fix api_key_file)",
        f"prints: design face-shield step 1: no G-code file at {tmp_path / 'gcode' / 'headband-x4.gcode'}; "
        "slice the part for your printer and save it there (or fix gcode)",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('driver = "octoprint"', 'driver = "prusalink"'), "machines.0 (prusa-1): driver: 'prusalink'"),
        (
            ('url = "{url}"', 'url = "printer.local"'),
            "machines.0 (prusa-1): url: the octoprint server's address",
        ),
        (('api_key_file = "{key}"\n', ""), "machines.0 (prusa-1): api_key_file: OctoPrint needs an API key"),
        (("units = 4", "units = 0"), "prints.0: units: how many units one print of the file makes"),
        (("step = 1", "step = 0"), "prints.0: step: the step's number in the design, counting from 1"),
        (("units = 4", "units = 4\nplate = 2"), "prints.0: unknown field(s) plate"),
    ],
)
def test_errors_name_the_field_and_what_to_do(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(LabFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_lab_setup(write(tmp_path, text=LAB.replace(*change)))


def test_join_explains_printers_and_stops_on_missing_files(tmp_path: Path) -> None:
    runner = CliRunner()
    help_text = runner.invoke(node_app, ["join", "--help"], env={"COLUMNS": "120"}).output
    for words in ("driver", "api_key_file", "[[prints]]", "units", "--by-hand"):
        assert words in help_text
    result = runner.invoke(node_app, ["join", str(write(tmp_path)), "--insecure", "--no-journal"])
    assert result.exit_code != 0
    assert "machine prusa-1: no API key file" in result.output and "no G-code file" in result.output


def test_join_stops_on_a_refused_key_and_names_the_machine(tmp_path: Path, octoprint: OctoPrint) -> None:
    (tmp_path / "gcode").mkdir()
    (tmp_path / "gcode" / "headband-x4.gcode").write_text("G28\n")
    (tmp_path / "prusa-1.apikey").write_text("wrong-key\n")
    result = CliRunner().invoke(
        node_app, ["join", str(write(tmp_path, url=octoprint.url)), "--insecure", "--no-journal"]
    )
    assert result.exit_code != 0
    assert "machine prusa-1: OctoPrint at" in result.output and "refused the API key" in result.output
    assert "Application Keys" in result.output


def test_join_warns_of_a_server_that_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cosmolocal.node_commands import _check_printers

    (tmp_path / "gcode").mkdir()
    (tmp_path / "gcode" / "headband-x4.gcode").write_text("G28\n")
    (tmp_path / "prusa-1.apikey").write_text("some-key\n")
    setup = load_lab_setup(write(tmp_path, url=f"http://127.0.0.1:{free_port()}"))
    _check_printers(setup)  # does not stop: the machine counts as down until its server answers
    warning = capsys.readouterr().err
    assert "machine prusa-1: OctoPrint at" in warning and "does not answer" in warning
    assert "counts as down until its server answers" in warning
