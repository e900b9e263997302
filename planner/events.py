"""Fan-out of ledger events to live listeners (the SSE stream), without ever blocking the planner."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """A ledger event as listeners see it: global sequence number, kind (`order.created`...) and data."""

    seq: int
    kind: str
    data: dict[str, Any]


class EventBus:
    """Each listener gets a bounded queue; a listener too slow to keep up is cut off, not waited for."""

    def __init__(self, queue_size: int = 10_000) -> None:
        self._queue_size = queue_size
        self._listeners: set[asyncio.Queue[Event | None]] = set()

    def subscribe(self) -> asyncio.Queue[Event | None]:
        """A new queue receiving every event published from now on; `None` means 'you were cut off'."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(self._queue_size)
        self._listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event | None]) -> None:
        """Stop delivering to this queue."""
        self._listeners.discard(queue)

    def publish(self, event: Event) -> None:
        """Deliver to every listener now; drop listeners whose queue is full."""
        for queue in list(self._listeners):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("event listener fell %d events behind; closing its stream", self._queue_size)
                self._listeners.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)

    def close(self) -> None:
        """End every stream (server shutdown)."""
        for queue in list(self._listeners):
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(None)
        self._listeners.clear()

    @property
    def listeners(self) -> int:
        """How many streams are open."""
        return len(self._listeners)
