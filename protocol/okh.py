"""Designs as Open Know-How style manifests (TOML), with Cosmolocal's per-unit steps.

The embedded catalogue (`protocol/catalogue/`) holds the designs every mesh knows out of the box;
`load_design` reads any other manifest of the same shape and says which file and field is wrong;
`load_okh` reads an Open Know-How manifest (OKH v1 or OKH-LOSH keys) with our per-unit steps added.
"""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
from functools import cache
from pathlib import Path

from pydantic import ValidationError

from protocol.errors import ProtocolError, describe_validation_error
from protocol.model import Design, Material

CATALOGUE_DIR = Path(__file__).with_name("catalogue")


def load_design(path: Path) -> Design:
    """Read one design manifest; raises `ProtocolError` naming the file, the field and the reason."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProtocolError(f"{path}: cannot read design manifest: {exc}") from None
    try:
        return Design.model_validate(raw)
    except ValidationError as exc:
        raise ProtocolError(f"{path}: {describe_validation_error(exc)}") from None


@cache
def catalogue() -> dict[str, Design]:
    """The embedded designs by id."""
    designs = [load_design(p) for p in sorted(CATALOGUE_DIR.glob("*.toml")) if p.name != "materials.toml"]
    return {d.id: d for d in designs}


@cache
def materials() -> dict[str, Material]:
    """The embedded materials by id, with their units."""
    raw = tomllib.loads((CATALOGUE_DIR / "materials.toml").read_text(encoding="utf-8"))
    return {m["id"]: Material.model_validate(m) for m in raw["materials"]}


def _text(value: object) -> str:
    """A manifest value as text: tables such as {spdx = "..."} or lists give their first string."""
    if isinstance(value, dict):
        for key in ("spdx", "id", "url", "name", "value"):
            if isinstance(value.get(key), str):
                return str(value[key])
        return ""
    if isinstance(value, list):
        return next((_text(v) for v in value if _text(v)), "")
    return "" if value is None else str(value)


def _slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "-".join(re.sub(r"[^a-z0-9]+", " ", plain).split())[:60] or "design"


def design_from_okh(raw: dict[str, object]) -> Design:
    """A design from an Open Know-How manifest (OKH v1 or OKH-LOSH keys) with our per-unit steps.

    Reads `title`/`name`, `version`, `license`/`licence` (text or {spdx = ...}), the source from
    `repo`, `project-link`, `documentation-home` or `source`, the description from `description` or
    `function`. The steps are Cosmolocal's extension: `steps` at the top level, or inside an
    `x-cosmolocal` table. Raises `ProtocolError` naming the field and the reason.
    """
    extension = raw.get("x-cosmolocal") if isinstance(raw.get("x-cosmolocal"), dict) else {}
    steps = raw.get("steps") or extension.get("steps")  # type: ignore[union-attr]
    if not steps:
        raise ProtocolError(
            "steps: an OKH manifest needs Cosmolocal's per-unit steps ([[steps]] or x-cosmolocal)"
        )

    def first(*keys: str) -> str:
        for key in keys:
            for variant in (key, key.replace("-", "_")):
                if _text(raw.get(variant)):
                    return _text(raw.get(variant))
        return ""

    name = first("name", "title")
    fields = {
        "id": first("id") or _slug(name),
        "name": name,
        "version": first("version") or "1.0",
        "licence": first("licence", "license", "spdx-license"),
        "source": first("source", "repo", "project-link", "documentation-home", "release"),
        "description": first("description", "function"),
        "steps": steps,
        "references": list(raw.get("references") or extension.get("references") or []),  # type: ignore[union-attr]
    }
    try:
        return Design.model_validate(fields)
    except ValidationError as exc:
        raise ProtocolError(describe_validation_error(exc)) from None


def load_okh(path: Path) -> Design:
    """Read an OKH manifest (TOML, or JSON for `.json`) with per-unit steps; raises `ProtocolError`."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{path}: cannot read OKH manifest: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(f"{path}: an OKH manifest is a table of fields")
    try:
        return design_from_okh(raw)
    except ProtocolError as exc:
        raise ProtocolError(f"{path}: {exc}") from None
