"""A planner's peer side run on its own (`cosmolocal planner peer serve`): offers, heartbeats, status.

It publishes the offers of a JSON file (a list of OFFER bodies) to every peer, keeps heartbeats, and
writes its status (live and lost peers, the offers it holds, its counters) to a JSON file after every
heartbeat, so an operator (or a test) can watch it. With `capture`, every frame it sends is
appended to a file (4-byte length, then the frame) for inspection.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from planner.peers import PeerNode


def capture_to(path: Path) -> Callable[[str, bytes], None]:
    """A capture function that appends every frame sent to `path` (4-byte length, then the frame)."""

    def capture(region: str, frame: bytes) -> None:
        with path.open("ab") as handle:
            handle.write(len(frame).to_bytes(4, "big") + frame)

    return capture


def read_capture(path: Path) -> list[bytes]:
    """The frames a capture file holds, in the order they were sent."""
    data = path.read_bytes() if path.exists() else b""
    frames, at = [], 0
    while at + 4 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        frames.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return frames


def status(node: PeerNode) -> dict[str, Any]:
    """What the node knows now: its peers, the offers it holds, its counters."""
    return {
        "region": node.region,
        "live": node.live_peers(),
        "lost": sorted(node.lost),
        "offers": {host: sorted(by) for host, by in sorted(node.offers.items())},
        "keys_refused": node.keys_refused,
        "stats": asdict(node.stats),
        "at": time.time(),
    }


async def serve(
    region: str,
    keys_dir: Path,
    endpoint: str,
    heartbeat_s: float,
    offers_file: Path | None,
    status_file: Path | None,
    capture_file: Path | None,
    duration_s: float | None,
) -> None:
    """Run the peer node until `duration_s` (or forever), writing `status_file` after every beat."""
    node = PeerNode(
        region, keys_dir, endpoint, heartbeat_s, capture=capture_to(capture_file) if capture_file else None
    )
    await node.start()
    try:
        if offers_file is not None:
            await node.offer(json.loads(offers_file.read_text(encoding="utf-8")))
        started = time.monotonic()
        while duration_s is None or time.monotonic() - started < duration_s:
            node.expire()
            if status_file is not None:
                temporary = status_file.with_suffix(".tmp")
                temporary.write_text(json.dumps(status(node)), encoding="utf-8")
                os.replace(temporary, status_file)
            await asyncio.sleep(node.heartbeat_s / 4)
    finally:
        await node.stop()
