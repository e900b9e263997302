"""Server-sent event streams of ledger events, cheap enough for hundreds of subscribers.

Each event is encoded once (`id:`, `event:`, `data:` lines) and the bytes are shared by every
stream that sends it the same way; a stream wakes once for all the events published since its last
wake-up (at most every `planner.events.FLUSH_S`) and writes them in one chunk, itself shared by the
streams of the same variant woken together. FastAPI's own SSE path costs several task switches and one JSON
encoding per event per subscriber, which at 200 subscribers is most of the planner's time.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse

from planner.core import PlannerCore

#: Seconds without an event after which a stream sends a comment, so proxies keep it open.
KEEP_ALIVE_S = 15.0
KEEP_ALIVE = b": keep-alive\n\n"
#: Selects what a stream sends of an event: its data, other data, or None to leave it out.
Select = Callable[[str, dict[str, Any]], dict[str, Any] | None]


class EventStream(StreamingResponse):
    """A `text/event-stream` response that proxies must not buffer."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], status_code: int = 200) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(content, status_code=status_code, headers=headers)


class FrameCache:
    """The wire bytes of recent events, by (sequence number, how the stream shows it)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._frames: OrderedDict[tuple[int, str], bytes] = OrderedDict()

    def frame(self, seq: int, kind: str, data: dict[str, Any], variant: str) -> bytes:
        """The event as SSE lines; encoded once per (seq, variant)."""
        key = (seq, variant)
        found = self._frames.get(key)
        if found is None:
            text = json.dumps(data, separators=(",", ":"))
            found = f"id: {seq}\nevent: {kind}\ndata: {text}\n\n".encode()
            self._frames[key] = found
            if len(self._frames) > self._size:
                self._frames.popitem(last=False)
        return found


class ChunkCache:
    """The bytes a batch of events makes on a stream whose selection is the same for every stream of
    its variant (the whole stream, the network stream): streams woken by the same flush at the same
    position share one chunk, so it is built once, not once per subscriber."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._chunks: OrderedDict[tuple[int, int, str], bytes] = OrderedDict()

    def get(self, first: int, last: int, variant: str) -> bytes | None:
        """The chunk of events `first`..`last` (sequence numbers) as `variant` shows them, if built."""
        return self._chunks.get((first, last, variant))

    def put(self, first: int, last: int, variant: str, chunk: bytes) -> None:
        """Keep a chunk for the streams woken after this one."""
        self._chunks[first, last, variant] = chunk
        if len(self._chunks) > self._size:
            self._chunks.popitem(last=False)


async def stream(
    core: PlannerCore,
    cache: FrameCache,
    last_event_id: str | None,
    select: Select,
    variant: str,
    chunks: ChunkCache | None = None,
) -> AsyncIterator[bytes]:
    """Ledger events as SSE, resumed after `last_event_id`, then live, until the bus ends the
    stream (shutdown, or a subscriber too slow to keep up: planner.events).

    `chunks` is given when `select` is the same for every stream of `variant` (it depends on the
    event only): a batch is then joined once for all those streams."""
    follower = core.bus.follow()
    try:
        after = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
        if after is not None:
            replay = []
            for stored in core.ledger.events_after(after, limit=10_000):
                after = stored.seq
                if (data := select(stored.kind, stored.data)) is not None:
                    replay.append(cache.frame(stored.seq, stored.kind, data, variant))
            if replay:
                yield b"".join(replay)
        while True:
            batch = await follower.next_batch(KEEP_ALIVE_S)
            if batch is None:
                return
            if not batch:
                yield KEEP_ALIVE
                continue
            if after is not None:
                batch = [event for event in batch if event.seq > after]  # already replayed
                if not batch:
                    continue
                after = None  # the log is in sequence order: the rest is all new
            chunk = chunks.get(batch[0].seq, batch[-1].seq, variant) if chunks is not None else None
            if chunk is None:
                frames = []
                for event in batch:
                    if (data := select(event.kind, event.data)) is not None:
                        frames.append(cache.frame(event.seq, event.kind, data, variant))
                chunk = b"".join(frames)
                if chunks is not None:
                    chunks.put(batch[0].seq, batch[-1].seq, variant, chunk)
            if chunk:
                yield chunk
    finally:
        follower.close()
