"""Fan-out of ledger events to live listeners (the SSE streams), without ever blocking the planner.

Two ways to listen:

- `follow()`, for the event streams: every event is appended once to one shared log, and the
  followers are woken together, at most once every `flush_s`, to read what they have not read
  yet. Publishing an event costs the same whether 2 or 200 streams follow (no queue per listener),
  and a follower wakes once for a whole batch of events, not once per event: at 200 subscribers
  and a thousand events a second, one put per event per queue was a fifth of the planner's loop.
- `subscribe()`, for the planner's own few listeners (the federation): a bounded queue each.

Either way a listener too slow to keep up (more than `queue_size` events behind) is cut off and
told so, never waited for.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
#: The longest a published event waits for the followers to be woken: a batch a tenth of a second
#: wide at most, so a stream costs at most ten wake-ups a second however many events there are.
FLUSH_S = 0.1


@dataclass(frozen=True)
class Event:
    """A ledger event as listeners see it: global sequence number, kind (`order.created`...) and data."""

    seq: int
    kind: str
    data: dict[str, Any]


class Follower:
    """A reader of the bus's shared log (see `EventBus.follow`); one per event stream."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        #: The log position (count of events published before) of the next event to read.
        self.position = bus.end

    async def next_batch(self, timeout_s: float) -> list[Event] | None:
        """The events published since the last call, waiting up to `timeout_s` for the next flush
        when there are none: [] after the timeout, None when this follower was cut off (it fell
        more than the bus's `queue_size` events behind) or the bus was closed."""
        bus = self._bus
        if self.position >= bus.end and not bus.closed:
            waiter = bus.waiter()
            try:
                async with asyncio.timeout(timeout_s):
                    await waiter
            except TimeoutError:
                return []
        if bus.closed:
            return None
        events = bus.since(self.position)
        if events is None:
            log.warning("event stream fell %d events behind; closing it", bus.queue_size)
            return None
        self.position += len(events)
        return events

    def close(self) -> None:
        """Stop following (the stream ended)."""
        self._bus.unfollow(self)


class EventBus:
    """One shared log for followers, a bounded queue per subscriber (see module docstring)."""

    def __init__(self, queue_size: int = 10_000, flush_s: float = FLUSH_S) -> None:
        self.queue_size = queue_size
        self.flush_s = flush_s
        self._listeners: set[asyncio.Queue[Event | None]] = set()
        self._followers: set[Follower] = set()
        #: The newest events (at most 2 x queue_size): `_log[i]` is the event at position `_start + i`.
        self._log: list[Event] = []
        self._start = 0
        self._waiter: asyncio.Future[None] | None = None
        self._flush: asyncio.TimerHandle | None = None
        self._flushed_at = -float("inf")
        self.closed = False

    # --- followers (the event streams) ------------------------------------------------------

    def follow(self) -> Follower:
        """A follower reading every event published from now on (`Follower.next_batch`)."""
        follower = Follower(self)
        self._followers.add(follower)
        return follower

    def unfollow(self, follower: Follower) -> None:
        """Stop delivering to this follower."""
        self._followers.discard(follower)

    @property
    def end(self) -> int:
        """The log position the next published event will have."""
        return self._start + len(self._log)

    def since(self, position: int) -> list[Event] | None:
        """The events from `position` on; None when the oldest of them is no longer kept."""
        if self.end - position > self.queue_size or position < self._start:
            return None
        return self._log[position - self._start :]

    def waiter(self) -> asyncio.Future[None]:
        """A future done at the next flush (shared by every follower waiting for it)."""
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter

    def _wake(self) -> None:
        self._flush = None
        self._flushed_at = asyncio.get_running_loop().time()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None

    # --- publishing ---------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[Event | None]:
        """A new queue receiving every event published from now on; `None` means 'you were cut off'."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(self.queue_size)
        self._listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event | None]) -> None:
        """Stop delivering to this queue."""
        self._listeners.discard(queue)

    def publish(self, event: Event) -> None:
        """Append to the followers' log (they are woken within `flush_s`) and put in every
        subscriber's queue now; drop subscribers whose queue is full."""
        self._log.append(event)
        if len(self._log) >= 2 * self.queue_size:
            drop = len(self._log) - self.queue_size
            del self._log[:drop]
            self._start += drop
        if self._followers and self._flush is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._flushed_at + self.flush_s - loop.time())
            self._flush = loop.call_later(delay, self._wake)
        for queue in list(self._listeners):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("event listener fell %d events behind; closing its stream", self.queue_size)
                self._listeners.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)

    def close(self) -> None:
        """End every stream (server shutdown)."""
        self.closed = True
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._followers.clear()
        for queue in list(self._listeners):
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(None)
        self._listeners.clear()

    @property
    def listeners(self) -> int:
        """How many streams and queues are open."""
        return len(self._listeners) + len(self._followers)
