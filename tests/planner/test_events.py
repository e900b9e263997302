"""The event bus never blocks the planner: a listener too slow to keep up is cut off."""

from __future__ import annotations

import asyncio

from planner.events import Event, EventBus


def test_every_listener_gets_every_event_in_order() -> None:
    async def scenario() -> None:
        bus = EventBus()
        first, second = bus.subscribe(), bus.subscribe()
        for seq in (1, 2, 3):
            bus.publish(Event(seq, "order.created", {"n": seq}))
        for queue in (first, second):
            assert [(await queue.get()).seq for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
        bus.unsubscribe(first)
        bus.publish(Event(4, "x", {}))
        assert first.empty() and (await second.get()).seq == 4  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_slow_listener_is_cut_off_and_told() -> None:
    async def scenario() -> None:
        bus = EventBus(queue_size=3)
        slow = bus.subscribe()
        for seq in range(10):
            bus.publish(Event(seq, "job.running", {}))
        assert bus.listeners == 0
        items = [slow.get_nowait() for _ in range(slow.qsize())]
        assert items[-1] is None  # the stream ends instead of silently missing events

    asyncio.run(scenario())
