"""From the linear relaxation's fractional units to whole units that fit every row of the network.

Four steps, each keeping every cumulative row (work due by a checkpoint ≤ free minutes by then)
and every stock row:

1. *Round down* each option's units (a hair of tolerance absorbs the LP's float noise); options at
   a lab whose rows are not exact (`Network.exact`) get none.
2. *Trim* what still exceeds a row (an LP stopped before its last cut leaves some excess): units are
   taken off the dearest options counted in that row until it holds.
3. *Fill*: the units still missing are placed greedily, most urgent demand first, each on its
   cheapest option with room (a pair already used costs no new setup), among all of the network's
   options, not only those the LP took in.
4. *Merge*: the relaxation spreads a setup over the units, so it splits orders freely; a split
   order pays a setup per lab. Each order split over labs is tried whole at each of its labs (and
   at its other candidates), on time where there is room and late otherwise, and moved when that
   costs less; a split order's smallest part is then emptied into its other labs where there is
   room (`_consolidate`), or where moving one other order out makes room (`_eject`: at 10,000 x
   2,000, seed 3, the gap to the bound went from 2.13 % to 1.84 % on the same LP).

Room is computed exactly on the network's rows: an option's work entry at checkpoint p fits when it
fits every checkpoint of its chain from p on (their free minutes less the work already counted).
"""

from __future__ import annotations

import heapq
import math
import time
from collections import defaultdict

import numpy as np

from solver.large.network import Network, entry_sums, key_starts

#: Units within this of a whole number count as that number when rounding down.
ROUND_TOLERANCE = 1e-6
#: Capacities are used up to this share: a unit that fits exactly still fits after float sums, and
#: the validator (relative tolerance 1e-6, as the bound's capacities) never finds an excess.
CAPACITY_SHARE = 1 + 1e-9
#: Other orders tried per split part and lab by `_eject`, smallest first. The later ones seldom make
#: room that pays: the 1st smallest was kept in 11 % of tries at 10,000 x 2,000 seed 8, the 4th to
#: 6th in 1.5-2 %, each try costing about 0.4 ms. With 3 instead of 6, seed 8's gap went from 1.52 %
#: to 1.56 % and its ejections took 40 % less; a region of 2,500 orders that imports most of its units
#: (4 x 2,500 x 400 federation, surge seed 1, Lombardy) spent 7 s instead of 11 in them.
EJECT_TRIES = 3
#: Options whose entries `Rows` keeps read at once; past this the kept ones are let go. An option's
#: entries as Python tuples take about 800 bytes: a continent's fill (50,000 x 5,000) touched some
#: three million options and held 2.4 GB of them, while the steps reread an option within one
#: demand's turn, seldom after.
KEPT_OPTIONS = 200_000
#: Up to this many options, asking `Rows.room` of each costs less than one `Rows.rooms` of them all.
FEW_OPTIONS = 8


