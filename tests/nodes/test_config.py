"""The lab file: load, write, and errors that name file, field and reason (nodes.config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.config import (
    LabFileError,
    LabOptionError,
    lab_from_options,
    load_lab,
    parse_machine_spec,
    write_lab,
)
from tests.nodes.samples import lab

EXAMPLE = """\
id = "fablab-lyon"
name = "Fablab Lyon"
[location]
lat = 45.75
lon = 4.85
place = "Lyon"
[[machines]]
id = "prusa-1"
processes = ["fdm"]
speed = 1.0
hours_per_day = 10
tags = { bed_mm = 250 }
[stock]
petg = 5.0
"""


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    loaded = load_lab(path)
    assert loaded.id == "fablab-lyon"
    assert loaded.machines[0].tags == {"bed_mm": 250}
    assert loaded.stock == {"petg": 5.0}


def test_write_then_load_gives_the_same_lab(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    original = lab()
    write_lab(original, path)
    assert load_lab(path) == original
    assert path.read_text(encoding="utf-8").startswith("# Cosmolocal lab file")
    with pytest.raises(LabFileError, match=r"lab\.toml: already exists"):
        write_lab(original, path)
    changed = original.model_copy(update={"name": "Renamed"})
    write_lab(changed, path, overwrite=True)
    assert load_lab(path).name == "Renamed"
    assert [p.name for p in tmp_path.iterdir()] == ["lab.toml"]  # no temporary file left


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            EXAMPLE.replace("hours_per_day = 10", "hours_per_day = 30"),
            "lab.toml: machines.0.hours_per_day: Input should be less than or equal to 24",
        ),
        (EXAMPLE.replace("lat = 45.75", "lat = 95.0"), "lab.toml: location.lat: Input should be less than"),
        (EXAMPLE.replace('id = "fablab-lyon"', 'id = "Fablab Lyon"'), "lab.toml: id: String should match"),
        (EXAMPLE.replace("petg = 5.0", "petg = -1.0"), "lab.toml: stock: Value error, stock of 'petg'"),
        (EXAMPLE.replace("speed = 1.0", "sped = 1.0"), "lab.toml: machines.0.sped: Extra inputs"),
        (EXAMPLE.replace("name = ", "name =\n"), "lab.toml: not valid TOML: Invalid value (at line 2"),
    ],
)
def test_errors_name_file_field_and_reason(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabFileError) as caught:
        load_lab(path)
    assert str(caught.value).startswith(str(tmp_path / expected))


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(LabFileError, match=r"nope\.toml: no such file"):
        load_lab(tmp_path / "nope.toml")
    with pytest.raises(LabFileError, match="cannot read the lab file"):
        load_lab(tmp_path)  # a directory
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(LabFileError, match="cannot read the lab file"):
        load_lab(binary)
    with pytest.raises(LabFileError, match="cannot write"):
        write_lab(lab(), tmp_path / "missing-dir" / "lab.toml")


def test_machine_specs() -> None:
    assert parse_machine_spec("prusa-1:fdm") == {"id": "prusa-1", "processes": ["fdm"]}
    assert parse_machine_spec("p:fdm+sla:2:12:bed_mm=250,medical_grade=true,brand=prusa") == {
        "id": "p",
        "processes": ["fdm", "sla"],
        "speed": 2.0,
        "hours_per_day": 12.0,
        "tags": {"bed_mm": 250, "medical_grade": True, "brand": "prusa"},
    }
    assert parse_machine_spec("p:fdm::6") == {"id": "p", "processes": ["fdm"], "hours_per_day": 6.0}
    for spec, message in [
        ("prusa", "expected ID:PROCESSES"),
        ("p:", "processes: name at least one"),
        ("p:fdm:fast", "speed: 'fast' is not a number"),
        ("p:fdm:1:x", "hours_per_day: 'x' is not a number"),
        ("p:fdm:1:8:bed", "tags: 'bed' should be TAG=VALUE"),
    ]:
        with pytest.raises(LabOptionError, match=message):
            parse_machine_spec(spec)


def test_lab_from_options() -> None:
    built = lab_from_options(
        "fablab-lyon", "Fablab Lyon", 45.75, 4.85, "Lyon", ["prusa-1:fdm:1:10:bed_mm=250"], ["petg=5"]
    )
    assert built.machines[0].hours_per_day == 10 and built.stock == {"petg": 5.0}
    with pytest.raises(LabOptionError, match="machines: at least one machine"):
        lab_from_options("x", "X", 0, 0, machines=[])
    with pytest.raises(LabOptionError, match=r"machines\.0\.hours_per_day: Input should be less"):
        lab_from_options("x", "X", 0, 0, machines=["p:fdm:1:25"])
    with pytest.raises(LabOptionError, match=r"location\.lon"):
        lab_from_options("x", "X", 0, 200, machines=["p:fdm"])
    with pytest.raises(LabOptionError, match=r"--stock 'petg': expected MATERIAL=AMOUNT"):
        lab_from_options("x", "X", 0, 0, machines=["p:fdm"], stock=["petg"])
    with pytest.raises(LabOptionError, match="amount: 'lots' is not a number"):
        lab_from_options("x", "X", 0, 0, machines=["p:fdm"], stock=["petg=lots"])
    with pytest.raises(LabOptionError, match="given twice"):
        lab_from_options("x", "X", 0, 0, machines=["p:fdm"], stock=["petg=1", "petg=2"])
    with pytest.raises(LabOptionError, match="machine ids must be unique"):
        lab_from_options("x", "X", 0, 0, machines=["p:fdm", "p:sla"])
