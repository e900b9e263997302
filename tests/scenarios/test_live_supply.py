"""The live replay's order of events at one instant: a round's supply reaches every lab before the
orders of the same instant reach the planner, as the simulation restocks before it plans.

No planner and no lab process here: each lab's control socket is a stand-in that answers late (a
loaded lab), and the planner's HTTP API is a stand-in that notes when each order came.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import zmq
from rich.console import Console

from scenarios import live
from scenarios.spec import load_scenario
from scenarios.world import build_world
from tests.scenarios.conftest import write_scenario

#: How long a stand-in lab takes to answer a control request (wall seconds).
ANSWER_AFTER_S = 0.15


class _Running:
    """A lab process that is running."""

    def poll(self) -> None:
        return None


class _SlowLab:
    """A lab's control socket that answers each request `ANSWER_AFTER_S` late, counting answers."""

    def __init__(self, endpoint: str, context: zmq.Context[Any]) -> None:
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(endpoint)
        self.answered = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            if not self.socket.poll(20, zmq.POLLIN):
                continue
            frames = self.socket.recv_multipart()
            time.sleep(ANSWER_AFTER_S)
            self.answered += 1  # the lab has its supply (and has told the planner) before it answers
            self.socket.send_multipart([*frames[:-1], b'{"ok": true}'])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5.0)
        self.socket.close(linger=0)


def test_orders_wait_for_the_supply_of_their_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = build_world(load_scenario(write_scenario(tmp_path)))
    scenario = world.loaded.scenario
    speed = 2_000_000.0  # the tiny scenario's days in a fraction of a second: the labs' answers decide
    context: zmq.Context[Any] = zmq.Context()
    endpoints = {lab.id: f"ipc://{tmp_path}/c{n}.control" for n, lab in enumerate(world.labs)}
    labs = {lab_id: _SlowLab(endpoint, context) for lab_id, endpoint in endpoints.items()}
    supplied = [lab_id for lab_id, per_day in world.restock.items() if any(a > 0 for a in per_day.values())]
    assert supplied, "the tiny scenario restocks its labs"

    # Per order posted, in order: the supply requests the labs had answered when it came.
    posted: list[int] = []
    real_client = httpx.Client

    def planner_api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/rates":  # the scenario's rates, told once before the first order
            assert not posted
            return httpx.Response(201, json={"id": "r-1"})
        assert (request.method, request.url.path) == ("POST", "/orders")
        posted.append(sum(lab.answered for lab in labs.values()))
        return httpx.Response(201, json={"id": f"o{len(posted)}"})

    monkeypatch.setattr(
        live.httpx, "Client", lambda **kw: real_client(transport=httpx.MockTransport(planner_api), **kw)
    )
    monkeypatch.setattr(live, "REPORT_SLACK_S", 0.0)
    mesh = SimpleNamespace(api="http://planner.test", headers={}, node_argv={})
    controls = live._Controls(endpoints, {lab_id: _Running() for lab_id in endpoints})  # type: ignore[misc]
    try:
        _, placed = live._replay(
            mesh,  # type: ignore[arg-type]
            world,
            speed,
            datetime.now(UTC),
            controls,
            {},
            Console(quiet=True),
        )
    finally:
        controls.close()
        for lab in labs.values():
            lab.close()
        context.term()

    assert len(placed) == len(world.orders) == len(posted) > 0
    round_s = scenario.round_hours * 3600.0
    for (_, order), answered in zip(placed, posted, strict=True):
        # every round that began by the order's time has had its supply answered by every lab
        rounds = int((order.created_at - world.start).total_seconds() // round_s) + 1
        assert answered >= rounds * len(supplied), (order.created_at, answered, rounds)
    assert controls.failed == 0
