"""Order -> ASSIGN latency on loopback: HTTP POST to a real planner process until the lab's DEALER
receives the ASSIGN (validation, durable write, debounce, CP-SAT solve, validator, commit, send).

Run: make bench   (or .venv/bin/pytest benchmarks -k latency --benchmark-enable)
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import zmq

from protocol import transport
from protocol.codec import decode, encode
from protocol.messages import Accept, Assign, Done, Envelope, Hello
from protocol.model import Lab, Location, Machine
from scenarios.demo import free_port, free_port_pair

LAB = Lab(
    id="bench-lab",
    name="Bench lab",
    location=Location(lat=45.75, lon=4.85, place="Lyon"),
    machines=[
        Machine(id=f"p{i}", processes=["fdm", "assembly"], hours_per_day=24, tags={"bed_mm": 250})
        for i in range(4)
    ],
    stock={"pla": 1000.0},
)


@pytest.fixture(scope="module")
def planner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    workdir: Path = tmp_path_factory.mktemp("latency")
    http_port, mesh_port = free_port(), free_port_pair()
    api, mesh = f"http://127.0.0.1:{http_port}", f"tcp://127.0.0.1:{mesh_port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cosmolocal",
            "planner",
            "serve",
            "--http",
            f"127.0.0.1:{http_port}",
            "--mesh",
            mesh,
            "--db",
            str(workdir / "p.db"),
            "--log-level",
            "warning",
            "--insecure",  # the benchmark speaks to the mesh as a raw DEALER
            "--open-http",  # and posts orders without a token
        ],
        stderr=(workdir / "planner.log").open("wb"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(api + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield api, mesh
    process.terminate()
    process.wait(10)


def test_order_to_assign_latency(benchmark, planner: tuple[str, str]) -> None:
    api, mesh = planner
    ctx = zmq.Context()
    lab = transport.connect_dealer(ctx, mesh, LAB.id)
    lab.send(encode(Envelope(sender=LAB.id, seq=1, body=Hello(lab=LAB))))
    assert lab.poll(10_000) and decode(lab.recv()).kind == "WELCOME"
    client = httpx.Client(base_url=api, timeout=10)
    seq = [1]

    def order_to_assign() -> None:
        due = (datetime.now(UTC) + timedelta(days=2)).isoformat()
        answer = client.post(
            "/orders",
            json={
                "design": "finger-splint",
                "quantity": 1,
                "due_at": due,
                "delivery": {"lat": 45.2, "lon": 5.7},
                "priority": "emergency",
            },
        )
        assert answer.status_code == 201
        while True:
            assert lab.poll(10_000), "no ASSIGN within 10 s"
            message = decode(lab.recv())
            if isinstance(message.body, Assign):
                break
        aid = message.body.assignment_id
        for body in (Accept(assignment_id=aid), Done(assignment_id=aid, units_done=1)):
            seq[0] += 1
            lab.send(encode(Envelope(sender=LAB.id, seq=seq[0], body=body)))

    benchmark.pedantic(order_to_assign, rounds=15, iterations=1, warmup_rounds=1)
    client.close()
    lab.close(linger=0)
    ctx.term()
