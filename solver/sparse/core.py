"""The allocation core: a general sparse model of items, options and shared resources, and its solver.

Every allocation question Cosmolocal asks is an instance of one formulation:

- *items* want a whole number of units (an order's quantity; a GAP job wants exactly one);
- *options* place units of one item (an order at a lab, on time or late; a job at an agent): each has
  a cost per unit and a use per unit of named *resources* or *pools*;
- a *resource* has a capacity (free machine-minutes of a lab before a due date, a material's stock,
  a GAP agent's capacity); a *pool* is work any of several resources may do (a step that runs on any
  of a lab's eligible machines): pools that share resources get flow variables, so capacity is exact;
- options sharing a *setup* key pay its setup cost once when any of them is used (no shattering an
  order into tiny lots);
- units of an item that no option places are *short*, at the item's shortage cost; an item with no
  shortage cost must be placed whole.

The generalised assignment problem is this core with quantity 1, one resource per agent and no
shortage (`solver.gap.assignment` maps it so), which is how the core is measured against published optima.

Solving: the linear relaxation (GLOP) gives a lower bound and, rounded and greedily repaired, a first
solution; then a portfolio runs CP-SAT, hinted on every variable with the best solution so far, and
beside it (on models small enough to profit) HiGHS through MathOpt, each stopping the other once it
proves the optimum; time left without a proof goes to re-solving small neighbourhoods.
Every candidate solution is checked exactly against the integer rows before it is kept.

Numbers are scaled to integers conservatively: uses rounded up, capacities rounded down, cost
weights rounded down, so whatever the integer model accepts fits the real figures and its bound stays
a true lower bound of the real objective.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
from ortools.glop import parameters_pb2 as glop_parameters_pb2
from ortools.math_opt.python import mathopt
from ortools.math_opt.solvers import highs_pb2
from ortools.sat.python import cp_model
from ortools.util.python.solve_interrupter import SolveInterrupter

from solver.lp.glop import IncrementalLP

#: GLOP's default parameters, as the relaxation has always been solved with them.
GLOP_DEFAULTS = glop_parameters_pb2.GlopParameters()

#: Largest objective magnitude (scaled) we let CP-SAT handle; well inside int64.
_OBJECTIVE_LIMIT = 2**53
#: Largest share of the time the linear relaxation may take: its bound and its rounded solution are
#: what large models live on, so it gets most of the time when it needs it (small models need little).
LP_TIME_SHARE = 0.6
#: Absorbs float noise such as 0.033 * 1e6 = 33000.000000000004 before rounding.
_EPS = 1e-6
#: With a work budget (`CoreParams.work_limit`): HiGHS's branch-and-bound nodes per unit of it (a
#: node limit is what stops HiGHS at the same point on any machine), the least work worth a
#: neighbourhood search, each neighbourhood's budget, and what a neighbourhood found empty counts
#: (so that the search ends).
MIP_NODES_PER_WORK = 25
LNS_MIN_WORK = 0.5
NEIGHBOURHOOD_WORK = 0.25
EMPTY_NEIGHBOURHOOD_WORK = 0.01


# -- the problem ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """Something that wants `quantity` units placed; `shortage_cost` per unit left out (None: must place)."""

    quantity: int
    shortage_cost: float | None = None


@dataclass(frozen=True, slots=True)
class Option:
    """A way to place units of `item`: cost per unit, use per unit of resources or pools, setup key."""

    item: int
    unit_cost: float
    uses: Mapping[str, float]
    setup: str | None = None
    max_units: int | None = None
    #: Further setup keys the option pays once each when used (a material transfer's handling).
    extra_setups: tuple[str, ...] = ()

    def setup_keys(self) -> tuple[str, ...]:
        """Every setup key of the option: its own and the extra ones."""
        return self.extra_setups if self.setup is None else (self.setup, *self.extra_setups)


@dataclass(frozen=True)
class CoreProblem:
    """Items, options, resource capacities, pools over resources, setup costs and integer scales.

    `scale[name]` turns amounts of a resource into integers (10 for tenths of a minute); a pool takes
    the scale of its resources, which must agree. A name used by an option and found neither in
    `pools` nor in `capacity` is a resource of capacity 0.
    """

    items: Sequence[Item]
    options: Sequence[Option]
    capacity: Mapping[str, float]
    pools: Mapping[str, frozenset[str]] = field(default_factory=dict)
    setup_cost: Mapping[str, float] = field(default_factory=dict)
    scale: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, item in enumerate(self.items):
            if item.quantity < 0:
                raise ValueError(f"item {i}: quantity must not be negative, got {item.quantity}")
        for o, option in enumerate(self.options):
            if not 0 <= option.item < len(self.items):
                raise ValueError(f"option {o}: item {option.item} does not exist")
            if any(amount < 0 for amount in option.uses.values()):
                raise ValueError(f"option {o}: uses must not be negative")
        for pool, resources in self.pools.items():
            if not resources:
                raise ValueError(f"pool {pool!r} has no resource")
            scales = {self.scale.get(r, 1) for r in resources}
            if len(scales) > 1:
                raise ValueError(f"pool {pool!r}: its resources have different scales {sorted(scales)}")


@dataclass(frozen=True, slots=True)
class CoreParams:
    """Time, threads, seed, the MIP phase's share of the time, and a warm start (units per option)."""

    time_limit_s: float = 5.0
    workers: int = 2
    seed: int = 0
    #: 0 turns the MIP solver (HiGHS, beside CP-SAT) off.
    mip_share: float = 1.0
    #: Largest model (variables) given to the MIP phase; beyond it CP-SAT alone follows the LP.
    mip_max_variables: int = 20_000
    #: Share of the time kept for re-solving neighbourhoods of a few resources after the portfolio.
    lns_share: float = 0.2
    warm_start: Sequence[int] | None = None
    #: A budget counted in work, not seconds: CP-SAT's deterministic time (its workers interleaved),
    #: HiGHS's nodes (MIP_NODES_PER_WORK per unit), and the neighbourhoods' deterministic time after
    #: them, so the same problem and seed give the same result on any machine; `time_limit_s` stays
    #: a cap. A node limit does not bound HiGHS's root (presolve, cuts): on a loaded machine its
    #: time is what the cap must leave room for. None: the wall clock alone.
    work_limit: float | None = None
    #: CP-SAT's `linearization_level` for the whole model: 2 adds the LP of every constraint and its
    #: cuts, which pays where fixed costs (setups) dominate the objective, as in `polish`.
    linearization_level: int = 1

    def __post_init__(self) -> None:
        if self.work_limit is not None and not self.work_limit > 0:
            raise ValueError(f"work_limit must be positive when given, got {self.work_limit}")


