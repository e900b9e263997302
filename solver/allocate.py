"""Allocate demands to labs with CP-SAT: integer units per (demand, lab) edge, shortage priced by priority.

The model, on the sparse candidate graph (see `solver.candidates`):

- x[e] units on edge e = (demand, lab), used[e] = 1 when x[e] > 0, s[d] units short, and per demand
  sum_e x[e] + s[d] = quantity;
- machine capacity, exact: a unit of a design needs each step's minutes on one machine of that step's
  group (its eligible machines at the lab). Groups sharing no machine get one constraint each;
  overlapping groups (a machine offering fdm and laser) get a flow y[g, m] of minutes from group to
  machine, so the plan is feasible exactly when machines can share the work;
- stock per lab and material;
- minimise unit-km transport + setup per used edge + shortage penalty per unit.

Numbers are scaled to integers conservatively: work and material per unit rounded up, free minutes
and stock rounded down, so an allocation the model accepts fits the real figures. Objective weights
are rounded down, so CP-SAT's bound stays a true lower bound of the reported (unscaled) objective.

CP-SAT always starts from a complete, verified feasible hint: the linear relaxation (GLOP) rounded
down when that rounding passes every constraint, else the all-shortage solution. On large instances
the rounded relaxation is close to optimal, which CP-SAT alone can take long to find.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import networkx as nx
from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

from protocol.model import Allocation, CostTerms, Design, Plan, Shortage
from solver.candidates import Candidates, find_candidates
from solver.capability import step_groups
from solver.problem import Problem, SolveParams, free_minutes, horizon_days

#: Work is counted in tenths of a nominal minute.
MINUTE_SCALE = 10
#: Materials are counted in millionths of their unit (micro-kg, micro-m2, ...).
AMOUNT_SCALE = 1_000_000
#: Largest objective magnitude (scaled) we let CP-SAT handle; well inside int64.
_OBJECTIVE_LIMIT = 2**53
#: Absorbs float noise such as 0.033 * 1e6 = 33000.000000000004 before rounding.
_EPS = 1e-6
#: Share of the time limit the linear relaxation may take at most.
_LP_TIME_SHARE = 0.25

NO_CAPABLE_LAB = "no capable lab"


def solve(problem: Problem, params: SolveParams = SolveParams(), version: int = 0) -> Plan:
    """Allocate every demand to nearby capable labs within capacity and stock; report what is short.

    Returns a `Plan` whose objective and bound are in cost units (those of `CostTerms`), with status
    OPTIMAL or FEASIBLE, or EMPTY when there is nothing to plan.
    """
    if not problem.demands:
        return Plan(version=version, objective=0.0, bound=0.0, status="EMPTY", solve_seconds=0.0)
    days = horizon_days(problem, params)
    candidates = find_candidates(problem, params.k_nearest, days)
    return _AllocationModel(problem, params, days, candidates).solve(version)


def _round_up(value: float, scale: int) -> int:
    return max(0, math.ceil(value * scale - _EPS))


def _round_down(value: float, scale: int) -> int:
    return max(0, math.floor(value * scale + _EPS))


# -- a linear model written once, solved by CP-SAT and relaxed by GLOP ---------------------------


@dataclass(frozen=True)
class _Row:
    coefs: dict[int, int]  # variable index -> integer coefficient
    lo: int | None
    hi: int | None


@dataclass
class _LinearModel:
    """Integer variables with bounds, linear rows and a linear objective, independent of any solver."""

    lb: list[int] = field(default_factory=list)
    ub: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    rows: list[_Row] = field(default_factory=list)
    cost: dict[int, int] = field(default_factory=dict)

    def new_var(self, lb: int, ub: int, name: str) -> int:
        """A new integer variable in [lb, ub]; returns its index."""
        self.lb.append(lb)
        self.ub.append(ub)
        self.names.append(name)
        return len(self.lb) - 1

    def tighten(self, var: int, ub: int) -> None:
        """Lower an upper bound to a value every feasible solution respects: a tighter relaxation."""
        self.ub[var] = max(self.lb[var], min(self.ub[var], ub))

    def add(self, coefs: dict[int, int], lo: int | None = None, hi: int | None = None) -> None:
        """The row lo <= sum coefs[i] * var[i] <= hi (a missing side is unbounded)."""
        self.rows.append(_Row(dict(coefs), lo, hi))

    def feasible(self, values: list[int]) -> bool:
        """Exact integer check of bounds and rows."""
        if any(not lo <= v <= hi for v, lo, hi in zip(values, self.lb, self.ub, strict=True)):
            return False
        for row in self.rows:
            total = sum(c * values[i] for i, c in row.coefs.items())
            if (row.lo is not None and total < row.lo) or (row.hi is not None and total > row.hi):
                return False
        return True

    def to_cp_sat(self, hint: list[int]) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
        """The CP-SAT model of these rows and objective, every variable hinted with `hint`."""
        model = cp_model.CpModel()
        variables = [
            model.new_int_var(lo, hi, n) for lo, hi, n in zip(self.lb, self.ub, self.names, strict=True)
        ]
        for row in self.rows:
            ids = list(row.coefs)
            expr = cp_model.LinearExpr.weighted_sum([variables[i] for i in ids], [row.coefs[i] for i in ids])
            lo = cp_model.INT_MIN if row.lo is None else row.lo
            hi = cp_model.INT_MAX if row.hi is None else row.hi
            model.add_linear_constraint(expr, lo, hi)
        ids = list(self.cost)
        model.minimize(
            cp_model.LinearExpr.weighted_sum([variables[i] for i in ids], [self.cost[i] for i in ids])
        )
        for var, value in zip(variables, hint, strict=True):
            model.add_hint(var, value)
        return model, variables

    def relaxation(self, time_limit_s: float) -> tuple[list[float] | None, float]:
        """Optimal values of the linear relaxation (None if GLOP gives none) and the seconds it took."""
        lp = pywraplp.Solver.CreateSolver("GLOP")
        lp.SetTimeLimit(max(1, int(time_limit_s * 1000)))
        variables = [lp.NumVar(lo, hi, "") for lo, hi in zip(self.lb, self.ub, strict=True)]
        for row in self.rows:
            lo = -lp.infinity() if row.lo is None else row.lo
            hi = lp.infinity() if row.hi is None else row.hi
            constraint = lp.Constraint(lo, hi)
            for i, c in row.coefs.items():
                constraint.SetCoefficient(variables[i], c)
        objective = lp.Objective()
        for i, c in self.cost.items():
            objective.SetCoefficient(variables[i], c)
        objective.SetMinimization()
        status = lp.Solve()
        seconds = lp.wall_time() / 1000.0
        if status != pywraplp.Solver.OPTIMAL:
            return None, seconds
        return [v.solution_value() for v in variables], seconds


# -- the allocation model ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Edge:
    demand: int  # index into problem.demands
    lab: int  # index into problem.labs
    km: float


@dataclass(frozen=True)
class _FlowBlock:
    """Groups of one lab that share machines: minutes per group are routed to machines by y."""

    work: dict[frozenset[str], dict[int, int]]  # group -> x index -> scaled minutes per unit
    y: dict[tuple[frozenset[str], str], int]  # (group, machine) -> y index
    cap: dict[str, int]  # machine -> scaled free minutes


class _AllocationModel:
    """The model of one problem: variables, one method per constraint family, objective, hints."""

    def __init__(self, problem: Problem, params: SolveParams, days: float, candidates: Candidates) -> None:
        self.problem = problem
        self.params = params
        self.days = days
        self.candidates = candidates
        self.lin = _LinearModel()
        self.edges = [
            _Edge(demand=d, lab=c.lab, km=c.km) for d, cands in enumerate(candidates.edges) for c in cands
        ]
        self.flows: list[_FlowBlock] = []
        self._add_variables()
        self._add_demand()
        self._add_capacity()
        self._add_stock()
        self._link_used()
        self._set_objective()

    def _design(self, edge: _Edge) -> Design:
        return self.problem.designs[self.problem.demands[edge.demand].order.design]

    def _add_variables(self) -> None:
        """Units x[e] and the indicator used[e] per edge, units short s[d] per demand."""
        self.x: list[int] = []
        self.used: list[int] = []
        for e, edge in enumerate(self.edges):
            q = self.problem.demands[edge.demand].quantity
            self.x.append(self.lin.new_var(0, q, f"x[{e}]"))
            self.used.append(self.lin.new_var(0, 1, f"used[{e}]"))
        self.s = [self.lin.new_var(0, d.quantity, f"s[{i}]") for i, d in enumerate(self.problem.demands)]

    # -- constraint families ---------------------------------------------------------------------

    def _add_demand(self) -> None:
        """Every unit of a demand is either allocated to a candidate lab or reported short."""
        rows: list[dict[int, int]] = [{s: 1} for s in self.s]
        for e, edge in enumerate(self.edges):
            rows[edge.demand][self.x[e]] = 1
        for row, demand in zip(rows, self.problem.demands, strict=True):
            self.lin.add(row, lo=demand.quantity, hi=demand.quantity)

    def _add_capacity(self) -> None:
        """Per lab: the work of every step fits the free minutes of the machines eligible for it."""
        by_lab: dict[int, list[int]] = defaultdict(list)
        for e, edge in enumerate(self.edges):
            by_lab[edge.lab].append(e)
        for lab_index, edge_ids in sorted(by_lab.items()):
            state = self.problem.labs[lab_index]
            cap = {
                m: _round_down(minutes, MINUTE_SCALE) for m, minutes in free_minutes(state, self.days).items()
            }
            # group -> x index -> work per unit in scaled minutes; steps sharing a group add up.
            work: dict[frozenset[str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
            for e in edge_ids:
                design = self._design(self.edges[e])
                for step, group in zip(design.steps, step_groups(state.lab, design), strict=True):
                    work[group][self.x[e]] += _round_up(step.minutes, MINUTE_SCALE)
            for component in _overlapping_components(list(work)):
                if len(component) == 1:
                    group = component[0]
                    self.lin.add(work[group], hi=sum(cap[m] for m in group))
                else:
                    self._add_flow({g: work[g] for g in component}, cap, lab_index)
            for group, per_x in work.items():
                group_cap = sum(cap[m] for m in group)
                for x, minutes in per_x.items():
                    self.lin.tighten(x, group_cap // minutes)

    def _add_flow(
        self, work: dict[frozenset[str], dict[int, int]], cap: dict[str, int], lab_index: int
    ) -> None:
        """Groups sharing machines: route each group's minutes to its machines, within each machine's cap."""
        y: dict[tuple[frozenset[str], str], int] = {}
        into_machine: dict[str, dict[int, int]] = defaultdict(dict)
        for g, (group, per_x) in enumerate(work.items()):
            row = {x: -minutes for x, minutes in per_x.items()}
            for m in sorted(group):
                y[group, m] = self.lin.new_var(0, cap[m], f"y[{lab_index},{g},{m}]")
                row[y[group, m]] = 1
                into_machine[m][y[group, m]] = 1
            self.lin.add(row, lo=0, hi=0)  # sum_m y[g, m] == work of g
        for m, row in sorted(into_machine.items()):
            self.lin.add(row, hi=cap[m])
        self.flows.append(_FlowBlock(work=work, y=y, cap={m: cap[m] for m in into_machine}))

    def _add_stock(self) -> None:
        """Per lab and material: the units allocated there consume no more than its free stock."""
        use: dict[tuple[int, str], dict[int, int]] = defaultdict(dict)
        for e, edge in enumerate(self.edges):
            for material, amount in self._design(edge).materials_per_unit().items():
                per_unit = _round_up(amount, AMOUNT_SCALE)
                if per_unit > 0:
                    use[edge.lab, material][self.x[e]] = per_unit
        for (lab_index, material), per_x in sorted(use.items()):
            stock = _round_down(self.problem.labs[lab_index].stock.get(material, 0.0), AMOUNT_SCALE)
            self.lin.add(per_x, hi=stock)
            for x, per_unit in per_x.items():
                self.lin.tighten(x, stock // per_unit)

    def _link_used(self) -> None:
        """used[e] = 1 exactly when x[e] > 0; built last so the big M is x's tightened upper bound."""
        for x, used in zip(self.x, self.used, strict=True):
            self.lin.add({x: 1, used: -self.lin.ub[x]}, hi=0)
            self.lin.add({x: 1, used: -1}, lo=0)

    # -- objective -------------------------------------------------------------------------------

    def _unit_costs(self) -> tuple[list[float], float, list[float]]:
        """Cost of one unit per edge (transport), of a used edge (setup), of one unit short per demand."""
        km_cost = [self.params.km_weight * edge.km for edge in self.edges]
        penalty = [self.params.shortage_penalty[d.order.priority] for d in self.problem.demands]
        return km_cost, self.params.setup_cost, penalty

    def _set_objective(self) -> None:
        """Transport + setup + shortage, each weight scaled to an integer and rounded down."""
        km_cost, setup, penalty = self._unit_costs()
        quantity = [d.quantity for d in self.problem.demands]
        largest = sum(c * quantity[edge.demand] + setup for c, edge in zip(km_cost, self.edges, strict=True))
        largest += sum(p * q for p, q in zip(penalty, quantity, strict=True))
        self.scale = next((s for s in (1000, 100, 10) if largest * s <= _OBJECTIVE_LIMIT), 1)
        for x, c in zip(self.x, km_cost, strict=True):
            self.lin.cost[x] = math.floor(c * self.scale)
        for used in self.used:
            self.lin.cost[used] = math.floor(setup * self.scale)
        for s, p in zip(self.s, penalty, strict=True):
            self.lin.cost[s] = math.floor(p * self.scale)

    # -- hints -----------------------------------------------------------------------------------

    def _hint_from_units(self, units: list[int]) -> list[int] | None:
        """A complete assignment for these edge units (flows found by integral max-flow), if feasible."""
        values = [0] * len(self.lin.lb)
        allocated = [0] * len(self.s)
        for e, edge in enumerate(self.edges):
            values[self.x[e]] = units[e]
            values[self.used[e]] = 1 if units[e] > 0 else 0
            allocated[edge.demand] += units[e]
        for d, demand in enumerate(self.problem.demands):
            values[self.s[d]] = demand.quantity - allocated[d]
        for block in self.flows:
            routed = _integral_flow(block, values)
            if routed is None:
                return None
            for y, minutes in routed.items():
                values[y] = minutes
        return values if self.lin.feasible(values) else None

    def _hints(self) -> tuple[list[int], float]:
        """The rounded-down relaxation when it is feasible, else all-shortage; and the LP's seconds."""
        relaxed, seconds = self.lin.relaxation(self.params.time_limit_s * _LP_TIME_SHARE)
        if relaxed is not None:
            for tolerance in (1e-6, 0.0):
                units = [max(0, math.floor(relaxed[x] + tolerance)) for x in self.x]
                hint = self._hint_from_units(units)
                if hint is not None:
                    return hint, seconds
        hint = self._hint_from_units([0] * len(self.edges))
        if hint is None:
            raise RuntimeError("the all-shortage solution fails the allocation model: a defect in the model")
        return hint, seconds

    # -- solving and reading the answer ----------------------------------------------------------

    def solve(self, version: int) -> Plan:
        """Run CP-SAT from a feasible hint and turn its answer into a plan."""
        hint, lp_seconds = self._hints()
        model, variables = self.lin.to_cp_sat(hint)
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.1, self.params.time_limit_s - lp_seconds)
        solver.parameters.num_workers = self.params.workers
        solver.parameters.random_seed = self.params.seed
        status = solver.solve(model)
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            values = [int(solver.value(v)) for v in variables]
            bound = solver.best_objective_bound / self.scale
            status_name = "OPTIMAL" if status == cp_model.OPTIMAL else "FEASIBLE"
        elif status == cp_model.UNKNOWN:
            # No solution within the time limit: fall back on the hint, which was checked feasible.
            values = hint
            bound = 0.0  # every cost term is non-negative
            status_name = "FEASIBLE"
        else:
            raise RuntimeError(
                f"allocation model is {solver.status_name(status)} although its hint is feasible: "
                f"a defect in the model ({model.validate()})"
            )
        units = [values[x] for x in self.x]
        short = [values[s] for s in self.s]
        return self._plan(version, units, short, bound, status_name, lp_seconds + solver.wall_time)

    def _plan(
        self, version: int, units: list[int], short: list[int], bound: float, status: str, seconds: float
    ) -> Plan:
        km_cost, setup, penalty = self._unit_costs()
        allocations = []
        objective = 0.0
        for e, edge in enumerate(self.edges):
            if units[e] <= 0:
                continue
            transport = km_cost[e] * units[e]
            objective += transport + setup
            allocations.append(
                Allocation(
                    order_id=self.problem.demands[edge.demand].order.id,
                    lab_id=self.problem.labs[edge.lab].lab.id,
                    quantity=units[e],
                    cost=CostTerms(km=edge.km, transport=transport, setup=setup),
                )
            )
        shortages = []
        for d, demand in enumerate(self.problem.demands):
            if short[d] > 0:
                objective += penalty[d] * short[d]
                shortages.append(
                    Shortage(order_id=demand.order.id, quantity=short[d], reason=self._reason(d))
                )
        # Weights were rounded down, so bound <= objective holds up to float summation noise.
        return Plan(
            version=version,
            allocations=allocations,
            shortages=shortages,
            objective=objective,
            bound=min(bound, objective),
            status=status,
            solve_seconds=max(0.0, seconds),
        )

    def _reason(self, d: int) -> str:
        design = self.problem.demands[d].order.design
        if design not in self.problem.designs:
            return f"{NO_CAPABLE_LAB}: design {design!r} is unknown to the solver"
        if self.candidates.capable_labs[d] == 0:
            return NO_CAPABLE_LAB
        n = len(self.candidates.edges[d])
        where = "any capable lab" if n == 0 else f"the {n} nearest capable lab{'s' if n != 1 else ''}"
        return f"not enough capacity or stock before the due date at {where}"


