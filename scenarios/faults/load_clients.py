"""HTTP clients of the load benchmark, each run in its own process: requesters posting orders at
rising rates (with a /health prober), and event-stream subscribers.

Our own asyncio client rather than Locust (the orders and the event streams over hand-written
HTTP/1.1 connections, /health on httpx): the orders are sent open-loop (each at its
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


#: Connections the requesters post orders over (each one request at a time, kept alive).
CONNECTIONS = 64


class _Connection:
    """One kept-alive HTTP/1.1 connection to the planner, written by hand: a request is a few
    bytes and an answer is read by its Content-Length. httpx's pool, given thousands of requests
    waiting for a connection, spends time quadratic in their number choosing one (it was seen
    stuck there for minutes after a run); here requests wait in the requesters' own queue."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST and read the answer: (status, body). Raises OSError or ValueError on a broken one."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Content-Type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        try:
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionResetError("the planner closed the connection")
            status = int(status_line.split()[1])
            length, close = None, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
                elif name.strip().lower() == "connection" and value.strip().lower() == "close":
                    close = True
            if length is None:
                raise ValueError(f"an answer {status} without Content-Length")
            answer = await reader.readexactly(length)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, answer

    def close(self) -> None:
        """Drop the connection; the next request opens a new one."""
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def _post_orders(
    api: str, token: str, steps: list[tuple[float, float]], seed: int
) -> list[dict[str, Any]]:
    """Post orders open-loop at each (rate per s, seconds) step; one record per step.

    Each order has its instant in the schedule; `CONNECTIONS` workers send them in turn, and an
    order's latency runs from its scheduled instant to its answer, so the time it waited for a
    free connection counts (no coordinated omission: a slow planner cannot slow the schedule).
    """
    host, _, port = api.removeprefix("http://").partition(":")
    rng = random.Random(seed)
    auth = {"Authorization": f"Bearer {token}"}
    records: list[dict[str, Any]] = []
    queue: asyncio.Queue[tuple[dict[str, Any], int, float] | None] = asyncio.Queue()

    async def worker() -> None:
        connection = _Connection(host, int(port))
        while (item := await queue.get()) is not None:
            step, n, due = item
            body = json.dumps(_order(rng)).encode()
            try:
                status, answer = await asyncio.wait_for(
                    connection.post("/orders", body, auth | {"Idempotency-Key": f"load-{seed}-{n}"}),
                    timeout=10.0,
                )
                code = str(status)
                if status == 201:
                    step["ids"].append(json.loads(answer)["id"])
                    step["latencies"].append((time.perf_counter() - due) * 1000)
                    step["last_201"] = time.perf_counter()
            except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
                connection.close()
                code = type(exc).__name__
            step["codes"][code] = step["codes"].get(code, 0) + 1
        connection.close()

    workers = [asyncio.create_task(worker()) for _ in range(CONNECTIONS)]
    for rate, seconds in steps:
        step: dict[str, Any] = {"rate": rate, "latencies": [], "codes": {}, "ids": []}
        records.append(step)
        start = step["start"] = time.perf_counter()
        total = round(rate * seconds)
        for n in range(total):
            due = start + n / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((step, len(records) * 1_000_000 + n, due))
        step["elapsed_s"] = time.perf_counter() - start
        step["unsent_at_end"] = queue.qsize()  # scheduled in this step, still waiting for a connection
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait(workers, timeout=60)
    for task in workers:
        task.cancel()
    for step in records:  # a step lasts until its last order was answered, when that came later
        if "last_201" in step:
            step["elapsed_s"] = max(step["elapsed_s"], step.pop("last_201") - step["start"])
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
    async with httpx.AsyncClient(base_url=api, timeout=10.0) as prober:
        stop = asyncio.Event()
        health = asyncio.create_task(_probe_health(prober, stop, 0.1))
        steps_done = await _post_orders(api, token, steps, seed)
        stop.set()
        health_ms = await health
    return {"steps": steps_done, "health_ms": health_ms}


def run_orders(api: str, token: str, steps: list[tuple[float, float]], seed: int, results: Any) -> None:
    """Process entry: post the orders, probe /health, put the records (and the process's CPU
    seconds, `cpu_s`) on `results`."""
    record = asyncio.run(_orders_and_health(api, token, steps, seed))
    results.put(record | {"cpu_s": round(time.process_time(), 2)})


async def _subscribe(
    host: str, port: int, token: str, stop: asyncio.Event, lags: list[float], events: list[int]
) -> None:
    """Follow /events; for each order.created, the lag from the order's creation to its arrival.

    Written by hand, as the requesters' connections are: one GET, then the raw bytes of the answer
    cut at the blank lines that end events, the creation instant read from `order.created` only.
    200 subscribers read over a million events a minute; through httpx (its chunked-body parser,
    then a line iterator) they spent more CPU than the planner's streams, on the same two cores.
    The planner writes whole events in each chunk of its chunked answer, so an event's bytes are
    never split by a chunk's size line: such a line only comes before an event's `id:`.
    """
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return
    try:
        request = (
            f"GET /events?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
        )
        writer.write(request.encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30.0)
        if not head.startswith(b"HTTP/1.1 200"):
            return
        pending = b""
        while not stop.is_set():
            chunk = await reader.read(1 << 16)
            if not chunk:
                return
            pending += chunk
            end = pending.rfind(b"\n\n")
            if end < 0:
                continue
            complete, pending = pending[:end], pending[end + 2 :]
            now = datetime.now(UTC)
            for event in complete.split(b"\n\n"):
                if b"id: " not in event:  # a keep-alive comment (or only a chunk's size line)
                    continue
                events[0] += 1
                if b"\nevent: order.created\n" in event:
                    lags.append((now - _created_at(event)).total_seconds() * 1000)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        pass
    finally:
        writer.close()


def _created_at(event: bytes) -> datetime:
    """The `created_at` of an `order.created` event's data, found in its bytes (the planner writes
    compact JSON; decoding the whole order was four tenths of the subscribers' CPU)."""
    data = event[event.index(b"\ndata: ") + 7 :]
    start = data.find(b'"created_at":"')
    if start < 0:  # not compact after all: read it the long way
        return datetime.fromisoformat(json.loads(data)["created_at"])
    start += len(b'"created_at":"')
    return datetime.fromisoformat(data[start : data.index(b'"', start)].decode())


async def _subscribers(api: str, token: str, count: int, seconds: float) -> dict[str, Any]:
    lags: list[float] = []
    events = [0]
    stop = asyncio.Event()
    host, _, port = api.removeprefix("http://").partition(":")
    tasks = [
        asyncio.create_task(_subscribe(host, int(port), token, stop, lags, events)) for _ in range(count)
    ]
    await asyncio.sleep(seconds)
    stop.set()
    if tasks:
        await asyncio.wait(tasks, timeout=2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"lags_ms": lags, "events": events[0], "subscribers": count}


def run_subscribers(api: str, token: str, count: int, seconds: float, results: Any) -> None:
    """Process entry: `count` subscribers to /events for `seconds`; lags (and the process's CPU
    seconds, `cpu_s`) put on `results`."""
    record = asyncio.run(_subscribers(api, token, count, seconds))
    results.put(record | {"cpu_s": round(time.process_time(), 2)})
