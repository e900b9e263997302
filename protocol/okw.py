"""Labs as Open Know-Where (OKW) facility records: import from three published shapes, export one.

Read (auto-detected per record):

- the IoPA OKW data-management shape (`facility`, `location`, `geocoding`, `address`, `region`), as in
  the fablabs.io export of the Internet of Production Alliance; it lists no machines, so machines can
  be joined from a fablabs.io geomachines CSV by the lab's slug (last part of `facility.url`);
- the OKW v1 facility record as the Helpful Engineering JSON schema writes it (`name`, `location`
  with `gps-coordinates` or `latitude`/`longitude`, `equipment`, `manufacturing-processes`), with
  hyphenated or underscored keys; our own export (with its `x-cosmolocal` block) reads back exactly;
- a fablabs.io `labs.json` export (`slug`, `latitude`, `longitude`, `capabilities`).

Machine kinds map to our processes (`three_d_printer` -> `fdm`, `laser` -> `laser`, ...). Listed
machines carry no working hours, speeds or bed sizes: imported machines get 8 hours a day and speed
1. A joined printer whose model is in an OKW machines catalogue (the IoPA `3d_printers.csv`: model,
technology, build size) gets that model's technology (FDM, or SLA/DLP as `sla`) and its bed (the
smaller side of its build area, `bed_mm`); any other FDM printer gets an assumed 200 mm bed (tagged
`bed_assumed = true`). Every lab also gets one assembly bench (manual work happens anywhere).
Records without coordinates are skipped and counted. Pure functions over data: no network, no
sockets.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from protocol.errors import ProtocolError, describe_validation_error
from protocol.model import Lab, Location, Machine

#: Name of the extension block that carries Cosmolocal's own data in an OKW record.
EXTENSION = "x-cosmolocal"

#: fablabs.io machine classes and capabilities -> (process, machine id prefix).
FABLABS_CLASSES: dict[str, str] = {
    "three_d_printer": "fdm",
    "three_d_printing": "fdm",
    "laser": "laser",
    "cnc_milling": "cnc",
    "precision_milling": "milling",
    "vinyl_cutting": "vinyl",
    "circuit_production": "pcb",
}
#: Words in free-text OKW equipment or process names -> process.
KEYWORDS: tuple[tuple[str, str], ...] = (
    ("stereolith", "sla"),
    ("resin", "sla"),
    ("sla", "sla"),
    ("3d print", "fdm"),
    ("3d_print", "fdm"),
    ("additive", "fdm"),
    ("fdm", "fdm"),
    ("fused", "fdm"),
    ("laser", "laser"),
    ("cnc", "cnc"),
    ("mill", "milling"),
    ("router", "cnc"),
    ("vinyl", "vinyl"),
    ("sew", "sewing"),
    ("textile", "sewing"),
    ("pcb", "pcb"),
    ("circuit", "pcb"),
    ("assembly", "assembly"),
)
ASSUMED_BED_MM = 200
DEFAULT_HOURS = 8.0


@dataclass
class ImportResult:
    """Labs read from a file, and what was passed over and why (counts, never silently)."""

    labs: list[Lab] = field(default_factory=list)
    skipped_no_location: int = 0
    skipped_invalid: list[str] = field(default_factory=list)
    without_machines: int = 0  # labs whose record lists no machine (they only have the bench)
    printers_from_catalog: int = 0  # printers of the kept labs whose model the catalogue knew
    shape: str = ""


@dataclass(frozen=True)
class PrinterModel:
    """What a machines catalogue says of a printer model: our process and its bed (mm)."""

    process: str
    bed_mm: int


_Read = TypeVar("_Read")
#: A listed machine: (process, brand, model name as listed).
Listed = tuple[str, str, str]
#: Normalised model name -> what the catalogue says of it.
PrinterCatalog = dict[str, PrinterModel]


def _words(text: str) -> list[str]:
    """The ASCII lower-case words (letters and digits) of a name."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", " ", plain).split()


def slugify(text: str) -> str:
    """A lab id from a name or slug: ASCII, lower case, words joined by '-', at most 60 characters."""
    return "-".join(_words(text))[:60].strip("-") or "lab"


def _get(record: dict[str, Any], *keys: str) -> Any:
    """The first present key, trying hyphenated and underscored spellings."""
    for key in keys:
        for variant in (key, key.replace("-", "_"), key.replace("_", "-")):
            if variant in record and record[variant] not in (None, ""):
                return record[variant]
    return None


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is no number here


