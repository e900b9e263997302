"""The planner keeps the contract its own /openapi.json states: Schemathesis against a real planner.

A real `cosmolocal planner serve` (secure mesh, tokens required) with two labs joined, read through
its own OpenAPI document by Schemathesis with every check, every phase (the stateful one included),
a fixed seed and a bounded number of examples, with a requester token. The event streams are left
out (endless by design; tests/planner/test_events.py covers them). The run must end with 0
failures; its report is printed when it does not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.model import Lab, Location, Machine
from scenarios.demo import Mesh, start_mesh

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("COSMOLOCAL_CONTRACT_SEED", "20261203"))
EXAMPLES = int(os.environ.get("COSMOLOCAL_CONTRACT_EXAMPLES", "25"))
LABS = [
    Lab(
        id=f"lab-{name}",
        name=f"Lab {name.title()}",
        location=Location(lat=lat, lon=lon, place=name.title()),
        machines=[
            Machine(id="printer-1", processes=["fdm"], hours_per_day=20, tags={"bed_mm": 250}),
            Machine(id="laser-1", processes=["laser"], hours_per_day=8),
            Machine(id="bench-1", processes=["assembly"], speed=2.0, hours_per_day=10),
        ],
        stock={"pla": 5.0, "petg": 5.0, "pet_sheet_0_5": 20.0, "elastic": 50.0},
    )
    for name, lat, lon in (("lyon", 45.76, 4.84), ("grenoble", 45.19, 5.72))
]


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    running = start_mesh(LABS, tmp_path, speed=100)
    try:
        yield running
    finally:
        running.stop()


def schemathesis_cli() -> list[str]:
    """The `st` command of this environment."""
    return [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()"]


@pytest.mark.timeout(300)
def test_the_planner_keeps_its_openapi_contract(mesh: Mesh, tmp_path: Path) -> None:
    report = tmp_path / "schemathesis.txt"
    argv = [
        *schemathesis_cli(),
        "run",
        f"{mesh.api}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--header",
        f"Authorization: Bearer {mesh.token}",
        "--exclude-path-regex",
        "/events$",
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    with report.open("wb") as out:
        finished = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=280, check=False)
    text = report.read_text(errors="replace")
    assert finished.returncode == 0, f"Schemathesis found failures (seed {SEED}):\n{text[-12000:]}"
    summary = text.split("SUMMARY")[-1]
    assert "✅ Stateful" in summary and "✅ Fuzzing" in summary and "✅ Coverage" in summary, summary