@dataclass(frozen=True)
class CoreResult:
    """Units per option, units short per item, objective and lower bound (real units), how it ended."""

    units: list[int]
    short: list[int]
    objective: float
    bound: float
    status: str  # OPTIMAL, FEASIBLE, or INFEASIBLE when items that must be placed cannot be
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # phase -> objective it reached

    @property
    def gap(self) -> float:
        """Relative gap between objective and bound (0 when proven optimal)."""
        if self.status == "OPTIMAL" or self.objective == self.bound:
            return 0.0
        return max(0.0, (self.objective - self.bound) / max(abs(self.objective), 1e-9))


def round_up(value: float, scale: int) -> int:
    """`value × scale` rounded up to an integer (never below 0), float noise absorbed."""
    return max(0, math.ceil(value * scale - _EPS))


def round_down(value: float, scale: int) -> int:
    """`value × scale` rounded down to an integer (never below 0), float noise absorbed."""
    return max(0, math.floor(value * scale + _EPS))


# -- a linear model written once, solved by CP-SAT and HiGHS and relaxed by GLOP -----------------


@dataclass(frozen=True, slots=True)
class Row:
    """lo <= sum coefs[i] * var[i] <= hi (a missing side is unbounded)."""

    coefs: dict[int, int]
    lo: int | None
    hi: int | None


#: Below this, sums of int64 products cannot overflow (a row's largest |coefficient| x |value| x
#: length): the vectorised row check is exact; above it `LinearModel.feasible` sums in Python.
INT64_EXACT = 2**62


def _row_holds(row: Row, values: Sequence[int]) -> bool:
    """Whether one row holds, summed exactly in Python integers."""
    total = sum(c * values[i] for i, c in row.coefs.items())
    return not ((row.lo is not None and total < row.lo) or (row.hi is not None and total > row.hi))


@dataclass(frozen=True)
class _RowMatrix:
    """Rows as parallel int64 arrays (row, variable, coefficient per entry; each row's bounds), so a
    solution's rows are all summed in one vectorised pass."""

    count: int
    row: np.ndarray
    var: np.ndarray
    coef: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    most: int  # the largest |coefficient| times the longest row: what a value may be multiplied by

    @staticmethod
    def of(rows: list[Row]) -> _RowMatrix:
        """The arrays of these rows (a missing bound is the int64 extreme); one whose `most` sends
        every check to Python's sums when a coefficient or bound lies beyond int64."""
        low, high = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
        lengths = [len(r.coefs) for r in rows]
        coefs = [c for r in rows for c in r.coefs.values()]
        largest = max((abs(c) for c in coefs), default=0)
        bounds = [b for r in rows for b in (r.lo, r.hi) if b is not None]
        if largest >= INT64_EXACT or not all(low <= b <= high for b in bounds):
            none = np.zeros(0, dtype=np.int64)
            return _RowMatrix(len(rows), none, none, none, none, none, INT64_EXACT + 1)
        return _RowMatrix(
            count=len(rows),
            row=np.repeat(np.arange(len(rows), dtype=np.int64), lengths),
            var=np.fromiter((i for r in rows for i in r.coefs), dtype=np.int64, count=len(coefs)),
            coef=np.array(coefs, dtype=np.int64),
            lo=np.array([low if r.lo is None else r.lo for r in rows], dtype=np.int64),
            hi=np.array([high if r.hi is None else r.hi for r in rows], dtype=np.int64),
            most=largest * max(lengths, default=0),
        )


