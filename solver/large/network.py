"""A large allocation problem as flat arrays: options, machine-time checkpoints and stock rows.

The global path for large problems (`solver.large.path`) works on numpy arrays instead of one Python
object per variable, so that 10,000 orders over 2,000 labs build in about a second. The formulation
is the allocation model of `solver.allocation.allocate`, written without its approximations:

- an *option* places units of one demand at one candidate lab, finishing by one checkpoint: the
  date they must be made by to arrive on time, a time checkpoint (`SolveParams.time_checkpoints_days`)
  or the horizon; it is late when its units would arrive after the due date. Its units leave the
  lab the lab's flow time for the design after the checkpoint (`solver.model.capability.flow_days`),
  so the checkpoints of units on time are earlier than the validator's by that much. Its cost per unit is
  km × km_weight, less the trail discount, plus the time weight × days until arrival, plus the
  lateness penalty when late (`solver.model.objective.unit_cost`);
- machine time is judged per lab on *machine sets*: every union of the lab's step groups (the
  machines eligible for a step) whose groups overlap. A set's work is that of every step whose group
  lies inside it. By Hall's theorem, work fits the machines (the validator's max-flow) exactly when
  every such set holds its work, so these rows are exact, not a relaxation nor a restriction;
- each machine set is a *chain* of checkpoints, one per distinct due date of its on-time options and
  one at the horizon: the on-time work due by a checkpoint, plus all earlier work, must fit the free
  minutes by then; late units count at the horizon. These are exactly the validator's checks;
- stock is one row per lab and material;
- units are whole, so a row's capacity is rounded down to a multiple of its *granule*, the greatest
  common divisor of the minutes (or material) per unit of every design the lab could make there:
  what is left over can never be used. Where designs share a machine set at different minutes per
  unit (a shield's 120 printer minutes beside a splint's 25), each also gets a chain of its own
  work alone on the same machines, counted in its whole units; likewise for stock. These rows cut
  no plan, and they take out of the relaxation and the bound the fractions of units no lab can make.

A lab whose groups would give too many unions (more than `MAX_SETS`) keeps its groups and their
full union only: then its rows are necessary but may not be sufficient, so they serve the
relaxation and the bound, and its options are marked not `exact`: a plan does not use them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from solver.model.candidates import Candidates
from solver.model.capability import flow_days, step_groups
from solver.model.objective import overdue_weight, unit_cost
from solver.model.problem import (
    Problem,
    SolveParams,
    backlog_by,
    days_until,
    earliest_finish,
    is_due_checkpoint,
)
from solver.model.trail_strength import problem_trail_strengths
from solver.model.trails import DEFAULT_RULES, TrailRules

#: Most machine sets per lab before the rows fall back to groups and their union (see `exact`).
MAX_SETS = 64
#: Minutes per unit are compared on a grid of a thousandth of a minute, materials per unit on one
#: of a millionth of their unit (see `granule`).
MINUTE_GRID = 1000
AMOUNT_GRID = 1_000_000


@dataclass(frozen=True)
class Network:
    """Options, work and stock entries, checkpoints (see the module docstring); arrays per kind.

    Checkpoints of one chain are contiguous and in ascending time; `point_next` is the index of the
    following checkpoint of the same chain, or -1 for its last.
    """

    days: float  # the horizon
    quantity: np.ndarray  # per demand: units wanted
    shortage: np.ndarray  # per demand: penalty per unit short
    setup: float  # per used (demand, lab) pair
    # per option
    demand: np.ndarray
    lab: np.ndarray
    late: np.ndarray
    rank: np.ndarray  # place of the option's lab among the demand's candidates (0: nearest)
    km: np.ndarray
    discount: np.ndarray  # trail discount per unit (>= 0)
    cost: np.ndarray  # per unit: km × km_weight − discount + time weight × arrival (+ lateness when late)
    arrival: np.ndarray  # days from now by which its units arrive: finish checkpoint plus transport
    finish: np.ndarray  # days from now by which its units are made: its checkpoint
    grid: tuple[float, ...]  # the time checkpoints the options were built on
    # work entries, grouped by option: option, checkpoint, minutes per unit
    work_option: np.ndarray
    work_point: np.ndarray
    work_amount: np.ndarray
    # checkpoints: chain, days from now, free minutes of the chain's machine set by then
    point_chain: np.ndarray
    point_time: np.ndarray
    point_capacity: np.ndarray
    point_bound_capacity: np.ndarray  # an upper estimate of point_capacity, for the bound
    point_next: np.ndarray
    # stock entries, grouped by option: option, stock row, amount per unit; capacity per stock row
    stock_option: np.ndarray
    stock_row: np.ndarray
    stock_amount: np.ndarray
    stock_capacity: np.ndarray
    exact: np.ndarray  # per option: its lab's machine sets are complete (Hall), so its rows are exact

    @property
    def options(self) -> int:
        """Number of options."""
        return len(self.demand)


@dataclass(frozen=True)
class _Chains:
    """Per machine set (chain): its lab, its machine indices, and the granule of its work."""

    lab: list[int]
    machines: list[list[int]]
    granule: list[float]


@dataclass(frozen=True)
class _Stock:
    """Per stock row: its lab, its material, and the granule of its use."""

    lab: list[int]
    material: list[str]
    granule: list[float]

    def add(self, lab: int, material: str, amounts: list[float]) -> None:
        """A row of `material` at `lab`, used by designs at these amounts per unit."""
        self.lab.append(lab)
        self.material.append(material)
        self.granule.append(granule(amounts, AMOUNT_GRID))


@dataclass(frozen=True)
class _Combo:
    """One design at one lab: work per machine set of the lab, material per stock row, per unit."""

    chains: list[int]
    minutes: list[float]
    stock_rows: list[int]
    amounts: list[float]


def build_network(
    problem: Problem,
    params: SolveParams,
    candidates: Candidates,
    days: float,
    rules: TrailRules = DEFAULT_RULES,
) -> Network:
    """The arrays of `problem` on its candidate edges (see the module docstring)."""
    demands = problem.demands
    quantity = np.array([d.quantity for d in demands], dtype=np.int64)
    shortage = np.array([params.shortage_penalty[d.order.priority] for d in demands])
    lateness = np.array([params.lateness_penalty[d.order.priority] for d in demands])
    due = np.array([days_until(problem, d.order.due_at) for d in demands])
    design_ids = sorted({d.order.design for d in demands})
    design_of = np.array([design_ids.index(d.order.design) for d in demands], dtype=np.int64)

    counts = np.diff(candidates.edge_start)
    edge_demand = np.repeat(np.arange(len(demands), dtype=np.int64), counts)
    edge_lab = candidates.edge_lab
    edge_km = candidates.edge_km
    edge_discount = _discounts(problem, params, rules, design_ids, design_of[edge_demand], edge_lab, edge_km)

    # Options per edge: units finishing by a checkpoint. On time (arriving by the due date): by the
    # date they must be made to arrive in time, and by each time checkpoint before it. Late: by each
    # time checkpoint after it, and by the horizon. Within an edge, on-time options come first and the
    # loosest of each kind first: that one is where a warm start's units go.
    travel = (params.handling_hours + edge_km / params.transport_kmh) / 24.0
    if params.flow_time:
        travel = travel + _flow(problem, design_ids, design_of[edge_demand], edge_lab)
    made_by = due[edge_demand] - travel
    kinds: list[tuple[np.ndarray, np.ndarray, bool]] = [
        (np.flatnonzero(made_by > 0), np.minimum(made_by, days), False),
        (np.flatnonzero(made_by < days), np.full(len(made_by), days), True),
    ]
    for point in params.time_checkpoints_days:
        if point < days:
            before = np.flatnonzero((made_by > point) & (made_by > 0))
            after = np.flatnonzero(made_by < point)
            kinds.append((before, np.full(len(made_by), point), False))
            kinds.append((after, np.full(len(made_by), point), True))
    # A forecast's units are made a commit window after they are ordered (model.problem.earliest_finish).
    earliest = np.array([earliest_finish(problem, params, d) for d in demands])[edge_demand] - 1e-9
    kinds = [(edges[times[edges] >= earliest[edges]], times, late) for edges, times, late in kinds]
    pick = np.concatenate([edges for edges, _, _ in kinds])
    o_time = np.concatenate([times[edges] for edges, times, _ in kinds])
    is_late = np.concatenate([np.full(len(edges), late) for edges, _, late in kinds])
    order = np.lexsort((-o_time, is_late, pick))
    pick, is_late, o_time = pick[order], is_late[order], o_time[order]
    o_demand, o_lab = edge_demand[pick], edge_lab[pick]
    o_km, o_discount = edge_km[pick], edge_discount[pick]
    edge_rank = np.arange(len(edge_demand)) - np.repeat(np.cumsum(counts) - counts, counts)
    arrival = o_time + travel[pick]
    priority_weight = np.array([params.time_weight[d.order.priority] for d in demands])
    late_penalty = np.where(is_late, lateness[o_demand], 0.0)
    per_day_past = np.array([overdue_weight(params.time_weight, d.order.priority) for d in demands])
    overdue = np.where(is_late, per_day_past[o_demand] * np.maximum(0.0, arrival - due[o_demand]), 0.0)
    cost = unit_cost(
        o_km, o_discount, priority_weight[o_demand], arrival, late_penalty, params.km_weight, overdue
    )
    if problem.bid_prices:
        cost = cost + price_table(problem, design_ids)[design_of[o_demand], o_lab]

    combos, combo_of, chains, stock, exact = _combos(problem, design_ids, design_of[o_demand], o_lab)
    chain_lab, chain_machines = chains.lab, chains.machines
    # Work entries: each option takes its combo's (chain, minutes) list.
    per_combo = np.array([len(c.chains) for c in combos], dtype=np.int64)
    combo_chain = np.array([ch for c in combos for ch in c.chains], dtype=np.int64)
    combo_minutes = np.array([m for c in combos for m in c.minutes], dtype=np.float64)
    # The entries' arrays are the network's bulk (a continent's 21.7 million work entries: 174 MB an
    # array in 64 bits), so each temporary goes as soon as it is used and the indices that stay are
    # made 32-bit at once: built all together, they made the build the solve's peak of memory.
    work_option, entry = _expand(combo_of, per_combo)
    work_option = compact_indices(work_option)
    all_chain = np.concatenate([combo_chain[entry], np.arange(len(chain_lab), dtype=np.int64)])
    work_amount = combo_minutes[entry]
    del entry
    # Checkpoints: distinct (chain, time) pairs, plus the horizon of every chain.
    n_work = len(work_amount)
    all_time = np.concatenate([o_time[work_option], np.full(len(chain_lab), days)])
    keys = np.lexsort((all_time, all_chain))
    sorted_chain, sorted_time = all_chain[keys], all_time[keys]
    del all_chain, all_time
    new = np.ones(len(keys), dtype=bool)
    new[1:] = (sorted_chain[1:] != sorted_chain[:-1]) | (sorted_time[1:] != sorted_time[:-1])
    point_chain, point_time = sorted_chain[new], sorted_time[new]
    del sorted_chain, sorted_time
    point_of = np.empty(len(keys), dtype=np.int64)
    point_of[keys] = np.cumsum(new) - 1
    del keys, new
    work_point = compact_indices(point_of[:n_work])
    del point_of
    point_next = np.arange(1, len(point_chain) + 1, dtype=np.int64)
    last = np.ones(len(point_chain), dtype=bool)
    last[:-1] = point_chain[1:] != point_chain[:-1]
    point_next[last] = -1
    distinct_times, time_index = np.unique(point_time, return_inverse=True)
    point_is_due = np.array(
        [is_due_checkpoint(float(t), days, params.time_checkpoints_days) for t in distinct_times], dtype=bool
    )[time_index]
    point_capacity = _capacities(problem, chain_lab, chain_machines, point_chain, point_time, point_is_due)
    # The bound's capacities are a hair larger: the validator accepts work within its tolerance.
    point_bound_capacity = (1 + 1e-6) * point_capacity + 1e-6
    # Work comes in whole units: capacity short of the next multiple of the granule is never used, by
    # any valid plan. Taking it out tightens the relaxation and the bound without cutting a plan.
    step = np.array(chains.granule, dtype=np.float64)[point_chain]
    usable = np.where(
        step > 0, step * np.floor(point_bound_capacity / np.where(step > 0, step, 1) + 1e-9), np.inf
    )
    point_bound_capacity = np.minimum(point_bound_capacity, usable)
    point_capacity = np.minimum(point_capacity, point_bound_capacity)

    per_combo_stock = np.array([len(c.stock_rows) for c in combos], dtype=np.int64)
    combo_stock = np.array([s for c in combos for s in c.stock_rows], dtype=np.int64)
    combo_amount = np.array([a for c in combos for a in c.amounts], dtype=np.float64)
    stock_option, s_entry = _expand(combo_of, per_combo_stock)
    stock_option = compact_indices(stock_option)
    stock_row, stock_amount = compact_indices(combo_stock[s_entry]), combo_amount[s_entry]
    del s_entry
    have = np.array(
        [problem.labs[j].stock.get(m, 0.0) for j, m in zip(stock.lab, stock.material, strict=True)]
    )
    # Stock, too, goes in whole units (the validator's tolerance allowed for, as for machine time).
    unit = np.array(stock.granule, dtype=np.float64)
    units = np.floor((have * (1 + 1e-6) + 1e-12) / np.where(unit > 0, unit, 1.0) + 1e-9)
    stock_capacity = np.where(unit > 0, np.minimum(have, unit * units), have)
    return Network(
        days=days,
        quantity=quantity,
        shortage=shortage,
        setup=params.setup_cost,
        demand=compact_indices(o_demand),
        lab=compact_indices(o_lab),
        late=is_late,
        rank=compact_indices(edge_rank[pick]),
        km=o_km,
        discount=o_discount,
        cost=cost,
        arrival=arrival,
        finish=o_time,
        grid=tuple(params.time_checkpoints_days),
        work_option=work_option,
        work_point=work_point,
        work_amount=work_amount,
        point_chain=point_chain,
        point_time=point_time,
        point_capacity=point_capacity,
        point_bound_capacity=point_bound_capacity,
        point_next=point_next,
        stock_option=stock_option,
        stock_row=stock_row,
        stock_amount=stock_amount,
        stock_capacity=stock_capacity,
        exact=np.isin(o_lab, sorted(exact)),
    )


#: Entries summed per chunk by `entry_sums`: a continent's 21.7 million work entries summed at once
#: held two temporary arrays of 174 MB each, at the relaxation's peak of memory.
ENTRY_CHUNK = 1 << 22


def entry_sums(
    bins: np.ndarray, amount: np.ndarray, values: np.ndarray, at: np.ndarray, length: int
) -> np.ndarray:
    """Per bin, the sum over the entries in it of amount × values[at]: what
    `np.bincount(bins, weights=amount * values[at], minlength=length)` gives, a chunk of entries at
    a time (see ENTRY_CHUNK). Used per option (bins: the entries' options) and per row."""
    total = np.zeros(length)
    for start in range(0, len(bins), ENTRY_CHUNK):
        part = slice(start, start + ENTRY_CHUNK)
        total += np.bincount(bins[part], weights=amount[part] * values[at[part]], minlength=length)
    return total


def key_starts(keys: np.ndarray, count: int) -> np.ndarray:
    """Where each key 0..count-1 begins among `keys` (sorted ascending, each below `count`), and
    `len(keys)` last: key k's entries are `keys[starts[k]:starts[k + 1]]`. What
    `np.searchsorted(keys, np.arange(count + 1))` gives, in one counting pass instead of a search
    per key (the relaxation and the rounding ask it of a million options' entries)."""
    starts = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=count)[:count], out=starts[1:])
    return starts


