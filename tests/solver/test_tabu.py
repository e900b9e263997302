"""The flexible job shop's tabu search (solver.jobshop.tabu): valid, never worse, optimal on
small instances."""

from __future__ import annotations

import random

import pytest

from solver.jobshop import tabu
from solver.jobshop.fjsp import (
    TABU_DEPTHS,
    Result,
    ScheduledOperation,
    check_schedule,
    dispatch,
    solve,
)
from solver.jobshop.instance import FjJob, FjOperation, Instance
from tests.solver.test_jobshop import brute_force, random_instance


def as_result(instance: Instance, found: tabu.TabuResult) -> Result:
    """The tabu search's schedule as a jobshop Result, so that the independent validator can judge it."""
    ops = tuple(
        tuple(ScheduledOperation(j, o, m, s, e) for o, (m, s, e) in enumerate(job_ops))
        for j, job_ops in enumerate(found.operations)
    )
    makespan = max(job_ops[-1].end for job_ops in ops)
    tardiness = sum(
        job.weight * max(0, ops[j][-1].end - job.due)
        for j, job in enumerate(instance.jobs)
        if job.due is not None
    )
    return Result(ops, "makespan", makespan, 0, "TABU", 0.0, makespan, tardiness)


def flexible_instance(rng: random.Random, jobs: int = 6, machines: int = 4) -> Instance:
    """A random flexible job shop with releases: 2-4 operations per job, 1-3 machines per operation."""
    built = []
    for _ in range(jobs):
        ops = []
        for _ in range(rng.randint(2, 4)):
            eligible = rng.sample(range(machines), rng.randint(1, min(3, machines)))
            ops.append(FjOperation({m: rng.randint(1, 9) for m in eligible}))
        built.append(FjJob(tuple(ops), release=rng.randint(0, 5)))
    return Instance(tuple(built), machines)


@pytest.mark.parametrize("depth", sorted({1, tabu.EXACT_PER_ITERATION, *TABU_DEPTHS}))
@pytest.mark.parametrize("seed", range(12))
def test_every_schedule_it_returns_is_valid_and_no_worse_than_its_start(seed: int, depth: int) -> None:
    instance = flexible_instance(random.Random(seed))
    start = dispatch(instance)
    found = tabu.search(
        instance, start.operations, seconds=60, seed=seed, max_iterations=400, exact_per_iteration=depth
    )
    result = as_result(instance, found)
    assert check_schedule(instance, result) == []
    assert found.makespan == result.makespan <= start.makespan
    assert found.iterations <= 400


@pytest.mark.parametrize("seed", range(0, 16, 2))  # even seeds: instances without calendars
def test_small_instances_reach_the_brute_force_optimum(seed: int) -> None:
    instance = random_instance(random.Random(seed))
    optimum = brute_force(instance, "makespan")
    found = tabu.search(instance, dispatch(instance).operations, seconds=60, seed=seed, max_iterations=3000)
    assert check_schedule(instance, as_result(instance, found)) == []
    assert found.makespan == optimum


def test_it_stops_at_the_target_and_when_asked() -> None:
    instance = flexible_instance(random.Random(5), jobs=8)
    start = dispatch(instance)
    at_start = tabu.search(instance, start.operations, seconds=60, target=start.makespan)
    assert at_start.iterations == 0 and at_start.makespan == start.makespan
    asked = tabu.search(instance, start.operations, seconds=60, stop=lambda: True)
    assert asked.iterations == 0


def test_the_same_seed_and_iterations_give_the_same_schedule() -> None:
    instance = flexible_instance(random.Random(9), jobs=8)
    start = dispatch(instance).operations
    first = tabu.search(instance, start, seconds=60, seed=3, max_iterations=300)
    second = tabu.search(instance, start, seconds=60, seed=3, max_iterations=300)
    assert first == second


def test_calendars_are_refused() -> None:
    instance = Instance((FjJob((FjOperation({0: 3}),)),), 1, {0: [(2, 10)]})
    with pytest.raises(ValueError, match="calendars"):
        tabu.search(instance, dispatch(instance).operations, seconds=1)


def test_solve_uses_it_and_stays_valid_with_one_or_two_workers() -> None:
    instance = flexible_instance(random.Random(21), jobs=10, machines=5)
    start = dispatch(instance)
    for workers in (1, 2):
        result = solve(instance, time_limit_s=1.0, workers=workers, seed=1)
        assert check_schedule(instance, result) == []
        assert result.bound <= result.objective <= start.objective


def test_a_large_shop_stays_valid_through_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    # 60 jobs, about 180 operations: hundreds of candidate moves a step (the candidate arrays grow),
    # and restarts from the best every 200 steps.
    monkeypatch.setattr(tabu, "PATIENCE", 200)
    instance = flexible_instance(random.Random(77), jobs=60, machines=6)
    start = dispatch(instance)
    found = tabu.search(instance, start.operations, seconds=60, seed=4, max_iterations=1500)
    assert check_schedule(instance, as_result(instance, found)) == []
    assert found.makespan < start.makespan and found.iterations == 1500


#: Fisher and Thompson's 6 x 6 job shop (ft06): per job, (machine, time) in order. Its optimum is 55.
FT06 = (
    ((2, 1), (0, 3), (1, 6), (3, 7), (5, 3), (4, 6)),
    ((1, 8), (2, 5), (4, 10), (5, 10), (0, 10), (3, 4)),
    ((2, 5), (3, 4), (5, 8), (0, 9), (1, 1), (4, 7)),
    ((1, 5), (0, 5), (2, 5), (3, 3), (4, 8), (5, 9)),
    ((2, 9), (1, 3), (4, 5), (5, 4), (0, 3), (3, 1)),
    ((1, 3), (3, 3), (5, 9), (0, 10), (4, 4), (2, 1)),
)


@pytest.mark.parametrize("seed", range(4))
def test_a_classic_job_shop_reaches_its_optimum_without_restarts(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    # One machine per operation: every move reorders a machine, and the makespan's plateaus are wide.
    # The tabu walk alone (no restart, no shake) must cross them: it stalled at 71 while moves inside
    # a critical block were tried, estimates counted the moved operation twice, and only its way
    # back to its old place was forbidden.
    monkeypatch.setattr(tabu, "PATIENCE", 10**9)
    instance = Instance(tuple(FjJob(tuple(FjOperation({m: p}) for m, p in job)) for job in FT06), 6)
    start = dispatch(instance)
    found = tabu.search(instance, start.operations, seconds=60, seed=seed, max_iterations=3000)
    assert check_schedule(instance, as_result(instance, found)) == []
    assert start.makespan > 55 and found.makespan == 55
