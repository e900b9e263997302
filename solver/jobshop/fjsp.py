"""A flexible job-shop model and its CP-SAT solver: jobs of ordered operations, each on one of its machines.

This is the engine under a lab's schedule (DESIGN.md section 5, "Lab schedule") and the same engine the
standard flexible job-shop instances (Brandimarte mk01-mk05) measure, so the lab scheduler is tested
against values nobody here chose.

Data (all times are integers in one unit of the caller's choice):

- a job is a sequence of operations in precedence order, with an optional release time (its first
  operation starts no earlier), due date and weight;
- an operation has alternatives: machine index -> processing time; it runs on exactly one of them,
  without interruption;
- a machine may have a calendar: unavailable [start, end) intervals that no operation may overlap
  (an operation is not split around them).

Objectives: "makespan" (end of the last operation) or "weighted_tardiness" (sum over jobs of
weight x max(0, end - due)), with the makespan as a lexicographic tie-break.

Model: per operation a start and an end variable, one Boolean per alternative and an optional
fixed-size interval per alternative sharing that start; exactly one alternative; NoOverlap per machine
with the calendar blocks as fixed intervals. CP-SAT's own first schedules are poor, so the solver is
started from the best of a few dispatching-rule schedules, hinting every variable (a partial hint can be
broken by presolve), and never returns anything worse than that schedule.

Pure: no clock, no sockets, no files; data in, schedule out. `check_schedule` is an independent
validator that reads only the instance and the result.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from ortools.sat.python import cp_model

from solver.jobshop import tabu
from solver.jobshop.instance import Instance

Objective = Literal["makespan", "weighted_tardiness"]
OBJECTIVES: tuple[str, ...] = ("makespan", "weighted_tardiness")
#: The share of the time kept for the last CP-SAT run on the whole model (the bound, often a proof).
FINAL_SHARE = 0.15
#: Operations up to which CP-SAT runs beside the tabu search; beyond, every worker runs a tabu search.
CP_SAT_BESIDE_MOST = 60
#: Beyond CP_SAT_BESIDE_MOST operations, the tabu searches side by side evaluate this many insertions
#: exactly at each move, one depth per worker in turn (`tabu.search`'s `exact_per_iteration`). No one
#: depth suits every instance: on mk06 (10 s, 2 workers, seeds 16-31) both searches at 4 ended above
#: 2 % of the best known once in 16 runs and both at 16 seven times; on mk10, 8 times at 4 and twice at
#: 16. A shallow search makes more moves, a deep one better moves on the makespan's plateaus, and the
#: two share their best schedule (docs/benchmarks.md, "Flexible job shop").
TABU_DEPTHS = (4, 16)
#: FINAL_SHARE beyond CP_SAT_BESIDE_MOST operations, where CP-SAT rarely proves in seconds: the time
#: goes to the tabu searches, CP-SAT keeps enough for its bound.
FINAL_SHARE_BEYOND = 0.03


@dataclass(frozen=True, slots=True)
class ScheduledOperation:
    """Where and when one operation runs: machine index and [start, end)."""

    job: int
    operation: int
    machine: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Result:
    """A schedule with its objective, the solver's proven bound on that objective, status and time.

    `status` is OPTIMAL or FEASIBLE (CP-SAT), or DISPATCH when the dispatching-rule schedule was kept
    (CP-SAT not run, or it found nothing better in its time). `bound` is a proven lower bound on the
    objective; `seconds` is the solver's wall time (0 when it did not run).
    """

    #: Per job, per operation, in the instance's order.
    operations: tuple[tuple[ScheduledOperation, ...], ...]
    objective_name: str
    objective: int
    bound: int
    status: str
    seconds: float
    makespan: int
    weighted_tardiness: int

    @property
    def gap(self) -> float:
        """Relative gap between objective and bound (0 when proven optimal or the objective is 0)."""
        if self.objective <= 0:
            return 0.0
        return max(0.0, (self.objective - self.bound) / self.objective)


# --- calendars ----------------------------------------------------------------------------------------


def _merged_blocks(instance: Instance) -> list[list[tuple[int, int]]]:
    """Per machine, its unavailable intervals sorted and merged (touching ones joined)."""
    merged: list[list[tuple[int, int]]] = [[] for _ in range(instance.num_machines)]
    for machine, blocks in instance.calendars.items():
        out: list[tuple[int, int]] = []
        for start, end in sorted(blocks):
            if out and start <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], end))
            else:
                out.append((start, end))
        merged[machine] = out
    return merged


def earliest_fit(blocks: Sequence[tuple[int, int]], ready: int, duration: int) -> int:
    """The earliest start >= `ready` at which [start, start + duration) overlaps none of `blocks`.

    `blocks` must be sorted and disjoint. A zero-length operation fits anywhere outside a block.
    """
    if duration == 0:
        return ready
    start = ready
    i = bisect.bisect_right([end for _, end in blocks], start)  # first block ending after `ready`
    for b_start, b_end in blocks[i:]:
        if start + duration <= b_start:
            return start
        start = max(start, b_end)
    return start


# --- dispatching rules --------------------------------------------------------------------------------


def _job_rank(instance: Instance) -> list[tuple[int, int, int]]:
    """Sort key of each job for 'job priority order': heavier first, then earlier due, then as given."""
    big = 1 << 62
    return [(-job.weight, job.due if job.due is not None else big, j) for j, job in enumerate(instance.jobs)]


def _evaluate(instance: Instance, ops: list[list[ScheduledOperation]]) -> tuple[int, int]:
    """(makespan, weighted tardiness) of a complete schedule."""
    makespan = 0
    tardiness = 0
    for j, job in enumerate(instance.jobs):
        end = ops[j][-1].end
        makespan = max(makespan, end)
        if job.due is not None:
            tardiness += job.weight * max(0, end - job.due)
    return makespan, tardiness


def _serial_dispatch(instance: Instance, order: Sequence[int]) -> list[list[ScheduledOperation]]:
    """Jobs one after another in `order`; each operation on the machine that finishes it first.

    Operations are appended after a machine's last operation (no back-filling), which is the rule a
    lab uses when it accepts jobs one by one.
    """
    blocks = _merged_blocks(instance)
    free = [0] * instance.num_machines
    result: list[list[ScheduledOperation]] = [[] for _ in instance.jobs]
    for j in order:
        job = instance.jobs[j]
        ready = job.release
        for o, op in enumerate(job.operations):
            best: tuple[int, int, int] | None = None
            for machine in sorted(op.alternatives):
                duration = op.alternatives[machine]
                start = earliest_fit(blocks[machine], max(ready, free[machine]), duration)
                if best is None or start + duration < best[2]:
                    best = (machine, start, start + duration)
            assert best is not None
            machine, start, end = best
            free[machine] = max(free[machine], end)
            result[j].append(ScheduledOperation(j, o, machine, start, end))
            ready = end
    return result


def _parallel_dispatch(instance: Instance, rank: Sequence[tuple[int, ...]]) -> list[list[ScheduledOperation]]:
    """List scheduling: repeatedly place, among every job's next operation, the one that can finish first.

    Ties go to the job with the smaller `rank`. Each operation goes to the machine that finishes it
    first, placed in the earliest idle gap of that machine that fits (back-filling allowed).
    """
    blocks = _merged_blocks(instance)
    # Per machine, the busy intervals placed so far (sorted), merged with its calendar when searched.
    busy: list[list[tuple[int, int]]] = [list(b) for b in blocks]
    next_op = [0] * len(instance.jobs)
    ready = [job.release for job in instance.jobs]
    result: list[list[ScheduledOperation]] = [[] for _ in instance.jobs]
    remaining = instance.num_operations
    while remaining:
        choice: tuple[tuple[int, ...], int, int, int, int] | None = None
        for j, job in enumerate(instance.jobs):
            o = next_op[j]
            if o >= len(job.operations):
                continue
            op = job.operations[o]
            for machine in sorted(op.alternatives):
                duration = op.alternatives[machine]
                start = earliest_fit(busy[machine], ready[j], duration)
                key = (start + duration, *rank[j])
                if choice is None or key < choice[0]:
                    choice = (key, j, machine, start, start + duration)
        assert choice is not None
        _, j, machine, start, end = choice
        if end > start:
            bisect.insort(busy[machine], (start, end))
        result[j].append(ScheduledOperation(j, next_op[j], machine, start, end))
        next_op[j] += 1
        ready[j] = end
        remaining -= 1
    return result


def _score(instance: Instance, objective: Objective, ops: list[list[ScheduledOperation]]) -> tuple[int, int]:
    makespan, tardiness = _evaluate(instance, ops)
    return (makespan, 0) if objective == "makespan" else (tardiness, makespan)


def dispatch(instance: Instance, objective: Objective = "makespan") -> Result:
    """The best of a few dispatching-rule schedules for `objective`, as a Result with status DISPATCH.

    Rules tried: jobs one after another in priority order (weight, then due date, then as given), and
    list scheduling (earliest finishing operation first) with job ties broken by priority, by most
    remaining work, and by due date. Deterministic and fast (milliseconds for hundreds of operations).
    """
    _check_objective(objective)
    priority = _job_rank(instance)
    order = sorted(range(len(instance.jobs)), key=lambda j: priority[j])
    work = [
        -sum(min(op.alternatives.values()) for op in job.operations) for job in instance.jobs
    ]  # most work first
    big = 1 << 62
    dues = [job.due if job.due is not None else big for job in instance.jobs]
    candidates = [
        _serial_dispatch(instance, order),
        _parallel_dispatch(instance, priority),
        _parallel_dispatch(instance, [(w, j) for j, w in enumerate(work)]),
        _parallel_dispatch(instance, [(d, w, j) for j, (d, w) in enumerate(zip(dues, work, strict=True))]),
    ]
    best = min(candidates, key=lambda ops: _score(instance, objective, ops))
    return _result(instance, objective, best, status="DISPATCH", bound=_trivial_bound(instance, objective))


def _trivial_bound(instance: Instance, objective: Objective) -> int:
    """A cheap lower bound on the makespan (0 for weighted tardiness): the larger of two arguments.

    The longest job: its release plus its shortest processing times. And the load of machine sets:
    the operations that can run only on machines of a set S need at least the sum of their shortest
    times divided by |S|, whatever the schedule. Every set is tried up to 12 machines (4,096 sets);
    beyond that, the operations' own eligible sets and the whole shop.
    """
    if objective != "makespan":
        return 0
    longest_job = max(
        job.release + sum(min(op.alternatives.values()) for op in job.operations) for job in instance.jobs
    )
    operations = [op for job in instance.jobs for op in job.operations]
    masks = np.array([sum(1 << m for m in op.alternatives) for op in operations], dtype=np.int64)
    shortest = np.array([min(op.alternatives.values()) for op in operations], dtype=np.int64)
    full = (1 << instance.num_machines) - 1
    if instance.num_machines <= 12:
        machine_sets: Sequence[int] = range(1, full + 1)
    else:
        machine_sets = sorted({int(mask) for mask in masks} | {full})
    load = 0
    for machine_set in machine_sets:
        inside = (masks & ~machine_set) == 0
        if inside.any():
            load = max(load, -(-int(shortest[inside].sum()) // machine_set.bit_count()))
    # Calendars only add to this bound; blocked time is not counted, so it stays a lower bound.
    return max(longest_job, load)


def _result(
    instance: Instance,
    objective: Objective,
    ops: list[list[ScheduledOperation]],
    *,
    status: str,
    bound: int,
    seconds: float = 0.0,
) -> Result:
    makespan, tardiness = _evaluate(instance, ops)
    value = makespan if objective == "makespan" else tardiness
    return Result(
        operations=tuple(tuple(job_ops) for job_ops in ops),
        objective_name=objective,
        objective=value,
        bound=min(bound, value),
        status=status,
        seconds=seconds,
        makespan=makespan,
        weighted_tardiness=tardiness,
    )


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


# --- CP-SAT -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _CpModel:
    """A built CP-SAT model and the variables a schedule is read from."""

    model: cp_model.CpModel
    starts: list[list[cp_model.IntVar]]
    ends: list[list[cp_model.IntVar]]
    chosen: list[list[dict[int, cp_model.IntVar]]]
    makespan: cp_model.IntVar
    tardy: list[tuple[cp_model.IntVar, int, int]]  # (variable, weight, job)
    scale: int


def _build(
    instance: Instance,
    objective: Objective,
    horizon: int,
    blocks: list[list[tuple[int, int]]],
    hint: list[list[ScheduledOperation]],
    free: set[tuple[int, int]] | None = None,
    compact: bool = False,
) -> _CpModel:
    """The CP-SAT model of `instance`, every variable hinted from `hint`.

    With `free` given (a neighbourhood), every operation not in it keeps its machine in `hint` and, on
    each machine, the kept operations keep their order in `hint`; only their times may move.
    """
    model = cp_model.CpModel()
    starts: list[list[cp_model.IntVar]] = []
    ends: list[list[cp_model.IntVar]] = []
    chosen: list[list[dict[int, cp_model.IntVar]]] = []
    per_machine: list[list[cp_model.IntervalVar]] = [[] for _ in range(instance.num_machines)]
    kept: list[list[tuple[int, int, int]]] = [[] for _ in range(instance.num_machines)]
    for j, job in enumerate(instance.jobs):
        job_starts: list[cp_model.IntVar] = []
        job_ends: list[cp_model.IntVar] = []
        job_chosen: list[dict[int, cp_model.IntVar]] = []
        for o, op in enumerate(job.operations):
            lo = job.release if o == 0 else 0
            s = model.new_int_var(lo, horizon, f"s{j}_{o}")
            e = model.new_int_var(lo, horizon, f"e{j}_{o}")
            alternatives = dict(op.alternatives)
            if free is not None and (j, o) not in free:
                machine = hint[j][o].machine
                alternatives = {machine: op.alternatives[machine]}
                kept[machine].append((hint[j][o].start, j, o))
            presence: dict[int, cp_model.IntVar] = {}
            if len(alternatives) == 1:
                ((machine, duration),) = alternatives.items()
                model.add(e == s + duration)
                presence[machine] = model.new_constant(1)
                per_machine[machine].append(model.new_interval_var(s, duration, e, f"i{j}_{o}"))
            else:
                for machine in sorted(alternatives):
                    literal = model.new_bool_var(f"x{j}_{o}_{machine}")
                    presence[machine] = literal
                    per_machine[machine].append(
                        model.new_optional_fixed_size_interval_var(
                            s, alternatives[machine], literal, f"i{j}_{o}_{machine}"
                        )
                    )
                model.add_exactly_one(presence.values())
                model.add(e == s + sum(d * presence[m] for m, d in alternatives.items()))
            if o > 0:
                model.add(s >= job_ends[-1])
            job_starts.append(s)
            job_ends.append(e)
            job_chosen.append(presence)
        starts.append(job_starts)
        ends.append(job_ends)
        chosen.append(job_chosen)
    for machine, intervals in enumerate(per_machine):
        fixed = [model.new_fixed_size_interval_var(a, b - a, f"off{machine}_{a}") for a, b in blocks[machine]]
        if intervals and len(intervals) + len(fixed) > 1:
            model.add_no_overlap(intervals + fixed)
        order = sorted(kept[machine])
        for (_, j1, o1), (_, j2, o2) in itertools.pairwise(order):
            model.add(starts[j2][o2] >= ends[j1][o1])

    makespan = model.new_int_var(0, horizon, "makespan")
    model.add_max_equality(makespan, [job_ends[-1] for job_ends in ends])
    tardy: list[tuple[cp_model.IntVar, int, int]] = []
    scale = horizon + 1
    if objective == "weighted_tardiness":
        for j, job in enumerate(instance.jobs):
            if job.due is None or job.weight == 0:
                continue
            t = model.new_int_var(0, max(0, horizon - job.due), f"t{j}")
            model.add(t >= ends[j][-1] - job.due)
            tardy.append((t, job.weight, j))
        # Lexicographic: weighted tardiness first, the makespan (always < scale) breaks ties.
        model.minimize(scale * sum(w * t for t, w, _ in tardy) + makespan)
    elif compact:
        # The makespan first; the sum of job ends breaks ties, so that a search on the makespan's
        # plateau still moves towards schedules with more slack.
        model.minimize(len(instance.jobs) * scale * makespan + sum(job_ends[-1] for job_ends in ends))
    else:
        model.minimize(makespan)

    for j, job_ops in enumerate(hint):
        for o, placed in enumerate(job_ops):
            model.add_hint(starts[j][o], placed.start)
            model.add_hint(ends[j][o], placed.end)
            if len(chosen[j][o]) > 1:
                for machine, literal in chosen[j][o].items():
                    model.add_hint(literal, machine == placed.machine)
    model.add_hint(makespan, max(job_ops[-1].end for job_ops in hint))
    for t, _, j in tardy:
        due = instance.jobs[j].due
        assert due is not None
        model.add_hint(t, max(0, hint[j][-1].end - due))
    return _CpModel(model, starts, ends, chosen, makespan, tardy, scale)


def _run(
    built: _CpModel,
    instance: Instance,
    time_limit_s: float,
    workers: int,
    seed: int,
    solver: cp_model.CpSolver | None = None,
) -> tuple[int, float, float, list[list[ScheduledOperation]] | None]:
    """Solve a built model: (CP-SAT status, raw objective bound, wall seconds, schedule or None).

    Pass `solver` to keep a handle that can stop the search from another thread.
    """
    solver = solver if solver is not None else cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    code = solver.solve(built.model)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return code, 0.0, solver.wall_time, None
    ops = [
        [
            ScheduledOperation(
                j,
                o,
                next(m for m, lit in built.chosen[j][o].items() if solver.boolean_value(lit)),
                solver.value(built.starts[j][o]),
                solver.value(built.ends[j][o]),
            )
            for o in range(len(instance.jobs[j].operations))
        ]
        for j in range(len(instance.jobs))
    ]
    return code, solver.best_objective_bound, solver.wall_time, ops


def _neighbourhood(
    instance: Instance, current: list[list[ScheduledOperation]], size: int, rng: random.Random
) -> set[tuple[int, int]]:
    """`size` operations to re-optimise: a time window, a few whole jobs, or a few whole machines."""
    placed = sorted((op for job_ops in current for op in job_ops), key=lambda op: (op.start, op.job))
    kind = rng.randrange(3)
    if kind == 0:
        first = rng.randrange(max(1, len(placed) - size + 1))
        return {(op.job, op.operation) for op in placed[first : first + size]}
    chosen: set[tuple[int, int]] = set()
    if kind == 1:
        jobs = list(range(len(instance.jobs)))
        rng.shuffle(jobs)
        for j in jobs:
            if len(chosen) >= size:
                break
            chosen.update((j, o) for o in range(len(instance.jobs[j].operations)))
        return chosen
    machines = list(range(instance.num_machines))
    rng.shuffle(machines)
    for machine in machines:
        if len(chosen) >= size:
            break
        chosen.update((op.job, op.operation) for op in placed if op.machine == machine)
    return chosen


def _tabu_portfolio(
    instance: Instance,
    blocks: list[list[tuple[int, int]]],
    current: list[list[ScheduledOperation]],
    seconds: float,
    workers: int,
    seed: int,
    bound: int,
) -> tuple[list[list[ScheduledOperation]], float, int]:
    """The best of tabu searches and CP-SAT run side by side for `seconds`, from `current`.

    Each tabu search holds one thread (its iterations are compiled and release the interpreter, as
    CP-SAT does). Up to CP_SAT_BESIDE_MOST operations, one tabu search runs and CP-SAT gets the
    other `workers - 1` (none when `workers` is 1): there CP-SAT can still prove the optimum. Beyond,
    its one worker rarely improves the schedule or the bound within seconds, so every worker runs a
    tabu search, each from its own seed and at its own depth (`TABU_DEPTHS`), sharing their best
    schedule (`tabu.SharedBest`): a search that restarts starts from the best any of them found.
    Whichever reaches the proven bound first stops the others. Returns (best schedule, wall seconds,
    CP-SAT's proven bound or `bound`).
    """
    started = time.perf_counter()
    proven = threading.Event()
    found: list[tuple[int, float, list[list[ScheduledOperation]] | None]] = []  # CP-SAT's outcome
    solver: cp_model.CpSolver | None = None
    helper: threading.Thread | None = None
    searches = workers if instance.num_operations > CP_SAT_BESIDE_MOST else 1
    if workers - searches >= 1:
        horizon = max(job_ops[-1].end for job_ops in current)
        built = _build(instance, "makespan", horizon, blocks, current)
        solver = cp_model.CpSolver()

        def cp_sat() -> None:
            assert solver is not None
            code, raw, _, ops = _run(built, instance, seconds, workers - searches, seed + 7, solver)
            found.append((code, raw, ops))
            if code == cp_model.OPTIMAL:
                proven.set()

        helper = threading.Thread(target=cp_sat, name="cp-sat-beside-tabu", daemon=True)
        helper.start()

    board = tabu.SharedBest() if searches > 1 else None

    depths = TABU_DEPTHS if searches > 1 else (tabu.EXACT_PER_ITERATION,)

    def one_search(worker: int) -> tabu.TabuResult:
        result = tabu.search(
            instance,
            current,
            seconds=seconds,
            seed=seed + worker,
            target=bound,
            stop=proven.is_set,
            board=board,
            exact_per_iteration=depths[worker % len(depths)],
        )
        if result.makespan <= bound:
            proven.set()  # at the bound: the other searches stop too
        return result

    if searches == 1:
        results = [one_search(0)]
    else:
        with ThreadPoolExecutor(searches, thread_name_prefix="tabu") as pool:
            results = list(pool.map(one_search, range(searches)))
    searched = min(results, key=lambda result: result.makespan)
    while helper is not None and helper.is_alive():
        assert solver is not None
        solver.stop_search()  # the tabu search is done: out of time, or at the proven bound
        helper.join(0.05)
    best = [
        [ScheduledOperation(j, o, machine, start, end) for o, (machine, start, end) in enumerate(job_ops)]
        for j, job_ops in enumerate(searched.operations)
    ]
    cp_bound = bound
    for code, raw, ops in found:
        if ops is None:
            continue
        if _lns_key(ops, "makespan", instance) < _lns_key(best, "makespan", instance):
            best = ops
        proof = code == cp_model.OPTIMAL
        cp_bound = _score(instance, "makespan", best)[0] if proof else math.ceil(raw - 1e-6)
    return best, time.perf_counter() - started, max(bound, cp_bound)


def _lns_key(
    ops: list[list[ScheduledOperation]], objective: Objective, instance: Instance
) -> tuple[int, int, int]:
    """The score, then the sum of job ends: what the neighbourhood search compares schedules by."""
    return (*_score(instance, objective, ops), sum(job_ops[-1].end for job_ops in ops))


def solve(
    instance: Instance,
    objective: Objective = "makespan",
    *,
    time_limit_s: float = 10.0,
    workers: int = 2,
    seed: int = 0,
    start_from: Result | None = None,
    lns_share: float = 0.3,
) -> Result:
    """Solve `instance` with CP-SAT within about `time_limit_s`, warm-started from a dispatching rule.

    Three phases. (1) CP-SAT on the whole model for a tenth of the time: small instances end here,
    proven optimal. (2a) For the makespan without calendars, until the last `FINAL_SHARE` of the
    time: the tabu search of solver.jobshop.tabu on one thread and CP-SAT on the whole model on the other
    `workers - 1`, side by side; on flexible instances of a few dozen operations CP-SAT stalls on the
    makespan's plateaus where the tabu search goes on. Beyond CP_SAT_BESIDE_MOST operations a tabu
    search runs on every worker instead, until the last FINAL_SHARE_BEYOND of the time. (2b)
    Otherwise, large-neighbourhood search for `lns_share` of the time: a time window, a few jobs or a
    few machines are freed, every other operation keeps its machine and its order there, and CP-SAT
    (one worker per neighbourhood, `workers` neighbourhoods at once) re-solves that smaller model
    from the current schedule, keeping the result when no worse (ties broken by the sum of job ends,
    so the search moves along the makespan's plateaus). (3) CP-SAT on the whole model again, from
    the best schedule, for the rest of the time: it may still improve it and gives the bound, itself
    never below the machine-load bound.
    `lns_share` 0 skips phases 2 and 3.

    `start_from` replaces the dispatch schedule as the starting point (a complete, valid schedule of
    this instance). The result is never worse than the starting point (status DISPATCH when nothing
    better was found). Runs are reproducible only with one worker and a proven optimum.
    """
    _check_objective(objective)
    if time_limit_s <= 0:
        raise ValueError(f"time_limit_s must be positive, got {time_limit_s}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not 0.0 <= lns_share < 1.0:
        raise ValueError(f"lns_share must be in [0, 1), got {lns_share}")
    start = start_from if start_from is not None else dispatch(instance, objective)
    current = [list(job_ops) for job_ops in start.operations]
    blocks = _merged_blocks(instance)
    total = sum(max(op.alternatives.values()) for job in instance.jobs for op in job.operations)
    latest_fixed = max([job.release for job in instance.jobs] + [b[-1][1] for b in blocks if b])
    horizon = max(latest_fixed + total, start.makespan)
    if objective == "makespan":
        horizon = start.makespan  # an optimal schedule is never longer than the one in hand

    def bound_of(raw: float, scale: int) -> int:
        if objective == "makespan":
            return math.ceil(raw - 1e-6)
        return int(raw // scale)

    # Phase 1: the whole model, briefly: small instances end here, proven optimal.
    first_share = min(0.1, 1.0 - lns_share) if lns_share > 0 else 1.0
    built = _build(instance, objective, horizon, blocks, current)
    code, raw, seconds, solved = _run(built, instance, time_limit_s * first_share, workers, seed)
    bound = _trivial_bound(instance, objective)
    if solved is not None:
        bound = max(bound, bound_of(raw, built.scale))
    improved = False
    if solved is not None and _score(instance, objective, solved) < _score(instance, objective, current):
        current, improved = solved, True
    if code == cp_model.OPTIMAL:
        status = "OPTIMAL" if improved else "DISPATCH"
        value = _score(instance, objective, current)[0]
        return _result(instance, objective, current, status=status, bound=value, seconds=seconds)

    if objective == "makespan" and not any(blocks) and lns_share > 0:
        # Phase 2, makespan without calendars: tabu search here, CP-SAT on the whole model beside it.
        final_share = FINAL_SHARE if instance.num_operations <= CP_SAT_BESIDE_MOST else FINAL_SHARE_BEYOND
        portfolio_end = time_limit_s * (1.0 - final_share)
        if portfolio_end - seconds > 0.05:
            candidate, spent, cp_bound = _tabu_portfolio(
                instance, blocks, current, portfolio_end - seconds, workers, seed, bound
            )
            seconds += spent
            bound = max(bound, cp_bound)
            if _lns_key(candidate, objective, instance) < _lns_key(current, objective, instance):
                improved = improved or (
                    _score(instance, objective, candidate) < _score(instance, objective, current)
                )
                current = candidate
        proven = _score(instance, objective, current)[0] <= bound
        lns_end = seconds  # no CP-SAT neighbourhood search after the tabu search
    else:
        proven = False
        lns_end = time_limit_s * (first_share + lns_share)

    # Phase 2, otherwise: large-neighbourhood search, `workers` neighbourhoods at a time, one CP-SAT
    # worker each.
    rng = random.Random(seed)
    n = instance.num_operations
    size = max(min(n, 8), int(0.3 * n))
    step_limit = max(0.05, min(0.25, time_limit_s / 40))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while lns_share > 0 and lns_end - seconds > 0.02:
            if objective == "makespan" and _score(instance, objective, current)[0] <= bound:
                break  # proven optimal
            sub_horizon = max(job_ops[-1].end for job_ops in current) if objective == "makespan" else horizon
            limit = min(step_limit, lns_end - seconds)
            subs = [
                (
                    _build(
                        instance,
                        objective,
                        sub_horizon,
                        blocks,
                        current,
                        _neighbourhood(instance, current, size, rng),
                        compact=True,
                    ),
                    rng.randrange(1 << 30),
                )
                for _ in range(workers)
            ]
            outcomes = list(
                pool.map(
                    _run,
                    [b for b, _ in subs],
                    [instance] * workers,
                    [limit] * workers,
                    [1] * workers,
                    [r for _, r in subs],
                )
            )
            seconds += max(outcome[2] for outcome in outcomes)
            closed = 0
            for sub_code, _, _, candidate in outcomes:
                closed += sub_code == cp_model.OPTIMAL
                if candidate is None:
                    continue
                if _lns_key(candidate, objective, instance) <= _lns_key(current, objective, instance):
                    improved = improved or (
                        _score(instance, objective, candidate) < _score(instance, objective, current)
                    )
                    current = candidate
            # Grow the neighbourhood when CP-SAT closes it, shrink it when CP-SAT runs out of time.
            if closed * 2 >= len(outcomes):
                size = min(n, int(size * 1.15) + 1)
            else:
                size = max(min(n, 5), int(size * 0.85))

    # Phase 3: the whole model again from the best schedule: a better bound, often a proof.
    if time_limit_s - seconds > 0.02 and lns_share > 0 and not proven:
        if objective == "makespan":
            horizon = max(job_ops[-1].end for job_ops in current)
        built = _build(instance, objective, horizon, blocks, current)
        code, raw, more, solved = _run(built, instance, time_limit_s - seconds, workers, seed + 1)
        seconds += more
        if solved is not None:
            bound = max(bound, bound_of(raw, built.scale))
            if _score(instance, objective, solved) < _score(instance, objective, current):
                current, improved = solved, True
    value = _score(instance, objective, current)[0]
    status = "FEASIBLE" if improved else "DISPATCH"
    if value <= bound:
        bound = value
        status = "OPTIMAL" if improved else "DISPATCH"
    return _result(instance, objective, current, status=status, bound=bound, seconds=seconds)


# --- independent validator ----------------------------------------------------------------------------


def check_schedule(instance: Instance, result: Result) -> list[str]:
    """Every way `result` breaks `instance`, as readable sentences (an empty list means valid).

    Checks: one entry per operation; the machine is eligible and the length is its processing time;
    the job's release and the operations' order are respected; no two operations overlap on a machine;
    no operation overlaps its machine's calendar; the reported makespan and weighted tardiness match.
    Independent of the solver: it reads only the instance and the result.
    """
    problems: list[str] = []
    if len(result.operations) != len(instance.jobs):
        return [f"{len(result.operations)} jobs scheduled, the instance has {len(instance.jobs)}"]
    by_machine: dict[int, list[tuple[int, int, int, int]]] = {}
    makespan = 0
    tardiness = 0
    for j, job in enumerate(instance.jobs):
        placed = result.operations[j]
        if len(placed) != len(job.operations):
            problems.append(f"job {j}: {len(placed)} operations scheduled, it has {len(job.operations)}")
            continue
        previous_end = job.release
        for o, (op, sched) in enumerate(zip(job.operations, placed, strict=True)):
            where = f"job {j}, operation {o}"
            if sched.machine not in op.alternatives:
                problems.append(f"{where}: machine {sched.machine} is not eligible")
            elif sched.end - sched.start != op.alternatives[sched.machine]:
                problems.append(
                    f"{where}: runs {sched.end - sched.start} on machine {sched.machine}, "
                    f"its processing time there is {op.alternatives[sched.machine]}"
                )
            if sched.start < previous_end:
                what = "its release" if o == 0 else "the previous operation's end"
                problems.append(f"{where}: starts at {sched.start}, before {what} ({previous_end})")
            previous_end = sched.end
            for b_start, b_end in instance.calendars.get(sched.machine, ()):
                if sched.end > sched.start and sched.start < b_end and b_start < sched.end:
                    problems.append(
                        f"{where}: [{sched.start}, {sched.end}) overlaps machine {sched.machine}'s "
                        f"unavailable interval [{b_start}, {b_end})"
                    )
            if sched.end > sched.start:  # a zero-length operation occupies no machine time
                by_machine.setdefault(sched.machine, []).append((sched.start, sched.end, j, o))
        makespan = max(makespan, placed[-1].end)
        if job.due is not None:
            tardiness += job.weight * max(0, placed[-1].end - job.due)
    for machine, spans in sorted(by_machine.items()):
        spans.sort()
        for a, b in itertools.pairwise(spans):
            if b[0] < a[1]:
                problems.append(
                    f"machine {machine}: job {a[2]} operation {a[3]} [{a[0]}, {a[1]}) overlaps "
                    f"job {b[2]} operation {b[3]} [{b[0]}, {b[1]})"
                )
    if not problems:
        if result.makespan != makespan:
            problems.append(f"reported makespan {result.makespan}, the schedule's is {makespan}")
        if result.weighted_tardiness != tardiness:
            problems.append(
                f"reported weighted tardiness {result.weighted_tardiness}, the schedule's is {tardiness}"
            )
    return problems
