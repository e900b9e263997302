"""End to end, real processes: a planner and 3 labs over ZeroMQ, orders over HTTP, events over SSE.

Orders must all be made; what the labs actually made must pass the independent validator against
the labs' starting capacity and stock; stock must be consumed exactly; the SSE stream must show it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol.model import Order
from protocol.okh import catalogue
from scenarios.demo import Mesh, demo_labs
from scenarios.faults.invariants import check_made
from tests.e2e.mesh import running_mesh

pytestmark = pytest.mark.e2e
LABS = demo_labs(3, seed=11)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running_mesh(LABS, tmp_path_factory.mktemp("mesh"), speed=20_000) as running:
        yield running


class EventListener(threading.Thread):
    """Reads the planner's SSE stream into a list, as a browser's EventSource would."""

    def __init__(self, api: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.headers = headers
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._listen()
        except httpx.TransportError:
            if not self.stop.is_set():
                raise
            # Told to stop, it still waits on the stream until a line comes: the planner stopping at
            # the end of the module then cuts the stream mid-chunk, which is not a fault of the test.

    def _listen(self) -> None:
        timeout = httpx.Timeout(5.0, read=30.0)
        with httpx.stream("GET", self.api + "/events", headers=self.headers, timeout=timeout) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            self.connected.set()
            event: dict[str, Any] = {}
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("event:"):
                    event["event"] = line.split(":", 1)[1].strip()
                elif line.startswith("id:"):
                    event["id"] = int(line.split(":", 1)[1])
                elif line.startswith("data:"):
                    event["data"] = json.loads(line.split(":", 1)[1])
                elif not line and event:
                    self.events.append(event)
                    event = {}


def test_orders_are_planned_executed_and_streamed(mesh: Mesh) -> None:
    listener = EventListener(mesh.api, mesh.headers)
    listener.start()
    assert listener.connected.wait(10)
    started = datetime.now(UTC)
    requests = [
        {
            "design": "face-shield",
            "quantity": 18,
            "priority": "routine",
            "hours": 72,
            "at": (43.61, 3.88, "Montpellier"),
        },
        {
            "design": "finger-splint",
            "quantity": 10,
            "priority": "urgent",
            "hours": 48,
            "at": (50.63, 3.06, "Lille"),
        },
        {
            "design": "charlotte-valve",
            "quantity": 4,
            "priority": "emergency",
            "hours": 24,
            "at": (45.19, 5.72, "Grenoble"),
        },
    ]
    placed = []
    with httpx.Client(base_url=mesh.api, timeout=10, headers=mesh.headers) as client:
        for r in requests:
            lat, lon, place = r["at"]
            body = {
                "design": r["design"],
                "quantity": r["quantity"],
                "priority": r["priority"],
                "due_at": (started + timedelta(hours=r["hours"])).isoformat(),
                "delivery": {"lat": lat, "lon": lon, "place": place},
            }
            answer = client.post("/orders", json=body)
            assert answer.status_code == 201, answer.text
            placed.append(answer.json())

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            views = [client.get(f"/orders/{o['id']}").json() for o in placed]
            if all(v["state"] == "done" for v in views):
                break
            time.sleep(0.2)
        assert [v["state"] for v in views] == ["done"] * len(placed), views
        for view in views:
            assert view["units_made"] == view["quantity"]
            made = sum(a["units_done"] for a in view["allocations"])
            assert made == view["quantity"], "no unit made twice, none missing"
            for allocation in view["allocations"]:
                assert allocation["cost"]["km"] >= 0 and "transport" in allocation["cost"]  # explainable

        labs_after = {lab["id"]: lab for lab in client.get("/labs").json()}
        plan = client.get("/plan").json()
        health = client.get("/health").json()
        # Each order explains its labs, and each lab that delivered on time carries a visible trail.
        for view in views:
            verdicts = client.get(f"/orders/{view['id']}/explanation").json()
            chosen = {v["lab_id"] for v in verdicts if v["chosen"]}
            assert chosen == {a["lab_id"] for a in view["allocations"] if a["state"] == "done"}
            assert all(v["why"] for v in verdicts)
        delivered = {
            (v["design"], a["lab_id"]) for v in views for a in v["allocations"] if a["state"] == "done"
        }
        for design, lab_id in delivered:
            trails = client.get(f"/labs/{lab_id}/trails").json()
            assert design in {t["design"] for t in trails["trails"]}
            assert any(h["cause"].startswith("delivered on time") for h in trails["history"])

    # What was actually made passes the independent validator against the labs' starting state.
    orders = [Order.model_validate({k: v[k] for k in Order.model_fields}) for v in views]
    made_at: dict[tuple[str, str], int] = defaultdict(int)
    for view in views:
        for a in view["allocations"]:
            if a["units_done"]:
                made_at[(a["order_id"], a["lab_id"])] += a["units_done"]
    assert sum(made_at.values()) == sum(o.quantity for o in orders)
    assert check_made(LABS, orders, made_at, started) == []

    # Stock is consumed: exactly the materials of the units each lab made.
    for lab in LABS:
        used: dict[str, float] = defaultdict(float)
        for (order_id, lab_id), quantity in made_at.items():
            if lab_id == lab.id:
                design = catalogue()[next(o.design for o in orders if o.id == order_id)]
                for material, amount in design.materials_per_unit().items():
                    used[material] += amount * quantity
        for material, start in lab.stock.items():
            assert labs_after[lab.id]["free_stock"].get(material, 0.0) == pytest.approx(
                start - used[material], abs=1e-6
            )
    assert all(lab["live"] for lab in labs_after.values())
    assert plan["version"] >= 1 and plan["objective"] >= plan["bound"] - 1e-6
    assert (
        plan["totals"]["plans"] == plan["version"]
        and plan["totals"]["objective"] >= plan["totals"]["bound"] - 1e-6
    )
    assert health["plans_rejected"] == 0 and health["frames_rejected"] == 0

    # The stream told the story as it happened.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sum(
        e["event"] == "order.state" and e["data"]["state"] == "done" for e in listener.events
    ) < len(placed):
        time.sleep(0.1)
    listener.stop.set()
    kinds = [e["event"] for e in listener.events]
    for kind in (
        "order.created",
        "plan.committed",
        "job.assigned",
        "job.accepted",
        "job.running",
        "job.done",
        "order.state",
    ):
        assert kind in kinds, (kind, sorted(set(kinds)))
    ids = [e["id"] for e in listener.events]
    assert ids == sorted(ids) and len(ids) == len(set(ids)), "event ids increase, no duplicates"
    done_orders = {
        e["data"]["order_id"]
        for e in listener.events
        if e["event"] == "order.state" and e["data"]["state"] == "done"
    }
    assert done_orders == {o["id"] for o in placed}


def test_event_stream_resumes_after_last_event_id(mesh: Mesh) -> None:
    """A browser that reconnects with Last-Event-ID gets what it missed, in order, then live events."""
    received: list[int] = []
    with httpx.stream(
        "GET",
        mesh.api + "/events",
        headers={"Last-Event-ID": "2"} | mesh.headers,
        timeout=httpx.Timeout(5.0, read=10.0),
    ) as response:
        for line in response.iter_lines():
            if line.startswith("id:"):
                received.append(int(line.split(":", 1)[1]))
            if len(received) == 5:
                break
    assert received == [3, 4, 5, 6, 7]


def test_bad_order_keeps_the_mesh_serving(mesh: Mesh) -> None:
    with httpx.Client(base_url=mesh.api, timeout=10, headers=mesh.headers) as client:
        before = len(client.get("/orders").json())
        answer = client.post(
            "/orders",
            json={
                "design": "face-shield",
                "quantity": 0,
                "due_at": "2000-01-01T00:00:00Z",
                "delivery": {"lat": 0, "lon": 0},
            },
        )
        assert answer.status_code == 422
        assert len(client.get("/orders").json()) == before
        assert client.get("/health").json()["labs_live"] == len(LABS)


def test_logs_say_what_happened(mesh: Mesh) -> None:
    planner_log = (mesh.workdir / "planner.log").read_text()
    assert "joined" in planner_log and "plan v1" in planner_log
    assert all((mesh.workdir / f"{lab.id}.log").exists() for lab in LABS)
    assert isinstance(mesh.workdir, Path)


def test_labs_export_reads_a_running_planner(mesh: Mesh, tmp_path: Path) -> None:
    # The command line, as an operator runs it, against the planner process: OKW records of the
    # labs it knows, with their live state, free stock and backlog in the extension block.
    out = tmp_path / "labs.okw.json"
    result = subprocess.run(
        [sys.executable, "-m", "cosmolocal", "labs", "export", "--planner", mesh.api, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    records = {r["id"]: r for r in json.loads(out.read_text(encoding="utf-8"))}
    assert set(records) == {lab.id for lab in LABS}
    for lab in LABS:
        extension = records[lab.id]["x-cosmolocal"]
        assert records[lab.id]["name"] == lab.name
        assert extension["live"] is True and records[lab.id]["facility-status"] == "Active"
        assert set(extension["stock"]) <= set(lab.stock) and isinstance(extension["backlog_minutes"], dict)
    unreachable = subprocess.run(
        [sys.executable, "-m", "cosmolocal", "labs", "export", "--planner", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unreachable.returncode == 2 and "cannot read the labs from the planner" in unreachable.stderr
