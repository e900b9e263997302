"""Tabu search for the flexible job shop's makespan, on the disjunctive graph.

CP-SAT proves small schedules optimal, but on flexible instances of a few dozen operations (Brandimarte
mk02) its search stalls on the makespan's plateaus, where a local search that moves critical operations
keeps going. This is that local search; `solver.jobshop.fjsp.solve` runs it beside CP-SAT and hands its best
schedule to CP-SAT as a hint, so the result is the better of the two, with CP-SAT's bound.

A schedule is a machine for every operation and an order of operations on every machine; start times
follow (each operation starts when its job's previous operation and its machine's previous operation
have ended). A move takes one critical operation (one on a longest path) out of its machine and
inserts it on one of its eligible machines at another place, as in Mastrolilli and Gambardella's
neighbourhood for the flexible job shop. Every insertion is scored by the longest path through the
moved operation, from the heads and tails of the current schedule; only insertions that cannot close a
cycle are considered (a sufficient test on those heads); the best few are evaluated exactly and the
best one not forbidden is made. Reversing a move is forbidden for a few iterations (the tabu tenure),
unless it would beat the best schedule found. After a long time without improvement the search goes
back to the best schedule and perturbs it.

Makespan only, without machine calendars: jobshop falls back to CP-SAT alone for anything else.
Pure: its budget is a number of seconds of its own computation, read from the process's
performance counter, and a seed.
"""

from __future__ import annotations

import bisect
import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from solver.jobshop.instance import Instance

#: How many acyclic insertions, best-scored first, are evaluated exactly at each iteration.
EXACT_PER_ITERATION = 4
#: Iterations without a new best schedule before the search goes back to the best and shakes it.
PATIENCE = 300
#: The shake: one random reassignment per this many operations (at least two).
OPERATIONS_PER_SHAKE = 8


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


class _Timing:
    """Heads (earliest starts), makespan and, computed when first read, tails of one schedule.

    Tails (the longest path after each operation's end) are read for the schedule the search moves
    to, and for the few trial moves whose makespan ties the best trial so far; most trials are
    decided by their makespan alone, so the backward pass is left until asked for.
    """

    __slots__ = ("_duration", "_job_succ", "_machine_succ", "_order", "_tail", "head", "makespan")

    def __init__(
        self,
        head: list[int],
        makespan: int,
        order: list[int],
        job_succ: list[int],
        machine_succ: list[int],
        duration: Sequence[int],
    ) -> None:
        self.head = head
        self.makespan = makespan
        self._order = order
        self._job_succ = job_succ
        self._machine_succ = machine_succ
        self._duration = duration
        self._tail: list[int] | None = None

    @property
    def tail(self) -> list[int]:
        """Per operation, the longest path from its end to the end of the schedule."""
        if self._tail is None:
            duration = self._duration
            job_succ = self._job_succ
            machine_succ = self._machine_succ
            tail = [0] * len(self.head)
            for v in reversed(self._order):
                t = 0
                s = job_succ[v]
                if s >= 0:
                    t = tail[s] + duration[s]
                s = machine_succ[v]
                if s >= 0 and tail[s] + duration[s] > t:
                    t = tail[s] + duration[s]
                tail[v] = t
            self._tail = tail
        return self._tail


def _timing(shop: _Shop, sequences: Sequence[Sequence[int]], duration: Sequence[int]) -> _Timing | None:
    """The timing of the schedule, or None when its machine orders close a cycle."""
    n = shop.size
    machine_succ = [-1] * n
    indegree = [0] * n
    job_pred = shop.job_pred
    job_succ = shop.job_succ
    for v in range(n):
        if job_pred[v] >= 0:
            indegree[v] = 1
    for sequence in sequences:
        for a, b in itertools.pairwise(sequence):
            machine_succ[a] = b
            indegree[b] += 1
    head = list(shop.release)
    order = [v for v in range(n) if indegree[v] == 0]
    makespan = 0
    i = 0
    while i < len(order):
        v = order[i]
        i += 1
        end = head[v] + duration[v]
        if end > makespan:
            makespan = end
        # The two successors are written out, not looped over: this is the search's innermost loop.
        s = job_succ[v]
        if s >= 0:
            if head[s] < end:
                head[s] = end
            indegree[s] -= 1
            if indegree[s] == 0:
                order.append(s)
        s = machine_succ[v]
        if s >= 0:
            if head[s] < end:
                head[s] = end
            indegree[s] -= 1
            if indegree[s] == 0:
                order.append(s)
    if len(order) < n:
        return None
    return _Timing(head, makespan, order, job_succ, machine_succ, duration)