class Rows:
    """Room left per checkpoint and per stock row, for whole units per option.

    The rounding asks `room` and calls `add` a few hundred thousand times at 10,000 orders, so both
    work on the slack (free minutes less the cumulative work, stock less the material used) held
    directly, and on each option's entries read once from the network's arrays and kept (up to
    KEPT_OPTIONS options at a time): a
    checkpoint's room is the least slack from it to its chain's end, one slice and one reduction.
    """

    def __init__(self, network: Network) -> None:
        n = network
        self.network = n
        self.capacity = n.point_capacity * CAPACITY_SHARE
        self.stock_capacity = n.stock_capacity * CAPACITY_SHARE
        last = np.flatnonzero(n.point_next < 0)
        self.chain_last = np.repeat(last, np.diff(np.r_[-1, last]))
        self.chain_first = np.repeat(np.r_[0, last[:-1] + 1], np.diff(np.r_[-1, last]))
        self.work_start = key_starts(n.work_option, n.options)
        self.stock_start = key_starts(n.stock_option, n.options)
        #: Free minutes by each checkpoint less the work counted by then (< 0: the row is exceeded).
        self.slack = self.capacity.copy()
        #: Stock less the material used, per stock row (a list: read and written one row at a time).
        self.stock_slack: list[float] = self.stock_capacity.tolist()
        #: Per checkpoint, the least slack from it to its chain's end: what `room` reads. Kept per
        #: chain and recomputed (one pass over the chain) when `room` reads a chain that `add`
        #: changed: an option has some four entries, and a slice and a reduction per entry and call
        #: took most of the rounding's time.
        self.suffix = np.zeros(len(n.point_chain))
        self.chain_of_point = np.repeat(np.arange(len(last)), np.diff(np.r_[-1, last]))
        self.chain_start = np.r_[0, last[:-1] + 1].tolist()
        self.chain_end = (last + 1).tolist()
        self.fresh: list[bool] = [False] * len(last)
        self._entries: dict[int, tuple[list[tuple[int, int, float, int, int]], list[tuple[int, float]]]] = {}

    def entries(self, option: int) -> tuple[list[tuple[int, int, float, int, int]], list[tuple[int, float]]]:
        """The option's work entries as (checkpoint, its chain's end + 1, minutes per unit, its chain,
        the chain's first checkpoint), and its stock entries as (stock row, amount per unit)."""
        found = self._entries.get(option)
        if found is None:
            n = self.network
            a, b = int(self.work_start[option]), int(self.work_start[option + 1])
            points = n.work_point[a:b]
            work = list(
                zip(
                    points.tolist(),
                    (self.chain_last[points] + 1).tolist(),
                    n.work_amount[a:b].tolist(),
                    self.chain_of_point[points].tolist(),
                    self.chain_first[points].tolist(),
                    strict=True,
                )
            )
            a, b = int(self.stock_start[option]), int(self.stock_start[option + 1])
            stock = list(zip(n.stock_row[a:b].tolist(), n.stock_amount[a:b].tolist(), strict=True))
            if len(self._entries) >= KEPT_OPTIONS:
                self._entries.clear()
            found = self._entries[option] = (work, stock)
        return found

    def load(self, units: np.ndarray) -> None:
        """Set the rows' use from whole units per option."""
        n = self.network
        work = entry_sums(n.work_point, n.work_amount, units, n.work_option, len(n.point_chain))
        cumulative = np.zeros(len(n.point_chain))
        for first, last in zip(
            np.unique(self.chain_first).tolist(), np.unique(self.chain_last).tolist(), strict=True
        ):
            cumulative[first : last + 1] = np.cumsum(work[first : last + 1])
        self.slack = self.capacity - cumulative
        self.fresh = [False] * len(self.fresh)
        used = entry_sums(n.stock_row, n.stock_amount, units, n.stock_option, len(n.stock_capacity))
        self.stock_slack = (self.stock_capacity - used).tolist()

    def room(self, option: int) -> int:
        """Whole units of `option` that still fit every row it counts in."""
        work, stock = self.entries(option)
        fit = math.inf  # the least quotient: its floor is the least of the floors
        fresh, suffix = self.fresh, self.suffix
        for p, end, amount, chain, first in work:
            if not fresh[chain]:
                suffix[first:end] = np.minimum.accumulate(self.slack[first:end][::-1])[::-1]
                fresh[chain] = True
            slack = suffix.item(p)
            if slack < amount:
                return 0
            quotient = slack / amount
            if quotient < fit:
                fit = quotient
        stock_slack = self.stock_slack
        for s, amount in stock:
            slack = stock_slack[s]
            if slack < amount:
                return 0
            quotient = slack / amount
            if quotient < fit:
                fit = quotient
        return math.floor(fit) if fit < 1 << 40 else 1 << 40

    def rooms(self, options: np.ndarray) -> np.ndarray:
        """Whole units of each option that fit on its own (as `room`, at most one more where a float
        quotient rounds up to a whole number): one pass over many options, to pass over those with no
        room without asking `room` of each. Room only shrinks as units are added, so an option with no
        room here has none after adding others either."""
        n = self.network
        fit = np.full(len(options), np.inf)
        entry, has, first = _entries_of(self.work_start, options)
        if len(entry):
            points = n.work_point[entry]
            fresh, suffix = self.fresh, self.suffix
            for chain in np.unique(self.chain_of_point[points]).tolist():
                if not fresh[chain]:
                    start, end = self.chain_start[chain], self.chain_end[chain]
                    suffix[start:end] = np.minimum.accumulate(self.slack[start:end][::-1])[::-1]
                    fresh[chain] = True
            fit[has] = np.minimum.reduceat(suffix[points] / n.work_amount[entry], first)
        entry, has, first = _entries_of(self.stock_start, options)
        if len(entry):
            slack = np.array([self.stock_slack[s] for s in n.stock_row[entry].tolist()])
            fit[has] = np.minimum(fit[has], np.minimum.reduceat(slack / n.stock_amount[entry], first))
        return np.where(fit < 1 << 40, np.floor(np.maximum(fit, 0.0)), 1 << 40).astype(np.int64)

    def add(self, option: int, units: int) -> None:
        """Count `units` more (or fewer, when negative) of `option`."""
        work, stock = self.entries(option)
        fresh = self.fresh
        for p, end, amount, chain, _ in work:
            self.slack[p:end] -= amount * units
            fresh[chain] = False
        for s, amount in stock:
            self.stock_slack[s] -= amount * units

    def excess_points(self) -> np.ndarray:
        """Checkpoints whose cumulative work exceeds their free minutes."""
        return np.flatnonzero(self.slack < 0)

    def excess_stock(self) -> np.ndarray:
        """Stock rows used beyond the stock."""
        return np.flatnonzero(np.array(self.stock_slack) < 0)


