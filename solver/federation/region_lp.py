"""A region's LP as arrays: what every solve shares built once, what a solve adds laid on top.

The net solves each region's LP a dozen times a round (4 regions x 2,500 orders: 137 solves in 10
rounds), and each solve used to write its whole model call by call: 7,700 columns and 35,000
coefficients, of which only the import options and the hosted trades change from one solve to the
next. Written call by call, the model took twice as long to build as GLOP took to solve it (10 of
15 s of the net at 4 x 2,500 x 400). Here the region's capacity rows and its groups' own options
(`Skeleton`) are arrays made once per region; a solve lays the demand left, the offers and the
trades on top (`Layout`), and GLOP gets the whole model as arrays (`solver.lp.glop`).

Columns and rows come in the order the call-by-call model made them (the buckets' work, then per
group its shortage, own options and import options, then per hosted trade its shortage and cells;
rows: per cell its buckets and stock, then one per offer, per group and per trade), so GLOP sees
the same LP and, where it has several optimal bases, picks as it did.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from google.protobuf import text_format
from ortools.glop import parameters_pb2 as glop_parameters_pb2

from solver.lp.glop import IncrementalLP, Solution

#: A row key: (cell, class, window) for a bucket of machine time, (cell, material) for stock.
RowKey = tuple
#: The rows one unit draws on, with its minutes or amounts there.
Coefficients = Callable[[str, str, "int | None"], list[tuple[RowKey, float]]]


@dataclass
class Skeleton:
    """The part of a region's LP that no solve changes: buckets, stock rows, the groups' own options.

    Columns 0..`buckets`-1 are the buckets' work used (bounded by the minutes free by then); rows
    0..`base_rows`-1 the bucket balances and the stock rows. Each group's own options (on time in its
    near cells, late in the nearest few) are `option_cost` with their entries in those rows, group by
    group (`group_start`), placed in a solve only when the group has units left."""

    bucket_keys: list[RowKey]
    bucket_upper: np.ndarray
    row_of: dict[RowKey, int]
    stock_keys: list[RowKey]
    base_lower: np.ndarray
    base_upper: np.ndarray
    base_entries: tuple[np.ndarray, np.ndarray, np.ndarray]  # row, column, coefficient
    group_start: np.ndarray  # per group, its first option (and one past the last group's)
    option_cost: np.ndarray
    option_entries: tuple[np.ndarray, np.ndarray, np.ndarray]  # option, base row, coefficient
    bucket_rows: np.ndarray  # per bucket (as bucket_keys), its balance row
    stock_rows: np.ndarray  # per stock row key (as stock_keys), its row

    @property
    def buckets(self) -> int:
        """Columns of the buckets' work."""
        return len(self.bucket_keys)

    @property
    def base_rows(self) -> int:
        """Bucket and stock rows."""
        return len(self.base_lower)


