"""An LP kept in GLOP between solves (through MathOpt), built from numpy arrays, its basis carried over.

The relaxation (`solver.large.relaxation`) solves one growing LP a dozen times: each round adds rows
(cuts) and columns (options priced in). Through `pywraplp`, GLOP re-read the whole model at every
solve, and a round that added columns lost the part of its basis that sat on slack columns (GLOP
numbers a row's slack after the structural columns, so new columns shifted them): some thousands of
basic columns were replaced by slacks, and the dual simplex ran 10,000 to 30,000 iterations, about a
solve from scratch. Here the model lives in MathOpt's C++ model (rows, columns and coefficients set
from arrays, never one Python call per coefficient), GLOP is updated in place between solves, and
each solve is given the previous optimal basis explicitly, keyed by variable and row: new rows'
slacks basic, new columns at a bound (or basic, where the caller says so), so the dual simplex
resumes where it stopped whatever was added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.glop import parameters_pb2 as glop_parameters_pb2
from ortools.math_opt import callback_pb2, model_parameters_pb2, parameters_pb2, result_pb2, solution_pb2
from ortools.math_opt.core.python import solver as mathopt_solver
from ortools.math_opt.elemental.python import cpp_elemental, enums

#: MathOpt's basis statuses (`solution_pb2.BasisStatusProto`).
AT_LOWER = solution_pb2.BASIS_STATUS_AT_LOWER_BOUND
AT_UPPER = solution_pb2.BASIS_STATUS_AT_UPPER_BOUND
FIXED = solution_pb2.BASIS_STATUS_FIXED_VALUE
BASIC = solution_pb2.BASIS_STATUS_BASIC
_VARIABLE = enums.ElementType.VARIABLE
_ROW = enums.ElementType.LINEAR_CONSTRAINT
_A = enums.DoubleAttr1


@dataclass(frozen=True)
class Solution:
    """One solve's outcome; arrays are indexed by variable and row ids (dense, ids are 0..n-1)."""

    optimal: bool
    value: float
    primal: np.ndarray
    dual: np.ndarray  # per row: ≤ rows that bind have values ≤ 0 in a minimisation
    reduced: np.ndarray  # per variable
    iterations: int