def compact_indices(values: np.ndarray) -> np.ndarray:
    """Indices in 32 bits where they fit: the entries' arrays are the network's bulk (a continent's
    work entries alone are 21.7 million), and 32-bit indices halve their memory."""
    if not len(values) or int(values.max()) < np.iinfo(np.int32).max:
        return values.astype(np.int32)
    return values


def strength_table(problem: Problem, rules: TrailRules, design_ids: list[str]) -> np.ndarray:
    """How strong each trail is (0 to 1, `solver.model.trail_strength`) per (design of `design_ids`,
    lab index); zeros without trails. `SolveParams.trail_discount` turns a strength and a trip into a
    discount."""
    table = np.zeros((len(design_ids), len(problem.labs)))
    if not problem.trails:
        return table
    lab_column = {s.lab.id: j for j, s in enumerate(problem.labs)}
    design_row = {design_id: i for i, design_id in enumerate(design_ids)}
    for (design_id, lab_id), strength in problem_trail_strengths(problem, rules).items():
        if design_id in design_row and lab_id in lab_column:
            table[design_row[design_id], lab_column[lab_id]] = strength
    return table


#: (design, lab) cells counted in a table by `design_lab_pairs` at least (more only with more options).
DENSE_PAIRS = 1 << 22


def design_lab_pairs(
    network: Network, design_row: np.ndarray, labs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network's (design, lab) pairs as keys design × `labs` + lab (sorted), the first option of
    each, and each option's pair. Every option of a pair uses the same machine minutes on the same
    machine sets and the same stock per unit, so one option stands for its pair."""
    key = design_row[network.demand].astype(np.int64) * labs + network.lab
    cells = (int(design_row.max(initial=0)) + 1) * labs
    if cells > max(DENSE_PAIRS, 4 * len(key)):  # too many to tabulate: sort the keys
        pair_key, first, option_pair = np.unique(key, return_index=True, return_inverse=True)
        return pair_key, first, option_pair
    # A table over every (design, lab): a continent's 8 million options in 0.03 s, where sorting
    # their keys took 1.6 s and four temporaries of their size (beside the rounding, at the peak).
    first_of = np.full(cells, len(key), dtype=np.int64)
    np.minimum.at(first_of, key, np.arange(len(key), dtype=np.int64))
    pair_key = np.flatnonzero(first_of < len(key))
    rank = np.full(cells, -1, dtype=np.int64)
    rank[pair_key] = np.arange(len(pair_key))
    return pair_key, first_of[pair_key], rank[key]


def _discounts(
    problem: Problem,
    params: SolveParams,
    rules: TrailRules,
    design_ids: list[str],
    design: np.ndarray,
    lab: np.ndarray,
    km: np.ndarray,
) -> np.ndarray:
    """Trail discount per edge, on its trip of `km`; zeros without trails (the common case at scale)."""
    if not problem.trails:
        return np.zeros(len(lab))
    return params.trail_discount(strength_table(problem, rules, design_ids)[design, lab], km)


def _expand(combo_of: np.ndarray, per_combo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For options with combos `combo_of`, (option, combo entry index) of every entry, by option."""
    starts = np.concatenate([[0], np.cumsum(per_combo)[:-1]]).astype(np.int64)
    reps = per_combo[combo_of]
    option = np.repeat(np.arange(len(combo_of), dtype=np.int64), reps)
    offsets = np.arange(reps.sum(), dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)
    return option, starts[combo_of][option] + offsets


def _flow(
    problem: Problem, design_ids: list[str], edge_design: np.ndarray, edge_lab: np.ndarray
) -> np.ndarray:
    """Per edge, its lab's flow time for its design in days (`solver.model.capability.flow_days`)."""
    width = int(edge_lab.max(initial=0)) + 1
    keys, pair_of = np.unique(edge_design.astype(np.int64) * width + edge_lab, return_inverse=True)
    flow = np.zeros(len(keys))
    for k, key in enumerate(keys.tolist()):
        design = problem.designs.get(design_ids[key // width])
        if design is not None:
            lab = problem.labs[key % width].lab
            flow[k] = flow_days(lab, design, step_groups(lab, design))
    return flow[pair_of.reshape(-1)]


def _combos(
    problem: Problem, design_ids: list[str], option_design: np.ndarray, option_lab: np.ndarray
) -> tuple[list[_Combo], np.ndarray, _Chains, _Stock, set[int]]:
    """Machine sets (chains) and stock rows of every lab in use, and each (design, lab) combo's uses.

    Returns the combos, the combo of each option, the chains, the stock rows, and the labs whose
    machine sets are complete.
    """
    # Distinct (design, lab) pairs, sorted by design then lab, as one integer key each: np.unique
    # over the stacked columns (axis=1) sorts structured rows and took seconds at 10,000 orders.
    width = int(option_lab.max(initial=0)) + 1
    keys, combo_of = np.unique(option_design.astype(np.int64) * width + option_lab, return_inverse=True)
    pairs = np.stack([keys // width, keys % width])
    # Only demands of known designs have options, so every pair below has its design.
    designs = {i: problem.designs[d] for i, d in enumerate(design_ids) if d in problem.designs}
    by_lab: dict[int, list[int]] = {}
    for i, j in pairs.T.tolist():
        by_lab.setdefault(j, []).append(i)
    chain_lab: list[int] = []
    chain_machines: list[list[int]] = []
    chain_granule: list[float] = []
    stock = _Stock([], [], [])
    materials = {i: design.materials_per_unit() for i, design in designs.items()}
    combo_at: dict[tuple[int, int], _Combo] = {}
    exact: set[int] = set()
    for j, design_indices in sorted(by_lab.items()):
        lab = problem.labs[j].lab
        ids = [m.id for m in lab.machines]
        # Every design this lab can make, not only those of the demands it is a candidate of: any
        # valid plan may place any of them here, and the granules below must hold for all of them.
        needs: dict[int, dict[frozenset[int], float]] = {}
        for i, design in designs.items():
            groups = step_groups(lab, design)
            if i not in design_indices and not all(groups):
                continue  # cannot be made here
            need: dict[frozenset[int], float] = {}
            for step, group in zip(design.steps, groups, strict=True):
                key = frozenset(ids.index(m) for m in group)
                need[key] = need.get(key, 0.0) + step.minutes
            needs[i] = need
        sets, complete = machine_sets({g for i in design_indices for g in needs[i]})
        if complete:
            exact.add(j)
        first = len(chain_lab)
        for s in sets:
            chain_lab.append(j)
            chain_machines.append(sorted(s))
            chain_granule.append(
                granule([sum(m for g, m in need.items() if g <= s) for need in needs.values()])
            )
        stock_index: dict[str, int] = {}
        for i in design_indices:
            chains, minutes = [], []
            for c, s in enumerate(sets):
                amount = sum(m for g, m in needs[i].items() if g <= s)
                if amount > 0:
                    chains.append(first + c)
                    minutes.append(amount)
                    if 0 < chain_granule[first + c] < amount and granule([amount]) > 0:
                        # Other designs share the set at other minutes per unit, so its granule is
                        # finer than this design's: a chain of this design's work alone on the same
                        # machines, counted in whole units of it (never more units than fit).
                        chains.append(len(chain_lab))
                        minutes.append(amount)
                        chain_lab.append(j)
                        chain_machines.append(sorted(s))
                        chain_granule.append(amount)
            rows, amounts = [], []
            for material, amount in sorted(materials[i].items()):
                if amount <= 0:
                    continue
                if material not in stock_index:
                    stock_index[material] = len(stock.lab)
                    stock.add(j, material, [materials[k].get(material, 0.0) for k in needs])
                row = stock_index[material]
                rows.append(row)
                amounts.append(amount)
                if 0 < stock.granule[row] < amount and granule([amount], AMOUNT_GRID) > 0:
                    # As for machine sets: this design's use of the material alone, in whole units.
                    rows.append(len(stock.lab))
                    amounts.append(amount)
                    stock.add(j, material, [amount])
            combo_at[i, j] = _Combo(chains, minutes, rows, amounts)
    combos = [combo_at[i, j] for i, j in pairs.T.tolist()]
    chains = _Chains(chain_lab, chain_machines, chain_granule)
    return combos, combo_of.ravel(), chains, stock, exact


def granule(amounts: list[float], grid: int = MINUTE_GRID) -> float:
    """The largest step every sum of whole units of these amounts moves by (their greatest common
    divisor, on a grid of 1/`grid`), or 0 when there is none (amounts off the grid, or all zero).

    Work on a machine set is whole units times minutes per unit, so it is a multiple of the granule
    of its designs' minutes there: free minutes short of the next multiple can never be used. The
    same holds for a material's stock.
    """
    whole = 0
    for amount in amounts:
        scaled = amount * grid
        nearest = round(scaled)
        if abs(scaled - nearest) > 1e-6 * max(1.0, scaled):
            return 0.0
        whole = math.gcd(whole, nearest)
    return whole / grid


def machine_sets(groups: set[frozenset[int]]) -> tuple[list[frozenset[int]], bool]:
    """The unions of overlapping groups (each group included), sorted; and whether that is complete.

    Hall's condition needs every union of groups, but a union of groups that share no machine is
    the sum of its parts' rows, so only connected unions are kept. Past `MAX_SETS` the groups and
    their full union are returned instead, with False.
    """
    groups = {g for g in groups if g}
    sets = set(groups)
    frontier = set(groups)
    while frontier:
        grown = {s | g for s in frontier for g in groups if s & g and not g <= s}
        frontier = grown - sets
        sets |= frontier
        if len(sets) > MAX_SETS:
            union = frozenset().union(*groups)
            return sorted({*groups, union}, key=sorted), False
    return sorted(sets, key=sorted), True


def _capacities(
    problem: Problem,
    chain_lab: list[int],
    chain_machines: list[list[int]],
    point_chain: np.ndarray,
    point_time: np.ndarray,
    point_is_due: np.ndarray,
) -> np.ndarray:
    """Free minutes of each checkpoint's machine set by its time (per machine: rate × days − the backlog
    worked by then, `backlog_by`; at a due date's checkpoint, `point_is_due`
    (`solver.model.problem.is_due_checkpoint`), in whole units where the lab counts them)."""
    capacity = np.zeros(len(point_chain))
    if not len(point_chain):
        return capacity
    bounds = np.flatnonzero(np.r_[True, point_chain[1:] != point_chain[:-1], True])
    for start, end in itertools.pairwise(bounds):
        c = int(point_chain[start])
        state = problem.labs[chain_lab[c]]
        machines = [state.lab.machines[m] for m in chain_machines[c]]
        rate = np.array([m.minutes_per_day() for m in machines])
        unit = np.array([state.unit_minutes.get(m.id, 0.0) for m in machines])
        times = point_time[start:end]
        if state.deferred_minutes:  # the backlog worked by each time (`backlog_by`)
            backlog = np.array([[backlog_by(state, m.id, float(t)) for m in machines] for t in times])
        else:
            backlog = np.array([state.backlog_minutes.get(m.id, 0.0) for m in machines])[None, :]
        free = np.maximum(0.0, rate[None, :] * times[:, None] - backlog)
        due = point_is_due[start:end]
        counted = np.where(due[:, None] & (unit > 0), unit, 0.0)
        whole = np.where(
            counted > 0, counted * np.floor(free / np.where(counted > 0, counted, 1.0) + 1e-9), free
        )
        capacity[start:end] = whole.sum(axis=1)
    return capacity


def price_table(problem: Problem, design_ids: list[str]) -> np.ndarray:
    """`problem.bid_prices` as an array [design index, lab index]: zeros where none is set."""
    table = np.zeros((len(design_ids), len(problem.labs)))
    row = {design_id: i for i, design_id in enumerate(design_ids)}
    column = {state.lab.id: j for j, state in enumerate(problem.labs)}
    for (design_id, lab_id), price in problem.bid_prices.items():
        if design_id in row and lab_id in column:
            table[row[design_id], column[lab_id]] = price
    return table