def skeleton(
    supply: dict,
    option_lists: Sequence[Sequence[tuple[float, str, str, int | None]]],
    coefficients: Coefficients,
) -> Skeleton:
    """The shared part of a region's LP. `supply` is the region's cells (`CellSupply` by cell);
    `option_lists` gives, per group, its own options in order as (cost, cell, design, window), a
    window of None for a late unit."""
    bucket_keys: list[RowKey] = []
    bucket_upper: list[float] = []
    row_of: dict[RowKey, int] = {}
    stock_keys: list[RowKey] = []
    lower: list[float] = []
    upper: list[float] = []
    e_row: list[int] = []
    e_col: list[int] = []
    e_val: list[float] = []
    for cell, cell_supply in supply.items():
        for cls, by_window in cell_supply.minutes.items():
            before = -1
            for w in sorted(by_window):
                column = len(bucket_keys)
                bucket_keys.append((cell, cls, w))
                bucket_upper.append(by_window[w])
                row = len(lower)
                lower.append(0.0)
                upper.append(0.0)
                row_of[cell, cls, w] = row
                e_row.append(row)
                e_col.append(column)
                e_val.append(-1.0)
                if before >= 0:
                    e_row.append(row)
                    e_col.append(before)
                    e_val.append(1.0)
                before = column
        for material, amount in cell_supply.stock.items():
            row_of[cell, material] = len(lower)
            stock_keys.append((cell, material))
            lower.append(-math.inf)
            upper.append(amount)
    starts = [0]
    costs: list[float] = []
    o_opt: list[int] = []
    o_row: list[int] = []
    o_val: list[float] = []
    for options in option_lists:
        for cost, cell, design, window in options:
            option = len(costs)
            costs.append(cost)
            for key, coefficient in coefficients(cell, design, window):
                o_opt.append(option)
                o_row.append(row_of[key])
                o_val.append(coefficient)
        starts.append(len(costs))
    return Skeleton(
        bucket_keys=bucket_keys,
        bucket_upper=np.asarray(bucket_upper, dtype=np.float64),
        row_of=row_of,
        stock_keys=stock_keys,
        base_lower=np.asarray(lower, dtype=np.float64),
        base_upper=np.asarray(upper, dtype=np.float64),
        base_entries=_entries(e_row, e_col, e_val),
        group_start=np.asarray(starts, dtype=np.int64),
        option_cost=np.asarray(costs, dtype=np.float64),
        option_entries=_entries(o_opt, o_row, o_val),
        bucket_rows=np.array([row_of[key] for key in bucket_keys], dtype=np.int64),
        stock_rows=np.array([row_of[key] for key in stock_keys], dtype=np.int64),
    )


Entries = tuple[np.ndarray, np.ndarray, np.ndarray]


def _entries(first: list[int], second: list[int], value: list[float]) -> Entries:
    """Matrix entries as arrays: two index lists and their coefficients."""
    return (
        np.asarray(first, dtype=np.int64),
        np.asarray(second, dtype=np.int64),
        np.asarray(value, dtype=np.float64),
    )


@dataclass
class Export:
    """A hosted trade in a solve: its units, what a unit short costs, and its cells' options as
    (cost, entries in the base rows)."""

    units: float
    short_cost: float
    options: list[tuple[float, list[tuple[int, float]]]]


@dataclass
class Layout:
    """One solve's LP: the skeleton with the demand left, the import options and the hosted trades,
    and where each of them sits among the columns and rows."""

    lower: np.ndarray
    upper: np.ndarray
    cost: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    entries: tuple[np.ndarray, np.ndarray, np.ndarray]
    short_columns: np.ndarray  # every group's and every trade's units short
    demand_rows: np.ndarray  # per group
    import_columns: np.ndarray  # per import option given
    export_columns: list[np.ndarray] = field(default_factory=list)  # per trade, its cells' options


