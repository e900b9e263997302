"""Tabu search for the flexible job shop's makespan, on the disjunctive graph.

CP-SAT proves small schedules optimal, but on flexible instances of a few dozen operations (Brandimarte
mk02) its search stalls on the makespan's plateaus, where a local search that moves critical operations
keeps going. This is that local search; `solver.jobshop.fjsp.solve` runs it beside CP-SAT (or, on larger
instances, on every worker) and hands its best schedule to CP-SAT as a hint, so the result is the
better of the two, with CP-SAT's bound.

A schedule is a machine for every operation and an order of operations on every machine; start times
follow (each operation starts when its job's previous operation and its machine's previous operation
have ended). A move takes one critical operation (one on a longest path) out of its machine and
inserts it on one of its eligible machines at another place, as in Mastrolilli and Gambardella's
neighbourhood for the flexible job shop. Every insertion is scored by the longest path through the
moved operation, from the heads and tails of the current schedule (on its own machine, as if it were
taken out); only insertions that cannot close a cycle are considered (a sufficient test on those heads),
and none that moves an inner operation of a critical block to another inner place (it cannot shorten
the makespan); the best few are evaluated exactly and the best one not forbidden is made. An operation
just moved may not move again for a few iterations (the tabu tenure), unless it would beat the best
schedule found. After a long time without improvement the search goes back to the best schedule and
perturbs it.

The iterations themselves are compiled (`solver.jobshop.tabu_kernel`, numba): about 30,000 moves a
second on mk10 (240 operations) where the same search in Python made 1,200, and the search's
quality on the larger instances grows with its moves. They release the interpreter, so searches
on several threads run at once (`SharedBest` lets them share their best schedule). This module
keeps the search's inputs, outputs and clock, and builds the schedule from the arrays.

Makespan only, without machine calendars: jobshop falls back to CP-SAT alone for anything else.
Pure: its budget is a number of seconds of its own computation, read from the process's
performance counter, and a seed. The first search on a machine compiles the iterations (several
seconds, inside its budget); numba keeps them in its cache after that (`compile_ahead`).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from solver.jobshop.instance import FjJob, FjOperation, Instance

#: How many acyclic insertions, best-scored first, are evaluated exactly at each iteration (the
#: default of `search`; `solver.jobshop.fjsp` runs searches of several depths side by side).
EXACT_PER_ITERATION = 4
#: Iterations run per call of the compiled code, between two looks at the clock and at `stop`.
ITERATIONS_PER_CALL = 256
#: Iterations without a new best schedule before the search goes back to the best and shakes it.
PATIENCE = 1000
#: The shake: one random reassignment per this many operations (at least two).
OPERATIONS_PER_SHAKE = 20


class Placed(Protocol):
    """What the search reads of a scheduled operation (solver.jobshop.fjsp.ScheduledOperation fits)."""

    @property
    def job(self) -> int: ...
    @property
    def operation(self) -> int: ...
    @property
    def machine(self) -> int: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


@dataclass(frozen=True, slots=True)
class TabuResult:
    """The best schedule found: per job, per operation, (machine, start, end); its makespan; iterations."""

    operations: tuple[tuple[tuple[int, int, int], ...], ...]
    makespan: int
    iterations: int


class _Shop:
    """The instance flattened: operations numbered 0..n-1 with job predecessor, successor and times."""

    def __init__(self, instance: Instance) -> None:
        self.key: list[tuple[int, int]] = []
        self.job_pred: list[int] = []
        self.job_succ: list[int] = []
        self.release: list[int] = []
        self.times: list[dict[int, int]] = []
        for j, job in enumerate(instance.jobs):
            first = len(self.key)
            for o, op in enumerate(job.operations):
                v = len(self.key)
                self.key.append((j, o))
                self.job_pred.append(v - 1 if o > 0 else -1)
                self.job_succ.append(v + 1 if o + 1 < len(job.operations) else -1)
                self.release.append(job.release if v == first else 0)
                self.times.append(dict(op.alternatives))
        self.size = len(self.key)
        self.num_jobs = len(instance.jobs)
        self.num_machines = instance.num_machines
        self.index = {key: v for v, key in enumerate(self.key)}


def _schedule(
    shop: _Shop, machine: Sequence[int], duration: Sequence[int], head: np.ndarray
) -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """Per job, per operation, (machine, start, end): every operation as early as its graph allows."""
    jobs: list[list[tuple[int, int, int]]] = [[] for _ in range(shop.num_jobs)]
    for v, (j, _) in enumerate(shop.key):
        start = int(head[v])
        jobs[j].append((machine[v], start, start + duration[v]))
    return tuple(tuple(ops) for ops in jobs)


def search(
    instance: Instance,
    start: Sequence[Sequence[Placed]],
    *,
    seconds: float,
    seed: int = 0,
    target: int = 0,
    max_iterations: int | None = None,
    stop: Callable[[], bool] | None = None,
    board: SharedBest | None = None,
    exact_per_iteration: int = EXACT_PER_ITERATION,
) -> TabuResult:
    """The best schedule reachable from `start` by tabu search within `seconds` (or `max_iterations`).

    `start` must be a complete, valid schedule of `instance` (machine and order are read from it).
    Stops early when the makespan reaches `target` (a proven lower bound) or when `stop()` turns true
    (checked every few iterations). Searches run side by side on the same instance and start may
    share a `board`: each posts its best schedule there and takes a better one posted by another,
    which its next restart then starts from. `exact_per_iteration` insertions, best-scored first, are
    evaluated exactly at each move: more choose better moves on a plateau, fewer make more moves a
    second. Raises ValueError when the instance has machine calendars, which the disjunctive graph
    here does not model.
    """
    if any(instance.calendars.values()):
        raise ValueError("tabu search does not model machine calendars")
    shop = _Shop(instance)
    n = shop.size
    machine = [0] * n
    duration = [0] * n
    placed: list[tuple[int, int, int]] = []
    for job_ops in start:
        for op in job_ops:
            v = shop.index[(op.job, op.operation)]
            machine[v] = op.machine
            duration[v] = shop.times[v][op.machine]
            placed.append((op.start, op.end, v))
    placed.sort()
    sequences: list[list[int]] = [[] for _ in range(shop.num_machines)]
    for _, _, v in placed:
        sequences[machine[v]].append(v)
    from solver.jobshop import tabu_kernel as kernel  # compiled on first use: labs never pay for it

    arrays = _Arrays(shop, machine, duration, sequences)
    makespan, _ = arrays.longest_paths(best=False)
    if makespan < 0:
        raise ValueError("the start schedule's machine orders are cyclic")
    kernel.seed_random(seed)
    state = np.array([0, 0, makespan], dtype=np.int64)  # see tabu_kernel.ITERATION
    deadline = time.perf_counter() + seconds
    while state[kernel.BEST_MAKESPAN] > target:
        if time.perf_counter() >= deadline or (stop is not None and stop()):
            break
        batch = ITERATIONS_PER_CALL
        if max_iterations is not None:
            batch = min(batch, max_iterations - int(state[kernel.ITERATION]))
            if batch <= 0:
                break
        if not kernel.iterate(
            batch,
            *arrays.kernel_arguments(),
            state,
            target,
            exact_per_iteration,
            PATIENCE,
            OPERATIONS_PER_SHAKE,
        ):
            break  # nothing can move: one machine per operation and no order to change
        if board is not None:
            board.exchange(arrays, state)
    best_machine = [int(k) for k in arrays.best_machine]
    best_duration = [shop.times[v][best_machine[v]] for v in range(n)]
    makespan, head = arrays.longest_paths(best=True)
    assert makespan == state[kernel.BEST_MAKESPAN]
    schedule = _schedule(shop, best_machine, best_duration, head)
    return TabuResult(schedule, makespan, int(state[kernel.ITERATION]))


def compile_ahead() -> None:
    """Compile the search's iterations now (seconds once per machine, then read from numba's cache).

    `search` compiles them on its first call otherwise, inside its own budget: the first search on a
    fresh install finds less. Benchmarks call this first, so that they time the search alone.
    """
    two = Instance((FjJob((FjOperation({0: 2, 1: 3}),)), FjJob((FjOperation({0: 1, 1: 2}),))), 2)
    start = [[_Placed(0, 0, 0, 0, 2)], [_Placed(1, 0, 0, 2, 3)]]  # both jobs on machine 0, in turn
    search(two, start, seconds=60.0, max_iterations=1)


@dataclass(frozen=True, slots=True)
class _Placed:
    """A placed operation, for compile_ahead's start (the search reads only these fields)."""

    job: int
    operation: int
    machine: int
    start: int
    end: int


