"""End to end on a real printer: a lab prints its face-shield headbands on OctoPrint's Virtual Printer.

Real processes throughout: a planner, a lab agent (`node join` with a lab file that names its
OctoPrint server, API key file and G-code), OctoPrint from its own venv. The order is followed to
done on its order page's API, and OctoPrint's own job history shows each plate printed once, in
success.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from scenarios.demo import Mesh, demo_labs
from scenarios.printer_servers import DEMO_PRINTS, printer_lab
from tests.e2e.mesh import running_mesh
from tests.nodes.printer_servers import OctoPrint

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def printing_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, OctoPrint]]:
    workdir = tmp_path_factory.mktemp("printers-mesh")
    server = OctoPrint(workdir / "octoprint").start()
    try:
        lab, file = printer_lab(demo_labs(1, seed=3)[0], server, workdir)
        with running_mesh([lab], workdir, speed=1.0, lab_files={lab.id: file}) as mesh:
            yield mesh, server
    finally:
        server.stop()


def test_a_lab_prints_its_headbands_on_octoprint_and_the_order_gets_done(
    printing_mesh: tuple[Mesh, OctoPrint],
) -> None:
    mesh, octoprint = printing_mesh
    request = {
        "design": "face-shield",
        "quantity": 10,
        "priority": "urgent",
        "due_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        "delivery": {"lat": 48.86, "lon": 2.35, "place": "Paris"},
    }
    with httpx.Client(base_url=mesh.api, headers=mesh.headers, timeout=10.0) as client:
        response = client.post("/orders", json=request)
        assert response.status_code == 201, response.text
        order_id = response.json()["id"]
        deadline = time.monotonic() + 90.0
        seen: list[int] = []
        while True:
            view = client.get(f"/orders/{order_id}").json()
            seen.append(view["units_made"])
            if view["state"] == "done":
                break
            assert time.monotonic() < deadline, f"order not done in 90 s: {view}"
            time.sleep(0.2)
        page = client.get(f"/order/{order_id}")
        assert page.status_code == 200 and order_id in page.text
    assert view["units_made"] == 10 and seen == sorted(seen)
    per_plate = DEMO_PRINTS["face-shield"][1]
    # Units arrive by whole plates only: each job (the planner may send the order in parts, the
    # work to start now first) prints full plates and then its remainder.
    jobs = [a["quantity"] for a in view["allocations"] if a["state"] == "done"]
    assert sum(jobs) == 10
    allowed, made = {0}, 0
    for quantity in jobs:
        allowed |= {made + min(k * per_plate, quantity) for k in range(1, -(-quantity // per_plate) + 1)}
        made += quantity
    assert set(seen) <= allowed, (seen, jobs)
    plates = [f for f in octoprint.files() if f["name"].startswith("cl-")]
    assert len(plates) == sum(-(-quantity // per_plate) for quantity in jobs)
    for plate in plates:  # OctoPrint's own job history: each plate printed once, in success
        assert (plate.get("prints") or {}).get("success") == 1, plate
        assert (plate.get("prints") or {}).get("failure") == 0, plate
