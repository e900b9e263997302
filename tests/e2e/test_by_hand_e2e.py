"""End to end, work done by hand: a lab joins with `--by-hand`; its operator reports the units made
from the lab page's API and from `cosmolocal node report`; the order is made from those reports only.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from planner.auth import TokenStore
from scenarios.demo import demo_labs
from tests.e2e.mesh import running_mesh

pytestmark = pytest.mark.e2e


def test_an_order_made_by_hand_from_reports_on_the_lab_page_and_the_command_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = demo_labs(1, seed=5)[0]
    with running_mesh([lab], tmp_path, speed=1.0, node_args={lab.id: ["--by-hand"]}) as mesh:
        tokens = TokenStore(tmp_path / "planner.db")
        operator = {"Authorization": "Bearer " + tokens.create("operator", lab.id)}
        tokens.close()
        request = {
            "design": "finger-splint",
            "quantity": 5,
            "due_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
            "delivery": {"lat": 48.86, "lon": 2.35, "place": "Paris"},
        }
        with httpx.Client(base_url=mesh.api, timeout=10.0) as client:
            order = client.post("/orders", json=request, headers=mesh.headers).json()

            def job() -> dict:  # type: ignore[type-arg]
                jobs = client.get(f"/labs/{lab.id}/jobs", headers=operator).json()["jobs"]
                return next((j for j in jobs if j["order_id"] == order["id"] and j["state"] != "refused"), {})

            deadline = time.monotonic() + 30
            while job().get("state") not in ("accepted", "running"):
                assert time.monotonic() < deadline, job()
                time.sleep(0.2)
            time.sleep(1.0)
            assert job()["units_done"] == 0  # nothing counts before a report
            page = client.post(
                f"/labs/{lab.id}/jobs/{job()['id']}/report", json={"made": 3}, headers=operator
            )
            assert page.status_code == 202, page.text
            empty = client.post(f"/labs/{lab.id}/jobs/{job()['id']}/report", json={}, headers=operator)
            assert empty.status_code == 422
            deadline = time.monotonic() + 30
            while job()["units_done"] != 3:
                assert time.monotonic() < deadline, job()
                time.sleep(0.2)
            cli = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cosmolocal",
                    "node",
                    "report",
                    str(tmp_path / f"{lab.id}.toml"),
                    job()["id"],
                    "--made",
                    "2",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert cli.returncode == 0, cli.stderr + cli.stdout
            deadline = time.monotonic() + 30
            while client.get(f"/orders/{order['id']}").json()["state"] != "done":
                assert time.monotonic() < deadline, client.get(f"/orders/{order['id']}").json()
                time.sleep(0.2)
            assert client.get(f"/orders/{order['id']}").json()["units_made"] == 5
            page_html = client.get(f"/lab/{lab.id}").text  # the form the operator reports with
            assert 'id="report-form"' in page_html and 'id="report-made"' in page_html
