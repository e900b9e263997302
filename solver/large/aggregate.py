"""Capacity prices from the problem gathered by design and priority: prices that see shortage.

Where labs cannot make everything asked of them, most of a plan's cost is its shortage penalties,
and the bound (`solver.large.bound`) certifies it only if its prices say that capacity is worth
about a penalty per unit. The relaxation's own prices say so once it has converged; on a continent
(50,000 orders over 5,000 labs) it stops at the clock after two or three solves, and its prices
said nearly nothing: the bound sat at the plan's km alone, below a thousandth of its cost.

Here the network's demands are gathered by design and priority, its options by (design, lab), and
only the capacity of each machine set by the horizon and the stock are kept: a transportation LP
of a few tens of thousands of columns, which GLOP solves in a second or two where the relaxation
takes a minute. It is a relaxation of the network's LP (due dates and km dropped, demands pooled),
so its dual prices are prices of rows the network has (each set's horizon checkpoint, each stock
row), and the Lagrangian bound at them is valid whatever they are: prices are only ever a choice.
"""

from __future__ import annotations

import numpy as np

from solver.large.network import DENSE_PAIRS, Network, design_lab_pairs
from solver.large.relaxation import GLOP_PARAMETERS
from solver.lp.glop import IncrementalLP


def aggregate_prices(
    network: Network, design_row: np.ndarray, seconds: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per checkpoint and per stock row of `network`, prices from its aggregated LP (see the module
    docstring); None when it did not solve within `seconds`.

    `design_row` gives each demand's design (`Candidates.design_row`); demands of one design and
    one shortage penalty form a group, whose units may go to any lab the network offers that
    design at, at the least cost of an option of the group there.
    """
    n = network
    if not n.options or seconds <= 0:
        return None
    rows = design_row.astype(np.int64)
    penalties, penalty_rank = np.unique(n.shortage, return_inverse=True)
    group_of = rows * len(penalties) + penalty_rank
    groups, demand_group = np.unique(group_of, return_inverse=True)
    group_units = np.bincount(demand_group, weights=n.quantity, minlength=len(groups))
    group_penalty = penalties[groups % len(penalties)]
    group_design = groups // len(penalties)
    labs = int(n.lab.max()) + 1
    pair_key, first, option_pair = design_lab_pairs(n, rows, labs)
    pair_design = pair_key // labs
    # Columns: (group, pair) of the same design, costed at the group's least option cost there, or
    # the pair's least option cost when the group has none there.
    pair_cost = np.full(len(pair_key), np.inf)
    np.minimum.at(pair_cost, option_pair, n.cost)
    by_design = np.argsort(pair_design, kind="stable")
    start = np.searchsorted(pair_design[by_design], group_design)
    stop = np.searchsorted(pair_design[by_design], group_design, side="right")
    count = stop - start
    column_group = np.repeat(np.arange(len(groups)), count)
    column_pair = by_design[
        np.repeat(start, count) + np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    ]
    group_pair = demand_group[n.demand] * len(pair_key) + option_pair
    column_key = column_group * len(pair_key) + column_pair
    least = _least_by_key(group_pair, n.cost, column_key, len(groups) * len(pair_key))
    column_cost = np.where(np.isfinite(least), least, pair_cost[column_pair])

    # Rows: one per group (placed + short = its units), one per machine set's horizon, one per stock row.
    chain_count = int(n.point_chain.max(initial=-1)) + 1
    horizon = np.full(chain_count, -1, dtype=np.int64)
    last = np.flatnonzero(n.point_next < 0)
    horizon[n.point_chain[last]] = last
    is_first = np.zeros(n.options, dtype=bool)
    is_first[first] = True
    work = np.flatnonzero(is_first[n.work_option])
    work_pair = option_pair[n.work_option[work]]
    work_point = horizon[n.point_chain[n.work_point[work]]]
    work_amount = n.work_amount[work]
    stock = np.flatnonzero(is_first[n.stock_option])
    stock_pair = option_pair[n.stock_option[stock]]

    lp = IncrementalLP(GLOP_PARAMETERS)
    columns = lp.add_variables(np.zeros(len(column_group)), group_units[column_group], column_cost)
    short = lp.add_variables(np.zeros(len(groups)), group_units, group_penalty)
    group_rows = lp.add_rows(group_units, group_units)
    points = np.unique(work_point)
    point_rows = lp.add_rows(np.full(len(points), -np.inf), n.point_bound_capacity[points])
    stock_rows = lp.add_rows(np.full(len(n.stock_capacity), -np.inf), n.stock_capacity)
    lp.set_coefficients(group_rows[column_group], columns, np.ones(len(columns)))
    lp.set_coefficients(group_rows, short, np.ones(len(short)))
    # Each column takes its pair's work and stock entries.
    by_pair = np.argsort(column_pair, kind="stable")
    pair_start = np.searchsorted(column_pair[by_pair], np.arange(len(pair_key)))
    pair_stop = np.searchsorted(column_pair[by_pair], np.arange(len(pair_key)), side="right")

    def spread(entry_pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(entry, column) of every entry of a pair repeated for each column of that pair."""
        per = pair_stop[entry_pair] - pair_start[entry_pair]
        entry = np.repeat(np.arange(len(entry_pair)), per)
        offset = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
        return entry, columns[by_pair[np.repeat(pair_start[entry_pair], per) + offset]]

    entry, column = spread(work_pair)
    lp.set_coefficients(point_rows[np.searchsorted(points, work_point[entry])], column, work_amount[entry])
    entry, column = spread(stock_pair)
    lp.set_coefficients(stock_rows[n.stock_row[stock][entry]], column, n.stock_amount[stock][entry])
    solution = lp.solve(seconds)
    if not solution.optimal:
        return None
    point_price = np.zeros(len(n.point_chain))
    point_price[points] = np.maximum(0.0, -solution.dual[point_rows])
    stock_price = np.maximum(0.0, -solution.dual[stock_rows])
    return point_price, stock_price


def _least_by_key(key: np.ndarray, value: np.ndarray, wanted: np.ndarray, cells: int) -> np.ndarray:
    """Per key of `wanted`, the least `value` of the entries with that `key` (inf where none has it);
    keys lie in 0..cells-1. Tabulated when the cells are few (a continent's 8 million options in
    hundredths of a second; sorting their keys took over a second), else by sorted keys."""
    if cells <= max(DENSE_PAIRS, 4 * len(key)):
        table = np.full(cells, np.inf)
        np.minimum.at(table, key, value)
        return table[wanted]
    keys = np.unique(key)
    least = np.full(len(keys), np.inf)
    np.minimum.at(least, np.searchsorted(keys, key), value)
    found = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[found] == wanted, least[found], np.inf)
