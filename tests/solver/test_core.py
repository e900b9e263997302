"""The allocation core on small problems whose optimum is known by enumeration."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from ortools.sat.python import cp_model

from solver.sparse.core import CoreParams, CoreProblem, Item, LinearModel, Option, solve_core

QUICK = CoreParams(time_limit_s=2.0, workers=1)


def test_must_place_items_that_cannot_fit_are_infeasible() -> None:
    problem = CoreProblem(
        items=[Item(1), Item(1)],
        options=[Option(0, 1.0, {"r": 2}), Option(1, 1.0, {"r": 2})],
        capacity={"r": 3},
    )
    result = solve_core(problem, QUICK)
    assert result.status == "INFEASIBLE"


def test_shortage_is_taken_only_when_cheaper_than_placing() -> None:
    problem = CoreProblem(
        items=[Item(3, shortage_cost=10.0)],
        options=[Option(0, 4.0, {"r": 1}), Option(0, 12.0, {"s": 1})],
        capacity={"r": 2, "s": 5},
    )
    result = solve_core(problem, QUICK)
    assert result.units == [2, 0] and result.short == [1]
    assert result.objective == pytest.approx(18.0)
    assert result.status == "OPTIMAL"


def test_setup_is_paid_once_per_key() -> None:
    problem = CoreProblem(
        items=[Item(4)],
        options=[Option(0, 1.0, {}, setup="a"), Option(0, 1.0, {}, setup="a"), Option(0, 0.5, {}, setup="b")],
        capacity={},
        setup_cost={"a": 0.0, "b": 10.0},
    )
    result = solve_core(problem, QUICK)
    assert result.objective == pytest.approx(4.0)
    assert result.units[2] == 0


def test_extra_setups_are_paid_once_each_beside_the_own_setup() -> None:
    # Two items share a transfer's handling ("t"): using it for both pays it once, on top of each
    # item's own setup. Cheaper per unit than the plain options (2.0), it wins only when it carries
    # enough units to repay the handling: 2 x 6 units x (2.0 - 0.5) = 18 > 10.
    problem = CoreProblem(
        items=[Item(6), Item(6)],
        options=[
            Option(0, 2.0, {}, setup="a"),
            Option(0, 0.5, {}, setup="a", extra_setups=("t",)),
            Option(1, 2.0, {}, setup="b"),
            Option(1, 0.5, {}, setup="b", extra_setups=("t",)),
        ],
        capacity={},
        setup_cost={"a": 1.0, "b": 1.0, "t": 10.0},
    )
    result = solve_core(problem, QUICK)
    assert result.units == [0, 6, 0, 6]
    assert result.objective == pytest.approx(12 * 0.5 + 1.0 + 1.0 + 10.0)
    dear = CoreProblem(problem.items, problem.options, {}, setup_cost={"a": 1.0, "b": 1.0, "t": 30.0})
    result = solve_core(dear, QUICK)
    assert result.units == [6, 0, 6, 0]
    assert result.objective == pytest.approx(12 * 2.0 + 2.0)


def test_pools_sharing_a_resource_are_exact() -> None:
    # Work of pool A may run on r1 or r2, of pool B only on r2: 6 of A and 4 of B fit 5 + 5 exactly;
    # a per-pool sum (A: 10, B: 5) would also accept 6 of A and 5 of B, which does not fit.
    problem = CoreProblem(
        items=[Item(6, shortage_cost=100.0), Item(5, shortage_cost=100.0)],
        options=[Option(0, 1.0, {"A": 1}), Option(1, 1.0, {"B": 1})],
        capacity={"r1": 5, "r2": 5},
        pools={"A": frozenset({"r1", "r2"}), "B": frozenset({"r2"})},
    )
    result = solve_core(problem, QUICK)
    assert sum(result.short) == 1
    assert result.units[0] + result.units[1] == 10


def test_small_assignment_matches_enumeration() -> None:
    cost = [[4, 7, 3, 6], [5, 2, 8, 4], [6, 5, 4, 3]]
    use = [[3, 2, 4, 1], [2, 3, 2, 3], [4, 1, 3, 2]]
    cap = [5, 5, 4]
    options = [Option(j, cost[i][j], {f"a{i}": use[i][j]}) for j in range(4) for i in range(3)]
    problem = CoreProblem([Item(1) for _ in range(4)], options, {f"a{i}": cap[i] for i in range(3)})
    best = min(
        sum(cost[a][j] for j, a in enumerate(agents))
        for agents in itertools.product(range(3), repeat=4)
        if all(sum(use[i][j] for j, a in enumerate(agents) if a == i) <= cap[i] for i in range(3))
    )
    result = solve_core(problem, QUICK)
    assert result.objective == best
    assert result.status == "OPTIMAL"
    assert result.bound <= result.objective


def test_a_warm_start_is_kept_when_nothing_beats_it() -> None:
    problem = CoreProblem([Item(2)], [Option(0, 1.0, {"r": 1}), Option(0, 1.0, {"s": 1})], {"r": 2, "s": 2})
    result = solve_core(problem, CoreParams(time_limit_s=1.0, workers=1, warm_start=[2, 0]))
    assert result.objective == 2.0
    assert result.phases["warm start"] == 2.0


def test_setups_at_linearization_two_reach_the_enumerated_optimum_from_a_poor_warm_start() -> None:
    """A city's polish in small: a setup per (item, lab) weighs more than the trip, and a lab's room
    is exactly full at the optimum. The greedy start is priced, and the full linearization
    (`CoreParams.linearization_level`) reaches the optimum."""
    km = [[1.0, 3.0, 6.0], [2.0, 1.0, 5.0], [4.0, 2.0, 1.0], [1.0, 5.0, 2.0]]
    quantity, cap, setup = 2, [4, 3, 2], 5.0
    options = [
        Option(j, km[j][lab], {f"lab{lab}": 1.0}, setup=f"{j}@{lab}") for j in range(4) for lab in range(3)
    ]
    problem = CoreProblem(
        [Item(quantity) for _ in range(4)],
        options,
        {f"lab{lab}": cap[lab] for lab in range(3)},
        setup_cost={o.setup: setup for o in options if o.setup},
    )
    splits = [s for s in itertools.product(range(quantity + 1), repeat=3) if sum(s) == quantity]
    best = min(
        sum(
            u * km[j][lab] + (setup if u else 0)
            for j, split in enumerate(plan)
            for lab, u in enumerate(split)
        )
        for plan in itertools.product(splits, repeat=4)
        if all(sum(split[lab] for split in plan) <= cap[lab] for lab in range(3))
    )
    poor = [0] * len(options)  # items 0 and 1 split over labs 1 and 2, items 2 and 3 both at lab 0
    poor[0 * 3 + 1] = poor[0 * 3 + 2] = poor[1 * 3 + 1] = poor[1 * 3 + 2] = 1
    poor[2 * 3 + 0] = poor[3 * 3 + 0] = 2
    params = CoreParams(time_limit_s=5.0, workers=1, warm_start=poor, work_limit=0.5, linearization_level=2)
    result = solve_core(problem, params)
    assert result.phases["warm start"] > best
    assert "greedy" in result.phases and result.objective <= result.phases["greedy"]
    assert result.objective == pytest.approx(best)
    assert result.status == "OPTIMAL"


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.dictionaries(st.integers(0, 5), st.integers(-(10**6), 10**6), min_size=1, max_size=6),
            st.one_of(st.none(), st.integers(-(10**7), 10**7)),
            st.one_of(st.none(), st.integers(-(10**7), 10**7)),
        ),
        min_size=1,
        max_size=8,
    ),
    values=st.lists(st.integers(0, 40), min_size=6, max_size=6),
    huge=st.booleans(),
)
def test_the_row_check_is_the_exact_sum_of_every_row(rows: list, values: list[int], huge: bool) -> None:
    # The vectorised check must say what summing each row in Python integers says, and fall back to
    # those sums where int64 could overflow.
    model = LinearModel()
    for _ in range(6):
        model.new_var(0, 40)
    for coefs, lo, hi in rows:
        model.add(coefs, lo, hi)
    if huge:
        model.add({0: 2**62}, None, 2**70)
    tight = rows[0][0]
    exact = sum(c * values[i] for i, c in tight.items())
    model.add(tight, exact, exact)  # a row met with equality holds
    expected = all(
        (lo is None or total >= lo) and (hi is None or total <= hi)
        for coefs, lo, hi in [(r.coefs, r.lo, r.hi) for r in model.rows]
        for total in [sum(c * values[i] for i, c in coefs.items())]
    )
    assert model.feasible(values) == expected
    model.add(tight, exact + 1, None)  # one unit short of its floor: a row added after a check
    assert not model.feasible(values)


def _cp_sat_through_its_builders(model: LinearModel, hint: list[int] | None) -> cp_model.CpModel:
    """The same model built through CP-SAT's own expression builders, row by row."""
    built = cp_model.CpModel()
    variables = [built.new_int_var(lo, hi, "") for lo, hi in zip(model.lb, model.ub, strict=True)]
    for row in model.rows:
        ids = list(row.coefs)
        expr = cp_model.LinearExpr.weighted_sum([variables[i] for i in ids], [row.coefs[i] for i in ids])
        lo = cp_model.INT_MIN if row.lo is None else row.lo
        hi = cp_model.INT_MAX if row.hi is None else row.hi
        built.add_linear_constraint(expr, lo, hi)
    ids = list(model.cost)
    built.minimize(
        cp_model.LinearExpr.weighted_sum([variables[i] for i in ids], [model.cost[i] for i in ids])
    )
    if hint is not None:
        for var, value in zip(variables, hint, strict=True):
            built.add_hint(var, value)
    return built


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.dictionaries(st.integers(0, 7), st.integers(-(10**6), 10**6), max_size=6),
            st.one_of(st.none(), st.integers(-(10**7), 10**7)),
            st.one_of(st.none(), st.integers(-(10**7), 10**7)),
        ),
        max_size=8,
    ),
    cost=st.dictionaries(st.integers(0, 7), st.integers(-(10**6), 10**6), max_size=8),
    hint=st.one_of(st.none(), st.lists(st.integers(0, 9), min_size=8, max_size=8)),
)
def test_the_cp_sat_model_is_the_one_cp_sats_builders_make(rows: list, cost: dict, hint: list | None) -> None:
    # Written into the proto directly, the model must be the one CP-SAT's own builders give, field
    # for field, so that the search (and the plans) stay what they were. (One case apart: a row with
    # no variable whose bounds cross can never hold, and CP-SAT's builders drop it; ours keeps it
    # and the model says so. The allocation's rows always have variables.)
    assume(
        not any(
            lo is not None and hi is not None and lo > hi and not any(coefs.values())
            for coefs, lo, hi in rows
        )
    )
    model = LinearModel()
    for _ in range(8):
        model.new_var(0, 9)
    for coefs, lo, hi in rows:
        model.add(coefs, lo, hi)
    model.cost.update(cost)
    built, _ = model.cp_sat(hint)
    assert str(built.proto) == str(_cp_sat_through_its_builders(model, hint).proto)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.dictionaries(st.integers(0, 5), st.integers(1, 10**6), min_size=1, max_size=6),
            st.integers(0, 10**7),
        ),
        min_size=1,
        max_size=8,
    ),
    cost=st.dictionaries(st.integers(0, 5), st.integers(-(10**4), 10**4), min_size=1, max_size=6),
)
def test_the_relaxation_reads_the_row_checks_arrays_as_it_would_read_the_rows(rows: list, cost: dict) -> None:
    # The LP takes its coefficients from the row check's int64 arrays when they are built; read from
    # the rows themselves (as where a coefficient lies beyond int64), it must be the same LP.
    def model() -> LinearModel:
        built = LinearModel()
        for _ in range(6):
            built.new_var(0, 40)
        for coefs, hi in rows:
            built.add(coefs, None, hi)
        built.cost = dict(cost)
        return built

    from_arrays = model()
    assert from_arrays._matrix() is not None
    from_rows = model()
    from_rows._matrix = lambda: None  # type: ignore[method-assign]
    values, bound, _ = from_arrays.relaxation(10.0)
    values_again, bound_again, _ = from_rows.relaxation(10.0)
    assert bound == pytest.approx(bound_again, rel=1e-9, abs=1e-6)
    assert values == pytest.approx(values_again, rel=1e-9, abs=1e-6)
