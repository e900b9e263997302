"""Keep the garbage collector's full collections short: what has lived a while is frozen out of them.

A full collection walks every container the interpreter tracks, with the interpreter lock held, so
the planner's loop stops wherever it is. At a thousand labs and ten thousand orders the planner
made 19 of them in a minute, the longest 183 ms (docs/benchmarks.md, "A quiet host, the solver's
priority and the collector's pauses"): most of the /health p99.

What has lived `freeze_every_s` is mostly the planner's state (orders, labs, the event log),
which reference counting frees when it is dropped. Every `freeze_every_s` it is moved out of the
collector's generations (`gc.freeze`), so a full collection walks only what is recent. A cycle
that dies among frozen objects is kept until the next thaw: every `thaw_every_s` the frozen
objects are returned (`gc.unfreeze`) and collected once, one pause an interval in place of one every
few seconds, and what survives is frozen again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time

log = logging.getLogger(__name__)

#: Seconds between freezes of what is alive, and between thaws with one full collection.
FREEZE_EVERY_S = 10.0
THAW_EVERY_S = 600.0


async def pace_collector(
    stop: asyncio.Event, freeze_every_s: float = FREEZE_EVERY_S, thaw_every_s: float = THAW_EVERY_S
) -> None:
    """Freeze what is alive every `freeze_every_s`; thaw and collect every `thaw_every_s` (see the
    module docstring). Ends when `stop` is set, thawing what it froze."""
    thawed = time.monotonic()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), freeze_every_s)
            if stop.is_set():
                break
            if time.monotonic() - thawed >= thaw_every_s:
                frozen = gc.get_freeze_count()
                started = time.monotonic()
                gc.unfreeze()
                found = gc.collect()
                thawed = time.monotonic()
                log.info(
                    "collector: thawed %d objects, %d unreachable, in %.0f ms",
                    frozen,
                    found,
                    (thawed - started) * 1000,
                )
            gc.freeze()
    finally:
        gc.unfreeze()
