"""The admitted-keys folder is read in a worker thread, not on the planner's event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from planner.admission import Admissions
from protocol.security import create_keypair, load_public


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_lab_admitted_while_watched_is_held_and_the_folder_is_read_off_the_loop(
    tmp_path: Path,
) -> None:
    admitted = tmp_path / "admitted"
    admitted.mkdir()
    admissions = Admissions(admitted)
    readers: list[int] = []
    read = admissions._refresh

    def refresh() -> None:
        readers.append(threading.get_ident())
        read()

    admissions._refresh = refresh  # type: ignore[method-assign]
    stop = asyncio.Event()
    watching = asyncio.create_task(admissions.watch(stop))
    await asyncio.sleep(0)  # the watch's first step: from now on `holds` leaves the folder to it
    try:
        public_file = create_keypair(tmp_path / "lab", "lab-a", {"lab-id": "lab-a"})
        Admissions(admitted).admit(public_file)
        key = load_public(public_file)
        held = False
        for _ in range(1000):  # until the watch has read the new key (a condition, no timing)
            held = admissions.holds("lab-a", key)
            if held:
                break
            await asyncio.sleep(0.01)
        loop_thread = threading.get_ident()
        assert held
        assert readers and loop_thread not in readers
        assert not admissions.holds("lab-b", key)
    finally:
        stop.set()
        await watching
