"""The GAP search's parts: exact exchanges, the LP relaxation, every answer through an independent check."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from solver.gap.assignment import GapInstance, generate, parse_gap, solve_gap, solve_textbook
from solver.gap.exchange import cheapest_placement, exchange_descent
from solver.gap.relaxation import relax
from tests.solver.gap_check import gap_violations

TINY = "2 3\n 4 2 5\n 3 6 1\n 2 2 3\n 3 1 2\n 5 4\n"


def arrays(instance: GapInstance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.array(instance.cost), np.array(instance.use), np.array(instance.capacity)


def brute_force(instance: GapInstance) -> float:
    values = []
    for agents in itertools.product(range(instance.agents), repeat=instance.jobs):
        value, problems = gap_violations(instance.cost, instance.use, instance.capacity, list(agents))
        if not problems:
            values.append(value)
    return min(values)


def test_the_check_catches_a_missing_job_an_unknown_agent_or_an_overload() -> None:
    [tiny] = parse_gap(TINY, "tiny")
    assert gap_violations(tiny.cost, tiny.use, tiny.capacity, [0, 1, 1]) == (4 + 6 + 1, [])
    assert "over capacity" in gap_violations(tiny.cost, tiny.use, tiny.capacity, [0, 0, 0])[1][0]
    assert "does not exist" in gap_violations(tiny.cost, tiny.use, tiny.capacity, [0, 2, 1])[1][0]
    assert "the instance has 3" in gap_violations(tiny.cost, tiny.use, tiny.capacity, [0, 1])[1][0]


def test_one_pass_of_the_descent_reaches_the_enumerated_best_of_three_agents() -> None:
    """Three agents: the pass's one triple re-places all seven jobs at their cheapest."""
    instance = generate("d", 3, 7, seed=11)
    cost, use, capacity = arrays(instance)
    optimum = brute_force(instance)
    start = solve_textbook(instance, 5.0, 1).agent_of
    assert start is not None
    after, change = exchange_descent(cost, use, capacity, start, seed=0, passes=1)
    value, problems = gap_violations(instance.cost, instance.use, instance.capacity, after)
    assert problems == [] and value == optimum
    before = gap_violations(instance.cost, instance.use, instance.capacity, start)[0]
    assert before is not None and value - before == change


@pytest.mark.parametrize("seed", range(6))
def test_branch_and_bound_finds_the_enumerated_best_whatever_the_prices(seed: int) -> None:
    """The priced bound holds for any prices ≥ 0, so they change how fast, never what, it finds."""
    rng = np.random.default_rng(seed)
    agents, jobs = 3, 7
    cost = rng.integers(1, 50, (agents, jobs))
    use = rng.integers(1, 20, (agents, jobs))
    room = rng.integers(15, 45, agents)
    feasible = [
        sum(int(cost[a, k]) for k, a in enumerate(p))
        for p in itertools.product(range(agents), repeat=jobs)
        if all(sum(int(use[a, k]) for k, a in enumerate(p) if a == i) <= room[i] for i in range(agents))
    ]
    for price in (np.zeros(agents), rng.random(agents) * 3, np.full(agents, 50.0)):
        placement = np.empty(jobs, dtype=np.int64)
        value, nodes = cheapest_placement(cost, use, room, price, 10**9, 10**7, placement)
        assert nodes < 10**7  # complete
        if not feasible:
            assert value == 10**9
            continue
        assert value == min(feasible)
        assert value == sum(int(cost[a, k]) for k, a in enumerate(placement))
        assert all(use[i, placement == i].sum() <= room[i] for i in range(agents))


def test_branch_and_bound_keeps_the_current_placement_when_nothing_is_cheaper_or_it_runs_out() -> None:
    cost = np.array([[1, 1], [5, 5]])
    use = np.array([[1, 1], [1, 1]])
    room = np.array([2, 2])
    placement = np.full(2, -1, dtype=np.int64)
    value, _ = cheapest_placement(cost, use, room, np.zeros(2), 2, 10**6, placement)
    assert value == 2 and list(placement) == [-1, -1]  # 2 is the optimum already held
    value, nodes = cheapest_placement(cost, use, room, np.zeros(2), 10, 1, placement)
    assert nodes == 1 and value == 10  # one node: no complete placement yet, the current one stands
    none = np.empty((2, 0), dtype=np.int64)
    assert cheapest_placement(none, none, room, np.zeros(2), 0, 10, np.empty(0, dtype=np.int64)) == (0, 0)


@pytest.mark.parametrize("kind", ["d", "e"])
def test_exchange_descent_keeps_capacities_never_costs_more_and_repeats(kind: str) -> None:
    instance = generate(kind, 8, 60, seed=4)  # type: ignore[arg-type]
    cost, use, capacity = arrays(instance)
    start = solve_textbook(instance, 30.0, 1, deterministic=True, work=0.2).agent_of
    assert start is not None
    before = gap_violations(instance.cost, instance.use, instance.capacity, start)[0]
    after, change = exchange_descent(cost, use, capacity, start, seed=3)
    value, problems = gap_violations(instance.cost, instance.use, instance.capacity, after)
    assert problems == [] and before is not None and value == before + change and change <= 0
    assert exchange_descent(cost, use, capacity, start, seed=3) == (after, change)


def test_exchange_descent_samples_triples_beyond_its_most_and_stops_at_its_deadline() -> None:
    instance = generate("e", 30, 90, seed=5)  # 4,060 triples: more than MOST_TRIPLES, so drawn
    cost, use, capacity = arrays(instance)
    start = solve_textbook(instance, 30.0, 1, deterministic=True, work=0.5).agent_of
    assert start is not None
    before = gap_violations(instance.cost, instance.use, instance.capacity, start)[0]
    after, change = exchange_descent(cost, use, capacity, start, seed=2, passes=2)
    value, problems = gap_violations(instance.cost, instance.use, instance.capacity, after)
    assert problems == [] and before is not None and value == before + change and change <= 0
    assert exchange_descent(cost, use, capacity, start, seed=2, passes=2) == (after, change)
    assert exchange_descent(cost, use, capacity, start, seed=2, deadline=0.0) == (list(start), 0)


def test_the_lp_bound_is_below_the_optimum_and_the_affinity_is_symmetric() -> None:
    instance = generate("d", 3, 7, seed=11)
    cost, use, capacity = arrays(instance)
    relaxation = relax(cost, use, capacity)
    assert relaxation is not None
    assert relaxation.bound <= brute_force(instance) + 1e-6
    assert np.array_equal(relaxation.affinity, relaxation.affinity.T)
    assert np.all(np.diag(relaxation.affinity) == 0)


def test_an_instance_without_room_for_a_job_has_no_relaxation() -> None:
    cost = np.array([[1, 1]])
    use = np.array([[5, 1]])
    assert relax(cost, use, np.array([3])) is None


@pytest.mark.parametrize(("kind", "seed"), [("d", 21), ("e", 22)])
def test_every_gap_answer_passes_the_independent_check(kind: str, seed: int) -> None:
    instance = generate(kind, 10, 50, seed=seed)  # type: ignore[arg-type]
    solution = solve_gap(instance, 60.0, 2, seed=1, work=0.8)
    value, problems = gap_violations(instance.cost, instance.use, instance.capacity, solution.agent_of)
    assert problems == [] and value == solution.objective
    assert solution.bound is not None and solution.bound <= solution.objective
