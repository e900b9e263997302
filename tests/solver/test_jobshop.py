"""The flexible job-shop model (solver.jobshop.fjsp): optima checked by brute force, calendars,
the validator."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from solver.jobshop.fjsp import (
    Objective,
    Result,
    ScheduledOperation,
    check_schedule,
    dispatch,
    earliest_fit,
    solve,
)
from solver.jobshop.instance import FjJob, FjOperation, Instance


def brute_force(instance: Instance, objective: Objective) -> int:
    """The optimum by enumeration: every machine assignment x every operation sequence, semi-active.

    For a regular objective some optimal schedule is semi-active: each operation starts as early as its
    job predecessor, the previous operation on its machine and the calendar allow. Enumerating every
    sequence of operations consistent with job order, with every assignment, reaches it.
    """
    jobs = instance.jobs
    tokens = [j for j, job in enumerate(jobs) for _ in job.operations]
    sequences = set(itertools.permutations(tokens))
    blocks = {m: sorted(b) for m, b in instance.calendars.items()}
    all_ops = [(j, o) for j, job in enumerate(jobs) for o in range(len(job.operations))]
    best: int | None = None
    for assignment in itertools.product(*(sorted(jobs[j].operations[o].alternatives) for j, o in all_ops)):
        machine_of = dict(zip(all_ops, assignment, strict=True))
        for sequence in sequences:
            next_op = [0] * len(jobs)
            ready = [job.release for job in jobs]
            free = [0] * instance.num_machines
            for j in sequence:
                o = next_op[j]
                machine = machine_of[(j, o)]
                duration = jobs[j].operations[o].alternatives[machine]
                start = earliest_fit(blocks.get(machine, []), max(ready[j], free[machine]), duration)
                ready[j] = free[machine] = start + duration
                next_op[j] += 1
            if objective == "makespan":
                value = max(ready)
            else:
                value = sum(
                    job.weight * max(0, ready[j] - job.due)
                    for j, job in enumerate(jobs)
                    if job.due is not None
                )
            best = value if best is None else min(best, value)
    assert best is not None
    return best


def random_instance(rng: random.Random, calendars: bool = False) -> Instance:
    machines = rng.randint(2, 3)
    jobs = []
    for _ in range(3):
        ops = []
        for _ in range(rng.randint(1, 2)):
            eligible = rng.sample(range(machines), rng.randint(1, machines))
            ops.append(FjOperation({m: rng.randint(1, 6) for m in eligible}))
        jobs.append(
            FjJob(tuple(ops), release=rng.randint(0, 3), due=rng.randint(3, 12), weight=rng.randint(1, 4))
        )
    blocked = {}
    if calendars:
        start = rng.randint(1, 6)
        blocked = {rng.randrange(machines): [(start, start + rng.randint(1, 5))]}
    return Instance(tuple(jobs), machines, blocked)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("objective", ["makespan", "weighted_tardiness"])
def test_small_instances_are_solved_to_the_brute_force_optimum(seed: int, objective: Objective) -> None:
    instance = random_instance(random.Random(seed), calendars=seed % 2 == 1)
    result = solve(instance, objective, time_limit_s=5.0, workers=1)
    assert check_schedule(instance, result) == []
    assert result.objective == brute_force(instance, objective)
    assert result.bound == result.objective
    assert result.status in ("OPTIMAL", "DISPATCH")


def test_a_known_two_machine_optimum() -> None:
    # Job 0: op A (m0: 3 or m1: 5), then op B (m1: 2). Job 1: op C (m0: 4), then D (m0: 1 or m1: 1).
    instance = Instance(
        (
            FjJob((FjOperation({0: 3, 1: 5}), FjOperation({1: 2}))),
            FjJob((FjOperation({0: 4}), FjOperation({0: 1, 1: 1}))),
        ),
        2,
    )
    result = solve(instance, time_limit_s=5.0, workers=1)
    # A on m0 delays C (A 0-3, C 3-7, D 7-8: 8); A on m1 lets C and D run on m0: A 0-5, B 5-7, C 0-4, D 4-5.
    assert result.makespan == result.objective == 7
    assert result.operations[0][0].machine == 1
    assert brute_force(instance, "makespan") == 7
    assert check_schedule(instance, result) == []


def test_calendars_are_never_overlapped() -> None:
    # One machine, closed during [2, 10): a 3-long operation cannot start at 0 (it would run into the block).
    instance = Instance((FjJob((FjOperation({0: 3}),)), FjJob((FjOperation({0: 2}),))), 1, {0: [(2, 10)]})
    for result in (dispatch(instance), solve(instance, time_limit_s=5.0, workers=1)):
        assert check_schedule(instance, result) == []
        assert result.makespan == 13  # the 2-long one fits before the block, the 3-long one after it
        spans = sorted((op.start, op.end) for job in result.operations for op in job)
        assert spans == [(0, 2), (10, 13)]


def test_release_due_and_weights_drive_weighted_tardiness() -> None:
    # One machine; job 0 is heavy and due early, job 1 light: the heavy one goes first.
    instance = Instance(
        (
            FjJob((FjOperation({0: 5}),), due=5, weight=1),
            FjJob((FjOperation({0: 5}),), due=5, weight=10),
            FjJob((FjOperation({0: 1}),), release=20, due=21),
        ),
        1,
    )
    result = solve(instance, "weighted_tardiness", time_limit_s=5.0, workers=1)
    assert check_schedule(instance, result) == []
    assert result.objective == result.weighted_tardiness == 5  # the light job is 5 late
    assert result.operations[1][0].start == 0
    assert result.operations[2][0].start >= 20


def test_solve_is_never_worse_than_its_starting_schedule() -> None:
    instance = random_instance(random.Random(42))
    start = dispatch(instance, "makespan")
    result = solve(instance, "makespan", time_limit_s=0.05, workers=1, start_from=start)
    assert result.objective <= start.objective
    assert check_schedule(instance, result) == []


def valid_result() -> tuple[Instance, Result]:
    instance = Instance(
        (FjJob((FjOperation({0: 2, 1: 3}), FjOperation({1: 2})), release=1), FjJob((FjOperation({0: 4}),))),
        2,
        {1: [(20, 30)]},
    )
    return instance, solve(instance, time_limit_s=5.0, workers=1)


def broken(result: Result, job: int, op: int, **changes: int) -> Result:
    ops = [list(job_ops) for job_ops in result.operations]
    ops[job][op] = dataclasses.replace(ops[job][op], **changes)
    return dataclasses.replace(result, operations=tuple(tuple(j) for j in ops))


def test_the_validator_catches_broken_schedules() -> None:
    instance, result = valid_result()
    assert check_schedule(instance, result) == []
    first = result.operations[0][0]
    second = result.operations[0][1]
    other = result.operations[1][0]
    # a machine the operation cannot use
    assert any("not eligible" in p for p in check_schedule(instance, broken(result, 1, 0, machine=1)))
    # a wrong length
    wrong = broken(result, 1, 0, end=other.end + 1)
    assert any("processing time" in p for p in check_schedule(instance, wrong))
    # before the release
    shifted = broken(result, 0, 0, start=0, end=first.end - first.start)
    assert any("before its release" in p for p in check_schedule(instance, shifted))
    # before the previous operation ends
    early = broken(result, 0, 1, start=first.end - 1, end=first.end + 1)
    assert any("previous operation" in p for p in check_schedule(instance, early))
    # overlapping another operation on the same machine
    if first.machine == 0:
        clash = broken(result, 1, 0, start=first.start, end=first.start + 4)
        assert any("overlaps job" in p for p in check_schedule(instance, clash))
    # into a calendar block
    late = broken(result, 0, 1, start=19, end=21)
    assert any("unavailable interval [20, 30)" in p for p in check_schedule(instance, late))
    assert second.machine == 1
    # a false makespan
    assert any(
        "reported makespan" in p for p in check_schedule(instance, dataclasses.replace(result, makespan=1))
    )


def test_the_validator_catches_missing_operations() -> None:
    instance, result = valid_result()
    short = dataclasses.replace(result, operations=(result.operations[0][:1], result.operations[1]))
    assert any("1 operations scheduled, it has 2" in p for p in check_schedule(instance, short))
    fake = ScheduledOperation(0, 0, 0, 0, 2)
    assert check_schedule(instance, dataclasses.replace(result, operations=((fake,),)))


def test_bad_data_is_refused_with_the_job_and_operation_named() -> None:
    with pytest.raises(ValueError, match=r"job 1, operation 0: machine 9 does not exist \(2 machines\)"):
        Instance((FjJob((FjOperation({0: 1}),)), FjJob((FjOperation({9: 1}),))), 2)
    with pytest.raises(ValueError, match="job 0, operation 1: has no eligible machine"):
        Instance((FjJob((FjOperation({0: 1}), FjOperation({}))),), 1)
    with pytest.raises(ValueError, match=r"job 0 \(x\), operation 0: processing time .* got -1"):
        Instance((FjJob((FjOperation({0: -1}),), name="x"),), 1)
    with pytest.raises(ValueError, match="job 0: has no operations"):
        Instance((FjJob(()),), 1)
    with pytest.raises(ValueError, match="job 0: weight"):
        Instance((FjJob((FjOperation({0: 1}),), weight=-2),), 1)
    with pytest.raises(ValueError, match="calendar of machine 0"):
        Instance((FjJob((FjOperation({0: 1}),)),), 1, {0: [(5, 5)]})
    with pytest.raises(ValueError, match="objective"):
        solve(Instance((FjJob((FjOperation({0: 1}),)),), 1), "flow")  # type: ignore[arg-type]


def test_earliest_fit_skips_blocks() -> None:
    blocks = [(2, 4), (6, 8)]
    assert earliest_fit(blocks, 0, 2) == 0
    assert earliest_fit(blocks, 0, 3) == 8
    assert earliest_fit(blocks, 3, 2) == 4
    assert earliest_fit(blocks, 9, 5) == 9
    assert earliest_fit(blocks, 3, 0) == 3


@pytest.mark.parametrize("seed", range(8))
def test_the_cheap_bound_never_exceeds_the_optimum(seed: int) -> None:
    instance = random_instance(random.Random(seed), calendars=seed % 2 == 1)
    assert dispatch(instance).bound <= brute_force(instance, "makespan")


def test_the_machine_load_bound_counts_operations_that_only_some_machines_can_do() -> None:
    # Three 4-long operations only machines 0 and 1 can do: 12 units of work on 2 machines take at least 6.
    shared = FjJob((FjOperation({0: 4, 1: 4}),))
    instance = Instance((shared, shared, shared, FjJob((FjOperation({2: 1}),))), 3)
    assert dispatch(instance).bound == 6
    result = solve(instance, time_limit_s=5.0, workers=1)
    assert result.objective == 8 and result.bound == 8  # and the optimum, 8, is proven
