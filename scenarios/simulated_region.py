"""A region's labs simulated many to a process: the federation demo at the size of a real network.

One node process per lab (`cosmolocal node join`) is the demo's default and what an operator runs,
but four regions of 400 labs would be 1,600 processes. Here a region's labs run in one worker
process (`scenarios.faults.load_labs.run_labs`, the load benchmark's): each is still a real DEALER
socket with its own CurveZMQ key admitted by the region's planner, says HELLO with the lab's own
machines and stock, heartbeats, and answers every ASSIGN with ACCEPT and DONE at once. What such a
run measures is the planners and the protocol between them, not the labs' making: a simulated
lab's units are made the moment they are assigned.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import zmq

from planner.admission import planner_keys
from protocol.model import Lab
from protocol.security import write_public
from scenarios.faults.load_labs import RUN, STOP, run_labs

#: A simulated lab sends no CAPACITY report (its backlog is the planner's own view of its work):
#: the first one would be due after this many seconds.
NO_REPORTS_S = 1e9
#: How long a region's labs may take to join before the run gives up.
JOIN_TIMEOUT_S = 180.0


@dataclass
class SimulatedLabs:
    """One region's simulated labs: their worker process and the flag that stops it."""

    process: Any  # multiprocessing's SpawnProcess
    phase: Any  # a shared int: RUN, then STOP
    results: Any  # the worker's counters, put when it stops
    count: int

    def stop(self) -> dict[str, int]:
        """Stop the worker; its counters (frames sent and received, ASSIGNs answered), if it said."""
        self.phase.value = STOP
        self.process.join(timeout=10.0)
        if self.process.is_alive():
            self.process.kill()
            return {}
        try:
            return dict(self.results.get(timeout=1.0))
        except queue.Empty:  # a worker that died says nothing
            return {}


def admit(labs: list[Lab], keys_dir: Path) -> list[tuple[bytes, bytes]]:
    """A key pair per lab, each public key admitted in `keys_dir` as `planner admit` would."""
    pairs = [zmq.curve_keypair() for _ in labs]
    for lab, (public, _) in zip(labs, pairs, strict=True):
        write_public(keys_dir / "admitted" / f"{lab.id}.key", public, {"lab-id": lab.id})
    return pairs


def start_labs(
    labs: list[Lab], pairs: list[tuple[bytes, bytes]], keys_dir: Path, endpoint: str, heartbeat_s: float
) -> SimulatedLabs:
    """Start one worker process running `labs` against the planner at `endpoint` (keys in `keys_dir`)."""
    planner_pair, _ = planner_keys(keys_dir)
    spawn = multiprocessing.get_context("spawn")
    phase = spawn.Value("i", RUN)
    results = spawn.Queue()
    process = spawn.Process(
        target=run_labs,
        args=(
            [lab.model_dump(mode="json") for lab in labs],
            pairs,
            endpoint,
            planner_pair.public,
            phase,
            results,
        ),
        kwargs={"heartbeat_s": heartbeat_s, "capacity_s": NO_REPORTS_S},
        daemon=True,
    )
    process.start()
    return SimulatedLabs(process, phase, results, len(labs))


def wait_joined(api: str, headers: dict[str, str], labs: SimulatedLabs, region: str) -> None:
    """Wait until every simulated lab of a region is live at its planner; a clear error otherwise."""
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    live = 0
    while time.monotonic() < deadline:
        try:
            live = httpx.get(f"{api}/health", headers=headers, timeout=5.0).json().get("labs_live", 0)
        except (httpx.HTTPError, ValueError):
            live = 0
        if live >= labs.count:
            return
        if not labs.process.is_alive():
            raise RuntimeError(f"{region}: the process of its simulated labs died ({live} joined)")
        time.sleep(0.5)
    raise TimeoutError(f"{region}: {live} of {labs.count} simulated labs joined within {JOIN_TIMEOUT_S:g} s")
