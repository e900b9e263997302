"""A watch on the planner's event loop: when something blocks it, say what.

The planner answers HTTP, the mesh and the ledger from one event loop, so any step that runs long on
it delays `/health` and every frame. The loop's lag (planner.overload) says *that* it was late; this
says *why*. The loop beats every `beat_s`; a daemon thread looks every `beat_s` too, and when the
loop has not beaten for `threshold_s` it takes the loop thread's stack (`sys._current_frames`). The
block is charged to the innermost frame of the project's own code (not the library it called), and
each place is logged once, with its stack, the first time it blocks the loop; a place is the
project's innermost frame, with the library function it was in when that is deeper. `/health` counts the
blocks, the longest, and the places that blocked the loop longest.

Sampling from another thread needs the interpreter lock, so a block in Python code is seen a
switch interval (5 ms) late at worst; a block in C code that holds the lock (an fsync does not) is
seen when it ends, and charged to the Python line that called it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

#: Top-level folders of the project: frames from these are ours, the rest is libraries.
_OURS = ("planner", "protocol", "solver", "nodes", "scenarios", "cosmolocal", "tests", "benchmarks")
_ROOT = Path(__file__).resolve().parent.parent
#: Places kept in the /health summary.
TOP_PLACES = 5


@dataclass
class LoopBlocks:
    """What the watch found: blocks counted, the longest, and per place the longest and how many."""

    count: int = 0
    longest_ms: float = 0.0
    #: Place ("file:line function") -> (blocks, longest ms).
    places: dict[str, tuple[int, float]] = field(default_factory=dict)

    def top(self, n: int = TOP_PLACES) -> list[dict[str, object]]:
        """The `n` places that blocked the loop longest, longest first."""
        ranked = sorted(self.places.items(), key=lambda kv: kv[1][1], reverse=True)[:n]
        return [{"place": p, "blocks": c, "longest_ms": round(ms, 1)} for p, (c, ms) in ranked]


@dataclass
class Collections:
    """The garbage collector's collections seen, per generation: how many, the longest, in all."""

    count: dict[int, int] = field(default_factory=dict)
    longest_ms: dict[int, float] = field(default_factory=dict)
    total_ms: dict[int, float] = field(default_factory=dict)

    def add(self, generation: int, seconds: float) -> None:
        """Count one collection of `generation` that took `seconds`."""
        ms = seconds * 1000.0
        self.count[generation] = self.count.get(generation, 0) + 1
        self.longest_ms[generation] = max(self.longest_ms.get(generation, 0.0), ms)
        self.total_ms[generation] = self.total_ms.get(generation, 0.0) + ms

    def summary(self) -> dict[str, dict[str, float]]:
        """Per generation ("0", "1", "2"): collections, longest and total ms."""
        return {
            str(g): {
                "collections": self.count[g],
                "longest_ms": round(self.longest_ms[g], 1),
                "total_ms": round(self.total_ms[g], 1),
            }
            for g in sorted(self.count)
        }


class LoopWatch:
    """Beats on the loop, watches from a thread (see module docstring). `start()` on the loop."""

    def __init__(
        self,
        threshold_s: float = 0.2,
        beat_s: float = 0.02,
        monotonic: Callable[[], float] = time.monotonic,
        on_block: Callable[[str], None] | None = None,
    ) -> None:
        self.threshold_s = threshold_s
        #: Told the place of each block as soon as it is seen (before it ends), from the watch thread.
        self.on_block = on_block
        self.beat_s = beat_s
        self.monotonic = monotonic
        self.blocks = LoopBlocks()
        self._beat = monotonic()
        self._loop_thread: int | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self.collections = Collections()
        self._gc_started = 0.0
        self._gc_last: tuple[float, float, int] = (0.0, 0.0, -1)

    def start(self) -> None:
        """Start beating on the running loop and watching from a daemon thread."""
        gc.callbacks.append(self._on_gc)
        self._loop_thread = threading.get_ident()
        self._beat = self.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._beating(), name="loop-watch")
        self._thread = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop both (on the loop)."""
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        self._halt.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)

    async def _beating(self) -> None:
        while True:
            self._beat = self.monotonic()
            await asyncio.sleep(self.beat_s)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        """Time each collection of the interpreter's garbage collector: it holds the interpreter
        lock throughout, so a long one blocks the loop wherever it happened to start."""
        now = self.monotonic()
        if phase == "start":
            self._gc_started = now
            return
        took = now - self._gc_started
        generation = int(info.get("generation", -1))
        self.collections.add(generation, took)
        self._gc_last = (self._gc_started, now, generation)

    def _watch(self) -> None:
        while not self._halt.wait(self.beat_s):
            blocked = self.monotonic() - self._beat
            if blocked < self.threshold_s:
                continue
            frame = sys._current_frames().get(self._loop_thread or 0)
            stack = _our_stack(frame)
            place = (stack[-1] if stack else "outside the project's code") + _below(frame)
            if self.on_block is not None:
                self.on_block(place)
            # Wait for the block to end, to charge its whole length (beat to beat) to the place.
            began = self._beat
            while not self._halt.wait(self.beat_s) and self._beat == began:
                pass
            ended = self._beat if self._beat != began else self.monotonic()
            gc_from, gc_to, generation = self._gc_last
            if min(ended, gc_to) - max(began, gc_from) > (ended - began) / 2:
                place, stack = f"garbage collection (generation {generation})", []
            self._charge(place, stack, max(blocked, ended - began - self.beat_s))

    def _charge(self, place: str, stack: list[str], seconds: float) -> None:
        ms = seconds * 1000.0
        self.blocks.count += 1
        self.blocks.longest_ms = max(self.blocks.longest_ms, ms)
        count, longest = self.blocks.places.get(place, (0, 0.0))
        if count == 0:
            log.warning(
                "event loop blocked for %.0f ms in %s (first block there; stack: %s)",
                ms,
                place,
                " <- ".join(reversed(stack)) or "none of the project's frames",
            )
        self.blocks.places[place] = (count + 1, max(longest, ms))


def _below(frame: FrameType | None) -> str:
    """The innermost frame of all, as " in MODULE.FUNCTION", when it is a library's (what we called)."""
    if frame is None:
        return ""
    module = str(frame.f_globals.get("__name__", "?"))
    if module.split(".")[0] in _OURS:
        return ""
    return f" in {module}.{frame.f_code.co_name}"


def _our_stack(frame: FrameType | None) -> list[str]:
    """The project's own frames of `frame`'s stack, outermost first, as "path:line function"."""
    if frame is None:
        return []
    places = []
    for summary in traceback.extract_stack(frame):
        path = Path(summary.filename)
        try:
            relative = path.resolve().relative_to(_ROOT)
        except ValueError:
            continue
        if relative.parts and relative.parts[0] in _OURS:
            places.append(f"{relative.as_posix()}:{summary.lineno} {summary.name}")
    return places
