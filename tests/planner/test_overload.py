"""Back-pressure: past its capacity the planner refuses with 503 or 429 and Retry-After, /health never."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from planner.app import PlannerSettings, create_app
from planner.overload import Overload, OverloadMiddleware


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _client(gauge: Overload) -> httpx.AsyncClient:
    app = OverloadMiddleware(_echo, overload=lambda: gauge)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://planner")


@pytest.mark.anyio
async def test_a_lasting_lag_is_503_with_retry_after_but_one_long_step_is_not() -> None:
    gauge = Overload(max_lag_s=0.25, sustain=3)
    async with _client(gauge) as client:
        gauge._recent.extend([0.0, 0.9, 0.0])  # one long step: not an overload
        assert (await client.get("/orders/o-1")).status_code == 200
        gauge._recent.extend([0.6, 1.2, 1.7])
        gauge.lag_s = 1.7
        refused = await client.post("/orders", json={})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
        assert refused.json()["retry_after_s"] == 2 and "past its capacity" in refused.json()["detail"]
        assert (await client.get("/health")).status_code == 200, "/health is always answered"
    assert gauge.stats.refused_busy == 1


@pytest.mark.anyio
async def test_orders_faster_than_the_bucket_are_429_and_the_bucket_refills() -> None:
    clock = FakeClock()
    gauge = Overload(orders_per_s=10.0, orders_burst=3, monotonic=clock)
    async with _client(gauge) as client:
        codes = [(await client.post("/orders", json={})).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        assert (await client.get("/orders")).status_code == 200, "only placing orders is rate-limited"
        clock.now += 0.1  # one order's worth of tokens
        assert (await client.post("/orders", json={})).status_code == 200
        refused = await client.post("/orders", json={})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert gauge.stats.refused_rate == 3


@pytest.mark.anyio
async def test_the_lag_gauge_sees_a_blocked_loop() -> None:
    gauge = Overload(tick_s=0.01)
    stop = asyncio.Event()
    watcher = asyncio.create_task(gauge.watch(stop))
    await asyncio.sleep(0.02)
    time.sleep(0.3)  # the loop is blocked, as a long synchronous step would block it
    await asyncio.sleep(0.03)
    stop.set()
    await watcher
    assert gauge.stats.max_lag_ms >= 250


def test_the_refusals_are_in_the_openapi_document(settings: PlannerSettings) -> None:
    with TestClient(create_app(settings)) as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            if path == "/health":
                assert "503" not in operation["responses"]
                continue
            busy = operation["responses"]["503"]
            assert busy["headers"]["Retry-After"]["required"], (method, path)
    assert "Retry-After" in paths["/orders"]["post"]["responses"]["429"]["headers"]
