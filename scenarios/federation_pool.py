"""The net's regional LPs solved side by side, in worker processes that each hold every region's model.

Between real planners each region solves its own LP in its own process, at the same time as the
others. The one-process net (`solver.federation.net`) solves them one after the other: at 4 x 2,500
x 400 that left one of two cores idle for the net's 10-12 s. Here each worker of a process pool
builds the regions' models once (`load`), from the problems the pool was started with, and each step
of a round sends every region's ask to the pool at once, the region that took longest last time
first. The solutions are the ones the one-process net gets: each is a pure function of its ask.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import TypeVar

from solver.federation.cells import CELL_DEG
from solver.federation.market import Trade
from solver.federation.net import MeansAsk, SolveAsk, means_of, solve_ask
from solver.federation.region import RegionModel, Solution
from solver.model.problem import Problem, SolveParams

A = TypeVar("A")
R = TypeVar("R")

#: The models of this worker process, by region (`load`).
_MODELS: dict[str, RegionModel] = {}


def load(problems: Mapping[str, Problem], params: SolveParams, cell_deg: float = CELL_DEG) -> None:
    """A worker's initializer: every region's model, built once for the worker's life."""
    _MODELS.clear()
    _MODELS.update({r: RegionModel(r, problem, params, cell_deg) for r, problem in problems.items()})


def ready(pause_s: float) -> bool:
    """A task that says the worker has started and loaded its models, held `pause_s` so that the
    other workers take the next ones."""
    time.sleep(pause_s)
    return bool(_MODELS)


def _solve(region: str, ask: SolveAsk) -> tuple[Solution, float]:
    started = time.perf_counter()
    return solve_ask(_MODELS[region], ask), time.perf_counter() - started


def _means(region: str, ask: MeansAsk) -> tuple[list[Trade], float]:
    started = time.perf_counter()
    return means_of(_MODELS[region], ask), time.perf_counter() - started


class PooledSolves:
    """`solver.federation.net.RegionSolves` on an executor whose workers were started with `load`."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        #: Seconds each region's last task took, to send the longest first.
        self.seconds: dict[str, float] = {}

    def solve(self, asks: Mapping[str, SolveAsk]) -> dict[str, Solution]:
        """Each region's solution to its ask, solved side by side."""
        return self._run(_solve, asks)

    def within_means(self, asks: Mapping[str, MeansAsk]) -> dict[str, list[Trade]]:
        """Each host's awards cut down to what it can make, side by side."""
        return self._run(_means, asks)

    def _run(self, task: Callable[[str, A], tuple[R, float]], asks: Mapping[str, A]) -> dict[str, R]:
        """Each ask sent at once, the region whose last task took longest first; results in the
        asks' order."""
        order = sorted(asks, key=lambda r: -self.seconds.get(r, 0.0))
        futures = {r: self.executor.submit(task, r, asks[r]) for r in order}
        out = {}
        for r in asks:
            out[r], self.seconds[r] = futures[r].result()
        return out


def wait_ready(executor: Executor, workers: int) -> None:
    """Return once every worker has started and loaded its models (so a timed run does not count
    the processes' start, which a running planner has behind it)."""
    futures = [executor.submit(ready, 0.2) for _ in range(workers)]
    if not all(f.result() for f in futures):
        raise RuntimeError("a federation worker started without its models")
