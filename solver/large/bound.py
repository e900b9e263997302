"""A certified lower bound of a large problem: the Lagrangian dual function at given prices.

Price machine time and stock (any prices ≥ 0 will do; the linear relaxation's dual values are good
ones) and take them out of the constraints: what is left splits into one small problem per demand,
solved exactly, whose sum less the priced capacity is a lower bound of every plan's objective
(weak duality). Per demand, every plan either leaves a unit short (its penalty) or makes it at a
lab, paying km × km_weight, less the trail discount, plus the lateness when late, plus the price of
the machine time and stock it uses; a used (order, lab) pair pays its setup once. Without
capacities the cheapest choice is all units short or all at the single cheapest lab, so each
demand's minimum is found exactly, in closed form.

The bound covers every plan, not only plans on the candidate edges: a unit at a lab that is not a
candidate of its demand is charged a lower bound of what it would cost there, its km, arrival and
capacity priced together (`solver.large.beyond`). Machine time is counted on the checkpoints of
`solver.large.network`, which are the validator's own, and capacities are taken a hair larger
than they are, so that float rounding cannot lift the bound above the optimum.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from solver.large.network import Network, entry_sums

#: Per listed demand, the least cost per unit at a lab off its candidates, given the price of a
#: minute counted at each checkpoint (the multipliers summed along its chain) and of a unit of each
#: stock row (`solver.large.beyond`).
Beyond = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def lagrangian_bound(
    network: Network,
    point_multiplier: np.ndarray,
    stock_multiplier: np.ndarray,
    beyond_cost: np.ndarray,
    beyond: Beyond | None = None,
) -> float:
    """The Lagrangian lower bound at these multipliers (see the module docstring).

    `point_multiplier` prices each checkpoint's cumulative row (the work due by then ≤ the free
    minutes by then), `stock_multiplier` each stock row; negative values count as 0. `beyond_cost`
    is, per demand, a lower bound of the cost per unit at a lab off its candidates (inf when there is
    none); where it decides a demand's minimum, `beyond` (when given) recomputes it with the labs'
    prices, which can only raise it.
    """
    multiplier = np.maximum(0.0, point_multiplier)
    stock = np.maximum(0.0, stock_multiplier)
    if multiplier.any() or stock.any():
        # A minute counted at a checkpoint enters its cumulative row and those of every later
        # checkpoint of its chain; prices are shaved by 1e-12 so that the rounding of their sums
        # cannot raise them.
        price = suffix_sums(network, multiplier) * (1 - 1e-12)
        n = network
        option_price = entry_sums(n.work_option, n.work_amount, price, n.work_point, n.options)
        option_price += entry_sums(n.stock_option, n.stock_amount, stock, n.stock_row, n.options)
    else:  # the trivial bound: capacity free (on a continent, 2 s of sums of zeros saved)
        price, option_price = multiplier, np.zeros(network.options)
    quantity = network.quantity.astype(np.float64)
    best = quantity * network.shortage
    option_value = quantity[network.demand] * (network.cost + option_price) + network.setup
    np.minimum.at(best, network.demand, option_value)
    far = quantity * beyond_cost + network.setup
    if beyond is not None:
        decided = np.flatnonzero(far < best)
        far[decided] = quantity[decided] * np.maximum(beyond_cost[decided], beyond(decided, price, stock))
        far[decided] += network.setup
    best = np.minimum(best, far)
    held = np.concatenate(
        [multiplier * network.point_bound_capacity, stock * network.stock_capacity * (1 + 1e-6)]
    )
    total = math.fsum(best.tolist()) - math.fsum(held.tolist())
    # fsum adds exactly; each term carries the rounding of a few operations, allowed for here.
    return total - 1e-9 * (math.fsum(np.abs(best).tolist()) + math.fsum(held.tolist())) - 1e-6


def suffix_sums(network: Network, multiplier: np.ndarray) -> np.ndarray:
    """Per checkpoint, the sum of the multipliers of it and the later checkpoints of its chain.

    Summed from each chain's end (one vector step per depth), so every sum is a chain's own: no
    difference of large running totals, whose rounding could exceed a small price.
    """
    total = multiplier.astype(np.float64).copy()
    # Depth: checkpoints after this one in its chain (chains are contiguous, each ends at a -1).
    last = np.flatnonzero(network.point_next < 0)
    depth = np.repeat(last, np.diff(np.r_[-1, last])) - np.arange(len(network.point_next))
    order = np.argsort(depth, kind="stable")
    bounds = np.searchsorted(depth[order], np.arange(int(depth.max(initial=0)) + 2))
    for d in range(1, len(bounds) - 1):
        at = order[bounds[d] : bounds[d + 1]]
        total[at] += total[at + 1]
    return total


#: Golden-section steps of the line search along the given prices (see `best_bound`).
LINE_STEPS = 6


def best_bound(
    network: Network,
    point_multiplier: np.ndarray,
    stock_multiplier: np.ndarray,
    beyond_cost: np.ndarray,
    beyond: Beyond | None = None,
    search: bool = True,
    deadline: float = math.inf,
) -> float:
    """The best of the Lagrangian bounds at zero prices, at the given prices, and along the segment.

    Every one of them is valid for every plan (weak duality holds at any prices ≥ 0), so the best is
    too. At zero prices the bound is each demand's cheapest choice with capacity ignored: at least 0
    when every cost is, so the result never falls below that trivial bound. Prices from an LP that
    has not converged (rows and options missing) can price capacity far above what it is worth, and
    their bound can be far below zero; the dual function is concave, so a golden-section search of
    the prices scaled by θ in [0, 1] finds the best share of them in a few evaluations. Without
    `search` (prices of a converged or stalled LP, whose best share is nearly always all of them),
    the segment is searched only when the prices do worse than zero prices. The search ends at `deadline` (a
    `time.perf_counter()` instant) with the best bound so far.
    """
    point = np.maximum(0.0, point_multiplier)
    stock = np.maximum(0.0, stock_multiplier)

    def at(theta: float) -> float:
        return lagrangian_bound(network, theta * point, theta * stock, beyond_cost, beyond)

    zero, full = at(0.0), at(1.0)
    if not (point.any() or stock.any()):
        return zero
    best = max(zero, full)
    if (not search and full >= zero) or time.perf_counter() >= deadline:
        return best
    # Concave along the segment: when the ends fall towards the inside neither way, search it.
    golden = (math.sqrt(5) - 1) / 2
    lo, hi = 0.0, 1.0
    a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fa, fb = at(a), at(b)
    for _ in range(LINE_STEPS):
        if time.perf_counter() >= deadline:
            break
        if fa >= fb:
            hi, b, fb = b, a, fa
            a = hi - golden * (hi - lo)
            fa = at(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + golden * (hi - lo)
            fb = at(b)
        best = max(best, fa, fb)
    return max(best, fa, fb)
