"""Open Know-Where import and export: the three published shapes, the real fablabs.io data, round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.errors import ProtocolError
from protocol.model import Lab, Location, Machine
from protocol.okw import (
    EXTENSION,
    PrinterModel,
    lab_to_okw,
    load_facilities,
    parse_facilities,
    process_of,
    read_geomachines,
    read_printer_catalog,
)
from tests.shared import SHARED

DATA = SHARED / "data"
FACILITIES = DATA / "iopa_okw_fablabs_io_facilities_2024-10.json"
MACHINES = DATA / "iopa_fablabs_io_geomachines_2023-06.csv"

IOPA_RECORD = {
    "facility": {
        "name": "Fablab Test",
        "url": "https://www.fablabs.io/labs/fablabtest",
        "description": "fablab",
    },
    "location": {"location_id": "x"},
    "geocoding": {"latitude": 45.75, "longitude": 4.85},
    "address": {"zip_code": "69000"},
    "region": {"country": "FR", "state_region": "Rhône", "city_town": "Lyon"},
}
GEOMACHINES = (
    "\ufeff,name,brand,slug,class_1,lab,city,county,country_code,latitude,longitude\n"
    "0,ultimaker 2,ultimaker,fablabtest,three_d_printer,Fablab Test,Lyon,,FR,45.75,4.85\n"
    "1,form 2,formlabs,fablabtest,three_d_printer,Fablab Test,Lyon,,FR,45.75,4.85\n"
    "2,speedy 300,trotec,fablabtest,laser,Fablab Test,Lyon,,FR,45.75,4.85\n"
    "3,kinect,microsoft,fablabtest,scanner,Fablab Test,Lyon,,FR,45.75,4.85\n"
)


def test_iopa_shape_with_machines_joined_by_slug() -> None:
    result = parse_facilities([IOPA_RECORD], read_geomachines(GEOMACHINES))
    (lab,) = result.labs
    assert result.shape == "iopa"
    assert lab.id == "fablabtest" and lab.location.place == "Lyon"
    assert sorted(m.id for m in lab.machines) == ["bench-1", "fdm-1", "laser-1", "sla-1"]
    assert result.without_machines == 0


def test_iopa_record_without_coordinates_is_counted_not_kept() -> None:
    record = IOPA_RECORD | {"geocoding": None}
    result = parse_facilities([record, IOPA_RECORD])
    assert len(result.labs) == 1 and result.skipped_no_location == 1
    assert result.without_machines == 1  # no machine list: the bench only
    assert [m.processes for m in result.labs[0].machines] == [["assembly"]]


def test_helpful_engineering_okw_shape() -> None:
    record = {
        "name": "Makerspace Ouest",
        "location": {"address": {"locality": "Nantes", "country": "FR"}, "gps_coordinates": "47.21,-1.55"},
        "facility_status": "Active",
        "equipment": [
            {"equipment_type": "3D Printer", "manufacturer": "Prusa", "quantity": 3},
            {"equipment-type": "CNC mill"},
            {"equipment-type": "Sewing machine"},
        ],
    }
    (lab,) = parse_facilities([record]).labs
    assert lab.location.lat == pytest.approx(47.21) and lab.location.lon == pytest.approx(-1.55)
    processes = sorted(p for m in lab.machines for p in m.processes)
    assert processes == ["assembly", "cnc", "fdm", "fdm", "fdm", "sewing"]


def test_fablabs_io_labs_json_shape_with_capabilities() -> None:
    record = {
        "name": "Fab Lab Barcelona",
        "slug": "fablabbcn",
        "latitude": 41.3969,
        "longitude": 2.1946,
        "city": "Barcelona",
        "country_code": "es",
        "capabilities": ["three_d_printing", "laser", "vinyl_cutting"],
    }
    result = parse_facilities({"labs": [record]}, country="ES")
    (lab,) = result.labs
    assert result.shape == "fablabs.io"
    assert lab.processes() == {"fdm", "laser", "vinyl", "assembly"}


def test_export_reads_back_exactly() -> None:
    lab = Lab(
        id="fablab-lyon",
        name="Fablab Lyon",
        location=Location(lat=45.75, lon=4.85, place="Lyon"),
        machines=[Machine(id="prusa-1", processes=["fdm"], hours_per_day=12, tags={"bed_mm": 250})],
        stock={"petg": 3.0},
    )
    record = lab_to_okw(lab, live=True, backlog_minutes={"prusa-1": 120.0}, free_stock={"petg": 2.5})
    assert record[EXTENSION]["live"] is True and record[EXTENSION]["backlog_minutes"] == {"prusa-1": 120.0}
    assert record[EXTENSION]["minutes_per_day"] == 720.0
    (back,) = parse_facilities(json.loads(json.dumps([record]))).labs
    assert back.id == lab.id and back.machines == lab.machines and back.stock == {"petg": 2.5}


def test_process_words() -> None:
    assert process_of("Ultimaker 3D printer") == "fdm"
    assert process_of("Formlabs SLA resin printer") == "sla"
    assert process_of("Epilog laser cutter") == "laser"
    assert process_of("scanner") is None


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "labs.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"labs\.json"):
        load_facilities(path)


@pytest.mark.skipif(not FACILITIES.exists(), reason="shared fablab data not present beside the repository")
def test_real_fablabs_io_data_french_labs_with_machines() -> None:
    result = load_facilities(FACILITIES, MACHINES, country="FR")
    assert 200 <= len(result.labs) <= 259  # 245 geocoded French labs
    assert len({lab.id for lab in result.labs}) == len(result.labs)
    with_machines = [lab for lab in result.labs if len(lab.machines) > 1]
    assert 30 <= len(with_machines) <= 70  # 59 French labs list machines
    assert sum(len(lab.machines) - 1 for lab in with_machines) > 150
    everywhere = load_facilities(FACILITIES)
    assert len(everywhere.labs) + everywhere.skipped_no_location == 2237


PRINTERS = (
    "\ufeffModel,Technology,Materials,Brand,Build Size\n"
    'Ultimaker 2,FDM (Fused Deposition Modeling),"PLA, ABS",Ultimaker,223 x 223 x 205 mm\n'
    "Form 2,SLA (Stereolithography),Resin,Formlabs,145 x 145 x 175 mm\n"
    "Mystery,Powder bed fusion,Nylon,Acme,300 x 300 x 300 mm\n"
    "No size,FDM,PLA,Acme,\n"
)


def test_joined_printers_take_their_models_bed_and_technology_from_the_catalogue() -> None:
    catalog = read_printer_catalog(PRINTERS)
    assert set(catalog.values()) == {PrinterModel("fdm", 223), PrinterModel("sla", 145)}
    result = parse_facilities([IOPA_RECORD], read_geomachines(GEOMACHINES), catalog=catalog)
    (lab,) = result.labs
    machines = {m.id: m for m in lab.machines}
    assert machines["fdm-1"].tags == {"bed_mm": 223}  # ultimaker 2, no longer an assumed bed
    assert machines["sla-1"].processes == ["sla"] and machines["sla-1"].tags == {"bed_mm": 145}
    assert result.printers_from_catalog == 2
    unknown = GEOMACHINES.replace("ultimaker 2,ultimaker", "homebrew 9,nobody")
    (lab,) = parse_facilities([IOPA_RECORD], read_geomachines(unknown), catalog=catalog).labs
    assert {m.id: m.tags for m in lab.machines}["fdm-1"] == {"bed_mm": 200, "bed_assumed": True}


def test_a_catalogue_without_usable_models_is_refused_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "printers.csv"
    empty.write_text("Model,Technology,Materials,Brand,Build Size\n", encoding="utf-8")
    source = tmp_path / "labs.json"
    source.write_text(json.dumps([IOPA_RECORD]), encoding="utf-8")
    machines = tmp_path / "machines.csv"
    machines.write_text(GEOMACHINES, encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"printers\.csv: no printer model"):
        load_facilities(source, machines, printers_path=empty)


@pytest.mark.skipif(not FACILITIES.exists(), reason="shared fablab data not present beside the repository")
def test_real_printer_catalogue_gives_about_half_the_listed_printers_their_bed() -> None:
    result = load_facilities(
        FACILITIES, MACHINES, printers_path=DATA / "iopa_okw_machines_catalog_3d_printers.csv"
    )
    printers = [m for lab in result.labs for m in lab.machines if m.processes[0] in ("fdm", "sla")]
    known = [m for m in printers if "bed_mm" in m.tags and "bed_assumed" not in m.tags]
    assert result.printers_from_catalog == len(known)
    assert 0.4 <= len(known) / len(printers) <= 0.65  # 458 of 887 listed printers match a model
    assert all(50 <= m.tags["bed_mm"] <= 2000 for m in known)