def _entries_of(start: np.ndarray, options: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries of the options (each option's entries run from `start[o]` to `start[o + 1]`), which
    options have any, and where each of those options' entries begin in the list."""
    counts = start[options + 1] - start[options]
    ends = np.cumsum(counts)
    begin = ends - counts
    entry = np.repeat(start[options] - begin, counts) + np.arange(int(ends[-1]) if len(ends) else 0)
    has = counts > 0
    return entry, has, begin[has]


def _place(
    rows: Rows,
    units: np.ndarray,
    options: np.ndarray,
    left: int,
    cost: np.ndarray | None = None,
    budget: float = math.inf,
) -> dict[int, int]:
    """Up to `left` units on the options in their order, as many on each as fit (units per option
    placed); with `cost`, it stops once the units placed cost `budget` or more."""
    placed: dict[int, int] = {}
    spent = 0.0
    for o in options.tolist():
        if left <= 0 or spent >= budget:
            break
        take = min(left, rows.room(o))
        if take > 0:
            rows.add(o, take)
            units[o] += take
            placed[o] = take
            left -= take
            if cost is not None:
                spent += cost[o] * take
    return placed


def round_units(network: Network, fractional: np.ndarray, urgency: np.ndarray) -> np.ndarray:
    """Whole units per option that fit every row (see the module docstring).

    `urgency` orders the demands for the fill (larger first): the shortage penalty per unit.
    """
    return round_units_by(network, fractional, urgency)[0]


def round_units_by(
    network: Network,
    fractional: np.ndarray,
    urgency: np.ndarray,
    deadline: float = math.inf,
    fill_deadline: float = math.inf,
    polish: bool = True,
) -> tuple[np.ndarray, bool, Rows | None]:
    """`round_units`, whose merge stops at `deadline` and fill at `fill_deadline` (`time.perf_counter()`
    instants; units not placed by then are short, a valid plan still): the units, whether both went
    through, and the rows with the units counted in (None without options), for a step after.
    Without `polish`, the plan stops after the fill (`polished` can finish it later)."""
    n = network
    units = np.floor(np.maximum(0.0, fractional) + ROUND_TOLERANCE).astype(np.int64)
    if not n.options:
        return units, True, None
    units[~n.exact] = 0
    placed = np.bincount(n.demand, weights=units, minlength=len(n.quantity)).astype(np.int64)
    over = np.flatnonzero(placed > n.quantity)
    for d in over.tolist():  # float noise cannot round a demand past its quantity, but be sure
        for o in np.flatnonzero(n.demand == d)[::-1].tolist():
            take = min(int(units[o]), int(placed[d] - n.quantity[d]))
            units[o] -= take
            placed[d] -= take
    rows = Rows(n)
    rows.load(units)
    _trim(rows, units, fill_deadline)
    if not _fill(rows, units, urgency, fill_deadline):
        return units, False, rows
    if not polish:
        return units, True, rows
    return units, polished(rows, units, deadline), rows


def polished(rows: Rows, units: np.ndarray, deadline: float = math.inf) -> bool:
    """Make a full plan cheaper in place: its split orders merged, consolidated and joined by
    ejection (`_merge`, `_consolidate`, `_eject`); whether every step ended before `deadline`."""
    return (
        _merge(rows, units, deadline)
        and _consolidate(rows, units, deadline)
        and _eject(rows, units, deadline)
        and _consolidate(rows, units, deadline)
    )


def _trim(rows: Rows, units: np.ndarray, deadline: float = math.inf) -> None:
    """Take units off the dearest options of every row in excess until none is.

    Rows are taken in order, checkpoints before stock rows: taking units off only ever adds room, so
    no row that holds can come to exceed. Past `deadline` every option counted in a row still in
    excess is emptied: a valid plan at once, with those units left to the fill or short.
    """
    if not (_trim_checkpoints(rows, units, deadline) and _trim_stock(rows, units, deadline)):
        _empty_exceeded(rows, units)


def _trim_checkpoints(rows: Rows, units: np.ndarray, deadline: float) -> bool:
    """The trim's checkpoint rows (see `_trim`); False when the deadline came first (or, never seen,
    a row in excess with no unit left to take off).

    A checkpoint's row counts the work of every entry from its chain's first checkpoint to it, so the
    entries of a chain go into one heap, dearest first (ties in the entries' order), as the
    checkpoints still in excess are reached: each entry is sorted once per chain, and a checkpoint
    that units taken off before it left with room costs nothing. (A search and sort of a
    checkpoint's entries for each row in excess, then a scan of them per unit taken, took 26 to 32 s
    of a continent's 120 when the clock cut its LP after two rounds; 937,000 checkpoints were in
    excess, and units were taken off at 25,000 of them. Now 3.7 s.)
    """
    n = rows.network
    by_point = np.argsort(n.work_point, kind="stable")
    # Where each checkpoint's entries begin among the entries sorted by checkpoint (one search for all).
    first_entry = key_starts(n.work_point, len(rows.slack)).tolist()
    dearest: list[tuple[float, int]] = []  # (minus the cost, entry) of the chain's entries reached
    chain, reached = -1, -1  # the chain in the heap, and its first checkpoint whose entries are not
    for p in rows.excess_points().tolist():
        if rows.slack[p] >= 0:  # units taken off earlier in its chain gave it room
            continue
        if rows.chain_first[p] != chain:
            chain = reached = int(rows.chain_first[p])
            dearest = []
        entries = by_point[first_entry[reached] : first_entry[p + 1]]
        entries = entries[units[n.work_option[entries]] > 0]  # an emptied option never fills again here
        for cost, entry in zip((-n.cost[n.work_option[entries]]).tolist(), entries.tolist(), strict=True):
            heapq.heappush(dearest, (cost, entry))
        reached = p + 1
        while rows.slack[p] < 0:
            if time.perf_counter() >= deadline:
                return False
            while dearest and units[n.work_option[dearest[0][1]]] <= 0:
                heapq.heappop(dearest)
            if not dearest:  # nothing left to take: only emptying the chain keeps its rows
                return False
            entry = dearest[0][1]
            o = int(n.work_option[entry])
            take = max(1, min(int(units[o]), math.ceil(-rows.slack[p] / n.work_amount[entry])))
            rows.add(o, -take)
            units[o] -= take
    return True


def _trim_stock(rows: Rows, units: np.ndarray, deadline: float) -> bool:
    """The trim's stock rows (see `_trim`), each on its own; False when the deadline came first (or,
    never seen, a row in excess with no unit left to take off)."""
    n = rows.network
    in_excess = rows.excess_stock().tolist()
    if not in_excess:
        return True
    by_row = np.argsort(n.stock_row, kind="stable")
    row_sorted = n.stock_row[by_row]
    # Searched by values of the array's own type: a value of another would have numpy convert the
    # whole array at every search (2 ms a search with 32-bit indices at 20,000 orders).
    row_of = row_sorted.dtype.type
    for s in in_excess:
        a = int(np.searchsorted(row_sorted, row_of(s), "left"))
        b = int(np.searchsorted(row_sorted, row_of(s), "right"))
        entries = np.sort(by_row[a:b])  # in the order of the entries, as ties are broken by it
        while rows.stock_slack[s] < 0:
            if time.perf_counter() >= deadline:
                return False
            options, amounts = n.stock_option[entries], n.stock_amount[entries]
            keep = units[options] > 0
            options, amounts = options[keep], amounts[keep]
            if not len(options):
                return False
            k = int(np.argmax(n.cost[options]))
            o = int(options[k])
            take = max(1, min(int(units[o]), math.ceil(-rows.stock_slack[s] / amounts[k])))
            rows.add(o, -take)
            units[o] -= take
    return True


def _empty_exceeded(rows: Rows, units: np.ndarray) -> None:
    """Empty every option counted in a chain with a row in excess or in a stock row in excess."""
    n = rows.network
    chains = np.unique(n.point_chain[rows.excess_points()])
    out = np.zeros(n.options, dtype=bool)
    out[n.work_option[np.isin(n.point_chain[n.work_point], chains)]] = True
    out[n.stock_option[np.isin(n.stock_row, rows.excess_stock())]] = True
    units[out] = 0
    rows.load(units)


def _fill(rows: Rows, units: np.ndarray, urgency: np.ndarray, deadline: float = math.inf) -> bool:
    """Place the missing units greedily: most urgent demand first, cheapest option with room first.

    Stops at `deadline` (what is left unplaced is short: still a valid plan); False when it did."""
    n = rows.network
    placed = np.bincount(n.demand, weights=units, minlength=len(n.quantity)).astype(np.int64)
    missing = n.quantity - placed
    starts = key_starts(n.demand, len(n.quantity))
    used_lab: dict[tuple[int, int], bool] = {}
    for o in np.flatnonzero(units > 0).tolist():
        used_lab[int(n.demand[o]), int(n.lab[o])] = True
    for d in sorted(np.flatnonzero(missing > 0).tolist(), key=lambda d: (-urgency[d], d)):
        if time.perf_counter() >= deadline:
            return False
        left = int(missing[d])
        options = np.arange(starts[d], starts[d + 1])
        options = options[n.exact[options]]
        # Cheapest per unit first, a pair already used being spared its setup.
        new_pair = np.array([(d, int(n.lab[o])) not in used_lab for o in options.tolist()], dtype=bool)
        effective = n.cost[options] + np.where(new_pair, n.setup / max(1, left), 0.0)
        options = options[np.argsort(effective, kind="stable")]
        for o in options[rows.rooms(options) > 0].tolist():
            if left <= 0:
                break
            take = min(left, rows.room(o))
            if take > 0:
                rows.add(o, take)
                units[o] += take
                left -= take
                used_lab[d, int(n.lab[o])] = True
    return True


def _merge(rows: Rows, units: np.ndarray, deadline: float = math.inf) -> bool:
    """Move each order split over several labs to the one lab where it costs least, if cheaper."""
    n = rows.network
    starts = key_starts(n.demand, len(n.quantity))
    used = units > 0
    pairs = np.bincount(n.demand[used], minlength=len(n.quantity))
    # Two options of one pair (on time, late) count once: count distinct labs.
    split = [
        d
        for d in np.flatnonzero(pairs > 1).tolist()
        if len(set(n.lab[starts[d] : starts[d + 1]][used[starts[d] : starts[d + 1]]].tolist())) > 1
    ]
    for d in split:
        if time.perf_counter() >= deadline:
            return False
        options = np.arange(starts[d], starts[d + 1])
        held = {o: int(units[o]) for o in options.tolist() if units[o] > 0}
        total = sum(held.values())
        before = sum(n.cost[o] * u for o, u in held.items()) + n.setup * len({int(n.lab[o]) for o in held})
        for o, u in held.items():
            rows.add(o, -u)
            units[o] = 0
        best: tuple[float, dict[int, int]] = (before, held)
        # A lab cannot do better than all units at its cheapest option: try labs by that, and stop
        # once it is no cheaper than the best so far. A lab whose options' rooms, each on its own,
        # do not add up to the order cannot take it whole: it is passed over without placing.
        exact = options[n.exact[options]]
        floor_of: dict[int, float] = {}
        fits_at: dict[int, int] = defaultdict(int)
        options_at: dict[int, list[tuple[float, int, int]]] = defaultdict(list)
        labs, costs, rooms = n.lab[exact].tolist(), n.cost[exact].tolist(), rows.rooms(exact).tolist()
        for o, lab, cost, room in zip(exact.tolist(), labs, costs, rooms, strict=True):
            floor_of[lab] = min(floor_of.get(lab, math.inf), total * cost + n.setup)
            fits_at[lab] += room
            options_at[lab].append((cost, o, room))
        for lab in sorted(floor_of, key=lambda j: (floor_of[j], j)):
            if floor_of[lab] >= best[0] - 1e-9:
                break
            if fits_at[lab] < total:
                continue
            by_cost = sorted(options_at[lab], key=lambda c: c[0])  # on time before late
            # The least the lab could cost, each option filled to its own room, cheapest first: the
            # units placed together never fit better.
            least, left = 0.0, total
            for cost, _, room in by_cost:
                least += cost * min(left, room)
                left -= min(left, room)
            if least + n.setup >= best[0] - 1e-9:
                continue
            at = [o for _, o, _ in by_cost]
            placed: dict[int, int] = {}
            left = total
            for o in at:
                take = min(left, rows.room(o))
                if take > 0:
                    rows.add(o, take)
                    placed[o] = take
                    left -= take
            if left == 0:
                cost = sum(n.cost[o] * u for o, u in placed.items()) + n.setup
                if cost < best[0] - 1e-9:
                    best = (cost, placed)
            for o, u in placed.items():
                rows.add(o, -u)
        for o, u in best[1].items():
            rows.add(o, u)
            units[o] = u
    return True


def _consolidate(rows: Rows, units: np.ndarray, deadline: float = math.inf) -> bool:
    """Empty a split order's smallest parts into its other labs where that saves a setup.

    `_merge` moves a split order whole to one lab; in a crowded place no lab has room for all of it,
    yet the labs already serving it may have room for one part more. Each part, smallest first, is
    taken off and placed on the order's options at its other labs (cheapest first); the move stays
    when the setup saved outweighs the dearer units, and is undone otherwise.
    """
    n = rows.network
    starts = key_starts(n.demand, len(n.quantity))
    used = units > 0
    pairs = np.bincount(n.demand[used], minlength=len(n.quantity))
    for d in np.flatnonzero(pairs > 1).tolist():
        if time.perf_counter() >= deadline:
            return False
        options = np.arange(starts[d], starts[d + 1])
        options = options[n.exact[options]]
        while True:
            held = options[units[options] > 0]
            labs = sorted({int(n.lab[o]) for o in held.tolist()})
            if len(labs) < 2:
                break
            per_lab = {lab: int(units[held[n.lab[held] == lab]].sum()) for lab in labs}
            moved = False
            for lab in sorted(labs, key=lambda j: (per_lab[j], j)):
                part = held[n.lab[held] == lab]
                taken = {int(o): int(units[o]) for o in part.tolist()}
                for o, u in taken.items():
                    rows.add(o, -u)
                    units[o] = 0
                left = sum(taken.values())
                saved = n.setup + sum(n.cost[o] * u for o, u in taken.items())
                targets = options[(n.lab[options] != lab) & np.isin(n.lab[options], labs)]
                targets = targets[np.argsort(n.cost[targets], kind="stable")]
                placed = _place(rows, units, targets[rows.rooms(targets) > 0], left, n.cost, saved)
                spent = sum(n.cost[o] * u for o, u in placed.items())
                if sum(placed.values()) == left and spent < saved - 1e-9:
                    moved = True
                    break
                for o, u in placed.items():
                    rows.add(o, -u)
                    units[o] -= u
                for o, u in taken.items():
                    rows.add(o, u)
                    units[o] = u
            if not moved:
                break
    return True


def _eject(rows: Rows, units: np.ndarray, deadline: float = math.inf, tries: int = EJECT_TRIES) -> bool:
    """Join a split order's smallest part to one of its other labs by moving another order out of it.

    `_consolidate` moves a part only where there is room. In a crowded place the order's other lab is
    full of other orders' work; one of those, moved whole to its own cheapest other option with room
    (a lab it already uses, or a new one at its setup), may free enough. The two moves are kept
    together when they cost less than before (the split's setup saved outweighs the dearer units),
    and undone otherwise. At most `tries` other orders are tried per part and lab, smallest first.
    """
    n = rows.network
    starts = key_starts(n.demand, len(n.quantity))
    by_lab = np.argsort(n.lab, kind="stable")
    lab_start = key_starts(n.lab[by_lab], int(n.lab.max(initial=-1)) + 1)

    def cost_of(placed: dict[int, int]) -> float:
        return float(sum(n.cost[o] * u for o, u in placed.items()))

    def place(options: np.ndarray, left: int, rank: np.ndarray) -> dict[int, int]:
        options = options[np.argsort(rank, kind="stable")]
        # The first few are asked one by one (the units mostly go there); the rest are passed over
        # at once where they have no room.
        placed = _place(rows, units, options[:FEW_OPTIONS], left)
        rest = options[FEW_OPTIONS:]
        left -= sum(placed.values())
        if left > 0 and len(rest) > FEW_OPTIONS:
            rest = rest[rows.rooms(rest) > 0]
        if left > 0:
            placed |= _place(rows, units, rest, left)
        return placed

    def undo(placed: dict[int, int]) -> None:
        for o, u in placed.items():
            rows.add(o, -u)
            units[o] -= u

    used = units > 0
    pairs = np.bincount(n.demand[used], minlength=len(n.quantity))
    for d in np.flatnonzero(pairs > 1).tolist():
        if time.perf_counter() >= deadline:
            return False
        options = np.arange(starts[d], starts[d + 1])
        options = options[n.exact[options]]
        held = options[units[options] > 0]
        labs = sorted({int(n.lab[o]) for o in held.tolist()})
        if len(labs) < 2:
            continue
        per_lab = {lab: int(units[held[n.lab[held] == lab]].sum()) for lab in labs}
        small = min(labs, key=lambda j: (per_lab[j], j))
        part = {int(o): int(units[o]) for o in held[n.lab[held] == small].tolist()}
        size = sum(part.values())
        done = False
        # What d's part and its pair cost, with e's pair at the target: what the two moves may save.
        gained = cost_of(part) + 2 * n.setup
        for target in sorted((j for j in labs if j != small), key=lambda j: (-per_lab[j], j)):
            mine = options[n.lab[options] == target]
            if not len(mine):
                continue
            # d's part costs at least this at the target, wherever e's units go.
            got_floor = size * float(n.cost[mine].min())
            at_target = by_lab[lab_start[target] : lab_start[target + 1]]
            others = at_target[(units[at_target] > 0) & (n.demand[at_target] != d)]
            victims = sorted({int(n.demand[o]) for o in others.tolist()})
            victims.sort(key=lambda e: (int(units[others[n.demand[others] == e]].sum()), e))
            for e in victims[:tries]:
                moved = {int(o): int(units[o]) for o in others[n.demand[others] == e].tolist()}
                left = sum(moved.values())
                e_options = np.arange(starts[e], starts[e + 1])
                e_options = e_options[n.exact[e_options] & (n.lab[e_options] != target)]
                if not len(e_options):
                    continue
                e_labs = {int(n.lab[o]) for o in e_options[units[e_options] > 0].tolist()}
                # A pair that cannot pay off however the units fit is not tried: the least either
                # move can cost, and a new lab's setup for e when it has no other lab already.
                floor = got_floor + left * float(n.cost[e_options].min()) + (0 if e_labs else n.setup)
                if _cannot_pay(floor, gained + cost_of(moved)):
                    continue
                # e off the target lab; d's part stays on its own lab until d fits at the target
                # (labs share no row, so it changes no room there).
                undo(moved)
                got = place(mine, size, n.cost[mine])
                if sum(got.values()) == size:
                    undo(part)  # d's part off its lab, where e may go
                    new_pair = [int(n.lab[o]) not in e_labs for o in e_options.tolist()]
                    rank = n.cost[e_options] + np.where(new_pair, n.setup / max(1, left), 0.0)
                    back = place(e_options, left, rank)
                    if sum(back.values()) == left:
                        new_labs = {int(n.lab[o]) for o in back} - e_labs
                        # d's pair at its small lab and e's at the target are both given up.
                        after = cost_of(got) + cost_of(back) + n.setup * len(new_labs)
                        if after < gained + cost_of(moved) - 1e-9:
                            done = True
                            break
                    undo(back)
                    for o, u in part.items():
                        rows.add(o, u)
                        units[o] += u
                undo(got)
                for o, u in moved.items():
                    rows.add(o, u)
                    units[o] += u
            if done:
                break
    return True


def _cannot_pay(floor: float, before: float) -> bool:
    """Whether a move whose cost cannot fall below `floor` cannot beat `before` either (`_eject`
    keeps a move only when it costs less than before by more than 1e-9)."""
    return floor >= before - 1e-9