class SharedBest:
    """The best schedule among tabu searches run side by side on one instance, behind a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._makespan: int | None = None
        self._arrays: tuple[np.ndarray, ...] = ()

    def exchange(self, arrays: _Arrays, state: np.ndarray) -> None:
        """Post this search's best when it beats the board's; take the board's when it is better."""
        from solver.jobshop.tabu_kernel import BEST_MAKESPAN

        with self._lock:
            mine = int(state[BEST_MAKESPAN])
            if self._makespan is None or mine < self._makespan:
                self._makespan = mine
                self._arrays = tuple(a.copy() for a in arrays.best())
            elif self._makespan < mine:
                for target, source in zip(arrays.best(), self._arrays, strict=True):
                    target[:] = source
                state[BEST_MAKESPAN] = self._makespan


class _Arrays:
    """The schedule as the compiled iterations read it: flat arrays, a linked list per machine."""

    def __init__(
        self, shop: _Shop, machine: list[int], duration: list[int], sequences: list[list[int]]
    ) -> None:
        n, m = shop.size, shop.num_machines
        self.job_pred = np.array(shop.job_pred, dtype=np.int64)
        self.job_succ = np.array(shop.job_succ, dtype=np.int64)
        self.release = np.array(shop.release, dtype=np.int64)
        self.ptime = np.full((n, m), -1, dtype=np.int64)
        for v, times in enumerate(shop.times):
            for k, p in times.items():
                self.ptime[v, k] = p
        self.machine = np.array(machine, dtype=np.int64)
        self.duration = np.array(duration, dtype=np.int64)
        self.mpred = np.full(n, -1, dtype=np.int64)
        self.msucc = np.full(n, -1, dtype=np.int64)
        self.mfirst = np.full(m, -1, dtype=np.int64)
        self.mlen = np.zeros(m, dtype=np.int64)
        for k, sequence in enumerate(sequences):
            self.mlen[k] = len(sequence)
            if sequence:
                self.mfirst[k] = sequence[0]
            for a, b in itertools.pairwise(sequence):
                self.msucc[a] = b
                self.mpred[b] = a
        self.best_machine = self.machine.copy()
        self.best_mpred = self.mpred.copy()
        self.best_msucc = self.msucc.copy()
        self.best_mfirst = self.mfirst.copy()
        self.best_mlen = self.mlen.copy()
        # Per operation, the iteration until which it may not move (the tabu list).
        self.tabu_operation = np.zeros(n, dtype=np.int64)

    def kernel_arguments(self) -> tuple[np.ndarray, ...]:
        """The arrays `tabu_kernel.iterate` takes, in its order (before `state`)."""
        return (
            self.job_pred,
            self.job_succ,
            self.release,
            self.ptime,
            self.machine,
            self.duration,
            self.mpred,
            self.msucc,
            self.mfirst,
            self.mlen,
            self.best_machine,
            self.best_mpred,
            self.best_msucc,
            self.best_mfirst,
            self.best_mlen,
            self.tabu_operation,
        )

    def best(self) -> tuple[np.ndarray, ...]:
        """The best schedule's arrays: machine, machine predecessor and successor, first, length."""
        return (self.best_machine, self.best_mpred, self.best_msucc, self.best_mfirst, self.best_mlen)

    def longest_paths(self, best: bool) -> tuple[int, np.ndarray]:
        """The makespan (-1 when the machine orders close a cycle) and heads, of the current or best."""
        from solver.jobshop.tabu_kernel import longest_paths

        n = self.machine.shape[0]
        machine = self.best_machine if best else self.machine
        duration = self.ptime[np.arange(n), machine]
        mpred, msucc = (self.best_mpred, self.best_msucc) if best else (self.mpred, self.msucc)
        head = np.zeros(n, dtype=np.int64)
        scratch = np.zeros((2, n), dtype=np.int64)
        makespan = longest_paths(
            self.job_pred, self.job_succ, msucc, mpred, self.release, duration, head, scratch[0], scratch[1]
        )
        return int(makespan), head
