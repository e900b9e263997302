"""What a unit costs at least at a lab off its demand's candidates: the bound's charge beyond them.

The Lagrangian bound (`solver.large.bound`) covers every plan, including plans that use labs the
network never built options for. For those it needs, per demand, a lower bound of the cost per unit
at any such lab: its km, less a trail discount, plus the time term of the unit's arrival, plus the
lateness when late, plus the price of the machine time and stock it would use.

`beyond_cost` needs no prices and is cheap: it takes the nearest such lab and the earliest arrival
any of them allows, apart. `priced_beyond` prices each lab and each finish time: each lab off the
candidates is charged its km, the arrival of a unit finishing by each checkpoint there, and the
price of its capacity by then, together. Taken apart, the least time term and the least price
belong to different finish times (the earliest arrival pays the dearest capacity), and under
weights where a day counts for hundreds of km the sum of the two minima fell far below any one
choice: half the bound was missing at 2,000 × 400 under the planner's balanced weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from solver.large.bound import Beyond
from solver.large.network import Network, design_lab_pairs, strength_table
from solver.model.candidates import Candidates, km_beyond
from solver.model.problem import Problem, SolveParams, days_until, horizon_days
from solver.model.trail_strength import problem_trail_strengths
from solver.model.trails import TrailRules

#: Demands per block of the (demand × lab) tables: 512 × 2,000 labs is 8 MB a table.
BLOCK = 512
#: The price table (design × lab × finish cell) holds about this many entries (32 MB), in at least
#: MIN_CELLS and at most MAX_CELLS cells over the horizon: finer cells price a finish time closer
#: to its own checkpoint.
TABLE_SIZE = 4_000_000
MIN_CELLS = 64
MAX_CELLS = 2048


def beyond_cost(
    problem: Problem, params: SolveParams, candidates: Candidates, rules: TrailRules
) -> np.ndarray:
    """Per demand, a lower bound of the cost per unit at any lab off its candidates (inf if none).

    Such a lab is at least `Candidates.beyond` km away: a unit made there pays that distance, less
    the design's strongest trail discount, and the time term of its arrival. A unit arrives at its
    due date when made by the last moment (an on-time option), else at a time checkpoint or the
    horizon plus the road; the earliest of these is never before the road from that distance, nor,
    unless on its due date, before the first checkpoint plus that road. Leaving the time term out
    under weights that price a day at 25 km would make a far lab look cheaper than any near one
    and the bound too weak to certify a plan.
    """
    days = horizon_days(problem, params)
    first = min([g for g in params.time_checkpoints_days if g < days] + [days])
    km = np.array(candidates.beyond, dtype=np.float64)
    road = (params.handling_hours + km / params.transport_kmh) / 24.0
    due = np.array([days_until(problem, d.order.due_at) for d in problem.demands])
    arrival = np.minimum(first + road, np.maximum(due, road))
    weight = np.array([params.time_weight[d.order.priority] for d in problem.demands])
    with np.errstate(invalid="ignore"):  # 0 x inf where a demand has no lab beyond: 0 is kept
        time_term = np.where(weight > 0, weight * arrival, 0.0)
    strongest: dict[str, float] = {}
    for (design_id, _), trail_strength in problem_trail_strengths(problem, rules).items():
        strongest[design_id] = max(strongest.get(design_id, 0.0), trail_strength)
    strength = np.array([strongest.get(d.order.design, 0.0) for d in problem.demands])
    # A unit's cost still grows with the distance under the share (by km_weight x (1 - strength x
    # share) a km), so the nearest lab beyond the candidates still bounds every lab beyond them.
    return km * params.km_weight - params.trail_discount(strength, km) + time_term


def priced_beyond(
    problem: Problem,
    params: SolveParams,
    candidates: Candidates,
    network: Network,
    rules: TrailRules,
    deadline: float = math.inf,
) -> Beyond:
    """Per listed demand, the least cost per unit off its candidates, each lab and finish time priced.

    A unit of demand d at lab j off its candidates finishes by one of the times a network option
    would: the date it must be made by to arrive on time, a time checkpoint, or the horizon. By a
    finish time f it costs km × km_weight − the trail discount + time weight × (f + the road) (+ the
    lateness when it arrives after the due date) + the price of the capacity it takes by f: its
    design's minutes on each of the lab's machine sets at the price of the set's first checkpoint
    at or after f, and its stock. Where the network holds no option of the design at the lab its
    capacity is priced at 0. Finish times are looked up on a grid of cells that holds the time
    checkpoints and the horizon exactly; a time between two cells is priced at the later one, whose
    price is never higher (a chain's prices only fall along it). The result is a lower bound of
    every option at every such lab in the network that holds every lab. Past `deadline` (a
    `time.perf_counter()` instant) the demands left are charged nothing more (-inf), which leaves
    them the unpriced charge (`beyond_cost`): one evaluation at a continent's size takes seconds.
    """
    design_row = candidates.design_row
    assert design_row is not None
    demands = problem.demands
    labs = len(problem.labs)
    rows = int(design_row.max(initial=0)) + 1
    checkpoints = [g for g in params.time_checkpoints_days if 0 < g < network.days]
    steps = int(np.clip(TABLE_SIZE // max(1, rows * labs), MIN_CELLS, MAX_CELLS))
    cells = np.unique(np.r_[np.linspace(0.0, network.days, steps + 1), checkpoints, network.days])
    grid = np.searchsorted(cells, [*checkpoints, network.days])
    # The (design, lab) pairs of the network, each with one option's work and stock entries: every
    # option of a pair uses the same machine minutes and materials per unit.
    pair_key, first, _ = design_lab_pairs(network, design_row, labs)
    pair_of = np.full(network.options, -1, dtype=np.int64)
    pair_of[first] = np.arange(len(first))
    work = np.flatnonzero(pair_of[network.work_option] >= 0)
    work_pair, work_amount = pair_of[network.work_option[work]], network.work_amount[work]
    chain = network.point_chain[network.work_point[work]]
    stock = np.flatnonzero(pair_of[network.stock_option] >= 0)
    stock_pair, stock_row = pair_of[network.stock_option[stock]], network.stock_row[stock]
    stock_amount = network.stock_amount[stock]
    # Per work entry and cell, the first checkpoint of its chain at or after the cell's time.
    span = network.days + 2.0
    keys = network.point_chain * span + network.point_time
    first_point = np.searchsorted(keys, chain[:, None] * span + cells[None, :], side="left").astype(np.int32)
    # Rows of `design_row` are the demands' designs in sorted order (`find_candidates`).
    strength = strength_table(problem, rules, sorted({d.order.design for d in demands}))
    due = np.array([days_until(problem, d.order.due_at) for d in demands])
    weight = np.array([params.time_weight[d.order.priority] for d in demands])
    lateness = np.array([params.lateness_penalty[d.order.priority] for d in demands])
    times = _Times(cells, grid, due, weight, lateness)

    def cost(listed: np.ndarray, point_price: np.ndarray, stock_price: np.ndarray) -> np.ndarray:
        per_pair = np.zeros((len(first), len(cells)))
        np.add.at(per_pair, work_pair, work_amount[:, None] * point_price[first_point])
        per_pair += np.bincount(
            stock_pair, weights=stock_amount * stock_price[stock_row], minlength=len(first)
        )[:, None]
        table = np.zeros((rows, labs, len(cells)))
        table[pair_key // labs, pair_key % labs] = per_pair
        out = np.full(len(listed), np.inf)
        for start in range(0, len(listed), BLOCK):
            if time.perf_counter() > deadline:
                out[start:] = -np.inf
                break
            block = listed[start : start + BLOCK]
            out[start : start + len(block)] = _least(
                problem, params, candidates, block, table, strength, times
            )
        return out

    return cost


@dataclass(frozen=True)
class _Times:
    """The finish-time cells of the price table, the cells of the grid times, and per demand its
    due date (days from now), time weight and lateness penalty."""

    cells: np.ndarray
    grid: np.ndarray
    due: np.ndarray
    weight: np.ndarray
    lateness: np.ndarray


def _least(
    problem: Problem,
    params: SolveParams,
    candidates: Candidates,
    block: np.ndarray,
    table: np.ndarray,
    strength: np.ndarray,
    times: _Times,
) -> np.ndarray:
    """Per demand of `block`, the least cost per unit over the labs off its candidates and the finish
    times (see `priced_beyond`); `table` prices a unit per (design row, lab, finish cell), and
    `strength` gives the trail's strength per (design row, lab)."""
    assert candidates.design_row is not None
    km = km_beyond(problem, candidates, block)
    reachable = np.isfinite(km)
    km = np.where(reachable, km, 0.0)
    road = (params.handling_hours + km / params.transport_kmh) / 24.0
    made_by = times.due[block, None] - road
    w = times.weight[block, None]
    row = candidates.design_row[block][:, None]
    lab = np.arange(km.shape[1])[None, :]
    base = km * params.km_weight + w * road
    if strength.any():
        base = base - params.trail_discount(strength[row, lab], km)
    best = np.full(km.shape, np.inf)
    for cell in times.grid.tolist():
        finish = times.cells[cell]
        late = np.where(finish > made_by, times.lateness[block, None], 0.0)
        np.minimum(best, base + w * finish + late + table[row, lab, cell], out=best)
    # On time, finishing by the date the units must be made to arrive on their due date.
    on_time = (made_by > 0) & (made_by < times.cells[-1])
    cell = np.minimum(np.searchsorted(times.cells, made_by, side="left"), len(times.cells) - 1)
    np.minimum(best, np.where(on_time, base + w * made_by + table[row, lab, cell], np.inf), out=best)
    best[~reachable] = np.inf
    return best.min(axis=1, initial=np.inf)
