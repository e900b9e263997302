"""The planner's solve worker does not outlive a planner killed with -9."""

from __future__ import annotations

import os
import subprocess
import sys
import time

PLANNER = """
import multiprocessing, os, signal, sys
from concurrent.futures import ProcessPoolExecutor
from planner.replan import exit_with_planner

if __name__ == "__main__":
    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=exit_with_planner,
        initargs=(os.getpid(), 0.1),
    )
    print(pool.submit(os.getpid).result(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose: it runs nothing and only waits to be reaped.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[-1][0] != "Z"


def test_a_solve_worker_exits_when_its_planner_is_killed() -> None:
    planner = subprocess.run([sys.executable, "-c", PLANNER], capture_output=True, text=True, timeout=60)
    assert planner.returncode == -9, planner.stderr
    worker = int(planner.stdout.split()[0])
    deadline = time.monotonic() + 30.0
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), f"solve worker {worker} outlived its planner"


def test_a_solve_worker_runs_below_the_planners_priority() -> None:
    # Requests and lab frames are answered on the planner's loop first; a solve is batch work.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from planner.replan import start_solve_worker

    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=start_solve_worker,
        initargs=(os.getpid(), 5),
    ) as pool:
        worker_nice = pool.submit(os.nice, 0).result(timeout=60)
    assert worker_nice == min(19, os.nice(0) + 5)
