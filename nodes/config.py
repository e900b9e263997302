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

Every error says which file, which field and why, so an operator can fix the file without reading
code: ``lab.toml: machines.0.hours_per_day: Input should be less than or equal to 24``.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

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


def load_lab(path: Path) -> Lab:
    """Read and validate a lab file. Raises `LabFileError` naming the file, the field and the reason."""
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
    try:
        return Lab.model_validate(raw)
    except ValidationError as exc:
        raise LabFileError(f"{path}: {describe_validation_error(exc)}") from None


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