@dataclass
class LinearModel:
    """Integer variables with bounds, linear rows and a linear objective, independent of any solver."""

    lb: list[int] = field(default_factory=list)
    ub: list[int] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    cost: dict[int, int] = field(default_factory=dict)
    _rows_matrix: _RowMatrix | None = field(default=None, repr=False, compare=False)

    def new_var(self, lb: int, ub: int) -> int:
        """A new integer variable in [lb, ub]; returns its index."""
        self.lb.append(lb)
        self.ub.append(max(lb, ub))
        return len(self.lb) - 1

    def tighten(self, var: int, ub: int) -> None:
        """Lower an upper bound to a value every feasible solution respects: a tighter relaxation."""
        self.ub[var] = max(self.lb[var], min(self.ub[var], ub))

    def add(self, coefs: dict[int, int], lo: int | None = None, hi: int | None = None) -> None:
        """Add the row lo <= sum coefs[i] * var[i] <= hi."""
        self.rows.append(Row(dict(coefs), lo, hi))

    def feasible(self, values: Sequence[int]) -> bool:
        """Exact integer check of bounds and rows."""
        if any(not lo <= v <= hi for v, lo, hi in zip(values, self.lb, self.ub, strict=True)):
            return False
        matrix = self._matrix()
        largest = max((abs(v) for v in values), default=0)
        if matrix is None or max(largest, matrix.most, largest * matrix.most) > INT64_EXACT:
            return all(_row_holds(row, values) for row in self.rows)
        terms = matrix.coef * np.asarray(values, dtype=np.int64)[matrix.var]
        totals = np.zeros(len(self.rows), dtype=np.int64)
        np.add.at(totals, matrix.row, terms)
        return bool(((totals >= matrix.lo) & (totals <= matrix.hi)).all())

    def _matrix(self) -> _RowMatrix | None:
        """The rows as int64 arrays, built once for the rows there are (None when there are none)."""
        if not self.rows:
            return None
        if self._rows_matrix is None or self._rows_matrix.count != len(self.rows):
            self._rows_matrix = _RowMatrix.of(self.rows)
        return self._rows_matrix

    def value(self, values: Sequence[int]) -> int:
        """The scaled objective of a solution."""
        return sum(c * values[i] for i, c in self.cost.items())

    def cp_sat(self, hint: Sequence[int] | None) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
        """The CP-SAT model of these rows and objective, every variable hinted when a hint is given.

        The rows, objective and hint are written into the model's proto directly, as CP-SAT's own
        builders would write them (variables in increasing order, zero coefficients left out, the
        objective unscaled): the same model, without building an expression object per row."""
        model = cp_model.CpModel()
        variables = [model.new_int_var(lo, hi, "") for lo, hi in zip(self.lb, self.ub, strict=True)]
        proto = model.proto
        constraints = proto.constraints
        for row in self.rows:
            ids = sorted(i for i, c in row.coefs.items() if c)
            linear = constraints.add().linear
            linear.vars.extend(ids)
            linear.coeffs.extend(row.coefs[i] for i in ids)
            lo = cp_model.INT_MIN if row.lo is None else row.lo
            hi = cp_model.INT_MAX if row.hi is None else row.hi
            if lo <= hi:  # an empty domain, as CP-SAT writes it: the row can never hold
                linear.domain.extend((lo, hi))
        ids = sorted(i for i, c in self.cost.items() if c)
        proto.objective.vars.extend(ids)
        proto.objective.coeffs.extend(self.cost[i] for i in ids)
        proto.objective.scaling_factor = 1
        if hint is not None:
            if len(hint) != len(variables):
                raise ValueError(f"a hint of {len(hint)} values for {len(variables)} variables")
            proto.solution_hint.vars.extend(range(len(variables)))
            proto.solution_hint.values.extend(int(v) for v in hint)
        return model, variables

    def relaxation(self, time_limit_s: float) -> tuple[list[float] | None, float | None, float]:
        """Values and objective of the linear relaxation (None when GLOP gives none), and its seconds."""
        # Integer scaling leaves coefficients from 1 to 1e10; GLOP needs them near 1 or it gives up
        # (ABNORMAL). Each row is divided by its largest coefficient and the objective by its own:
        # the same polytope and optimum, well conditioned. The value is scaled back on return.
        # Handed to GLOP as arrays (`solver.lp.glop`), not one call per coefficient.
        started = time.perf_counter()
        lengths = [len(row.coefs) for row in self.rows]
        entries = sum(lengths)
        norm = np.array(
            [max((abs(c) for c in row.coefs.values()), default=1) or 1 for row in self.rows], float
        )
        lp = IncrementalLP(GLOP_DEFAULTS)
        cost_norm = max((abs(c) for c in self.cost.values()), default=1) or 1
        cost = np.zeros(len(self.lb))
        for i, c in self.cost.items():
            cost[i] = c / cost_norm
        variables = lp.add_variables(np.array(self.lb, float), np.array(self.ub, float), cost)
        rows = lp.add_rows(
            np.array([-np.inf if row.lo is None else row.lo for row in self.rows], float) / norm,
            np.array([np.inf if row.hi is None else row.hi for row in self.rows], float) / norm,
        )
        matrix = self._matrix()
        if matrix is not None and len(matrix.var) == entries:  # the row check's arrays, read once
            row_of, var, coef = matrix.row, matrix.var, matrix.coef.astype(float)
        else:  # no rows, or coefficients beyond int64 (the row check sums those in Python)
            row_of = np.repeat(np.arange(len(self.rows)), lengths)
            var = np.fromiter((i for row in self.rows for i in row.coefs), np.int64, count=entries)
            coef = np.fromiter((c for row in self.rows for c in row.coefs.values()), float, count=entries)
        lp.set_coefficients(rows[row_of], variables[var], coef / norm[row_of])
        solution = lp.solve(time_limit_s)
        seconds = time.perf_counter() - started
        if not solution.optimal:
            return None, None, seconds
        # GLOP's optimum is exact up to its tolerances; shave a hair off so the bound stays a bound.
        value = solution.value * cost_norm
        return solution.primal.tolist(), value - 1e-7 * abs(value) - 1e-6, seconds

    def mip(
        self,
        time_limit_s: float,
        interrupter: SolveInterrupter | None = None,
        node_limit: int | None = None,
    ) -> tuple[list[int] | None, float | None, bool]:
        """HiGHS's best integer solution within the time (None if none), its dual bound (scaled), and
        whether it proved optimality. `interrupter` stops it early; `node_limit` caps its
        branch-and-bound nodes (a budget that stops it at the same point on any machine)."""
        model = mathopt.Model()
        variables = [
            model.add_integer_variable(lb=lo, ub=hi) for lo, hi in zip(self.lb, self.ub, strict=True)
        ]
        for row in self.rows:
            expr = mathopt.fast_sum(c * variables[i] for i, c in row.coefs.items())
            model.add_linear_constraint(
                lb=-math.inf if row.lo is None else row.lo,
                ub=math.inf if row.hi is None else row.hi,
                expr=expr,
            )
        model.minimize(mathopt.fast_sum(c * variables[i] for i, c in self.cost.items()))
        params = mathopt.SolveParameters(
            time_limit=_dt.timedelta(seconds=max(0.05, time_limit_s)),
            node_limit=node_limit,
            highs=highs_pb2.HighsOptionsProto(bool_options={"output_flag": False, "log_to_console": False}),
        )
        try:
            result = mathopt.solve(model, mathopt.SolverType.HIGHS, params=params, interrupter=interrupter)
        except Exception:  # HiGHS is one solver of a portfolio; CP-SAT still runs
            return None, None, False
        bound = result.termination.objective_bounds.dual_bound
        bound = bound if math.isfinite(bound) else None
        optimal = result.termination.reason == mathopt.TerminationReason.OPTIMAL
        if not result.has_primal_feasible_solution():
            return None, bound, False
        values = [round(v) for v in result.variable_values(variables)]
        return values, bound, optimal