class IncrementalLP:
    """A minimisation LP in GLOP, grown by arrays of rows, columns and coefficients between solves."""

    def __init__(self, glop: glop_parameters_pb2.GlopParameters) -> None:
        self._model = cpp_elemental.CppElemental(model_name="", primary_objective_name="")
        self._glop = glop
        self._diff = self._model.add_diff()
        self._solver: mathopt_solver.Solver | None = None
        self._variable_status = np.zeros(0, dtype=np.int64)
        self._row_status = np.zeros(0, dtype=np.int64)
        self._lower = np.zeros(0, dtype=bool)  # per variable: its lower bound is finite
        self._basis = False  # whether the statuses are an optimal basis to start from

    @property
    def variables(self) -> int:
        """Columns in the model."""
        return int(self._model.get_num_elements(_VARIABLE))

    @property
    def rows(self) -> int:
        """Rows in the model."""
        return int(self._model.get_num_elements(_ROW))

    @property
    def basis(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The last optimal basis, extended by what was added since: (status per variable, status
        per row), or None before any solve was optimal."""
        if not self._basis:
            return None
        return self.statuses

    @property
    def statuses(self) -> tuple[np.ndarray, np.ndarray]:
        """The statuses the next solve starts from (per variable, per row): the last optimal basis
        where there is one, else those given to what was added (`add_variables`, `add_rows`)."""
        return self._variable_status.copy(), self._row_status.copy()

    def set_basis(self, variable_status: np.ndarray, row_status: np.ndarray) -> None:
        """Start the next solve from this basis (one status per variable and per row, MathOpt's
        `BasisStatusProto` values): another LP's optimal basis carried over to this one, say. GLOP
        completes a singular set of basic columns with slacks; MathOpt refuses a basis whose count
        of basic columns and slacks is not the number of rows, so the count is made right first
        (`_balanced`). A status that is wrong costs pivots, never the optimum."""
        variable_status = np.asarray(variable_status, dtype=np.int64)
        row_status = np.asarray(row_status, dtype=np.int64)
        if len(variable_status) != self.variables:
            raise ValueError(
                f"variable_status: {len(variable_status)} statuses for {self.variables} variables"
            )
        if len(row_status) != self.rows:
            raise ValueError(f"row_status: {len(row_status)} statuses for {self.rows} rows")
        self._variable_status, self._row_status = _balanced(
            variable_status.copy(), row_status.copy(), self._lower
        )
        self._basis = True

    def add_variables(
        self, lower: np.ndarray, upper: np.ndarray, cost: np.ndarray, basic: bool = False
    ) -> np.ndarray:
        """Add columns with these bounds and costs; their ids. They start nonbasic at their lower
        bound (GLOP's dual simplex puts a boxed column at whichever bound its reduced cost asks for),
        or basic: then each must come with a row of its own added nonbasic (`add_rows(basic=False)`)."""
        ids = self._model.add_elements(_VARIABLE, len(lower))
        keys = ids.reshape(-1, 1)
        self._model.set_attrs(_A.VARIABLE_LOWER_BOUND, keys, np.asarray(lower, dtype=np.float64))
        self._model.set_attrs(_A.VARIABLE_UPPER_BOUND, keys, np.asarray(upper, dtype=np.float64))
        self._model.set_attrs(_A.OBJECTIVE_LINEAR_COEFFICIENT, keys, np.asarray(cost, dtype=np.float64))
        status = np.full(len(ids), BASIC if basic else AT_LOWER, dtype=np.int64)
        self._variable_status = np.concatenate([self._variable_status, status])
        self._lower = np.concatenate([self._lower, np.isfinite(np.asarray(lower, dtype=np.float64))])
        return ids

    def add_rows(self, lower: np.ndarray, upper: np.ndarray, basic: bool = True) -> np.ndarray:
        """Add rows lower ≤ a·x ≤ upper (coefficients by `set_coefficients`); their ids. A new row's
        slack is basic, unless the row comes with a basic column of its own (then it is at a bound)."""
        ids = self._model.add_elements(_ROW, len(lower))
        keys = ids.reshape(-1, 1)
        lo = np.asarray(lower, dtype=np.float64)
        hi = np.asarray(upper, dtype=np.float64)
        self._model.set_attrs(_A.LINEAR_CONSTRAINT_LOWER_BOUND, keys, lo)
        self._model.set_attrs(_A.LINEAR_CONSTRAINT_UPPER_BOUND, keys, hi)
        if basic:
            status = np.full(len(ids), BASIC, dtype=np.int64)
        else:
            status = np.where(lo == hi, FIXED, np.where(np.isfinite(lo), AT_LOWER, AT_UPPER))
        self._row_status = np.concatenate([self._row_status, status.astype(np.int64)])
        return ids

    def set_coefficients(self, rows: np.ndarray, variables: np.ndarray, values: np.ndarray) -> None:
        """Set matrix entries; a (row, variable) pair listed twice gets the sum of its values."""
        if not len(rows):
            return
        row = np.asarray(rows, dtype=np.int64)
        var = np.asarray(variables, dtype=np.int64)
        key = row * (int(var.max()) + 1) + var
        unique, inverse = np.unique(key, return_inverse=True)
        summed = np.bincount(inverse, weights=np.asarray(values, dtype=np.float64), minlength=len(unique))
        width = int(var.max()) + 1
        keys = np.stack([unique // width, unique % width], axis=1)
        self._model.set_attrs(enums.DoubleAttr2.LINEAR_CONSTRAINT_COEFFICIENT, keys, summed)

    def solve(self, seconds: float, iterations: int | None = None, primal: bool = False) -> Solution:
        """Solve from the last optimal basis (extended by what was added since); the model is
        updated in GLOP in place where MathOpt can, else GLOP is given the whole model again.
        `primal` runs the primal simplex this once instead of the parameters' choice: the better
        start where the basis is primal feasible and only columns were added (`set_basis`)."""
        if self._solver is None:
            self._solver = mathopt_solver.new(
                parameters_pb2.SOLVER_TYPE_GLOP,
                self._model.export_model(remove_names=True),
                parameters_pb2.SolverInitializerProto(),
            )
        else:
            update = self._model.export_model_update(self._diff, remove_names=True)
            if update is not None and not self._solver.update(update):
                self._solver = mathopt_solver.new(
                    parameters_pb2.SOLVER_TYPE_GLOP,
                    self._model.export_model(remove_names=True),
                    parameters_pb2.SolverInitializerProto(),
                )
        self._model.advance_diff(self._diff)
        glop = self._glop
        if primal:
            glop = glop_parameters_pb2.GlopParameters()
            glop.CopyFrom(self._glop)
            glop.use_dual_simplex = False
        params = parameters_pb2.SolveParametersProto(glop=glop)
        params.time_limit.FromNanoseconds(int(min(max(seconds, 1e-3), 1e6) * 1e9))
        if iterations is not None:
            params.iteration_limit = max(1, int(iterations))
        model_params = model_parameters_pb2.ModelSolveParametersProto()
        if self._basis:
            basis = model_params.initial_basis
            basis.variable_status.ids.extend(range(len(self._variable_status)))
            basis.variable_status.values.extend(self._variable_status.tolist())
            basis.constraint_status.ids.extend(range(len(self._row_status)))
            basis.constraint_status.values.extend(self._row_status.tolist())
        result = self._solver.solve(
            params, model_params, None, callback_pb2.CallbackRegistrationProto(), None, None
        )
        return self._read(result)

    def _read(self, result: result_pb2.SolveResultProto) -> Solution:
        n, m = self.variables, self.rows
        done = int(result.solve_stats.simplex_iterations)
        optimal = result.termination.reason == result_pb2.TERMINATION_REASON_OPTIMAL
        if not optimal or not result.solutions:
            return Solution(False, float("nan"), np.zeros(n), np.zeros(m), np.zeros(n), done)
        solution = result.solutions[0]
        primal = _dense(solution.primal_solution.variable_values, n)
        dual = _dense(solution.dual_solution.dual_values, m)
        reduced = _dense(solution.dual_solution.reduced_costs, n)
        if solution.HasField("basis"):
            self._variable_status = _dense(solution.basis.variable_status, n).astype(np.int64)
            self._row_status = _dense(solution.basis.constraint_status, m).astype(np.int64)
            self._basis = True
        value = float(solution.primal_solution.objective_value)
        return Solution(True, value, primal, dual, reduced, done)


def _balanced(
    variable_status: np.ndarray, row_status: np.ndarray, lower: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The statuses with as many basic columns and slacks as there are rows, as MathOpt demands of a
    starting basis: missing ones are made up by the slacks of the last rows not basic (the newest,
    whose slacks a fresh row has basic anyway), extra ones put at their lower bound, the last
    columns first (or, where no column has a finite lower bound, the last rows' slacks at theirs).
    Which basic set results is GLOP's to repair; only the count is fixed here."""
    rows = len(row_status)
    basic = int(np.count_nonzero(variable_status == BASIC) + np.count_nonzero(row_status == BASIC))
    if basic < rows:
        free = np.flatnonzero(row_status != BASIC)
        row_status[free[len(free) - (rows - basic) :]] = BASIC
    elif basic > rows:
        extra = basic - rows
        movable = np.flatnonzero((variable_status == BASIC) & lower)
        taken = movable[max(0, len(movable) - extra) :]
        variable_status[taken] = AT_LOWER
        extra -= len(taken)
        if extra:  # no column left to move: a row slack basic goes to a bound of its row
            row_status[np.flatnonzero(row_status == BASIC)[-extra:]] = AT_UPPER
    return variable_status, row_status


def _dense(vector: object, size: int) -> np.ndarray:
    """A MathOpt sparse vector (ids, values) as a dense array of `size`."""
    values = vector.values  # type: ignore[attr-defined]
    if len(values) == size:  # ids are distinct and ascending: all of them, in order (no copy of ids)
        return np.asarray(values, dtype=np.float64)
    out = np.zeros(size)
    ids = np.asarray(vector.ids, dtype=np.int64)  # type: ignore[attr-defined]
    if len(ids):
        out[ids] = np.asarray(values, dtype=np.float64)
    return out
