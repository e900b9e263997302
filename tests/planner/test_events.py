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


def test_followers_read_every_event_in_order_in_batches() -> None:
    async def scenario() -> None:
        bus = EventBus(flush_s=0.05)
        first, second = bus.follow(), bus.follow()
        assert bus.listeners == 2
        for seq in (1, 2, 3):
            bus.publish(Event(seq, "order.created", {"n": seq}))
        batch = await first.next_batch(5.0)
        assert batch is not None and [e.seq for e in batch] == [1, 2, 3]
        bus.publish(Event(4, "x", {}))
        later = await second.next_batch(5.0)  # it had not read yet: all four in one batch
        assert later is not None and [e.seq for e in later] == [1, 2, 3, 4]
        batch = await first.next_batch(5.0)
        assert batch is not None and [e.seq for e in batch] == [4]
        first.close()
        assert bus.listeners == 1

    asyncio.run(scenario())


def test_a_burst_of_events_wakes_a_follower_once_per_flush() -> None:
    async def scenario() -> None:
        bus = EventBus(flush_s=0.2)
        follower = bus.follow()
        bus.publish(Event(0, "a", {}))
        assert [e.seq for e in (await follower.next_batch(5.0)) or []] == [0]  # the first at once
        await asyncio.sleep(0.01)  # its flush, due at once, has woken nobody
        loop = asyncio.get_running_loop()
        began = loop.time()
        waiting = asyncio.create_task(follower.next_batch(5.0))
        await asyncio.sleep(0)
        for seq in range(1, 101):  # a burst right after a flush, over many turns: held until the next
            bus.publish(Event(seq, "job.running", {}))
            await asyncio.sleep(0)
        assert not waiting.done()
        batch = await waiting
        assert batch is not None and len(batch) == 100
        assert loop.time() - began >= 0.15, "the burst was delivered before the flush interval"

    asyncio.run(scenario())


def test_a_follower_with_nothing_new_times_out_empty_and_the_close_ends_it() -> None:
    async def scenario() -> None:
        bus = EventBus()
        follower = bus.follow()
        assert await follower.next_batch(0.05) == []
        asyncio.get_running_loop().call_later(0.05, bus.close)
        assert await follower.next_batch(5.0) is None
        assert bus.listeners == 0

    asyncio.run(scenario())


def test_a_follower_too_far_behind_is_cut_off() -> None:
    async def scenario() -> None:
        bus = EventBus(queue_size=3)
        slow = bus.follow()
        for seq in range(10):
            bus.publish(Event(seq, "job.running", {}))
        fresh = bus.follow()
        bus.publish(Event(10, "job.running", {}))
        assert await slow.next_batch(1.0) is None  # the stream ends instead of silently missing events
        batch = await fresh.next_batch(1.0)
        assert batch is not None and [e.seq for e in batch] == [10]

    asyncio.run(scenario())