def _schedule(
    shop: _Shop, machine: Sequence[int], duration: Sequence[int], timing: _Timing
) -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """Per job, per operation, (machine, start, end): every operation as early as its graph allows."""
    jobs: list[list[tuple[int, int, int]]] = [[] for _ in range(shop.num_jobs)]
    for v, (j, _) in enumerate(shop.key):
        start = timing.head[v]
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
) -> TabuResult:
    """The best schedule reachable from `start` by tabu search within `seconds` (or `max_iterations`).

    `start` must be a complete, valid schedule of `instance` (machine and order are read from it).
    Stops early when the makespan reaches `target` (a proven lower bound) or when `stop()` turns true
    (checked every few iterations). Raises ValueError when the instance has machine calendars, which
    the disjunctive graph here does not model.
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
    timing = _timing(shop, sequences, duration)
    if timing is None:
        raise ValueError("the start schedule's machine orders are cyclic")

    rng = random.Random(seed)
    best = (timing.makespan, list(machine), list(duration), [list(s) for s in sequences])
    best_timing = timing
    # (operation, machine, predecessor) -> iteration until which v may not be inserted there; a
    # predecessor of -2 stands for "anywhere on that machine".
    tabu: dict[tuple[int, int, int], int] = {}
    since_best = 0
    iteration = 0
    deadline = time.perf_counter() + seconds
    job_pred = shop.job_pred
    job_succ = shop.job_succ
    release = shop.release
    while best[0] > target and (max_iterations is None or iteration < max_iterations):
        if iteration % 16 == 0 and (time.perf_counter() >= deadline or (stop is not None and stop())):
            break
        iteration += 1
        head, tail, makespan = timing.head, timing.tail, timing.makespan
        critical = [v for v in range(n) if head[v] + duration[v] + tail[v] == makespan]
        # Per machine, in sequence order: heads, ends, and tails from the start. Heads and ends never
        # decrease along a machine and tails never increase, so the insertions that surely close a
        # cycle are a prefix and a suffix of each sequence, found by bisection.
        heads_on = [[head[u] for u in s] for s in sequences]
        ends_on = [[head[u] + duration[u] for u in s] for s in sequences]
        tails_on = [[tail[u] + duration[u] for u in s] for s in sequences]
        at = [0] * n
        for s in sequences:
            for i, u in enumerate(s):
                at[u] = i
        # (longest path through v after the move, as estimated; tie; v; machine; position)
        candidates: list[tuple[int, float, int, int, int]] = []
        for v in critical:
            here = machine[v]
            jp = job_pred[v]
            js = job_succ[v]
            ready = head[jp] + duration[jp] if jp >= 0 else release[v]
            after = tail[js] + duration[js] if js >= 0 else 0
            for k, p in shop.times[v].items():
                heads_k, ends_k, tails_k = heads_on[k], ends_on[k], tails_on[k]
                original = -1
                if k == here:  # v's own machine, without v
                    original = at[v]
                    heads_k = heads_k[:original] + heads_k[original + 1 :]
                    ends_k = ends_k[:original] + ends_k[original + 1 :]
                    tails_k = tails_k[:original] + tails_k[original + 1 :]
                length = len(ends_k)
                # Skip what surely closes a cycle: v before an operation that ends before its job
                # predecessor starts (or before the predecessor itself), or after one that starts once
                # its job successor has ended (or after the successor itself).
                first = 0
                if jp >= 0:
                    first = bisect.bisect_right(ends_k, head[jp])
                    if machine[jp] == k:
                        first = max(first, at[jp] - (0 <= original < at[jp]) + 1)
                last = length
                if js >= 0:
                    last = bisect.bisect_left(heads_k, head[js] + duration[js])
                    if machine[js] == k:
                        last = min(last, at[js] - (0 <= original < at[js]))
                for position in range(first, last + 1):
                    if position == original:
                        continue
                    begin = ready
                    if position > 0 and ends_k[position - 1] > begin:
                        begin = ends_k[position - 1]
                    rest = after
                    if position < length and tails_k[position] > rest:
                        rest = tails_k[position]
                    candidates.append((begin + p + rest, rng.random(), v, k, position))
        if not candidates:
            break  # nothing can move: one machine per operation and no order to change
        candidates.sort()
        chosen: tuple[tuple[int, int, int], int, int, int, _Timing, list[list[int]], list[int]] | None = None
        tried = 0
        for _, _, v, k, position in candidates:
            if tried >= EXACT_PER_ITERATION and (chosen is not None or tried >= 4 * EXACT_PER_ITERATION):
                break
            old = machine[v]
            old_at = sequences[old].index(v)
            before = sequences[old][old_at - 1] if old_at > 0 else -1
            trial = list(sequences)
            trial[old] = sequences[old][:old_at] + sequences[old][old_at + 1 :]
            target_sequence = list(trial[k])
            u = target_sequence[position - 1] if position > 0 else -1
            target_sequence.insert(position, v)
            trial[k] = target_sequence
            trial_duration = duration
            if k != old:
                trial_duration = list(duration)
                trial_duration[v] = shop.times[v][k]
            trial_timing = _timing(shop, trial, trial_duration)
            if trial_timing is None:
                continue  # the estimate's cycle test is sufficient, not necessary
            tried += 1
            forbidden = tabu.get((v, k, u), 0) > iteration or tabu.get((v, k, -2), 0) > iteration
            if forbidden and trial_timing.makespan >= best[0]:
                continue  # forbidden, and not better than the best schedule (which would lift it)
            tm = trial_timing.makespan
            # On a plateau, prefer a faster machine for v (less work in all, more room for the rest),
            # then fewer critical operations (fewer to move before the makespan drops).
            slower = trial_duration[v] - duration[v]
            if chosen is not None and (tm, slower) > chosen[0][:2]:
                continue  # worse whatever its critical operations: no need for its tails
            th, tt = trial_timing.head, trial_timing.tail
            critical_after = sum(1 for x in range(n) if th[x] + trial_duration[x] + tt[x] == tm)
            score = (tm, slower, critical_after)
            if chosen is None or score < chosen[0]:
                chosen = (score, v, k, before, trial_timing, trial, trial_duration)
        if chosen is None:
            tabu.clear()  # everything near is forbidden: lift the prohibitions and carry on
            continue
        _, v, k, before, timing, sequences, duration = chosen
        old = machine[v]
        machine[v] = k
        until = iteration + rng.randint(2, 2 + max(2, len(critical) // 2))
        tabu[(v, old, before)] = until  # v may not go back where it was...
        if k != old:
            tabu[(v, old, -2)] = until  # ...nor onto its old machine at all, for a while
        if timing.makespan <= best[0]:
            # A tie replaces the best schedule too, without resetting the patience: the search goes
            # back to where it last stood on the best plateau, not to where it first reached it.
            since_best = 0 if timing.makespan < best[0] else since_best + 1
            best = (timing.makespan, list(machine), list(duration), [list(s) for s in sequences])
            best_timing = timing
        else:
            since_best += 1
        if since_best >= PATIENCE:
            # Back to the best schedule, shaken by a few random feasible moves.
            machine, duration, sequences = list(best[1]), list(best[2]), [list(s) for s in best[3]]
            shake = max(2, n // OPERATIONS_PER_SHAKE)
            timing = _perturb(shop, sequences, machine, duration, rng, moves=shake)
            tabu.clear()
            since_best = 0
    _, machine, duration, _ = best
    return TabuResult(_schedule(shop, machine, duration, best_timing), best[0], iteration)


def _perturb(
    shop: _Shop,
    sequences: list[list[int]],
    machine: list[int],
    duration: list[int],
    rng: random.Random,
    moves: int,
) -> _Timing:
    """Make `moves` random acyclic reassignments in place and return the resulting timing."""
    timing = _timing(shop, sequences, duration)
    assert timing is not None
    for _ in range(moves * 4):
        if moves <= 0:
            break
        v = rng.randrange(shop.size)
        k = rng.choice(list(shop.times[v]))
        old = machine[v]
        trial = list(sequences)
        trial[old] = [u for u in sequences[old] if u != v]
        target = list(trial[k])
        target.insert(rng.randrange(len(target) + 1), v)
        trial[k] = target
        trial_duration = list(duration)
        trial_duration[v] = shop.times[v][k]
        new_timing = _timing(shop, trial, trial_duration)
        if new_timing is None:
            continue
        sequences[:] = trial
        duration[:] = trial_duration
        machine[v] = k
        timing = new_timing
        moves -= 1
    return timing
