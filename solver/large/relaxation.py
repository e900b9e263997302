"""The linear relaxation of a whole large problem (`solver.large.network`), by row and column generation.

Variables: units per option (0..quantity) and units short per demand. Rows: per demand, placed +
short = quantity; per stock row, material used ≤ stock; and *cumulative rows*, one per checkpoint
taken in: the work of the options counted at or before it in its chain ≤ its free minutes. A setup
is spread over the demand's units, as in any linear relaxation of a fixed charge.

A cumulative row is written as a variable, its chain's work by the checkpoint, bounded by the free
minutes by then, and an equality row: that work is the work by the chain's previous anchored cut
plus the entries in between (`LinearRelaxation.add_cuts`). Written out, a chain's rows would repeat
its early entries in every later row: at 10,000 orders that was some six million coefficients, and
GLOP's iterations took twice as long. Rounds that add rows alone write theirs plain (no variable),
so that the LP then grows by rows only.

All the network's cumulative rows would be some 300,000 rows at 10,000 orders, most of them slack.
So the LP starts with one row per chain (its horizon) and the nearest options of each demand, and
grows: rows that the solution violates are added (cuts), and options whose reduced cost is negative
at the current prices are added (columns), then GLOP resumes from its previous basis (dual simplex,
no presolve; the LP is kept in GLOP and given its last basis explicitly, `solver.lp.glop`: at
10,000 x 2,000, seed 5, 43,100 simplex iterations instead of 170,865 for the same rounds). When
neither is found, the solution is optimal for the LP of every row and option of the network.

The solution guides the rounding (`solver.large.rounding`); the dual values price machine time and stock
for the Lagrangian bound (`solver.large.bound`). Its own objective is never reported as a bound: an LP
solver's optimum is exact only up to its tolerances, and the network's options are not all labs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from ortools.glop import parameters_pb2 as glop_parameters_pb2

from solver.large.bound import suffix_sums
from solver.large.heap import release_freed_memory
from solver.large.network import Network, compact_indices, entry_sums, key_starts
from solver.lp.glop import AT_UPPER, BASIC, FIXED, IncrementalLP

#: GLOP: dual simplex (resumes after added rows), without presolve (which would drop the basis).
GLOP_PARAMETERS = glop_parameters_pb2.GlopParameters(use_dual_simplex=True, use_preprocessing=False)
#: Most cumulative rows taken in per round and chain, past the first, last and worst violated ones.
CUTS_PER_CHAIN = 6
#: Stopping rule short of convergence: STALL_ROUNDS rounds in a row that move the LP's value by less
#: than STALL, relative, with few rows and columns left to add, end the generation ("stalled"). What
#: is left then changes the prices and the plan by next to nothing, and each round costs a solve.
#: Not looser: one round below 1e-4 ended seed 3 of 10,000 x 2,000 at its 7th solve, whose units
#: (rows still in excess) rounded to a plan 7.15 % above the bound, against 1.84 % two rounds later.
STALL = 3e-5
STALL_ROUNDS = 2
STALL_ADDED = 0.02
#: Relative violation of a cumulative row that makes it a cut.
CUT_TOLERANCE = 1e-6
#: A round whose value moved less than this, relative, has prices settled enough for the caller's
#: `widen` test (see `relax`): the first rounds, where units are still short, price them at the
#: shortage penalty (at 10,000 x 2,000, seed 8, a first round with under 1 % of units short had
#: 23 times the final value).
SETTLED = 1e-2
#: Most columns added per demand and round.
COLUMNS_PER_DEMAND = 4
#: Most columns added per round to a demand the LP leaves short: COLUMNS_PER_DEMAND per typical
#: demand's quantity (the median) it is short by, up to this. A demand short by hundreds of units
#: needs labs its first options do not have: a host's plan in the federation (a region of 2,500
#: orders making 10,000 units for a peer, as leases of about 140 units each) took its first LP 11
#: rounds and 16-19 s four columns at a time, and 5 rounds and 10-12 s this way. At 10,000 x 2,000,
#: where a short demand is short by a few units, 16 for every short demand slowed seed 8 past the
#: clock (gap 2.5 % against 1.56 %); in proportion, seeds 1-20 end as before (docs/benchmarks.md).
COLUMNS_PER_SHORT = 16
#: Options priced at once when columns are sought (`Relaxation.negative_columns`).
OPTION_CHUNK = 1 << 20


@dataclass(frozen=True)
class ElementBasis:
    """An optimal basis of a `LinearRelaxation`, keyed by the network's elements instead of the LP's
    columns and rows, so that another LP of the same problem (a wider network) can start from it.

    Statuses are MathOpt's (`solver.lp.glop`), -1 where the element had none. A cut's status is
    that of its chain's cumulative work by its checkpoint (`point_work`: basic when the row is slack,
    at its upper bound when it binds) and of the equality row that defines that work (`point_row`),
    whether the cut was anchored or plain: the carried LP takes every cut in anchored.
    """

    shortage: np.ndarray  # per demand: its units-short column
    demand_row: np.ndarray  # per demand: its row
    option: np.ndarray  # per option
    stock_row: np.ndarray  # per stock row
    point_work: np.ndarray  # per checkpoint
    point_row: np.ndarray  # per checkpoint

    def carried(self, option_of: np.ndarray, point_of: np.ndarray, stock_of: np.ndarray) -> ElementBasis:
        """This basis on another network of the same demands: `option_of`, `point_of` and `stock_of`
        give, per option, checkpoint and stock row of that network, the same one here, or -1."""

        def pick(status: np.ndarray, index: np.ndarray) -> np.ndarray:
            out = np.full(len(index), -1, dtype=np.int8)
            known = index >= 0
            out[known] = status[index[known]]
            return out

        return ElementBasis(
            shortage=self.shortage,
            demand_row=self.demand_row,
            option=pick(self.option, option_of),
            stock_row=pick(self.stock_row, stock_of),
            point_work=pick(self.point_work, point_of),
            point_row=pick(self.point_row, point_of),
        )


@dataclass(frozen=True)
class Relaxation:
    """Units per option (fractional; 0 off the LP), multipliers per checkpoint and per stock row (≥ 0)."""

    units: np.ndarray
    point_multiplier: np.ndarray
    stock_multiplier: np.ndarray
    demand_price: np.ndarray  # per demand: what one more unit would cost (its row's dual value)
    value: float  # the LP's objective, for reports only (not a certified bound)
    rounds: int  # solves made
    rows: int  # cumulative rows taken in
    columns: int  # options taken in
    complete: bool  # no cut and no column was left: the LP of the whole network is solved
    stopped: str  # why: "converged", "stalled" (see STALL), "rounds", "work", "time", "no solution",
    # or "widen" (the caller's `widen` asked for a wider network)
    work: int  # simplex iterations spent (a work unit counted the same on any machine)
    cut_points: np.ndarray  # the checkpoints whose rows it took in (to seed a wider network's LP)
    columns_in: np.ndarray  # the options it took in
    basis: ElementBasis | None = None  # its last optimal basis (to start a wider network's LP from)


class LinearRelaxation:
    """The growing LP of one network (see the module docstring)."""

    def __init__(self, network: Network, active: np.ndarray) -> None:
        self.network = network
        n = network
        # Work entries in checkpoint order: a cumulative row takes a contiguous run of them.
        self.by_point = compact_indices(np.argsort(n.work_point, kind="stable"))
        point_start = key_starts(n.work_point, len(n.point_chain))
        self.entry_end = compact_indices(point_start[1:])
        first = np.r_[True, n.point_chain[1:] != n.point_chain[:-1]]
        self.chain_first = compact_indices(np.maximum.accumulate(np.where(first, np.arange(len(first)), 0)))
        self.entry_start = compact_indices(point_start[self.chain_first])
        del point_start
        self.option_work = key_starts(n.work_option, n.options)
        self.option_stock = key_starts(n.stock_option, n.options)
        self.variable = np.full(n.options, -1, dtype=np.int64)
        self.cut_points: list[int] = []
        #: Per chain, its cuts by checkpoint: (checkpoint, the cut's row, the checkpoint of the
        #: anchored cut before it when the row was made, or -1). The row holds the work between them.
        self.cuts_of_chain: dict[int, list[tuple[int, int, int]]] = {}
        #: Per checkpoint: the cumulative work variable of its anchored cut, or -1 (see add_cuts).
        self.work_at_point = np.full(len(n.point_chain), -1, dtype=np.int64)
        #: Per cut (as cut_points): index of its cumulative work variable, or -1 for a plain row.
        self.work_of_cut: list[int] = []
        #: Per cut: index of its row (its dual is the plain row's multiplier).
        self.row_of_cut: list[int] = []
        self.lp = IncrementalLP(GLOP_PARAMETERS)
        self._load(np.flatnonzero(active))

    def _load(self, options: np.ndarray) -> None:
        """The first model: short per demand, the given options, demand and stock rows, horizon rows."""
        n = self.network
        lp = self.lp
        n_dem = len(n.quantity)
        lp.add_variables(np.zeros(n_dem), n.quantity.astype(np.float64), n.shortage)
        self.variable[options] = lp.add_variables(
            np.zeros(len(options)), n.quantity[n.demand[options]].astype(np.float64), self._unit_cost(options)
        )
        # Demand rows.
        demand_rows = lp.add_rows(n.quantity.astype(np.float64), n.quantity.astype(np.float64))
        lp.set_coefficients(
            np.concatenate([demand_rows, demand_rows[n.demand[options]]]),
            np.concatenate([np.arange(n_dem), self.variable[options]]),
            np.ones(n_dem + len(options)),
        )
        # Stock rows.
        chosen = np.zeros(n.options, dtype=bool)
        chosen[options] = True
        stock_rows = lp.add_rows(np.full(len(n.stock_capacity), -np.inf), n.stock_capacity)
        s = np.flatnonzero(chosen[n.stock_option])
        lp.set_coefficients(stock_rows[n.stock_row[s]], self.variable[n.stock_option[s]], n.stock_amount[s])
        self.stock_row_base = int(stock_rows[0]) if len(stock_rows) else lp.rows
        self.first_cut_row = lp.rows
        # Horizon rows: every chain's whole work, as a variable of its own bounded by the chain's free
        # minutes by the horizon (see `add_cuts`).
        last = np.flatnonzero(n.point_next < 0)
        chain_of_point = np.searchsorted(last, np.arange(len(n.point_chain)))
        work = lp.add_variables(np.zeros(len(last)), n.point_capacity[last], np.zeros(len(last)))
        rows = lp.add_rows(np.zeros(len(last)), np.zeros(len(last)))
        w = np.flatnonzero(chosen[n.work_option])
        lp.set_coefficients(
            np.concatenate([rows[chain_of_point[n.work_point[w]]], rows]),
            np.concatenate([self.variable[n.work_option[w]], work]),
            np.concatenate([n.work_amount[w], -np.ones(len(last))]),
        )
        self.work_at_point[last] = work
        for c, p in enumerate(last.tolist()):
            self._remember_cut(p, int(rows[c]), -1, int(work[c]))

    def _unit_cost(self, options: np.ndarray) -> np.ndarray:
        n = self.network
        return n.cost[options] + n.setup / n.quantity[n.demand[options]]

    def add_cuts(self, points: np.ndarray, anchored: bool = True) -> None:
        """Take in the cumulative rows of these checkpoints.

        A cumulative row counts every entry of its chain up to its checkpoint: written out, the rows
        of a chain would repeat its early entries in every later row (tens of millions of
        coefficients at 10,000 orders). Instead an *anchored* cut has a variable, its chain's
        cumulative work by then, bounded by the free minutes by then, and an equality row: that
        variable is the one of the anchored cut before it (when the row is made) plus the entries in
        between; the cut's multiplier is the reduced cost of its variable at that bound. The new
        variable enters the basis in place of its row's slack, so the basis stays one.

        A *plain* cut (`anchored=False`) adds no variable: its row is the anchored cut's variable
        before it plus the entries in between, at most its free minutes; its multiplier is the row's
        dual. Its entries repeat those of the anchored cut after it, but only those since the anchor
        before it; the rounds that add no column take their cuts in plain, the LP then grows by rows
        alone.
        """
        n = self.network
        lp = self.lp
        points = np.sort(points)
        if not len(points):
            return
        capacity = n.point_capacity[points].astype(np.float64)
        if anchored:
            work = lp.add_variables(np.zeros(len(points)), capacity, np.zeros(len(points)), basic=True)
            rows = lp.add_rows(np.zeros(len(points)), np.zeros(len(points)), basic=False)
        else:
            rows = lp.add_rows(np.full(len(points), -np.inf), capacity)
        # Per cut, the anchored cut before it in its chain (a new anchored cut may follow another).
        anchors = np.flatnonzero(self.work_at_point >= 0)
        if anchored:
            anchors = np.union1d(anchors, points)
        at = np.searchsorted(anchors, points, "left") - 1
        prev = np.where(at >= 0, anchors[np.maximum(at, 0)], -1)
        prev = np.where((prev >= 0) & (n.point_chain[np.maximum(prev, 0)] == n.point_chain[points]), prev, -1)
        if anchored:
            self.work_at_point[points] = work
        # The entries between the anchor and the cut's checkpoint, all cuts' runs laid end to end.
        start = np.where(prev >= 0, self.entry_end[np.maximum(prev, 0)], self.entry_start[points])
        length = self.entry_end[points] - start
        cut = np.repeat(np.arange(len(points)), length)
        offset = np.cumsum(length) - length
        entries = self.by_point[np.arange(int(length.sum())) - np.repeat(offset - start, length)]
        var = self.variable[n.work_option[entries]]
        keep = var >= 0
        linked = np.flatnonzero(prev >= 0)
        row_of = [rows[cut[keep]], rows[linked]]
        var_of = [var[keep], self.work_at_point[prev[linked]]]
        coef_of = [n.work_amount[entries][keep].astype(np.float64), np.ones(len(linked))]
        if anchored:
            row_of.append(rows)
            var_of.append(work)
            coef_of.append(-np.ones(len(points)))
        lp.set_coefficients(np.concatenate(row_of), np.concatenate(var_of), np.concatenate(coef_of))
        for p, row, before, w in zip(
            points.tolist(),
            rows.tolist(),
            prev.tolist(),
            (work if anchored else np.full(len(points), -1)).tolist(),
            strict=True,
        ):
            self._remember_cut(p, row, before, w)

    def _remember_cut(self, point: int, row: int, prev: int, work: int) -> None:
        chain = int(self.network.point_chain[point])
        self.cut_points.append(point)
        self.work_of_cut.append(work)
        self.row_of_cut.append(row)
        self.cuts_of_chain.setdefault(chain, []).append((point, row, prev))

    def element_basis(self) -> ElementBasis | None:
        """The LP's last optimal basis keyed by the network's elements (see `ElementBasis`), or None."""
        basis = self.lp.basis
        if basis is None:
            return None
        variable_status, row_status = basis
        n = self.network
        n_dem = len(n.quantity)
        # Statuses in 8 bits: a continent's basis has 8 million options, and it is made when the
        # LP is at its largest (seed 2's peak was here, at 64 bits).
        option = np.full(n.options, -1, dtype=np.int8)
        placed = np.flatnonzero(self.variable >= 0)
        option[placed] = variable_status[self.variable[placed]]
        points = np.array(self.cut_points, dtype=np.int64)
        work = np.array(self.work_of_cut, dtype=np.int64)
        row = row_status[np.array(self.row_of_cut, dtype=np.int64)]
        anchored = work >= 0
        # A plain row's slack basic is its work basic; binding, the work sits at the free minutes.
        plain = np.where(row == AT_UPPER, AT_UPPER, BASIC)
        point_work = np.full(len(n.point_chain), -1, dtype=np.int8)
        point_row = np.full(len(n.point_chain), -1, dtype=np.int8)
        point_work[points] = np.where(anchored, variable_status[np.maximum(work, 0)], plain)
        point_row[points] = np.where(anchored, row, FIXED)
        stock = row_status[self.stock_row_base : self.stock_row_base + len(n.stock_capacity)]
        return ElementBasis(
            shortage=variable_status[:n_dem].copy(),
            demand_row=row_status[:n_dem].copy(),
            option=option,
            stock_row=stock.copy(),
            point_work=point_work,
            point_row=point_row,
        )

    def adopt(self, basis: ElementBasis) -> None:
        """Start the next solve from `basis` where it knows an element; elsewhere the statuses stay
        those of a column or row just added (at a bound, or the slack basic)."""
        n = self.network
        n_dem = len(n.quantity)
        if len(basis.shortage) != n_dem or len(basis.option) != n.options:
            raise ValueError("basis: not keyed by this network's demands and options")
        variable_status, row_status = self.lp.statuses
        known = basis.shortage >= 0
        variable_status[:n_dem][known] = basis.shortage[known]
        known = basis.demand_row >= 0
        row_status[:n_dem][known] = basis.demand_row[known]
        options = np.flatnonzero((self.variable >= 0) & (basis.option >= 0))
        variable_status[self.variable[options]] = basis.option[options]
        stock = np.flatnonzero(basis.stock_row >= 0)
        row_status[self.stock_row_base + stock] = basis.stock_row[stock]
        points = np.array(self.cut_points, dtype=np.int64)
        work = np.array(self.work_of_cut, dtype=np.int64)
        rows = np.array(self.row_of_cut, dtype=np.int64)
        known = basis.point_work[points] >= 0
        anchored = known & (work >= 0)
        variable_status[work[anchored]] = basis.point_work[points[anchored]]
        row_status[rows[anchored]] = np.where(
            basis.point_row[points[anchored]] >= 0, basis.point_row[points[anchored]], FIXED
        )
        plain = known & (work < 0)
        row_status[rows[plain]] = np.where(basis.point_work[points[plain]] == BASIC, BASIC, AT_UPPER)
        self.lp.set_basis(variable_status, row_status)

    def add_columns(self, options: np.ndarray) -> None:
        """Take in these options, with their entries in the rows already there."""
        n = self.network
        if not len(options):
            return
        ids = self.lp.add_variables(
            np.zeros(len(options)), n.quantity[n.demand[options]].astype(np.float64), self._unit_cost(options)
        )
        self.variable[options] = ids
        # Demand rows are rows 0..demands-1, stock rows follow.
        rows = [n.demand[options].astype(np.int64)]
        variables = [ids]
        coefficients = [np.ones(len(options))]
        stock = np.concatenate(
            [np.arange(self.option_stock[o], self.option_stock[o + 1]) for o in options.tolist()]
        )
        if len(stock):
            rows.append(self.stock_row_base + n.stock_row[stock].astype(np.int64))
            variables.append(self.variable[n.stock_option[stock]])
            coefficients.append(n.stock_amount[stock].astype(np.float64))
        cut_rows, cut_vars, cut_coefs = [], [], []
        for o, x in zip(options.tolist(), ids.tolist(), strict=True):
            for e in range(self.option_work[o], self.option_work[o + 1]):
                p = int(n.work_point[e])
                for cut_point, row, prev in self.cuts_of_chain.get(int(n.point_chain[p]), ()):
                    if prev < p <= cut_point:
                        cut_rows.append(row)
                        cut_vars.append(x)
                        cut_coefs.append(float(n.work_amount[e]))
        rows.append(np.array(cut_rows, dtype=np.int64))
        variables.append(np.array(cut_vars, dtype=np.int64))
        coefficients.append(np.array(cut_coefs, dtype=np.float64))
        self.lp.set_coefficients(
            np.concatenate(rows), np.concatenate(variables), np.concatenate(coefficients)
        )

    def solve(
        self, deadline: float, work: int | None = None, primal: bool = False
    ) -> tuple[bool, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Solve within the deadline: (optimal, value, units per option, demand, cut and stock duals).

        `work`, when given, caps GLOP's simplex iterations too (the same budget on any machine).
        Duals: ≤ rows that bind have values ≤ 0; a cut's is the reduced cost of its cumulative work at
        its bound (anchored) or its row's dual (plain), which have the same sign.
        """
        solution = self.lp.solve(max(0.001, deadline - time.perf_counter()), work, primal)
        self.iterations = solution.iterations
        n = self.network
        n_dem = len(n.quantity)
        if not solution.optimal:
            empty = np.zeros(0)
            return False, float("nan"), np.zeros(n.options), empty, empty, empty
        units = np.zeros(n.options)
        placed = self.variable >= 0
        units[placed] = solution.primal[self.variable[placed]]
        work_of_cut = np.array(self.work_of_cut, dtype=np.int64)
        cut_dual = np.where(
            work_of_cut >= 0,
            solution.reduced[np.maximum(work_of_cut, 0)],
            solution.dual[np.array(self.row_of_cut, dtype=np.int64)],
        )
        stock = solution.dual[self.stock_row_base : self.stock_row_base + len(n.stock_capacity)]
        return True, solution.value, units, solution.dual[:n_dem], cut_dual, stock

    def violated(self, units: np.ndarray) -> np.ndarray:
        """Checkpoints whose row `units` violate: per chain, the first, the last and the worst of them."""
        n = self.network
        work = entry_sums(n.work_point, n.work_amount, units, n.work_option, len(n.point_chain))
        running = np.cumsum(work)
        cumulative = running - np.where(self.chain_first > 0, running[self.chain_first - 1], 0.0)
        excess = cumulative - n.point_capacity * (1 + CUT_TOLERANCE) - 1e-6
        taken = np.zeros(len(n.point_chain), dtype=bool)
        taken[self.cut_points] = True
        excess[taken] = -np.inf
        over = np.flatnonzero(excess > 0)
        if not len(over):
            return over
        chain = n.point_chain[over]
        first = np.r_[True, chain[1:] != chain[:-1]]
        last = np.r_[chain[1:] != chain[:-1], True]
        # Per chain, its violated rows by decreasing excess: the worst CUTS_PER_CHAIN of them.
        order = np.lexsort((-excess[over], chain))
        start = np.searchsorted(chain[order], chain[order], "left")
        worst = order[np.arange(len(order)) - start < CUTS_PER_CHAIN]
        return np.unique(np.concatenate([over[first], over[last], over[worst]]))

    def negative_columns(
        self,
        demand_dual: np.ndarray,
        point_multiplier: np.ndarray,
        stock_multiplier: np.ndarray,
        short: np.ndarray | None = None,
    ) -> np.ndarray:
        """Options off the LP whose reduced cost is negative, at most COLUMNS_PER_DEMAND per demand.

        Priced OPTION_CHUNK options at a time: over all of a continent's options at once (8 million)
        the reduced costs' temporaries were some 400 MB on top of the network and the LP, at the
        relaxation's peak of memory."""
        n = self.network
        price = suffix_sums(n, point_multiplier)
        found: list[np.ndarray] = []
        costs: list[np.ndarray] = []
        for a in range(0, n.options, OPTION_CHUNK):
            b = min(a + OPTION_CHUNK, n.options)
            off = np.flatnonzero(self.variable[a:b] < 0)
            if not len(off):
                continue
            demand = n.demand[a:b]
            reduced = self._unit_cost(np.arange(a, b)) - demand_dual[demand]
            w = slice(int(self.option_work[a]), int(self.option_work[b]))
            work = n.work_amount[w] * price[n.work_point[w]]
            reduced += np.bincount(n.work_option[w] - a, weights=work, minlength=b - a)
            s = slice(int(self.option_stock[a]), int(self.option_stock[b]))
            stock = n.stock_amount[s] * stock_multiplier[n.stock_row[s]]
            reduced += np.bincount(n.stock_option[s] - a, weights=stock, minlength=b - a)
            keep = off[reduced[off] < -1e-6 * (1 + np.abs(demand_dual[demand[off]]))]
            found.append(keep + a)
            costs.append(reduced[keep])
        if not found:
            return np.zeros(0, dtype=np.int64)
        out, reduced = np.concatenate(found), np.concatenate(costs)
        order = np.lexsort((reduced, n.demand[out]))
        out = out[order]
        rank = np.arange(len(out)) - np.searchsorted(n.demand[out], n.demand[out], "left")
        most = np.full(len(n.quantity), COLUMNS_PER_DEMAND)
        if short is not None:
            typical = max(1.0, float(np.median(n.quantity)))
            wanted = COLUMNS_PER_DEMAND * np.ceil(np.maximum(short, 0.0) / typical - 1e-9)
            most = np.clip(wanted, COLUMNS_PER_DEMAND, COLUMNS_PER_SHORT).astype(np.int64)
        return np.sort(out[rank < most[n.demand[out]]])


