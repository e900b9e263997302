"""Designs as Open Know-How style manifests (TOML), with Cosmolocal's per-unit steps.

The embedded catalogue (`protocol/catalogue/`) holds the designs every mesh knows out of the box;
`load_design` reads any other manifest of the same shape and says which file and field is wrong.
"""

from __future__ import annotations

import tomllib
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