def layout(
    base: Skeleton,
    demand_left: np.ndarray,
    short_cost: np.ndarray,
    offer_units: np.ndarray,
    imports: Sequence[Sequence[tuple[int, float]]],
    exports: Sequence[Export],
) -> Layout:
    """The LP of one solve. `demand_left` and `short_cost` are per group; `offer_units` per offer;
    `imports` per group its import options as (offer index, cost), used only where the group has
    units left, as its own options are."""
    groups = len(demand_left)
    active = demand_left > 0
    own = np.diff(base.group_start)
    bought = np.array([len(options) for options in imports], dtype=np.int64)
    size = 1 + np.where(active, own + bought, 0)
    start = (base.buckets + np.cumsum(size) - size).astype(np.int64)
    group_columns = int(size.sum())
    offer_row0 = base.base_rows
    demand_row0 = offer_row0 + len(offer_units)
    export_row0 = demand_row0 + groups
    # Own options of the groups with units left, at their place in their group's block.
    option_group = np.repeat(np.arange(groups), own)
    placed = np.flatnonzero(active[option_group])
    option_column = start[option_group[placed]] + 1 + placed - base.group_start[option_group[placed]]
    column_of_option = np.full(len(base.option_cost), -1, dtype=np.int64)
    column_of_option[placed] = option_column
    # Import options.
    import_group = np.repeat(np.arange(groups), bought)
    import_offer = np.array([o for options in imports for o, _ in options], dtype=np.int64)
    import_cost = np.array([c for options in imports for _, c in options], dtype=np.float64)
    import_rank = np.arange(len(import_group)) - np.repeat(np.cumsum(bought) - bought, bought)
    keep = active[import_group]
    import_columns = np.full(len(import_group), -1, dtype=np.int64)
    import_columns[keep] = start[import_group[keep]] + 1 + own[import_group[keep]] + import_rank[keep]
    total = base.buckets + group_columns + sum(1 + len(e.options) for e in exports)
    lower = np.zeros(total)
    upper = np.full(total, math.inf)
    upper[: base.buckets] = base.bucket_upper
    cost = np.zeros(total)
    cost[start] = short_cost
    cost[option_column] = base.option_cost[placed]
    cost[import_columns[keep]] = import_cost[keep]
    o_opt, o_row, o_val = base.option_entries
    used = column_of_option[o_opt] >= 0
    rows = [base.base_entries[0], o_row[used], demand_row0 + np.arange(groups)]
    cols = [base.base_entries[1], column_of_option[o_opt[used]], start]
    vals = [base.base_entries[2], o_val[used], np.ones(groups)]
    rows.append(demand_row0 + option_group[placed])
    cols.append(option_column)
    rows += [demand_row0 + import_group[keep], offer_row0 + import_offer[keep]]
    cols += [import_columns[keep], import_columns[keep]]
    vals += [np.ones(len(placed)), np.ones(int(keep.sum())), np.ones(int(keep.sum()))]
    short_columns = [start]
    export_columns = []
    column = base.buckets + group_columns
    e_row: list[int] = []
    e_col: list[int] = []
    e_val: list[float] = []
    for k, export in enumerate(exports):
        row = export_row0 + k
        short_columns.append(np.array([column]))
        cost[column] = export.short_cost
        e_row.append(row)
        e_col.append(column)
        e_val.append(1.0)
        column += 1
        mine = []
        for option_cost, entries in export.options:
            cost[column] = option_cost
            e_row.append(row)
            e_col.append(column)
            e_val.append(1.0)
            for base_row, coefficient in entries:
                e_row.append(base_row)
                e_col.append(column)
                e_val.append(coefficient)
            mine.append(column)
            column += 1
        export_columns.append(np.array(mine, dtype=np.int64))
    hosted_entries = _entries(e_row, e_col, e_val)
    rows.append(hosted_entries[0])
    cols.append(hosted_entries[1])
    vals.append(hosted_entries[2])
    export_units = np.array([e.units for e in exports], dtype=np.float64)
    return Layout(
        lower=lower,
        upper=upper,
        cost=cost,
        row_lower=np.concatenate([base.base_lower, np.zeros(len(offer_units)), demand_left, export_units]),
        row_upper=np.concatenate(
            [base.base_upper, np.asarray(offer_units, dtype=np.float64), demand_left, export_units]
        ),
        entries=(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)),
        short_columns=np.concatenate(short_columns),
        demand_rows=demand_row0 + np.arange(groups),
        import_columns=import_columns,
        export_columns=export_columns,
    )


def solve_layout(lp: Layout, retries: Sequence[str] = ()) -> Solution:
    """Solve the LP with GLOP's defaults, then with each of `retries` (GLOP parameters in text
    format) in turn while it does not end optimal; the last solution either way."""
    solution = _solve(lp, glop_parameters_pb2.GlopParameters())
    for fallback in retries:
        if solution.optimal:
            break
        solution = _solve(lp, text_format.Parse(fallback, glop_parameters_pb2.GlopParameters()))
    return solution


def activity(lp: Layout, primal: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each of these rows' activity (Σ coefficient × value) in a solution."""
    row, col, val = lp.entries
    total = np.bincount(row, weights=val * primal[col], minlength=len(lp.row_lower))
    return total[rows]


def _solve(lp: Layout, parameters: glop_parameters_pb2.GlopParameters) -> Solution:
    model = IncrementalLP(parameters)
    model.add_variables(lp.lower, lp.upper, lp.cost)
    model.add_rows(lp.row_lower, lp.row_upper)
    model.set_coefficients(*lp.entries)
    return model.solve(1e6)
