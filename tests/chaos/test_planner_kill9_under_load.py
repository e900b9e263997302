"""kill -9 of the planner while orders arrive at 200 a second, then a restart on its ledger.

A real planner and three labs (CurveZMQ). A requester posts orders open-loop at 200 a second, each
with its own Idempotency-Key; halfway the planner gets SIGKILL and the posts meet a closed port. The
planner is started again on the same ledger: every order that got a 201 is there, under the id the
201 gave; a retry of every key gives back the order it made, whether or not its answer was seen
(none made twice); and the labs join the new epoch and are given work again.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol.model import Lab, Location, Machine
from scenarios.demo import Mesh, start_mesh, wait_for

pytestmark = pytest.mark.e2e
RATE = 200.0
#: The longest the orders arrive; the kill comes once KILL_AFTER of them got their 201 (on a busy
#: machine the planner may accept fewer than 200 a second: it answers 503 or is slow, not wrong).
SECONDS = 8.0
KILL_AFTER = 40
LABS = [
    Lab(
        id=f"lab-{name}",
        name=f"Lab {name.title()}",
        location=Location(lat=lat, lon=lon, place=name.title()),
        machines=[
            Machine(id="printer-1", processes=["fdm"], hours_per_day=20, tags={"bed_mm": 250}),
            Machine(id="bench-1", processes=["assembly"], speed=2.0, hours_per_day=10),
        ],
        stock={"pla": 50.0},
    )
    for name, lat, lon in (("lyon", 45.76, 4.84), ("grenoble", 45.19, 5.72), ("valence", 44.93, 4.89))
]


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    running = start_mesh(LABS, tmp_path, speed=3_000, heartbeat_ms=300)
    try:
        yield running
    finally:
        running.stop()


DUE = (datetime.now(UTC) + timedelta(days=5)).isoformat()


def _order(i: int) -> dict[str, Any]:
    """Order number i, the same body each time it is sent (a retry must repeat the request)."""
    return {
        "design": "finger-splint",
        "quantity": 1 + i % 3,
        "due_at": DUE,
        "priority": "routine",
        "delivery": {"lat": 45.5, "lon": 5.0 + (i % 10) * 0.05, "place": f"Ward {i}"},
    }


async def _post_all(mesh: Mesh) -> dict[int, tuple[int, str | None]]:
    """Post RATE orders a second, open-loop; SIGKILL the planner once KILL_AFTER got a 201, and go on
    posting for one more second. Returns, per order number, (status or 0 for no answer, id given)."""
    answers: dict[int, tuple[int, str | None]] = {}
    killed_at: list[float] = []
    async with httpx.AsyncClient(base_url=mesh.api, timeout=5.0, headers=mesh.headers) as client:

        async def one(i: int) -> None:
            try:
                answer = await client.post("/orders", json=_order(i), headers={"Idempotency-Key": f"k-{i}"})
                given = answer.json().get("id") if answer.status_code in (200, 201) else None
                answers[i] = (answer.status_code, given)
            except httpx.HTTPError:
                answers[i] = (0, None)
            if not killed_at and sum(1 for code, _ in answers.values() if code == 201) >= KILL_AFTER:
                mesh.planner.send_signal(signal.SIGKILL)
                killed_at.append(time.perf_counter())

        start, tasks = time.perf_counter(), []
        for i in range(int(RATE * SECONDS)):
            await asyncio.sleep(max(0.0, start + i / RATE - time.perf_counter()))
            if killed_at and time.perf_counter() > killed_at[0] + 1.0:
                break
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return answers


def _health(api: str) -> dict[str, Any]:
    try:
        return httpx.get(f"{api}/health", timeout=2).json()
    except httpx.HTTPError:
        return {}


@pytest.mark.timeout(240)
def test_every_201_survives_a_kill_9_under_200_orders_a_second_and_the_labs_resync(mesh: Mesh) -> None:
    epoch = _health(mesh.api)["epoch"]
    answers = asyncio.run(_post_all(mesh))
    if mesh.planner.poll() is None:
        mesh.planner.send_signal(signal.SIGKILL)
    mesh.planner.wait()
    accepted = {i: given for i, (code, given) in answers.items() if code == 201}
    unanswered = [i for i, (code, _) in answers.items() if code == 0]
    assert len(accepted) >= KILL_AFTER, f"only {len(accepted)} orders accepted of {len(answers)} sent"
    assert unanswered, "no order was in flight at the kill: nothing was tested"
    assert {code for code, _ in answers.values()} <= {0, 201, 429, 503}

    mesh.restart_planner()
    wait_for(
        lambda: _health(mesh.api).get("labs_live") == len(LABS),
        60.0,
        "the labs to join the restarted planner",
        [mesh.planner, *mesh.nodes],
        mesh.workdir,
    )
    assert _health(mesh.api)["epoch"] == epoch + 1
    stored = {o["id"] for o in httpx.get(f"{mesh.api}/orders", headers=mesh.headers, timeout=10).json()}
    lost = {i: given for i, given in accepted.items() if given not in stored}
    assert not lost, f"{len(lost)} orders got a 201 and are not in the ledger: {lost}"

    # The requester retries every key: a 201 seen or not, each key stands for one order only.
    with httpx.Client(base_url=mesh.api, timeout=10, headers=mesh.headers) as client:
        for i in sorted(answers):
            again = client.post("/orders", json=_order(i), headers={"Idempotency-Key": f"k-{i}"})
            if again.status_code in (429, 503):
                time.sleep(int(again.headers["retry-after"]))
                again = client.post("/orders", json=_order(i), headers={"Idempotency-Key": f"k-{i}"})
            if i in accepted:
                assert again.status_code == 200 and again.json()["id"] == accepted[i], i
            else:
                assert again.status_code in (200, 201), (i, again.status_code, again.text)
        orders = client.get("/orders").json()
    assert len(orders) == len(answers) == len({o["id"] for o in orders}), "one order per key, none twice"

    wait_for(
        lambda: (
            _health(mesh.api).get("plan_version", 0) >= 1 and _health(mesh.api).get("assigns_sent", 0) > 0
        ),
        60.0,
        "the restarted planner to give the labs work",
        [mesh.planner, *mesh.nodes],
        mesh.workdir,
    )
