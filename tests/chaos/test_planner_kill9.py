"""kill -9 of the planner in the middle of the work, restart from the same ledger: nothing is lost.

Real processes: a planner and two labs. Orders are placed with Idempotency-Keys, the planner is
killed with SIGKILL while jobs run, and started again on the same database and ports. The hospital
retries its POSTs (it never saw some answers); the labs resync to the new epoch and report what
they made meanwhile. Then every order must finish with exactly its quantity made, none doubled.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from protocol.model import Lab, Location, Machine
from scenarios.demo import Mesh, start_mesh, wait_for

LABS = [
    Lab(
        id=f"lab-{name}",
        name=f"Lab {name.title()}",
        location=Location(lat=lat, lon=lon, place=name.title()),
        machines=[
            Machine(id="printer-1", processes=["fdm"], hours_per_day=20, tags={"bed_mm": 250}),
            Machine(id="bench-1", processes=["assembly"], speed=2.0, hours_per_day=10),
        ],
        stock={"pla": 5.0},
    )
    for name, lat, lon in (("lyon", 45.76, 4.84), ("grenoble", 45.19, 5.72))
]


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    running = start_mesh(LABS, tmp_path, speed=3_000, heartbeat_ms=300)
    try:
        yield running
    finally:
        running.stop()
        for log in sorted(tmp_path.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}")


def _orders(first: int = 20, step: int = 5) -> list[tuple[str, dict]]:
    """Three orders of finger splints, `first` units and `step` more each."""
    due = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    return [
        (
            f"hospital-{i}",
            {
                "design": "finger-splint",
                "quantity": first + step * i,
                "due_at": due,
                "priority": "urgent",
                "delivery": {"lat": 45.5, "lon": 5.2 + 0.1 * i, "place": f"Hospital {i}"},
            },
        )
        for i in range(3)
    ]


def test_planner_killed_mid_work_comes_back_and_nothing_is_lost_or_made_twice(mesh: Mesh) -> None:
    api = mesh.api
    orders = _orders()
    placed = {}
    for key, body in orders:
        answer = httpx.post(
            f"{api}/orders", json=body, headers={"Idempotency-Key": key} | mesh.headers, timeout=5
        )
        assert answer.status_code == 201
        placed[key] = answer.json()["id"]
    epoch = httpx.get(f"{api}/health", timeout=5).json()["epoch"]

    def some_made_none_finished() -> bool:
        views = [httpx.get(f"{api}/orders/{i}", timeout=2).json() for i in placed.values()]
        return any(v["units_made"] > 0 for v in views) and not all(v["state"] == "done" for v in views)

    wait_for(some_made_none_finished, 30.0, "work to be under way", [mesh.planner, *mesh.nodes], mesh.workdir)
    mesh.planner.send_signal(signal.SIGKILL)
    mesh.planner.wait()
    time.sleep(0.5)  # the labs keep working and notice the silence
    mesh.restart_planner()
    wait_for(
        lambda: _health(api).get("labs_live") == len(LABS),
        30.0,
        "the labs to rejoin the restarted planner",
        [mesh.planner, *mesh.nodes],
        mesh.workdir,
    )
    assert _health(api)["epoch"] == epoch + 1

    # The hospital retries every POST: each gives back the order it already placed.
    for key, body in orders:
        again = httpx.post(
            f"{api}/orders", json=body, headers={"Idempotency-Key": key} | mesh.headers, timeout=5
        )
        assert again.status_code == 200 and again.json()["id"] == placed[key]
    assert len(httpx.get(f"{api}/orders", timeout=5, headers=mesh.headers).json()) == len(orders)

    def all_done() -> bool:
        return all(
            httpx.get(f"{api}/orders/{i}", timeout=2).json()["state"] == "done" for i in placed.values()
        )

    wait_for(all_done, 60.0, "every order to be done", [mesh.planner, *mesh.nodes], mesh.workdir)
    for (_, body), order_id in zip(orders, placed.values(), strict=True):
        view = httpx.get(f"{api}/orders/{order_id}", timeout=5).json()
        made = sum(a["units_done"] for a in view["allocations"])
        assert view["units_made"] == made == body["quantity"], "every unit made once, none twice"
    health = _health(api)
    assert health["plans_rejected"] == 0


def _health(api: str) -> dict:
    try:
        return httpx.get(f"{api}/health", timeout=2).json()
    except httpx.HTTPError:
        return {}


def test_a_lab_killed_mid_job_is_lost_and_its_unfinished_units_are_made_elsewhere(mesh: Mesh) -> None:
    api = mesh.api
    placed = []
    # Fewer units than the planner's kill needs: a job of 10 takes some 5 s here, long enough to be
    # caught running, and the survivor makes the rest in seconds, not half a minute.
    for key, body in _orders(first=10, step=2):
        answer = httpx.post(
            f"{api}/orders", json=body, headers={"Idempotency-Key": key} | mesh.headers, timeout=5
        )
        placed.append((answer.json()["id"], body["quantity"]))

    def running_at(lab_id: str) -> bool:
        views = [httpx.get(f"{api}/orders/{i}", timeout=2).json() for i, _ in placed]
        return any(
            a["lab_id"] == lab_id
            and a["state"] in ("accepted", "running")
            and a["units_done"] < a["quantity"]
            for v in views
            for a in v["allocations"]
        )

    wait_for(
        lambda: any(running_at(lab.id) for lab in LABS), 30.0, "a job to run", [mesh.planner], mesh.workdir
    )
    victim = next(lab.id for lab in LABS if running_at(lab.id))
    index = [lab.id for lab in LABS].index(victim)
    mesh.nodes[index].send_signal(signal.SIGKILL)
    mesh.nodes[index].wait()
    survivors = [p for i, p in enumerate(mesh.nodes) if i != index]

    def all_done() -> bool:
        return all(httpx.get(f"{api}/orders/{i}", timeout=2).json()["state"] == "done" for i, _ in placed)

    wait_for(
        all_done,
        60.0,
        "every order to be done without the killed lab",
        [mesh.planner, *survivors],
        mesh.workdir,
    )
    assert _health(api)["labs_live"] == len(LABS) - 1
    for order_id, quantity in placed:
        view = httpx.get(f"{api}/orders/{order_id}", timeout=5).json()
        assert sum(a["units_done"] for a in view["allocations"]) == quantity == view["units_made"]
        lost = [a for a in view["allocations"] if a["lab_id"] == victim and a["state"] == "failed"]
        assert all("lab lost" in (a["reason"] or "") for a in lost)