def process_of(text: str) -> str | None:
    """Our process for a free-text machine or process name ('3D Printer' -> 'fdm'); None if unknown."""
    lowered = text.lower()
    if lowered in FABLABS_CLASSES:
        return FABLABS_CLASSES[lowered]
    for word, process in KEYWORDS:
        if word in lowered:
            return process
    return None


def machine_for(process: str, number: int, brand: str = "", model: PrinterModel | None = None) -> Machine:
    """An imported machine: 8 h a day, nominal speed; a printer's technology and bed from its
    catalogue `model` when known, else an assumed bed for FDM printers."""
    if process == "fdm" and model is not None:
        return Machine(
            id=f"{model.process}-{number}",
            processes=[model.process],
            hours_per_day=DEFAULT_HOURS,
            tags={"bed_mm": model.bed_mm},
        )
    if process == "fdm" and brand.lower() == "formlabs":
        process = "sla"
    tags: dict[str, bool | int | float | str] = {}
    if process == "fdm":
        tags = {"bed_mm": ASSUMED_BED_MM, "bed_assumed": True}
    return Machine(id=f"{process}-{number}", processes=[process], hours_per_day=DEFAULT_HOURS, tags=tags)


def model_key(text: str) -> str:
    """A printer model's name for matching: ASCII lower-case letters and digits only."""
    return "".join(_words(text))


def catalog_model(catalog: PrinterCatalog, brand: str, name: str) -> PrinterModel | None:
    """The catalogue's entry for a listed printer, by its name or by brand and name; None if unknown."""
    for key in (model_key(name), model_key(f"{brand} {name}")):
        if key and key in catalog:
            return catalog[key]
    return None


def _machines(listed: list[Listed], catalog: PrinterCatalog | None = None) -> dict[str, Any]:
    """The `machines` of a lab's fields: numbered machines for listed (process, brand, model)
    machines plus the assembly bench; and `from_catalog`, how many printers the catalogue knew."""
    counts: dict[str, int] = defaultdict(int)
    machines = []
    known = 0
    for process, brand, name in listed:
        model = catalog_model(catalog, brand, name) if catalog and process == "fdm" else None
        known += model is not None
        machine = machine_for(process, 0, brand, model)
        kind = machine.processes[0]
        counts[kind] += 1
        machines.append(machine.model_copy(update={"id": f"{kind}-{counts[kind]}"}))
    machines.append(Machine(id="bench-1", processes=["assembly"], hours_per_day=DEFAULT_HOURS))
    return {"machines": machines, "from_catalog": known}


def read_geomachines(text: str) -> dict[str, list[Listed]]:
    """fablabs.io geomachines CSV -> lab slug -> [(process, brand, model)] for the classes we know."""
    by_slug: dict[str, list[Listed]] = defaultdict(list)
    for row in csv.DictReader(io.StringIO(text.lstrip("\ufeff"))):
        process = FABLABS_CLASSES.get((row.get("class_1") or "").strip())
        slug = (row.get("slug") or "").strip()
        if process and slug:
            by_slug[slug].append((process, (row.get("brand") or "").strip(), (row.get("name") or "").strip()))
    return dict(by_slug)


def read_printer_catalog(text: str) -> PrinterCatalog:
    """An OKW machines catalogue of 3D printers (columns Model, Technology, Brand, Build Size) ->
    normalised model name (and brand + model) -> process and bed. Models of another technology, or
    without a readable build size, are left out."""
    catalog: PrinterCatalog = {}
    for row in csv.DictReader(io.StringIO(text.lstrip("\ufeff"))):
        technology = (row.get("Technology") or "").lower()
        if any(word in technology for word in ("sla", "dlp", "stereolith", "resin")):
            process = "sla"
        elif any(word in technology for word in ("fdm", "fff", "fused")):
            process = "fdm"
        else:
            continue
        sides = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", row.get("Build Size") or "")[:2]]
        if len(sides) < 2 or min(sides) <= 0:
            continue
        model = PrinterModel(process, int(min(sides)))
        name, brand = (row.get("Model") or "").strip(), (row.get("Brand") or "").strip()
        for key in (model_key(name), model_key(f"{brand} {name}")):
            if key:
                catalog.setdefault(key, model)
    return catalog


