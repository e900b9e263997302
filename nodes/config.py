"""The lab file: one TOML file that describes a lab (its place, machines and stock).

Shape (the fields of `protocol.model.Lab`)::

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

A machine driven through a printer server names its driver, the server's URL and the file that
holds its API key (never the key itself; a relative path is read beside the lab file)::

    [[machines]]
    id = "prusa-1"
    processes = ["fdm"]
    tags = { bed_mm = 250 }
    driver = "octoprint"            # or "moonraker"
    url = "http://192.168.1.20"
    api_key_file = "prusa-1.apikey" # optional for Moonraker with trusted clients

and for each design step it prints, the lab names its own sliced G-code file and the units one print
of it makes (step counts from 1, in the design's order)::

    [[prints]]
    design = "face-shield"
    step = 1
    gcode = "gcode/headband-x4.gcode"
    units = 4

These stay in the lab: they never travel to the planner (`LabSetup`).

Every error says which file, which field and why, so an operator can fix the file without reading
code: ``lab.toml: machines.0.hours_per_day: Input should be less than or equal to 24``.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from nodes.printers import DRIVERS, PrinterLink, PrintFile
from protocol.errors import describe_validation_error
from protocol.model import Lab, TagValue

_HEADER = (
    "# Cosmolocal lab file: who this lab is, where, its machines and its free stock.\n"
    "# Edit it freely, then join a mesh with: cosmolocal node join {path} --planner tcp://HOST:5570\n\n"
)


class LabFileError(ValueError):
    """A lab file that cannot be read, parsed or validated; the text names file, field and reason."""


class LabOptionError(ValueError):
    """A lab described by options (command line) that does not make a valid lab; names the option."""


@dataclass(frozen=True, slots=True)
class LabSetup:
    """A lab file read whole: the lab as the mesh knows it, and what stays local (its printers)."""

    lab: Lab
    #: Machine id -> how to reach its printer server (machines with a driver only).
    links: dict[str, PrinterLink] = field(default_factory=dict)
    #: The lab's G-code file per printed design step.
    prints: list[PrintFile] = field(default_factory=list)


_LINK_KEYS = ("driver", "url", "api_key_file")


def load_lab(path: Path) -> Lab:
    """Read and validate a lab file. Raises `LabFileError` naming the file, the field and the reason."""
    return load_lab_setup(path).lab


def load_lab_setup(path: Path) -> LabSetup:
    """Read a lab file with its printers and G-code files (see the module docstring).

    Raises `LabFileError` naming the file, the field and the reason. Files named are not opened
    here: `check_lab_setup` says which are missing."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabFileError(f"{path}: no such file (create one with `cosmolocal node init {path}`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LabFileError(f"{path}: cannot read the lab file: {reason}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LabFileError(f"{path}: not valid TOML: {exc}") from None
    links: dict[str, PrinterLink] = {}
    machines = raw.get("machines")
    if isinstance(machines, list):
        for index, machine in enumerate(machines):
            if isinstance(machine, dict) and any(k in machine for k in _LINK_KEYS):
                link = {k: machine.pop(k) for k in _LINK_KEYS if k in machine}
                links[str(machine.get("id"))] = _link(path, index, str(machine.get("id")), link)
    prints = [_print_file(path, index, entry) for index, entry in enumerate(raw.pop("prints", None) or [])]
    try:
        lab = Lab.model_validate(raw)
    except ValidationError as exc:
        raise LabFileError(f"{path}: {describe_validation_error(exc)}") from None
    seen: set[tuple[str, int]] = set()
    for index, entry in enumerate(prints):
        if (entry.design, entry.step) in seen:
            raise LabFileError(
                f"{path}: prints.{index}: design {entry.design} step {entry.step + 1} is named twice"
            )
        seen.add((entry.design, entry.step))
    if prints and not links:
        raise LabFileError(
            f"{path}: prints: G-code files are named but no machine has a driver; add driver, url and "
            "api_key_file to the printer's [[machines]] entry"
        )
    return LabSetup(lab, links, prints)


def _link(path: Path, index: int, machine_id: str, fields: dict[str, Any]) -> PrinterLink:
    where = f"{path}: machines.{index} ({machine_id})"
    driver = fields.get("driver")
    if driver not in DRIVERS:
        raise LabFileError(f"{where}: driver: {driver!r}; choose one of {', '.join(DRIVERS)}")
    url = fields.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise LabFileError(f"{where}: url: the {driver} server's address, such as http://192.168.1.20:5000")
    key_file = fields.get("api_key_file")
    if key_file is not None and (not isinstance(key_file, str) or not key_file.strip()):
        raise LabFileError(f"{where}: api_key_file: the path of a file holding the API key")
    if key_file is None and driver == "octoprint":
        raise LabFileError(
            f"{where}: api_key_file: OctoPrint needs an API key; name a file that holds it "
            "(never the key itself in the lab file)"
        )
    return PrinterLink(machine_id, driver, url, None if key_file is None else _beside(path, key_file))


def _print_file(path: Path, index: int, entry: Any) -> PrintFile:
    where = f"{path}: prints.{index}"
    if not isinstance(entry, dict):
        raise LabFileError(f"{where}: expected a table with design, step, gcode and units")
    unknown = sorted(set(entry) - {"design", "step", "gcode", "units"})
    if unknown:
        raise LabFileError(
            f"{where}: unknown field(s) {', '.join(unknown)}; expected design, step, gcode, units"
        )
    design, step, gcode, units = (entry.get(k) for k in ("design", "step", "gcode", "units"))
    if not isinstance(design, str) or not design:
        raise LabFileError(f"{where}: design: the design's id, such as face-shield")
    if step is None:
        step = 1
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise LabFileError(f"{where}: step: the step's number in the design, counting from 1")
    if not isinstance(gcode, str) or not gcode:
        raise LabFileError(f"{where}: gcode: the path of the lab's sliced G-code file for this step")
    if not isinstance(units, int) or isinstance(units, bool) or units < 1:
        raise LabFileError(f"{where}: units: how many units one print of the file makes (1 or more)")
    return PrintFile(design, step - 1, _beside(path, gcode), units)


def _beside(lab_file: Path, name: str) -> Path:
    """A path named in the lab file: relative ones are read beside the lab file."""
    candidate = Path(name).expanduser()
    return candidate if candidate.is_absolute() else lab_file.parent / candidate


def check_lab_setup(setup: LabSetup, designs: dict[str, Any] | None = None) -> list[str]:
    """What keeps the lab's printers from working, one line each (naming the machine and what to do).

    Checks that each API key file and each G-code file can be read, and (given the catalogue's
    `designs`) that each printed step exists."""
    problems = []
    for link in setup.links.values():
        if link.api_key_file is not None and not link.api_key_file.is_file():
            problems.append(
                f"machine {link.machine_id}: no API key file at {link.api_key_file}; put the {link.driver} "
                "API key in that file (or fix api_key_file)"
            )
    for entry in setup.prints:
        if not entry.gcode.is_file():
            problems.append(
                f"prints: design {entry.design} step {entry.step + 1}: no G-code file at {entry.gcode}; "
                "slice the part for your printer and save it there (or fix gcode)"
            )
        design = (designs or {}).get(entry.design)
        if designs is not None and design is None:
            problems.append(f"prints: design {entry.design}: no such design in the catalogue")
        elif design is not None and entry.step >= len(design.steps):
            problems.append(
                f"prints: design {entry.design} has {len(design.steps)} steps; "
                f"step {entry.step + 1} does not exist"
            )
    return problems


def lab_to_toml(lab: Lab) -> dict[str, Any]:
    """The lab as the plain mapping the file holds (no empty tags, no unset key)."""
    data = lab.model_dump(mode="json", exclude_none=True)
    for machine in data["machines"]:
        if not machine.get("tags"):
            machine.pop("tags", None)
    if not data.get("stock"):
        data.pop("stock", None)
    return data


def write_lab(lab: Lab, path: Path, overwrite: bool = False) -> None:
    """Write the lab file (atomically: a reader sees the old file or the new one, never half of one).

    Refuses to replace an existing file unless `overwrite` is True, so a typo cannot erase a lab.
    Raises `LabFileError` naming the file and the reason.
    """
    if path.exists() and not overwrite:
        raise LabFileError(f"{path}: already exists; choose another path or overwrite it (--force)")
    text = _HEADER.format(path=path.name) + tomli_w.dumps(lab_to_toml(lab))
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise LabFileError(f"{path}: cannot write the lab file: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise LabFileError(f"{path}: cannot write the lab file: {exc.strerror or exc}") from None


def parse_tag_value(text: str) -> TagValue:
    """A tag value as typed on a command line: true/false, an integer, a number, else a string."""
    lowered = text.strip().lower()
    if lowered in {"true", "yes"}:
        return True
    if lowered in {"false", "no"}:
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_machine_spec(spec: str) -> dict[str, Any]:
    """Parse ``ID:PROC1+PROC2[:SPEED[:HOURS[:TAG=VAL,TAG=VAL]]]`` into the fields of a machine.

    Examples: ``prusa-1:fdm``, ``prusa-1:fdm:1.0:10:bed_mm=250``, ``trotec:laser+engrave:1.5:8``.
    An empty SPEED or HOURS keeps the default. Raises `LabOptionError` naming the spec and the part.
    """
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 5:
        raise LabOptionError(
            f"--machine {spec!r}: expected ID:PROCESSES[:SPEED[:HOURS[:TAG=VAL,...]]], "
            "for example prusa-1:fdm:1.0:10:bed_mm=250"
        )
    machine: dict[str, Any] = {"id": parts[0].strip()}
    machine["processes"] = [p.strip() for p in parts[1].split("+") if p.strip()]
    if not machine["processes"]:
        raise LabOptionError(f"--machine {spec!r}: processes: name at least one, for example fdm or fdm+sla")
    for index, key in ((2, "speed"), (3, "hours_per_day")):
        if len(parts) > index and parts[index].strip():
            try:
                machine[key] = float(parts[index])
            except ValueError:
                raise LabOptionError(f"--machine {spec!r}: {key}: {parts[index]!r} is not a number") from None
    if len(parts) > 4 and parts[4].strip():
        tags: dict[str, TagValue] = {}
        for pair in parts[4].split(","):
            tag, sep, value = pair.partition("=")
            if not sep or not tag.strip() or not value.strip():
                raise LabOptionError(f"--machine {spec!r}: tags: {pair!r} should be TAG=VALUE (bed_mm=250)")
            tags[tag.strip()] = parse_tag_value(value)
        machine["tags"] = tags
    return machine


def parse_stock_spec(spec: str) -> tuple[str, float]:
    """Parse ``MATERIAL=AMOUNT`` (amount in the material's unit), e.g. ``petg=5``."""
    material, sep, amount = spec.partition("=")
    if not sep or not material.strip():
        raise LabOptionError(f"--stock {spec!r}: expected MATERIAL=AMOUNT, for example petg=5")
    try:
        return material.strip(), float(amount)
    except ValueError:
        raise LabOptionError(f"--stock {spec!r}: amount: {amount!r} is not a number") from None


def lab_from_options(
    id: str,
    name: str,
    lat: float,
    lon: float,
    place: str | None = None,
    machines: list[str] | None = None,
    stock: list[str] | None = None,
) -> Lab:
    """Build a lab from simple values, as the command line gives them.

    `machines` are specs for `parse_machine_spec`, `stock` specs for `parse_stock_spec`. Raises
    `LabOptionError` whose text names the option or field and the reason.
    """
    machine_records = [parse_machine_spec(spec) for spec in machines or []]
    if not machine_records:
        raise LabOptionError("machines: at least one machine is needed, e.g. --machine prusa-1:fdm:1.0:10")
    stock_amounts: dict[str, float] = {}
    for spec in stock or []:
        material, amount = parse_stock_spec(spec)
        if material in stock_amounts:
            raise LabOptionError(f"--stock {spec!r}: material {material} is given twice")
        stock_amounts[material] = amount
    raw: dict[str, Any] = {
        "id": id,
        "name": name,
        "location": {"lat": lat, "lon": lon, "place": place or None},
        "machines": machine_records,
        "stock": stock_amounts,
    }
    try:
        return Lab.model_validate(raw)
    except ValidationError as exc:
        raise LabOptionError(describe_validation_error(exc)) from None
