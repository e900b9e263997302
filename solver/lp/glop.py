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

GLOP holds the model; this side keeps it only as numpy arrays (bounds, costs, and the coefficients
set, call by call), and hands GLOP what was added since its last solve as one `ModelUpdateProto`
built from them. A model of MathOpt's own (`CppElemental`) beside GLOP's copy cost 820 MB at a
continent's 7.5 million coefficients, more than the arrays' 120 MB, and exporting it was slower.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.glop import parameters_pb2 as glop_parameters_pb2
from ortools.math_opt import (
    callback_pb2,
    model_parameters_pb2,
    model_pb2,
    model_update_pb2,
    parameters_pb2,
    result_pb2,
    solution_pb2,
    sparse_containers_pb2,
)
from ortools.math_opt.core.python import solver as mathopt_solver

#: MathOpt's basis statuses (`solution_pb2.BasisStatusProto`).
AT_LOWER = solution_pb2.BASIS_STATUS_AT_LOWER_BOUND
AT_UPPER = solution_pb2.BASIS_STATUS_AT_UPPER_BOUND
FIXED = solution_pb2.BASIS_STATUS_FIXED_VALUE
BASIC = solution_pb2.BASIS_STATUS_BASIC


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
        self._glop = glop
        self._solver: mathopt_solver.Solver | None = None
        self._columns = _Chunks(3)  # lower, upper, cost per variable
        self._rows = _Chunks(2)  # lower, upper per row
        self._entries = _Chunks(3)  # row, variable, value per coefficient set (a call's pairs unique)
        self._variable_status = np.zeros(0, dtype=np.int64)
        self._row_status = np.zeros(0, dtype=np.int64)
        self._lower = np.zeros(0, dtype=bool)  # per variable: its lower bound is finite
        self._basis = False  # whether the statuses are an optimal basis to start from

    @property
    def variables(self) -> int:
        """Columns in the model."""
        return self._columns.size

    @property
    def rows(self) -> int:
        """Rows in the model."""
        return self._rows.size

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
        lower = np.asarray(lower, dtype=np.float64)
        ids = self._columns.append(
            lower, np.asarray(upper, dtype=np.float64), np.asarray(cost, dtype=np.float64)
        )
        status = np.full(len(ids), BASIC if basic else AT_LOWER, dtype=np.int64)
        self._variable_status = np.concatenate([self._variable_status, status])
        self._lower = np.concatenate([self._lower, np.isfinite(lower)])
        return ids

    def add_rows(self, lower: np.ndarray, upper: np.ndarray, basic: bool = True) -> np.ndarray:
        """Add rows lower ≤ a·x ≤ upper (coefficients by `set_coefficients`); their ids. A new row's
        slack is basic, unless the row comes with a basic column of its own (then it is at a bound)."""
        lo = np.asarray(lower, dtype=np.float64)
        hi = np.asarray(upper, dtype=np.float64)
        ids = self._rows.append(lo, hi)
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
        self._entries.append(unique // width, unique % width, summed)

    def solve(self, seconds: float, iterations: int | None = None, primal: bool = False) -> Solution:
        """Solve from the last optimal basis (extended by what was added since); the model is
        updated in GLOP in place where MathOpt can, else GLOP is given the whole model again.
        `primal` runs the primal simplex this once instead of the parameters' choice: the better
        start where the basis is primal feasible and only columns were added (`set_basis`)."""
        added = any(c.size > c.sent for c in (self._columns, self._rows, self._entries))
        if self._solver is None or (added and not self._solver.update(self._update())):
            self._solver = mathopt_solver.new(
                parameters_pb2.SOLVER_TYPE_GLOP, self._whole(), parameters_pb2.SolverInitializerProto()
            )
        for chunks in (self._columns, self._rows, self._entries):
            chunks.mark_sent()
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

    def _whole(self) -> model_pb2.ModelProto:
        """The whole model, for a new GLOP."""
        model = model_pb2.ModelProto()
        lower, upper, cost = self._columns.all()
        _fill_variables(model.variables, 0, lower, upper)
        _fill_vector(model.objective.linear_coefficients, 0, cost)
        del lower, upper, cost
        _fill_bounded(model.linear_constraints, 0, *self._rows.all())
        _fill_matrix(model.linear_constraint_matrix, *self._entries.all())
        return model

    def _update(self) -> model_update_pb2.ModelUpdateProto:
        """What was added since GLOP's last solve."""
        update = model_update_pb2.ModelUpdateProto()
        first = self._columns.sent
        lower, upper, cost = self._columns.unsent()
        _fill_variables(update.new_variables, first, lower, upper)
        _fill_vector(update.objective_updates.linear_coefficients, first, cost)
        del lower, upper, cost
        _fill_bounded(update.new_linear_constraints, self._rows.sent, *self._rows.unsent())
        _fill_matrix(update.linear_constraint_matrix_updates, *self._entries.unsent())
        return update

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


class _Chunks:
    """Parallel arrays grown a call at a time (the chunks concatenated only when read), with a mark
    of how many rows of them GLOP has been given."""

    def __init__(self, fields: int) -> None:
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._fields = fields
        self.size = 0  # rows in all
        self.sent = 0  # rows GLOP has
        self._sent_parts = 0

    def append(self, *arrays: np.ndarray) -> np.ndarray:
        """Add rows (one array per field); their indices."""
        start = self.size
        if len(arrays[0]):
            self._parts.append(tuple(arrays))
            self.size += len(arrays[0])
        return np.arange(start, self.size, dtype=np.int64)

    def all(self) -> tuple[np.ndarray, ...]:
        """Every row, per field."""
        return self._joined(self._parts)

    def unsent(self) -> tuple[np.ndarray, ...]:
        """The rows added since `mark_sent`, per field."""
        return self._joined(self._parts[self._sent_parts :])

    def mark_sent(self) -> None:
        """GLOP has every row now."""
        self.sent, self._sent_parts = self.size, len(self._parts)

    def _joined(self, parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
        if not parts:
            return tuple(np.zeros(0) for _ in range(self._fields))
        return tuple(np.concatenate([p[f] for p in parts]) for f in range(self._fields))


def _fill_variables(
    proto: model_pb2.VariablesProto, first: int, lower: np.ndarray, upper: np.ndarray
) -> None:
    _fill_bounded(proto, first, lower, upper)
    proto.integers.extend([False] * len(lower))


def _fill_bounded(
    proto: model_pb2.VariablesProto | model_pb2.LinearConstraintsProto,
    first: int,
    lower: np.ndarray,
    upper: np.ndarray,
) -> None:
    """Ids from `first` on, with their bounds (variables or rows)."""
    proto.ids.extend(range(first, first + len(lower)))
    proto.lower_bounds.extend(lower.tolist())
    proto.upper_bounds.extend(upper.tolist())


def _fill_vector(
    proto: sparse_containers_pb2.SparseDoubleVectorProto, first: int, values: np.ndarray
) -> None:
    """The nonzero values, keyed by id (`first` is the id of the first value)."""
    nonzero = np.flatnonzero(values)
    proto.ids.extend((nonzero + first).tolist())
    proto.values.extend(values[nonzero].tolist())


def _fill_matrix(
    proto: sparse_containers_pb2.SparseDoubleMatrixProto, row: np.ndarray, var: np.ndarray, value: np.ndarray
) -> None:
    """Coefficients in MathOpt's order (by row, then variable, each pair once: a pair set again
    keeps its latest value, as setting it in a model does)."""
    if not len(row):
        return
    row, var = row.astype(np.int64), var.astype(np.int64)
    key = row * (int(var.max()) + 1) + var
    # The last entry of each pair: the first one of the reversed keys.
    unique, last = np.unique(key[::-1], return_index=True)
    taken = len(key) - 1 - last
    del unique, key
    proto.row_ids.extend(row[taken].tolist())
    proto.column_ids.extend(var[taken].tolist())
    proto.coefficients.extend(value[taken].tolist())


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