# -- the core model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FlowBlock:
    """Pools sharing resources: each pool's work is routed to its resources by y variables."""

    work: dict[str, dict[int, int]]  # pool -> option variable -> scaled use per unit
    y: dict[tuple[str, str], int]  # (pool, resource) -> y variable
    cap: dict[str, int]  # resource -> scaled capacity
    pools: dict[str, frozenset[str]]
    direct: dict[str, dict[int, int]]  # resource -> option variable -> scaled use per unit, outside pools


class CoreModel:
    """The integer model of one `CoreProblem`: x per option, setups, shortage, capacity, flows."""

    def __init__(self, problem: CoreProblem) -> None:
        self.problem = problem
        self.lin = LinearModel()
        self.flows: list[_FlowBlock] = []
        self._scales: dict[str, int] = {}
        quantity = [item.quantity for item in problem.items]
        self.x = [
            self.lin.new_var(
                0, min(quantity[o.item], o.max_units if o.max_units is not None else quantity[o.item])
            )
            for o in problem.options
        ]
        self.short: list[int | None] = [
            self.lin.new_var(0, item.quantity) if item.shortage_cost is not None else None
            for item in problem.items
        ]
        self._add_items()
        self._add_resources()
        self._add_setups()
        self._set_objective()

    def _scale_of(self, name: str) -> int:
        """The scale of a resource, or of a pool's resources (one scale per pool), looked up once."""
        scale = self._scales.get(name)
        if scale is None:
            pool = self.problem.pools.get(name)
            scale = self._scales[name] = self.problem.scale.get(next(iter(pool)) if pool else name, 1)
        return scale

    def _add_items(self) -> None:
        rows: list[dict[int, int]] = [{} for _ in self.problem.items]
        for o, option in enumerate(self.problem.options):
            rows[option.item][self.x[o]] = 1
        for i, (row, item) in enumerate(zip(rows, self.problem.items, strict=True)):
            short = self.short[i]
            if short is not None:
                row[short] = 1
            self.lin.add(row, lo=item.quantity, hi=item.quantity)

    def _add_resources(self) -> None:
        """Direct uses become one row per resource; pools sharing resources are routed by flows."""
        cap = {r: round_down(v, self.problem.scale.get(r, 1)) for r, v in self.problem.capacity.items()}
        direct: dict[str, dict[int, int]] = defaultdict(dict)
        pooled: dict[str, dict[int, int]] = defaultdict(dict)
        #: Per option, what one unit uses of each resource or pool, in whole scaled amounts (> 0).
        self.unit_use: list[dict[str, int]] = []
        for o, option in enumerate(self.problem.options):
            uses: dict[str, int] = {}
            self.unit_use.append(uses)
            for name, amount in option.uses.items():
                per_unit = round_up(amount, self._scale_of(name))
                if per_unit <= 0:
                    continue
                uses[name] = uses.get(name, 0) + per_unit
                target = pooled if name in self.problem.pools else direct
                target[name][self.x[o]] = target[name].get(self.x[o], 0) + per_unit
        # A pool whose resources no other pool and no direct use touch is one row over their sum.
        for component in _components({p: self.problem.pools[p] for p in pooled}, direct):
            if len(component) == 1 and component[0] in pooled:
                pool = component[0]
                limit = sum(cap.get(r, 0) for r in self.problem.pools[pool])
                self._limit(pooled[pool], limit)
            elif len(component) == 1:
                self._limit(direct[component[0]], cap.get(component[0], 0))
            else:
                self._add_flow(component, pooled, direct, cap)

    def _limit(self, per_x: dict[int, int], limit: int) -> None:
        self.lin.add(per_x, hi=limit)
        for x, use in per_x.items():
            self.lin.tighten(x, limit // use)

    def _add_flow(
        self,
        component: list[str],
        pooled: dict[str, dict[int, int]],
        direct: dict[str, dict[int, int]],
        cap: dict[str, int],
    ) -> None:
        """Pools sharing resources: route each pool's work to its resources, within each capacity."""
        y: dict[tuple[str, str], int] = {}
        into: dict[str, dict[int, int]] = defaultdict(dict)
        pools = {name: self.problem.pools[name] for name in component if name in pooled}
        for name in component:
            if name in pooled:
                row = {x: -use for x, use in pooled[name].items()}
                for r in sorted(pools[name]):
                    y[name, r] = self.lin.new_var(0, cap.get(r, 0))
                    row[y[name, r]] = 1
                    into[r][y[name, r]] = 1
                self.lin.add(row, lo=0, hi=0)
                limit = sum(cap.get(r, 0) for r in pools[name])
                for x, use in pooled[name].items():
                    self.lin.tighten(x, limit // use)
            else:  # a resource used directly as well as through pools
                for x, use in direct[name].items():
                    into[name][x] = into[name].get(x, 0) + use
                    self.lin.tighten(x, cap.get(name, 0) // use)
        for r, row in sorted(into.items()):
            self.lin.add(row, hi=cap.get(r, 0))
        self.flows.append(
            _FlowBlock(
                work={p: pooled[p] for p in pools},
                y=y,
                cap={r: cap.get(r, 0) for r in into},
                pools=pools,
                direct={name: direct[name] for name in component if name not in pooled},
            )
        )

    def _add_setups(self) -> None:
        """used[k] = 1 when any option with setup key k places units; built after bounds are tight."""
        by_key: dict[str, list[int]] = defaultdict(list)
        for o, option in enumerate(self.problem.options):
            for key in option.setup_keys():
                if self.problem.setup_cost.get(key, 0.0) > 0:
                    by_key[key].append(o)
        self.used: dict[str, int] = {}
        for key, options in by_key.items():
            used = self.lin.new_var(0, 1)
            self.used[key] = used
            for o in options:
                self.lin.add({self.x[o]: 1, used: -self.lin.ub[self.x[o]]}, hi=0)
            self.lin.add({**{self.x[o]: 1 for o in options}, used: -1}, lo=0)

    def _set_objective(self) -> None:
        """Unit costs + setups + shortage, each weight scaled to an integer and rounded down."""
        quantity = [item.quantity for item in self.problem.items]
        largest = sum(abs(o.unit_cost) * quantity[o.item] for o in self.problem.options)
        largest += sum(abs(self.problem.setup_cost.get(k, 0.0)) for k in self.used)
        largest += sum((i.shortage_cost or 0.0) * i.quantity for i in self.problem.items)
        self.objective_scale = next((s for s in (1000, 100, 10) if largest * s <= _OBJECTIVE_LIMIT), 1)
        s = self.objective_scale
        for o, option in enumerate(self.problem.options):
            if option.unit_cost:
                self.lin.cost[self.x[o]] = math.floor(option.unit_cost * s)
        for key, used in self.used.items():
            self.lin.cost[used] = math.floor(self.problem.setup_cost[key] * s)
        for short, item in zip(self.short, self.problem.items, strict=True):
            if short is not None and item.shortage_cost:
                self.lin.cost[short] = math.floor(item.shortage_cost * s)

    # -- solutions -------------------------------------------------------------------------------

    def complete(self, units: Sequence[int]) -> list[int] | None:
        """All variables for these units per option (setups, shortage, flows), if that is feasible."""
        values = [0] * len(self.lin.lb)
        placed = [0] * len(self.problem.items)
        for o, option in enumerate(self.problem.options):
            values[self.x[o]] = units[o]
            placed[option.item] += units[o]
        for i, item in enumerate(self.problem.items):
            short = self.short[i]
            if short is not None:
                values[short] = item.quantity - placed[i]
            elif placed[i] != item.quantity:
                return None
        for _key, used in self.used.items():
            values[used] = 0
        for o, option in enumerate(self.problem.options):
            if units[o] > 0:
                for key in option.setup_keys():
                    if key in self.used:
                        values[self.used[key]] = 1
        for block in self.flows:
            routed = _integral_flow(block, values)
            if routed is None:
                return None
            for y, amount in routed.items():
                values[y] = amount
        return values if self.lin.feasible(values) else None

    def repair(self, units: list[int]) -> list[int] | None:
        """Place the units still missing, cheapest option with room first; None when it cannot.

        Room is counted as the model counts it, in whole scaled amounts (uses rounded up, capacities
        down), so a resource is filled to the last unit that fits and never past it."""
        use = self.unit_use
        used_amount: dict[str, int] = defaultdict(int)
        for o, per_unit in enumerate(use):
            for name, amount in per_unit.items():
                used_amount[name] += amount * units[o]
        missing = [item.quantity for item in self.problem.items]
        for o, option in enumerate(self.problem.options):
            missing[option.item] -= units[o]
        room = self._room(used_amount)
        order = sorted(range(len(self.problem.options)), key=lambda o: self.problem.options[o].unit_cost)
        for o in order:
            option = self.problem.options[o]
            if missing[option.item] <= 0:
                continue
            fit = min(
                (room.left(name) // amount for name, amount in use[o].items()),
                default=missing[option.item],
            )
            take = max(0, min(missing[option.item], fit, self.lin.ub[self.x[o]] - units[o]))
            if take:
                units[o] += take
                missing[option.item] -= take
                for name, amount in use[o].items():
                    room.use(name, amount * take)
        return self.complete(units)

    def _room(self, used_amount: dict[str, int]) -> _Headroom:
        """The room left in each resource and pool, given what is used of each already."""
        pool_capacity, sharing = self._pool_terms
        return _Headroom(
            self._capacities,
            pool_capacity,
            sharing,
            self._pools_sharing,
            used_amount,
        )

    @functools.cached_property
    def _capacities(self) -> dict[str, int]:
        """Every resource's capacity in whole scaled amounts (`_capacity`), counted once per model."""
        return {name: self._capacity(name) for name in self.problem.capacity}

    @functools.cached_property
    def _pools_sharing(self) -> dict[str, tuple[str, ...]]:
        """Per resource or pool: the pools whose room its use takes from (see `_pool_terms`)."""
        _, sharing = self._pool_terms
        shared_by: dict[str, list[str]] = defaultdict(list)
        for pool, names in sharing.items():
            for name in names:
                shared_by[name].append(pool)
        return {name: tuple(pools) for name, pools in shared_by.items()}

    def _capacity(self, resource: str) -> int:
        """A resource's capacity in whole scaled amounts, rounded down."""
        return round_down(self.problem.capacity.get(resource, 0.0), self.problem.scale.get(resource, 1))

    @functools.cached_property
    def _pool_terms(self) -> tuple[dict[str, int], dict[str, tuple[str, ...]]]:
        """Per pool, counted once per model: its resources' capacity, and the pools and resources
        whose use shares one of them."""
        pools = self.problem.pools
        pool_of: dict[str, list[str]] = defaultdict(list)
        for pool, resources in pools.items():
            for r in resources:
                pool_of[r].append(pool)
        capacity = {pool: sum(self._capacity(r) for r in resources) for pool, resources in pools.items()}
        sharing = {
            pool: tuple({p for r in resources for p in pool_of[r]} | set(resources))
            for pool, resources in pools.items()
        }
        return capacity, sharing

    def result(self, values: Sequence[int], bound_scaled: float, status: str, seconds: float) -> CoreResult:
        """Read units and shortage from a full solution and price it in real (unscaled) units."""
        units = [int(values[x]) for x in self.x]
        short = [int(values[s]) if s is not None else 0 for s in self.short]
        objective = self.true_objective(units, short)
        bound = min(bound_scaled / self.objective_scale, objective)
        return CoreResult(units, short, objective, bound, status, seconds)

    def true_objective(self, units: Sequence[int], short: Sequence[int]) -> float:
        """The objective in real units: unit costs, setups paid once per key, shortage."""
        total = sum(o.unit_cost * units[i] for i, o in enumerate(self.problem.options))
        keys = {k for i, o in enumerate(self.problem.options) if units[i] > 0 for k in o.setup_keys()}
        total += sum(self.problem.setup_cost.get(k, 0.0) for k in keys)
        total += sum(
            (item.shortage_cost or 0.0) * s for item, s in zip(self.problem.items, short, strict=True)
        )
        return total


class _Headroom:
    """Room left in each resource and pool in whole scaled amounts, kept as units are placed.

    A pool's room is its resources' capacity less every use sharing one of them (`_pool_terms`);
    each use is added to the pools it shares as it is made, so a pool's room is read in one step
    rather than summed over its sharers for every option the repair looks at."""

    def __init__(
        self,
        capacity: dict[str, int],
        pool_capacity: dict[str, int],
        sharing: dict[str, tuple[str, ...]],
        pools_sharing: dict[str, tuple[str, ...]],
        used: dict[str, int],
    ) -> None:
        self.capacity = capacity
        self.pool_capacity = pool_capacity
        self.pools_sharing = pools_sharing
        self.used = used
        self.pool_used = dict.fromkeys(sharing, 0)
        for name, amount in used.items():
            for pool in pools_sharing.get(name, ()):
                self.pool_used[pool] += amount

    def left(self, name: str) -> int:
        """Room left in a resource or pool (0 at the least)."""
        if name in self.pool_used:
            return max(0, self.pool_capacity[name] - self.pool_used[name])
        return max(0, self.capacity.get(name, 0) - self.used.get(name, 0))

    def use(self, name: str, amount: int) -> None:
        """Take `amount` of a resource or pool, and so of every pool it shares."""
        self.used[name] = self.used.get(name, 0) + amount
        for pool in self.pools_sharing.get(name, ()):
            self.pool_used[pool] += amount


def solve_core(problem: CoreProblem, params: CoreParams = CoreParams()) -> CoreResult:
    """Solve the core problem: relaxation, rounding and repair, MIP phase, then hinted CP-SAT.

    The portfolio starts from the best of the warm start, the relaxation rounded and repaired, and a
    greedy from nothing (cheapest option with room first): in a city's polish rounds, where a setup
    per order and lab weighs more than its trip, the greedy was the better start in most rounds.

    Returns the best verified solution with the best proven bound. When some item that must be placed
    cannot be, the status is INFEASIBLE and units are all zero.

    With `params.work_limit`, the portfolio and the neighbourhood search spend a budget of work
    (see `CoreParams.work_limit`) and the time limit only caps them: the same problem and seed give
    the same objective on any machine fast enough to spend the budget within the cap.
    """
    started = time.perf_counter()
    model = CoreModel(problem)
    lin = model.lin
    deadline = started + params.time_limit_s
    phases: dict[str, float] = {}
    best: list[int] | None = None
    bound = -math.inf

    def keep(values: list[int] | None, phase: str) -> None:
        nonlocal best
        if values is None or not lin.feasible(values):
            return
        phases[phase] = model.true_objective(
            [values[x] for x in model.x], [values[s] if s is not None else 0 for s in model.short]
        )
        if best is None or lin.value(values) < lin.value(best):
            best = values

    if params.warm_start is not None:
        keep(model.complete(list(params.warm_start)), "warm start")

    relaxed, lp_value, _ = lin.relaxation(max(0.05, params.time_limit_s * LP_TIME_SHARE))
    if lp_value is not None:
        bound = max(bound, lp_value)
        for tolerance in (1e-6, 0.0):
            units = [max(0, math.floor(relaxed[x] + tolerance)) for x in model.x]
            keep(model.repair(units), "relaxation rounded")
    keep(model.repair([0] * len(model.x)), "greedy")

    status = "FEASIBLE"
    proven = best is not None and math.isfinite(bound) and lin.value(best) <= math.ceil(bound - 1e-6)
    if not proven:
        # A portfolio on the whole model: CP-SAT, hinted with the best solution so far, and HiGHS
        # beside it in a thread (both release the GIL), each stopping the other once it proves the
        # optimum. Small models end here. What is left of the time goes to re-solving neighbourhoods.
        remaining = deadline - time.perf_counter()
        work = params.work_limit
        if work is None:
            lns = best is not None and params.lns_share > 0 and remaining > 1.0
            budget = max(0.05, remaining * (1 - params.lns_share if lns else 1))
        else:
            # Work decides; the wall clock (what is left of the time limit) only caps.
            lns = best is not None and params.lns_share > 0 and work * params.lns_share >= LNS_MIN_WORK
            work = work * (1 - params.lns_share if lns else 1)
            budget = max(0.05, remaining)
        enough = budget > 0.2 if work is None else work > 0.2
        use_mip = len(lin.lb) <= params.mip_max_variables and params.mip_share > 0 and enough
        cp, variables = lin.cp_sat(best)
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = budget
        solver.parameters.num_workers = max(1, params.workers - 1) if use_mip else params.workers
        solver.parameters.random_seed = params.seed
        solver.parameters.linearization_level = params.linearization_level
        nodes = None
        if work is not None:
            solver.parameters.max_deterministic_time = work
            # Interleaved workers give the same search whatever the threads' timing.
            solver.parameters.interleave_search = solver.parameters.num_workers > 1
            nodes = max(1, int(work * MIP_NODES_PER_WORK))
        interrupter = SolveInterrupter()
        mip_result: list[tuple[list[int] | None, float | None, bool]] = []

        def run_mip() -> None:
            mip_result.append(lin.mip(budget, interrupter, nodes))
            if mip_result[0][2]:
                solver.stop_search()

        helper = threading.Thread(target=run_mip, daemon=True) if use_mip else None
        if helper is not None:
            helper.start()
        outcome = solver.solve(cp)
        if outcome in (cp_model.OPTIMAL, cp_model.INFEASIBLE):
            interrupter.interrupt()
        if helper is not None:
            helper.join()
        if mip_result:
            values, mip_bound, _ = mip_result[0]
            keep(values, "mip")
            if mip_bound is not None:
                bound = max(bound, mip_bound)
        if outcome in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            keep([int(solver.value(v)) for v in variables], "cp-sat")
            bound = max(bound, solver.best_objective_bound)
            if outcome == cp_model.OPTIMAL:
                status = "OPTIMAL"
        elif outcome == cp_model.INFEASIBLE:
            status = "INFEASIBLE"
        elif best is not None and not mip_result:
            bound = max(bound, solver.best_objective_bound)
        proven = best is not None and math.isfinite(bound) and lin.value(best) <= math.ceil(bound - 1e-6)
        room = lns if work is not None else deadline - time.perf_counter() > 0.3
        if status == "FEASIBLE" and not proven and best is not None and room:
            keep(_neighbourhood_search(model, best, deadline, params), "lns")
    seconds = time.perf_counter() - started
    if best is None:
        empty = [0] * len(model.x)
        short = [item.quantity for item in problem.items]
        return CoreResult(
            empty, short, math.inf, bound / model.objective_scale, "INFEASIBLE", seconds, phases
        )
    if status != "OPTIMAL" and math.isfinite(bound) and lin.value(best) <= math.ceil(bound - 1e-6):
        status = "OPTIMAL"
    result = model.result(best, bound if math.isfinite(bound) else -math.inf, status, seconds)
    result.phases.update(phases)
    return result


def _neighbourhood_search(
    model: CoreModel, start: list[int], deadline: float, params: CoreParams
) -> list[int]:
    """Re-solve small neighbourhoods with CP-SAT, everything outside them fixed, keeping improvements.

    Half of the neighbourhoods follow the strongest unmet demand: an item drawn in proportion to what
    the best solution so far pays for it beyond its cheapest option (units short, late, far), with
    the resources its options use. The other half are a few resources drawn at random. Every item
    that uses a chosen resource, or could, may move among its options inside the neighbourhood.

    With `params.work_limit`, it spends `lns_share` of that budget in CP-SAT's deterministic time
    (NEIGHBOURHOOD_WORK per neighbourhood, one worker each), the deadline only a cap.
    """
    import random

    rng = random.Random(params.seed)
    lin = model.lin
    problem = model.problem
    best = list(start)
    names = sorted({name for option in problem.options for name in option.uses})
    if len(names) < 2:
        return best
    options_of: dict[str, list[int]] = defaultdict(list)
    options_of_item: dict[int, list[int]] = defaultdict(list)
    for o, option in enumerate(problem.options):
        options_of_item[option.item].append(o)
        for name in option.uses:
            options_of[name].append(o)
    cheapest = {i: min(problem.options[o].unit_cost for o in opts) for i, opts in options_of_item.items()}
    cp, variables = lin.cp_sat(None)
    size = min(len(names), 3)
    work = None if params.work_limit is None else params.work_limit * params.lns_share
    spent = 0.0
    while time.perf_counter() < deadline - 0.05 and (work is None or spent < work):
        pressure = _pressure(model, best, cheapest)
        if pressure and rng.random() < 0.5:
            items, weights = zip(*pressure.items(), strict=True)
            seed = rng.choices(items, weights=weights)[0]
            chosen = {name for o in options_of_item[seed] for name in problem.options[o].uses}
        else:
            chosen = set(rng.sample(names, size))
        free_items = {problem.options[o].item for name in chosen for o in options_of[name]}
        free = {o for i in free_items for o in options_of_item[i] if set(problem.options[o].uses) <= chosen}
        if not free:
            spent += EMPTY_NEIGHBOURHOOD_WORK
            continue
        sub = cp.clone()
        for o in range(len(problem.options)):
            if o not in free:
                sub.add(sub.get_int_var_from_proto_index(model.x[o]) == best[model.x[o]])
        sub.clear_hints()
        for var, value in enumerate(best):
            sub.add_hint(sub.get_int_var_from_proto_index(var), value)
        solver = cp_model.CpSolver()
        left = max(0.05, deadline - time.perf_counter())
        solver.parameters.num_workers = 1
        solver.parameters.random_seed = rng.randrange(1 << 30)
        if work is None:
            solver.parameters.max_time_in_seconds = min(1.0, left)
        else:
            solver.parameters.max_time_in_seconds = left
            solver.parameters.max_deterministic_time = max(0.01, min(NEIGHBOURHOOD_WORK, work - spent))
        outcome = solver.solve(sub)
        spent += max(EMPTY_NEIGHBOURHOOD_WORK, solver.deterministic_time)
        if outcome in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            values = [int(solver.value(sub.get_int_var_from_proto_index(v))) for v in range(len(variables))]
            if lin.value(values) < lin.value(best) and lin.feasible(values):
                best = values
    return best


def _pressure(model: CoreModel, values: list[int], cheapest: dict[int, float]) -> dict[int, float]:
    """Per item, what the solution pays beyond placing every unit on its cheapest option (> 0 only)."""
    paid: dict[int, float] = defaultdict(float)
    for o, option in enumerate(model.problem.options):
        units = values[model.x[o]]
        if units:
            paid[option.item] += units * (option.unit_cost - cheapest.get(option.item, option.unit_cost))
    for i, short in enumerate(model.short):
        if short is not None and values[short]:
            item = model.problem.items[i]
            paid[i] += values[short] * ((item.shortage_cost or 0.0) - cheapest.get(i, 0.0))
    return {i: cost for i, cost in paid.items() if cost > 1e-9}


def _components(pools: dict[str, frozenset[str]], direct: Mapping[str, object]) -> list[list[str]]:
    """Group pools and directly used resources that share resources (transitively), deterministically."""
    names = sorted(pools) + sorted(r for r in direct if r not in pools)
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    owner: dict[str, str] = {}
    for name in names:
        for r in pools.get(name, frozenset({name})):
            if r in owner:
                parent[root(name)] = root(owner[r])
            else:
                owner[r] = name
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        groups[root(name)].append(name)
    return sorted(groups.values())


def _integral_flow(block: _FlowBlock, values: list[int]) -> dict[int, int] | None:
    """Whole amounts y per (pool, resource) carrying each pool's work within capacities, or None."""
    graph = nx.DiGraph()
    total = 0
    for pool, per_x in block.work.items():
        amount = sum(c * values[x] for x, c in per_x.items())
        total += amount
        graph.add_edge("source", ("pool", pool), capacity=amount)
        for r in block.pools[pool]:
            graph.add_edge(("pool", pool), ("resource", r))
    for r, cap in block.cap.items():
        direct_use = sum(c * values[x] for x, c in block.direct.get(r, {}).items())
        if direct_use > cap:
            return None
        graph.add_edge(("resource", r), "sink", capacity=cap - direct_use)
    placed, flow = nx.maximum_flow(graph, "source", "sink")
    if placed < total:
        return None
    return {y: int(flow[("pool", pool)][("resource", r)]) for (pool, r), y in block.y.items()}
