"""Fixtures for planner tests: a real app on a real SQLite file and real ZeroMQ endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from planner.app import PlannerSettings, create_app
from scenarios.demo import free_port_pair


@pytest.fixture
def settings(tmp_path: Path) -> PlannerSettings:
    """Settings with a fresh ledger file and free loopback ports."""
    return PlannerSettings(
        db_path=tmp_path / "planner.db",
        mesh_endpoint=f"tcp://127.0.0.1:{free_port_pair()}",
        heartbeat_ms=200,
        solve_time_limit_s=1.0,
    )


@pytest.fixture
def client(settings: PlannerSettings) -> Iterator[TestClient]:
    """A client of a running planner (lifespan started: mesh bound, replanning loop running)."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client
