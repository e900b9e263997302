"""Back-pressure: past its capacity the planner says so (503 or 429, with Retry-After) at once,
instead of letting every request, `/health` included, wait behind a queue that only grows.

The planner serves HTTP, the mesh and the ledger from one event loop, so its capacity shows as the
loop's lag: how late a timer that should fire every `tick_s` fires. An ASGI middleware refuses,
before anything is read or written:

- any request but `/health` with 503 while the loop lags more than `max_lag_s` (at each of the
  last `sustain` ticks), or while
  `max_in_flight` requests are already being answered (event streams are not counted: they stay
  open by design);
- `POST /orders` with 429 when orders arrive faster than `orders_per_s` (a token bucket of
  `orders_burst`).

A refused request changed nothing, so retrying it after `Retry-After` seconds is always safe; an
accepted order is on disk before its 201 (planner.store), whatever the load.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class OverloadStats:
    """Counters an operator reads on /health."""

    refused_busy: int = 0
    refused_rate: int = 0
    max_lag_ms: float = 0.0


class Overload:
    """The planner's load gauge and its refusal rules (see module docstring)."""

    def __init__(
        self,
        max_lag_s: float = 0.25,
        max_in_flight: int = 256,
        orders_per_s: float = 1000.0,
        orders_burst: int = 2000,
        tick_s: float = 0.05,
        sustain: int = 3,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_lag_s = max_lag_s
        self.max_in_flight = max_in_flight
        self.orders_per_s = orders_per_s
        self.orders_burst = orders_burst
        self.tick_s = tick_s
        self.monotonic = monotonic
        self.stats = OverloadStats()
        #: The loop's lag at the latest tick, in seconds, and at the last `sustain` ticks: one long
        #: step (a plan committed, a garbage collection) is not an overload, a lag that lasts is.
        self.lag_s = 0.0
        self._recent: deque[float] = deque([0.0], maxlen=sustain)
        self.in_flight = 0
        self._tokens = float(orders_burst)
        self._counted_at = monotonic()

    async def watch(self, stop: asyncio.Event) -> None:
        """Measure the loop's lag every `tick_s` until `stop` is set."""
        while not stop.is_set():
            began = self.monotonic()
            await asyncio.sleep(self.tick_s)
            self.lag_s = max(0.0, self.monotonic() - began - self.tick_s)
            self._recent.append(self.lag_s)
            self.stats.max_lag_ms = max(self.stats.max_lag_ms, self.lag_s * 1000)

    def busy(self) -> bool:
        """True when a new request would only wait: the loop lags, or enough are in flight."""
        return min(self._recent) > self.max_lag_s or self.in_flight >= self.max_in_flight

    def take_order_token(self) -> float:
        """Take one order from the bucket: 0.0 when allowed, else the seconds until one is."""
        now = self.monotonic()
        self._tokens = min(
            float(self.orders_burst), self._tokens + (now - self._counted_at) * self.orders_per_s
        )
        self._counted_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.orders_per_s


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


async def _refuse(send: Send, status: int, detail: str, retry_after_s: int) -> None:
    body = json.dumps({"detail": detail, "retry_after_s": retry_after_s}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after_s).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class OverloadMiddleware:
    """Pure ASGI middleware applying an `Overload`'s rules (cheap: no request object is built)."""

    def __init__(self, app: ASGIApp, overload: Callable[[], Overload | None]) -> None:
        self.app = app
        self.overload = overload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gauge = self.overload() if scope["type"] == "http" else None
        path = scope.get("path", "")
        if gauge is None or path == "/health":
            await self.app(scope, receive, send)
            return
        if gauge.busy():
            gauge.stats.refused_busy += 1
            await _refuse(
                send,
                503,
                f"the planner is past its capacity (event loop {gauge.lag_s * 1000:.0f} ms late, "
                f"{gauge.in_flight} requests in flight): nothing was changed; try again shortly",
                _retry_after(gauge.lag_s),
            )
            return
        if scope["method"] == "POST" and path == "/orders":
            wait = gauge.take_order_token()
            if wait > 0:
                gauge.stats.refused_rate += 1
                await _refuse(
                    send,
                    429,
                    f"more than {gauge.orders_per_s:g} orders a second: nothing was placed; "
                    "try again shortly",
                    _retry_after(wait),
                )
                return
        if path.endswith("/events"):
            await self.app(scope, receive, send)
            return
        gauge.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            gauge.in_flight -= 1
