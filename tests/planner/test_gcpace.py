"""The collector's pacing (planner.gcpace): what has lived a while is frozen, and thawed again."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from planner.gcpace import pace_collector


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.mark.anyio
async def test_what_lives_is_frozen_and_a_dead_cycle_among_it_is_collected_at_the_thaw() -> None:
    gc.unfreeze()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    stop = asyncio.Event()
    task = asyncio.create_task(pace_collector(stop, freeze_every_s=0.05, thaw_every_s=0.5))
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if gc.get_freeze_count() > 0:
                break
        assert not any(o is a for o in gc.get_objects())  # frozen: out of every collection's walk
        del a, b
        gc.collect()
        assert gone() is not None  # the dead cycle is frozen: kept until the thaw
        for _ in range(200):
            await asyncio.sleep(0.01)
            if gone() is None:
                break
        assert gone() is None  # thawed and collected
    finally:
        stop.set()
        await task
    assert gc.get_freeze_count() == 0  # thawed on the way out
