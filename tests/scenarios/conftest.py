"""Small scenario files for the scenario tests: a few labs near Lyon, light demand, a few days."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = """
name = "tiny"
title = "Tiny test city"
description = "Three labs, two delivery points, light demand."
sources = ["made up for tests"]
seed = 1
start = 2030-01-01T00:00:00Z
days = 4
round_hours = 12
solve_seconds = 2.0

[labs]
source = "list"
sites = [
  { place = "North lab", lat = 45.80, lon = 4.85 },
  { place = "South lab", lat = 45.70, lon = 4.85 },
  { place = "Far lab", lat = 46.60, lon = 4.85 },
]

[[labs.machines]]
id = "printer"
processes = ["fdm"]
count = [2, 3]
hours_per_day = 10
tags = { bed_mm = 250 }

[[labs.machines]]
id = "laser"
processes = ["laser"]

[[labs.machines]]
id = "bench"
processes = ["assembly"]

[labs.stock]
petg = 2.0
pla = 1.0
pet_sheet_0_5 = 5.0
elastic = 50.0

[labs.restock_per_day]
pla = 0.5

[[demand]]
design = "finger-splint"
kind = "rate"
units_per_day = 40
until_day = 3
due_days = 2
at = { source = "list", points = [
  { place = "North hospital", lat = 45.81, lon = 4.86 },
  { place = "South hospital", lat = 45.69, lon = 4.84 },
] }
"""


def write_scenario(folder: Path, extra: str = "", name: str = "tiny.toml") -> Path:
    """The tiny scenario, with `extra` TOML appended, written into `folder`."""
    path = folder / name
    path.write_text(TINY + extra, encoding="utf-8")
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Path of the tiny scenario file."""
    return write_scenario(tmp_path)
