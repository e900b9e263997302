"""The loop watch names the code that blocks the planner's event loop (planner.loopwatch)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from planner.loopwatch import LoopWatch


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _block_until(seen: threading.Event) -> None:
    """Hold the event loop (no await) until the watch says it has seen the block."""
    if not seen.wait(10.0):
        raise AssertionError("the loop watch never saw the loop blocked")


@pytest.mark.anyio
async def test_a_block_is_charged_to_the_function_that_holds_the_loop() -> None:
    seen = threading.Event()
    places: list[str] = []

    def on_block(place: str) -> None:
        places.append(place)
        seen.set()

    watch = LoopWatch(threshold_s=0.05, beat_s=0.01, on_block=on_block)
    watch.start()
    try:
        await asyncio.sleep(0.05)  # the first beats
        _block_until(seen)
        for _ in range(200):  # the watch charges the block once the loop beats again
            if watch.blocks.count:
                break
            await asyncio.sleep(0.01)
    finally:
        await watch.stop()
    assert places and " _block_until" in places[0], places
    assert watch.blocks.count >= 1
    top = watch.blocks.top()
    assert " _block_until" in str(top[0]["place"])
    assert float(str(top[0]["longest_ms"])) > 0.0


@pytest.mark.anyio
async def test_a_loop_that_awaits_is_never_charged() -> None:
    watch = LoopWatch(threshold_s=2.0, beat_s=0.01)
    watch.start()
    try:
        for _ in range(20):
            await asyncio.sleep(0.01)
    finally:
        await watch.stop()
    assert watch.blocks.count == 0


@pytest.mark.anyio
async def test_a_long_garbage_collection_is_named_as_such() -> None:
    # A full collection holds the interpreter lock throughout: the loop stops wherever it was. The
    # watch times every collection and charges a block that one mostly covers to the collector.
    import gc
    import time

    watch = LoopWatch(threshold_s=0.05, beat_s=0.01)
    watch.start()
    heap = [[i] for i in range(3_000_000)]  # containers the collector must walk: 0.15 s here
    try:
        await asyncio.sleep(0.05)
        for _ in range(3):
            started = time.monotonic()
            gc.collect()
            if time.monotonic() - started > 0.1:
                break
            heap.extend([i] for i in range(2_000_000))
        for _ in range(200):
            if watch.blocks.count:
                break
            await asyncio.sleep(0.01)
    finally:
        await watch.stop()
        del heap
    summary = watch.collections.summary()
    assert summary["2"]["collections"] >= 1 and summary["2"]["longest_ms"] > 50.0
    assert "garbage collection (generation 2)" in watch.blocks.places, watch.blocks.places
