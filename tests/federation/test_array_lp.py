"""A region's LP recorded as lists and loaded into GLOP whole gives what pywraplp gives, call for call."""

from __future__ import annotations

import random

import pytest
from ortools.linear_solver import pywraplp

from solver.lp.recorded import ArrayLP


def build(solver, seed: int):  # type: ignore[no-untyped-def]
    """A transport-like LP with capacity and equality rows, built through the pywraplp calls."""
    rng = random.Random(seed)
    inf = solver.infinity()
    supply = [solver.Constraint(-inf, rng.randint(20, 60)) for _ in range(4)]
    demand = [solver.Constraint(d, d) for d in (rng.randint(5, 30) for _ in range(6))]
    objective = solver.Objective()
    columns = []
    for i, row in enumerate(supply):
        for j, need in enumerate(demand):
            x = solver.NumVar(0.0, inf, "")
            row.SetCoefficient(x, 1.0 + (i + j) % 3)
            need.SetCoefficient(x, 1.0)
            objective.SetCoefficient(x, float(rng.randint(1, 50)))
            columns.append(x)
    for need in demand:  # a dear way out, so every instance is feasible
        short = solver.NumVar(0.0, inf, "")
        need.SetCoefficient(short, 1.0)
        objective.SetCoefficient(short, 1_000.0)
        columns.append(short)
    objective.SetMinimization()
    return columns, supply + demand, objective


@pytest.mark.parametrize("seed", range(5))
def test_the_array_lp_solves_as_pywraplp_does(seed: int) -> None:
    reference = pywraplp.Solver.CreateSolver("GLOP")
    ours = ArrayLP()
    ref_columns, ref_rows, ref_objective = build(reference, seed)
    columns, rows, objective = build(ours, seed)
    assert reference.Solve() == pywraplp.Solver.OPTIMAL
    assert ours.Solve() == pywraplp.Solver.OPTIMAL
    assert objective.Value() == pytest.approx(ref_objective.Value(), rel=1e-12)
    assert [c.solution_value() for c in columns] == pytest.approx([c.solution_value() for c in ref_columns])
    assert [r.dual_value() for r in rows] == pytest.approx([r.dual_value() for r in ref_rows])
    assert [r.ub() for r in rows] == [r.ub() for r in ref_rows]
    assert ours.ComputeConstraintActivities() == pytest.approx(reference.ComputeConstraintActivities())
    assert any(r.dual_value() != 0 for r in rows)  # some row binds: the duals are compared for real
