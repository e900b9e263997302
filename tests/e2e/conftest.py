"""Fixtures of the end-to-end tests: the processes a test starts are stopped at its end, pass or fail
(tests/e2e/mesh.py starts them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.e2e.mesh import LabProcesses, Meshes


@pytest.fixture
def meshes() -> Iterator[Meshes]:
    """Start meshes of real processes in a test (`meshes.start(...)`); all stopped at its end."""
    with ExitStack() as stack:
        yield Meshes(stack)


@pytest.fixture
def lab_processes(tmp_path: Path) -> Iterator[LabProcesses]:
    """Real lab processes for a planner the test runs in its own process; all stopped at its end."""
    labs = LabProcesses(tmp_path)
    try:
        yield labs
    finally:
        labs.stop()
