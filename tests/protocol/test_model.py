"""Records validate on construction, with errors that name the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from protocol.errors import ProtocolError, describe_validation_error
from protocol.model import Lab, Location, Machine, OrderRequest
from protocol.okh import catalogue, load_design, materials


def test_machine_tags_are_minimums_or_equalities() -> None:
    machine = Machine(id="p", processes=["fdm"], tags={"bed_mm": 250, "medical_grade": True, "nozzle": "0.4"})
    assert machine.satisfies({"bed_mm": 200})
    assert not machine.satisfies({"bed_mm": 300})
    assert machine.satisfies({"medical_grade": True})
    assert not machine.satisfies({"medical_grade": False})
    assert not machine.satisfies({"enclosure": True})
    assert machine.satisfies({"nozzle": "0.4"}) and not machine.satisfies({"nozzle": "0.6"})


def test_lab_errors_name_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        Lab(
            id="Bad Id",
            name="x",
            location=Location(lat=0, lon=0),
            machines=[Machine(id="a", processes=["fdm"]), Machine(id="a", processes=["laser"])],
            stock={"petg": -1},
        )
    text = describe_validation_error(caught.value)
    assert "id:" in text and "stock" in text and "cannot be negative" in text


def test_duplicate_machine_ids_refused() -> None:
    with pytest.raises(ValidationError, match="repeated: a"):
        Lab(
            id="lab",
            name="x",
            location=Location(lat=0, lon=0),
            machines=[Machine(id="a", processes=["fdm"]), Machine(id="a", processes=["laser"])],
        )


def test_catalogue_designs_have_licence_source_and_known_materials() -> None:
    known = set(materials())
    assert {"face-shield", "charlotte-valve", "finger-splint"} <= set(catalogue())
    for design in catalogue().values():
        assert design.licence and design.source.startswith("https://") and design.references
        assert set(design.materials_per_unit()) <= known, design.id
    shield = catalogue()["face-shield"]
    assert shield.materials_per_unit()["petg"] == pytest.approx(0.033)
    assert 90 <= next(s.minutes for s in shield.steps if s.process == "fdm") <= 180


def test_bad_manifest_names_file_and_field(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'id = "x"\nname = "X"\nlicence = "CC0-1.0"\nsource = "s"\n[[steps]]\nprocess = "fdm"\nminutes = -5\n'
    )
    with pytest.raises(ProtocolError, match=r"bad.toml: steps.0.minutes"):
        load_design(path)
    path.write_text("id = ")
    with pytest.raises(ProtocolError, match=r"bad\.toml: cannot read"):
        load_design(path)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("2026-05-01T14:00:00+02:00", datetime(2026, 5, 1, 12, 0, tzinfo=UTC)),
        # valid ISO 8601 whose instant lies just past either end of what a date holds in UTC
        ("0001-01-01T01:00:00+01:02", datetime.min.replace(tzinfo=UTC)),
        ("9999-12-31T23:30:00-01:00", datetime.max.replace(tzinfo=UTC)),
    ],
)
def test_order_dates_are_kept_in_utc(text: str, kept: datetime) -> None:
    order = OrderRequest(design="face-shield", quantity=1, due_at=text, delivery=Location(lat=0, lon=0))
    assert order.due_at == kept


def test_an_order_date_needs_a_time_zone() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        OrderRequest(
            design="face-shield",
            quantity=1,
            due_at="2026-05-01T12:00:00",
            delivery=Location(lat=0, lon=0),
        )