def _integral_flow(block: _FlowBlock, values: list[int]) -> dict[int, int] | None:
    """Whole minutes y per (group, machine) carrying each group's work within machine caps, or None."""
    graph = nx.DiGraph()
    total = 0
    for group, per_x in block.work.items():
        minutes = sum(c * values[x] for x, c in per_x.items())
        total += minutes
        graph.add_edge("source", ("group", group), capacity=minutes)
        for m in group:
            graph.add_edge(("group", group), ("machine", m))
    for m, cap in block.cap.items():
        graph.add_edge(("machine", m), "sink", capacity=cap)
    placed, flow = nx.maximum_flow(graph, "source", "sink")
    if placed < total:
        return None
    return {y: int(flow[("group", group)][("machine", m)]) for (group, m), y in block.y.items()}


def _overlapping_components(groups: list[frozenset[str]]) -> list[list[frozenset[str]]]:
    """Split groups into components that share machines (transitively); each sorted, deterministically."""
    parent = list(range(len(groups)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, group in enumerate(groups):
        for m in group:
            if m in owner:
                parent[root(i)] = root(owner[m])
            else:
                owner[m] = i
    components: dict[int, list[frozenset[str]]] = defaultdict(list)
    for i, group in enumerate(groups):
        components[root(i)].append(group)
    return sorted((sorted(c, key=sorted) for c in components.values()), key=lambda c: sorted(c[0]))