def _out_of_budget(rounds: int, max_rounds: int, spent: int, work: int | None, deadline: float) -> str | None:
    """Why no further round may be solved ("rounds", "work" or "time"), or None."""
    if rounds >= max_rounds:
        return "rounds"
    if work is not None and spent >= work:
        return "work"
    if time.perf_counter() >= deadline:
        return "time"
    return None


def relax(
    network: Network,
    active: np.ndarray,
    deadline: float,
    max_rounds: int = 40,
    work: int | None = None,
    cuts: np.ndarray | None = None,
    basis: ElementBasis | None = None,
    widen: Callable[[np.ndarray, float], bool] | None = None,
    stall: float = STALL,
    stall_rounds: int = STALL_ROUNDS,
) -> Relaxation:
    """Solve the LP of `network` by row and column generation, starting from the `active` options.

    It stops when no cut and no column is left (converged), after `max_rounds` solves, when GLOP's
    simplex iterations reach `work` (when given: a budget counted the same on any machine, so the
    same problem stops at the same round everywhere), or at the `deadline` (wall clock, the safety
    net). `cuts` are checkpoints whose rows to take in from the start (those another LP of the same
    problem found binding), and `basis` the optimal basis of that LP carried over to this network
    (`ElementBasis.carried`): the first solve then resumes from it instead of starting afresh.
    `widen`, when given, is asked after every round whose value moved less than SETTLED, with the
    demand rows' duals and the value: True ends the generation ("widen"), since the caller will
    solve a wider network's LP from this one's basis rather than finish this one. `stall_rounds`
    rounds in a row that move the value by less than `stall` end it (see STALL; one is enough for
    an LP that starts from another's settled basis, where a round costs mostly GLOP's fixed cost).
    The result holds the last round solved, and says why it stopped.
    """
    n = network
    units = np.zeros(n.options)
    point_multiplier = np.zeros(len(n.point_chain))
    stock_multiplier = np.zeros(len(n.stock_capacity))
    if not n.options:  # nothing can be placed: every unit is short, and that is optimal
        value = float(n.quantity @ n.shortage)
        none = np.zeros(0, dtype=np.int64)
        return Relaxation(
            units, point_multiplier, stock_multiplier, n.shortage.copy(), value, 0, 0, 0, True,
            "converged", 0, none, none,
        )  # fmt: skip
    lp = LinearRelaxation(network, active)
    if cuts is not None and len(cuts):
        lp.add_cuts(np.setdiff1d(np.unique(cuts), np.array(lp.cut_points, dtype=np.int64)))
    if basis is not None:
        lp.adopt(basis)
    rounds, complete, value, spent, stopped = 0, False, float("nan"), 0, "rounds"
    demand_price = n.shortage.copy()
    stalls = 0
    while True:
        out = _out_of_budget(rounds, max_rounds, spent, work, deadline)
        if out is not None:
            stopped = out
            break
        optimal, value_now, units_now, demand_dual, cut_dual, stock_dual = lp.solve(
            deadline, None if work is None else work - spent, primal=basis is not None and rounds == 0
        )
        spent += lp.iterations
        rounds += 1
        if not optimal:
            if work is not None and spent >= work:
                stopped = "work"
            elif time.perf_counter() >= deadline:
                stopped = "time"
            else:
                stopped = "no solution"
            break
        moved = abs(value_now - value) / max(1.0, abs(value_now)) if rounds > 1 else 1.0
        units, value, demand_price = units_now, value_now, demand_dual
        point_multiplier = np.zeros(len(n.point_chain))
        np.add.at(point_multiplier, np.array(lp.cut_points, dtype=np.int64), np.maximum(0.0, -cut_dual))
        stock_multiplier = np.maximum(0.0, -stock_dual)
        cuts_now = lp.violated(units)
        short = n.quantity - np.bincount(n.demand, weights=units, minlength=len(n.quantity))
        columns = lp.negative_columns(demand_dual, point_multiplier, stock_multiplier, short)
        if not len(cuts_now) and not len(columns):
            complete, stopped = True, "converged"
            break
        added = (len(cuts_now) + len(columns)) / max(1, len(lp.cut_points) + len(n.quantity))
        if widen is not None and moved < SETTLED and widen(demand_dual, value):
            stopped = "widen"
            break
        stalls = stalls + 1 if moved < stall and added < STALL_ADDED else 0
        if stalls >= stall_rounds:
            stopped = "stalled"
            break
        # Rows and columns that no solve would follow are only memory: at a continent the last
        # round's columns, added past the deadline, were the solve's peak (+420 MB).
        out = _out_of_budget(rounds, max_rounds, spent, work, deadline)
        if out is not None:
            stopped = out
            break
        release_freed_memory()  # the pricing's temporaries, before GLOP's model grows again
        # A round of rows alone resumes from the basis when the rows bring no variable (see add_cuts).
        lp.add_cuts(cuts_now, anchored=bool(len(columns)))
        lp.add_columns(columns)
    return Relaxation(
        units=units,
        point_multiplier=point_multiplier,
        stock_multiplier=stock_multiplier,
        demand_price=demand_price,
        value=value,
        rounds=rounds,
        rows=len(lp.cut_points),
        columns=int((lp.variable >= 0).sum()),
        complete=complete,
        stopped=stopped,
        work=spent,
        cut_points=np.array(lp.cut_points, dtype=np.int64),
        columns_in=np.flatnonzero(lp.variable >= 0),
        basis=lp.element_basis(),
    )
