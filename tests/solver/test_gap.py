"""GAP files, their mapping onto the core, and the textbook baseline."""

from __future__ import annotations

import itertools

import pytest

from solver.gap.assignment import (
    START_SHARE,
    GapFormatError,
    evaluate,
    generate,
    parse_gap,
    read_gap_file,
    solve_gap,
    solve_textbook,
    solve_with_core,
)
from tests.shared import SHARED

GAP_FOLDER = SHARED / "benchmarks" / "gap"
#: 2 agents, 3 jobs; costs, uses, capacities (Yagiura layout).
TINY = "2 3\n 4 2 5\n 3 6 1\n 2 2 3\n 3 1 2\n 5 4\n"


def brute_force(instance) -> float:
    best = None
    for agents in itertools.product(range(instance.agents), repeat=instance.jobs):
        value, problems = evaluate(instance, list(agents))
        if not problems and (best is None or value < best):
            best = value
    return best


def test_yagiura_text_is_one_minimisation_instance() -> None:
    [instance] = parse_gap(TINY, "tiny")
    assert (instance.agents, instance.jobs, instance.sense) == (2, 3, "min")
    assert instance.capacity == [5, 4]


def test_orlibrary_text_holds_several_maximisation_instances() -> None:
    text = "2\n" + TINY + TINY
    instances = parse_gap(text, "two")
    assert [i.name for i in instances] == ["two#1", "two#2"]
    assert all(i.sense == "max" for i in instances)


@pytest.mark.parametrize(
    ("text", "message"),
    [("2 3\n4 x 5", "'x' is not an integer"), ("2 3\n1 2 3", "needs 11 numbers"), ("", "too short")],
)
def test_bad_files_say_why(text: str, message: str) -> None:
    with pytest.raises(GapFormatError, match=message):
        parse_gap(text, "bad")


def test_core_and_textbook_find_the_enumerated_optimum() -> None:
    [instance] = parse_gap(TINY, "tiny")
    optimum = brute_force(instance)
    for solution in (solve_with_core(instance, 2.0, 1), solve_textbook(instance, 2.0, 1)):
        assert solution.objective == optimum
        assert evaluate(instance, solution.agent_of) == (optimum, [])


@pytest.mark.skipif(not (GAP_FOLDER / "gap12.txt").exists(), reason="shared benchmark instances not present")
def test_gap12_first_instance_is_solved_to_its_published_optimum() -> None:
    instance = read_gap_file(GAP_FOLDER / "gap12.txt")[0]
    solution = solve_with_core(instance, 5.0, 2)
    assert solution.objective == 1451
    assert evaluate(instance, solution.agent_of) == (1451, [])


def test_the_gap_solver_finds_the_enumerated_optimum() -> None:
    [instance] = parse_gap(TINY, "tiny")
    optimum = brute_force(instance)
    solution = solve_gap(instance, 2.0, 2)
    assert solution.objective == optimum
    assert evaluate(instance, solution.agent_of) == (optimum, [])


def test_the_gap_solver_gives_the_same_assignment_twice_and_no_worse_than_its_start() -> None:
    # Deterministic budgets: the same instance and seed give the same assignment, whatever the load.
    # A budget of 1.5 units of deterministic time, and a wall clock (60 s) that does not bind even
    # on a loaded machine.
    instance = generate("d", 6, 40, seed=3)
    first, second = (solve_gap(instance, 60.0, 2, seed=5, work=1.5) for _ in range(2))
    assert first.agent_of == second.agent_of
    objective, problems = evaluate(instance, first.agent_of)
    assert problems == [] and objective == first.objective
    start = solve_textbook(instance, 60.0, 2, seed=5, deterministic=True, work=1.5 * START_SHARE)
    assert start.objective is not None and first.objective <= start.objective
    assert first.bound is not None and first.bound <= first.objective


def test_generated_instances_follow_their_type() -> None:
    d, e = generate("d", 10, 100, seed=1), generate("e", 10, 100, seed=1)
    assert (d.agents, d.jobs, d.sense) == (10, 100, "min") and d == generate("d", 10, 100, seed=1)
    assert all(1 <= a <= 100 for row in d.use for a in row)
    pairs = [(c, a) for rc, ra in zip(d.cost, d.use, strict=True) for c, a in zip(rc, ra, strict=True)]
    assert all(100 < c + a < 122 for c, a in pairs)
    assert all(a >= 1 for row in e.use for a in row) and e.capacity[0] == int(0.8 * sum(e.use[0]) / 10)
    with pytest.raises(ValueError, match="kind"):
        generate("x", 2, 2, seed=1)  # type: ignore[arg-type]