def _shape(record: dict[str, Any]) -> str:
    if "facility" in record and isinstance(record["facility"], dict):
        return "iopa"
    if "slug" in record and ("latitude" in record or "capabilities" in record):
        return "fablabs.io"
    return "okw"


def _iopa(
    record: dict[str, Any], machines: dict[str, list[Listed]], catalog: PrinterCatalog | None
) -> tuple[dict[str, Any], bool]:
    facility = record["facility"]
    geo = record.get("geocoding") or {}
    region = record.get("region") or {}
    slug = str(facility.get("url") or facility.get("name") or "").rstrip("/").rsplit("/", 1)[-1]
    listed = machines.get(slug, [])
    return {
        "slug": slug,
        "name": facility.get("name") or slug,
        "lat": _float(geo.get("latitude")),
        "lon": _float(geo.get("longitude")),
        "place": region.get("city_town"),
        "country": region.get("country"),
        **_machines(listed, catalog),
    }, bool(listed)


def _fablabs_io(
    record: dict[str, Any], machines: dict[str, list[Listed]], catalog: PrinterCatalog | None
) -> tuple[dict[str, Any], bool]:
    slug = str(record.get("slug") or record.get("name") or "")
    listed = machines.get(slug) or [
        (FABLABS_CLASSES[c], "", "") for c in record.get("capabilities") or [] if c in FABLABS_CLASSES
    ]
    return {
        "slug": slug,
        "name": record.get("name") or slug,
        "lat": _float(record.get("latitude")),
        "lon": _float(record.get("longitude")),
        "place": (record.get("city") or "").strip() or None,
        "country": (record.get("country_code") or "").upper() or None,
        **_machines(listed, catalog),
    }, bool(listed)


def _okw(record: dict[str, Any], catalog: PrinterCatalog | None) -> tuple[dict[str, Any], bool]:
    location = _get(record, "location") or {}
    lat, lon = _float(_get(location, "latitude", "lat")), _float(_get(location, "longitude", "lon"))
    gps = _get(location, "gps-coordinates", "gps")
    if (lat is None or lon is None) and isinstance(gps, str) and "," in gps:
        lat, lon = (_float(part) for part in gps.split(",", 1))
    address = _get(location, "address") or {}
    if not isinstance(address, dict):
        address = {}
    name = str(_get(record, "name", "title") or "lab")
    extension = record.get(EXTENSION)
    if isinstance(extension, dict) and extension.get("machines"):
        machines = [Machine.model_validate(m) for m in extension["machines"]]
        from_catalog = 0  # our own export: the machines as they were
        listed = True
    else:
        pairs: list[Listed] = []
        for item in _get(record, "equipment") or []:
            text = (
                item
                if isinstance(item, str)
                else " ".join(
                    str(_get(item, k) or "")
                    for k in ("equipment-type", "manufacturing-process", "model", "make")
                )
            )
            process = process_of(text)
            quantity = int(_float(_get(item, "quantity")) or 1) if isinstance(item, dict) else 1
            if process and process != "assembly":
                make = str(_get(item, "make", "manufacturer") or "")
                model = str(_get(item, "model") or "") if isinstance(item, dict) else ""
                pairs += [(process, make, model)] * max(1, min(quantity, 50))
        if not pairs:
            for text in _get(record, "manufacturing-processes") or []:
                process = process_of(str(text))
                if process and process != "assembly":
                    pairs.append((process, "", ""))
        made = _machines(pairs, catalog)
        machines, from_catalog = made["machines"], made["from_catalog"]
        listed = bool(pairs)
    stock = extension.get("stock", {}) if isinstance(extension, dict) else {}
    return {
        "slug": str((extension or {}).get("lab_id") or _get(record, "id", "facility-id") or name),
        "name": name,
        "lat": lat,
        "lon": lon,
        "place": _get(address, "locality", "city", "city_town") or _get(location, "city"),
        "country": _get(address, "country", "country-code"),
        "machines": machines,
        "from_catalog": from_catalog,
        "stock": stock,
    }, listed


