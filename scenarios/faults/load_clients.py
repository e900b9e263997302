"""HTTP clients of the load benchmark, each run in its own process: requesters posting orders at
rising rates (with a /health prober), and event-stream subscribers.

Our own asyncio client on httpx rather than Locust: the orders are sent open-loop (each at its
scheduled instant, whether or not earlier answers came back), so latency under overload is
measured and not hidden by a client that slows down with the server (coordinated omission); the
percentiles are computed from every request, not from Locust's bucketed histogram; and it needs no
gevent monkey-patching inside a process that also measures SSE lag. Every loop is bounded in count
and time, and only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx


def percentile(values: list[float], share: float) -> float:
    """The `share` percentile (0..1) of `values` by nearest rank; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def _order(rng: random.Random) -> dict[str, Any]:
    due = datetime.now(UTC) + timedelta(days=rng.uniform(3, 10))
    return {
        "design": "face-shield",
        "quantity": rng.randint(1, 20),
        "priority": rng.choice(["routine", "routine", "urgent"]),
        "due_at": due.isoformat(),
        "delivery": {"lat": rng.uniform(43.5, 50.5), "lon": rng.uniform(-1.0, 7.5), "place": "load"},
    }


async def _post_orders(
    client: httpx.AsyncClient, token: str, steps: list[tuple[float, float]], seed: int
) -> list[dict[str, Any]]:
    """Post orders open-loop at each (rate per s, seconds) step; one record per step."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    records = []
    pending: set[asyncio.Task[None]] = set()
    for rate, seconds in steps:
        step: dict[str, Any] = {"rate": rate, "latencies": [], "codes": {}, "ids": []}
        records.append(step)

        async def one(step: dict[str, Any] = step, n: int = 0) -> None:
            began = time.perf_counter()
            try:
                answer = await client.post(
                    "/orders", json=_order(rng), headers=headers | {"Idempotency-Key": f"load-{seed}-{n}"}
                )
                code = str(answer.status_code)
                if answer.status_code == 201:
                    step["ids"].append(answer.json()["id"])
                    step["latencies"].append((time.perf_counter() - began) * 1000)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            step["codes"][code] = step["codes"].get(code, 0) + 1

        start = time.perf_counter()
        total = round(rate * seconds)
        for n in range(total):
            if time.perf_counter() - start > 1.5 * seconds:  # this client fell behind: stop the step
                break
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(n=len(records) * 1_000_000 + n))
            pending.add(task)
            task.add_done_callback(pending.discard)
        step["elapsed_s"] = time.perf_counter() - start
    if pending:
        await asyncio.wait(pending, timeout=15)
    return records


async def _probe_health(client: httpx.AsyncClient, stop: asyncio.Event, every_s: float) -> list[float]:
    latencies = []
    while not stop.is_set():
        began = time.perf_counter()
        try:
            await client.get("/health")
            latencies.append((time.perf_counter() - began) * 1000)
        except httpx.HTTPError:
            latencies.append(10_000.0)  # no answer within the timeout counts as 10 s
        await asyncio.sleep(every_s)
    return latencies


async def _orders_and_health(
    api: str, token: str, steps: list[tuple[float, float]], seed: int
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with (
        httpx.AsyncClient(base_url=api, timeout=10.0, limits=limits) as client,
        httpx.AsyncClient(base_url=api, timeout=10.0) as prober,
    ):
        stop = asyncio.Event()
        health = asyncio.create_task(_probe_health(prober, stop, 0.1))
        steps_done = await _post_orders(client, token, steps, seed)
        stop.set()
        health_ms = await health
    return {"steps": steps_done, "health_ms": health_ms}


def run_orders(api: str, token: str, steps: list[tuple[float, float]], seed: int, results: Any) -> None:
    """Process entry: post the orders, probe /health, put the records on `results`."""
    results.put(asyncio.run(_orders_and_health(api, token, steps, seed)))


async def _subscribe(
    client: httpx.AsyncClient, token: str, stop: asyncio.Event, lags: list[float], events: list[int]
) -> None:
    """Follow /events; for each order.created, the lag from the order's creation to its arrival."""
    try:
        async with client.stream("GET", "/events", params={"token": token}) as stream:
            kind = ""
            async for line in stream.aiter_lines():
                if stop.is_set():
                    break
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind == "order.created":
                    created = datetime.fromisoformat(json.loads(line[5:])["created_at"])
                    lags.append((datetime.now(UTC) - created).total_seconds() * 1000)
                    events[0] += 1
                elif line.startswith("data:"):
                    events[0] += 1
    except httpx.HTTPError:
        pass


async def _subscribers(api: str, token: str, count: int, seconds: float) -> dict[str, Any]:
    lags: list[float] = []
    events = [0]
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=count + 8)
    timeout = httpx.Timeout(10.0, read=30.0)
    async with httpx.AsyncClient(base_url=api, timeout=timeout, limits=limits) as client:
        tasks = [asyncio.create_task(_subscribe(client, token, stop, lags, events)) for _ in range(count)]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait(tasks, timeout=2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"lags_ms": lags, "events": events[0], "subscribers": count}


def run_subscribers(api: str, token: str, count: int, seconds: float, results: Any) -> None:
    """Process entry: `count` subscribers to /events for `seconds`; lags put on `results`."""
    results.put(asyncio.run(_subscribers(api, token, count, seconds)))
