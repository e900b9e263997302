"""A region's LP written as plain lists, handed to GLOP whole, read back as arrays.

The net solves every region's LP about ten times a round (4 regions x 2,500 orders: 108 solves and
3.7 million coefficients in 10 rounds). Through `pywraplp` each variable, row and coefficient was
one call into the library, and building the model took three times as long as solving it. Here the
model takes the same calls (`NumVar`, `Constraint`, `SetCoefficient`, `Objective`) but only records
them in Python lists; `Solve` writes them into one `MPModelProto`, loads it into GLOP through
`pywraplp` in one call, and reads the solution back as arrays in one more. The LP GLOP sees is the
same, row by row and column by column, so its solutions are the same.
"""

from __future__ import annotations

import math

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp


class _Element:
    """A column or a row of an `ArrayLP`, by its position."""

    __slots__ = ("_index", "_lp")

    def __init__(self, lp: ArrayLP, index: int) -> None:
        self._lp = lp
        self._index = index

    def index(self) -> int:
        """Its position among the LP's columns, or among its rows."""
        return self._index


class Variable(_Element):
    """A column of an `ArrayLP`: its bounds, and its value once solved."""

    __slots__ = ()

    def ub(self) -> float:
        """Its upper bound."""
        return self._lp._upper[self._index]

    def solution_value(self) -> float:
        """Its value in the last solution."""
        return float(self._lp._values[self._index])


class Constraint(_Element):
    """A row of an `ArrayLP`: lower ≤ Σ coefficient × column ≤ upper, and its dual once solved."""

    __slots__ = ("_coefficients", "_columns")

    def __init__(self, lp: ArrayLP, index: int) -> None:
        super().__init__(lp, index)
        self._columns: list[int] = []
        self._coefficients: list[float] = []

    def SetCoefficient(self, variable: Variable, coefficient: float) -> None:
        """Give `variable` this coefficient in the row (each column at most once a row)."""
        self._columns.append(variable._index)
        self._coefficients.append(coefficient)

    def ub(self) -> float:
        """Its upper bound."""
        return self._lp._row_upper[self._index]

    def dual_value(self) -> float:
        """Its dual value in the last solution."""
        return float(self._lp._duals[self._index])


class Objective:
    """The LP's objective: one cost per column, minimised."""

    __slots__ = ("_lp",)

    def __init__(self, lp: ArrayLP) -> None:
        self._lp = lp

    def SetCoefficient(self, variable: Variable, coefficient: float) -> None:
        """The column's cost."""
        self._lp._cost[variable._index] = coefficient

    def SetMinimization(self) -> None:
        """Minimise (the only sense an `ArrayLP` has)."""

    def Value(self) -> float:
        """The objective's value in the last solution."""
        return self._lp._value


class ArrayLP:
    """A minimisation LP for GLOP, with the part of `pywraplp.Solver`'s interface the regions use."""

    def __init__(self) -> None:
        self._lower: list[float] = []
        self._upper: list[float] = []
        self._cost: list[float] = []
        self._rows: list[Constraint] = []
        self._row_lower: list[float] = []
        self._row_upper: list[float] = []
        self._objective = Objective(self)
        self._solver: pywraplp.Solver | None = None
        self._values = np.zeros(0)
        self._duals = np.zeros(0)
        self._value = math.nan

    @staticmethod
    def infinity() -> float:
        """An unbounded bound."""
        return math.inf

    def NumVar(self, lower: float, upper: float, name: str = "") -> Variable:
        """A new column between these bounds, costing 0 until the objective says otherwise."""
        self._lower.append(lower)
        self._upper.append(upper)
        self._cost.append(0.0)
        return Variable(self, len(self._lower) - 1)

    def Constraint(self, lower: float, upper: float) -> Constraint:
        """A new row between these bounds, with no coefficient yet."""
        row = Constraint(self, len(self._rows))
        self._rows.append(row)
        self._row_lower.append(lower)
        self._row_upper.append(upper)
        return row

    def Objective(self) -> Objective:
        """The objective."""
        return self._objective

    def SetSolverSpecificParametersAsString(self, parameters: str) -> bool:
        """GLOP's parameters (text format) for the next solves."""
        return self._glop().SetSolverSpecificParametersAsString(parameters)

    def Solve(self) -> int:
        """Solve; pywraplp's status. The model goes to GLOP at the first solve; a later solve (with
        other parameters) solves the same model again."""
        solver = self._glop()
        status = solver.Solve()
        response = linear_solver_pb2.MPSolutionResponse()
        solver.FillSolutionResponseProto(response)
        self._values = np.asarray(response.variable_value, dtype=np.float64)
        self._duals = np.asarray(response.dual_value, dtype=np.float64)
        self._value = response.objective_value
        if len(self._values) != len(self._lower):  # no solution: zeros, as pywraplp reads then
            self._values = np.zeros(len(self._lower))
        if len(self._duals) != len(self._rows):
            self._duals = np.zeros(len(self._rows))
        return status

    def ComputeConstraintActivities(self) -> list[float]:
        """Each row's activity (Σ coefficient × value) in the last solution."""
        return self._glop().ComputeConstraintActivities()

    def _glop(self) -> pywraplp.Solver:
        if self._solver is None:
            solver = pywraplp.Solver.CreateSolver("GLOP")
            if solver is None:  # pragma: no cover - GLOP ships with ortools
                raise RuntimeError("OR-Tools GLOP is not available")
            error = solver.LoadModelFromProto(self._proto())
            if error:
                raise RuntimeError(f"the LP could not be loaded into GLOP: {error}")
            self._solver = solver
        return self._solver

    def _proto(self) -> linear_solver_pb2.MPModelProto:
        model = linear_solver_pb2.MPModelProto()
        for lower, upper, cost in zip(self._lower, self._upper, self._cost, strict=True):
            model.variable.add(lower_bound=lower, upper_bound=upper, objective_coefficient=cost)
        for row, lower, upper in zip(self._rows, self._row_lower, self._row_upper, strict=True):
            model.constraint.add(
                lower_bound=lower,
                upper_bound=upper,
                var_index=row._columns,
                coefficient=row._coefficients,
            )
        return model