def parse_facilities(
    data: Any,
    machines: dict[str, list[Listed]] | None = None,
    country: str | None = None,
    catalog: PrinterCatalog | None = None,
) -> ImportResult:
    """Labs from parsed JSON (a list of records, or an object holding one); `country` filters (alpha-2).

    `machines` (from `read_geomachines`) are joined by slug; `catalog` (from `read_printer_catalog`)
    gives joined printers their model's technology and bed."""
    records = data
    if isinstance(data, dict):
        records = next((v for v in data.values() if isinstance(v, list)), [data])
    if not isinstance(records, list):
        raise ProtocolError("expected a JSON list of facility records")
    machines = machines or {}
    result = ImportResult()
    used: set[str] = set()
    shapes: set[str] = set()
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            result.skipped_invalid.append(f"record {index}: not an object")
            continue
        shape = _shape(record)
        shapes.add(shape)
        try:
            if shape == "iopa":
                fields, listed = _iopa(record, machines, catalog)
            elif shape == "fablabs.io":
                fields, listed = _fablabs_io(record, machines, catalog)
            else:
                fields, listed = _okw(record, catalog)
        except (ValidationError, TypeError, ValueError) as exc:
            result.skipped_invalid.append(f"record {index}: {exc}")
            continue
        if country and (fields.get("country") or "").upper() != country.upper():
            continue
        if fields["lat"] is None or fields["lon"] is None:
            result.skipped_no_location += 1
            continue
        base = slugify(fields["slug"] or fields["name"])
        lab_id, n = base, 1
        while lab_id in used:
            n += 1
            lab_id = f"{base[:56]}-{n}"
        try:
            lab = Lab(
                id=lab_id,
                name=str(fields["name"])[:200],
                location=Location(lat=fields["lat"], lon=fields["lon"], place=(fields.get("place") or None)),
                machines=fields["machines"],
                stock=fields.get("stock") or {},
            )
        except ValidationError as exc:
            result.skipped_invalid.append(
                f"record {index} ({fields['name']}): {describe_validation_error(exc)}"
            )
            continue
        used.add(lab_id)
        result.labs.append(lab)
        result.without_machines += not listed
        result.printers_from_catalog += fields.get("from_catalog", 0)
    result.shape = "+".join(sorted(shapes))
    return result


def load_facilities(
    path: Path,
    machines_path: Path | None = None,
    country: str | None = None,
    printers_path: Path | None = None,
) -> ImportResult:
    """Read an OKW / fablabs.io JSON file, with a geomachines CSV to join and a printer catalogue CSV
    for the joined printers; raises `ProtocolError` naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{path}: cannot read facility records: {exc}") from None
    machines = _read_csv(machines_path, "the machines CSV", read_geomachines)
    catalog = _read_csv(printers_path, "the printer catalogue", read_printer_catalog)
    if printers_path is not None and not catalog:
        raise ProtocolError(f"{printers_path}: no printer model with a technology and a build size")
    try:
        return parse_facilities(data, machines, country, catalog)
    except ProtocolError as exc:
        raise ProtocolError(f"{path}: {exc}") from None


def _read_csv(path: Path | None, what: str, read: Callable[[str], _Read]) -> _Read | None:
    """`read` of the CSV file at `path` (None without one); raises `ProtocolError` naming it."""
    if path is None:
        return None
    try:
        return read(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ProtocolError(f"{path}: cannot read {what}: {exc}") from None


def lab_to_okw(
    lab: Lab,
    live: bool | None = None,
    backlog_minutes: dict[str, float] | None = None,
    free_stock: dict[str, float] | None = None,
) -> dict[str, Any]:
    """An OKW v1 facility record for a lab, with live capacity in the `x-cosmolocal` extension block."""
    equipment = [
        {
            "equipment-type": "+".join(m.processes),
            "manufacturing-process": m.processes[0],
            "quantity": 1,
        }
        for m in lab.machines
    ]
    extension: dict[str, Any] = {
        "lab_id": lab.id,
        "machines": [m.model_dump(mode="json") for m in lab.machines],
        "stock": dict(free_stock if free_stock is not None else lab.stock),
        "minutes_per_day": round(sum(m.minutes_per_day() for m in lab.machines), 1),
    }
    if live is not None:
        extension["live"] = live
    if backlog_minutes is not None:
        extension["backlog_minutes"] = dict(backlog_minutes)
    return {
        "name": lab.name,
        "id": lab.id,
        "location": {
            "address": {"locality": lab.location.place} if lab.location.place else {},
            "gps-coordinates": f"{lab.location.lat},{lab.location.lon}",
        },
        "facility-status": "Active" if live is not False else "Temporary Closure",
        "equipment": equipment,
        "manufacturing-processes": sorted(lab.processes()),
        EXTENSION: extension,
    }
