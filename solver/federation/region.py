"""One region's continuous plan: an LP over its own cells, its shadow prices, offers, bids and cost.

Why a continuous LP (OR-Tools GLOP) and not the integer allocator: the net needs, every round and for
every region, a plan cost and *shadow prices* (the marginal cost of one more unit of capacity use),
and an LP gives both exactly and fast; the integer allocator gives no duals and takes seconds at
2,500 orders. The integer plans come once, after the rounds (`solver.federation.plans`).

The LP is aggregated to stay small whatever the region's size:

- demand: orders grouped by (design, cell, day window, priority), at the cell's centre;
- supply: labs grouped by cell; per cell, machine minutes per *class* (all machines of a process,
  and those of a process that meet a step's required tags) free by each window and by the horizon,
  and stock per material;
- units made on time use the minutes free by their window; late units (paying the lateness penalty)
  only those free by the horizon; units not made pay the shortage penalty. Costs follow
  `solver.model.objective`: km to the delivery place, a day of waiting at the priority's time weight.

It is a relaxation of the region's real plan (a unit's steps may use different labs of one cell),
used for prices and for the commit rule, never sent to labs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from protocol.model import PRIORITIES, Design, Location, Machine, Step
from solver.federation.cells import CELL_DEG, cell_centre, cell_of, window_of
from solver.federation.market import Offer, Trade
from solver.federation.region_lp import Export, Skeleton, activity, layout, skeleton, solve_layout
from solver.model.geo import haversine_km
from solver.model.objective import overdue_weight
from solver.model.problem import Problem, SolveParams, horizon_days

#: Own cells each demand group (or hosted trade) may be made in: the nearest that can make it.
OWN_CELLS = 8
#: Of those, the nearest where late units may be made (late units are a last resort before shortage).
LATE_CELLS = 3
#: Import options per demand group and host region: the offers of its design and window whose units
#: cost least landed at the group (`_cheapest_offers`; the nearest until 5 December 2026). With
#: 3, a region of 2,500 orders could import only what its peers' few cells nearest each group
#: offered in a round, and 10 rounds ended at cost_ratio 1.029 (4 x 2,500 x 400, surge seed 1); with
#: 8, at 1.004. At 4 x 120 x 24 (surge seeds 1-8) the worst seed was 1.0101 with 3 and 1.0116 with 8.
IMPORT_CELLS = 8
#: Share of a cell's capacity by a window that a host offers even when all of it is in use (priced at
#: its shadow price: what the host loses by giving it up).
OFFER_SHARE = 0.25
#: GLOP parameters tried in turn when a solve does not end OPTIMAL: with its defaults, GLOP ends
#: IMPRECISE on about a third of these badly scaled LPs (shortage penalties of 1e7 beside minutes of
#: 3; 46 of the 135 solves of the net at 4 x 2,500 x 400, surge seed 1), and without its presolve
#: every one of those solved.
RETRIES = ("use_preprocessing: false", "use_dual_simplex: true", "use_scaling: false use_dual_simplex: true")
#: Horizon window index (a key of capacity rows beyond every day window).
HORIZON = 10_000

Class = tuple[str, ...]


def step_classes(step: Step) -> list[Class]:
    """The capacity classes a step draws on: its process, and its process with its required tags."""
    classes: list[Class] = [("process", step.process)]
    if step.requires:
        classes.append(("tags", step.process, *sorted(f"{k}={v}" for k, v in step.requires.items())))
    return classes


@dataclass
class Group:
    """Units of one design, due in one window, delivered in one cell, at one priority."""

    design: str
    cell: str
    window: int
    priority: str
    location: Location
    units: int
    orders: list[str] = field(default_factory=list)  # most urgent first, as trades cover them
    quantities: list[int] = field(default_factory=list)  # units of each of those orders


@dataclass
class CellSupply:
    """What a cell's labs can do: minutes per class by window, stock per material."""

    cell: str
    centre: Location
    minutes: dict[Class, dict[int, float]]
    stock: dict[str, float]
    can_make: set[str]


@dataclass(frozen=True)
class Solution:
    """A solved region LP: its cost, shadow prices, import use and slack, as the net needs them."""

    cost: float
    #: Marginal cost of one more unit of a design made in a cell by a window (own capacity only).
    prices: dict[tuple[str, str, int], float]
    #: Units of a design a cell could still make by a window without giving up its own plan.
    spare: dict[tuple[str, str, int], float]
    #: Capacity-based units of a design a cell can make by a window, all its minutes counted.
    whole: dict[tuple[str, str, int], float]
    #: Imports the plan would take: (offer id, group index) -> units.
    imports: dict[tuple[str, int], float]
    #: The value of one more unit to each demand group (its demand row's dual).
    values: dict[int, float]
    #: Where the plan makes each trade it hosts: trade id -> cell -> units.
    made: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Stock a cell's plan leaves unused, per (cell, material); filled only when `solve` is asked for
    #: it (`stock_left=True`: the emergency fast path caps a host's spare units by it).
    stock_left: dict[tuple[str, str], float] = field(default_factory=dict)
    #: Units the plan leaves short: of its own groups, and of the trades it hosts.
    short_units: float = 0.0


class RegionModel:
    """One region's data and the LP built from it (see the module docstring)."""

    def __init__(
        self,
        region: str,
        problem: Problem,
        params: SolveParams,
        cell_deg: float = CELL_DEG,
        own_cells: int = OWN_CELLS,
        windows: tuple[int, ...] = (),
    ) -> None:
        self.region = region
        #: Day windows to count capacity (and so to offer) by, beyond those of the region's own
        #: demand: a planner among live peers does not know their windows, so it offers for all of
        #: the coming days (planner.fed_rounds).
        self.extra_windows = windows
        self.problem = problem
        self.params = params
        self.cell_deg = cell_deg
        self.designs: dict[str, Design] = problem.designs
        self.horizon = horizon_days(problem, params)
        self.groups = _groups(problem, cell_deg)
        self.supply = _supply(problem, self.designs, self.horizon, cell_deg, self._windows())
        self.own_cells = own_cells
        self.near = [self.near_cells(g.design, g.location) for g in self.groups]
        self._coefficient_cache: dict[tuple[str, str, int | None], list[tuple[tuple, float]]] = {}
        self._skeleton: Skeleton | None = None
        self._export_cache: dict[tuple[str, str, str], list[tuple[str, float]]] = {}
        self._short_cost = np.zeros(0)

    def _coefficients(self, cell: str, design: str, window: int | None) -> list[tuple[tuple, float]]:
        """The rows one unit of `design` made in `cell` draws on, with its minutes or amounts there.

        On time by `window`: the minutes of each class free by that window and every later one; late
        (`window` None): only those free by the horizon. Cached: the same for every solve.
        """
        key = (cell, design, window)
        if key not in self._coefficient_cache:
            supply = self.supply[cell]
            out: dict[tuple, float] = defaultdict(float)
            for step in self.designs[design].steps:
                for cls in step_classes(step):
                    later = [w for w in supply.minutes.get(cls, {}) if window is None or w >= window]
                    if later:
                        bucket = HORIZON if window is None else min(later)
                        out[cell, cls, bucket] += step.minutes
                for material, amount in step.materials.items():
                    if material in supply.stock:
                        out[cell, material] += amount
            self._coefficient_cache[key] = list(out.items())
        return self._coefficient_cache[key]

    def _windows(self) -> list[int]:
        own = {window_of(self.problem.now, d.order.due_at) for d in self.problem.demands}
        return sorted(own | set(self.extra_windows))

    def exposed_orders(self, units: dict[int, int]) -> set[str]:
        """The orders whose units make up `units` of each group (group index -> units), taken most
        urgent first as trades cover them: the orders whose quantity was counted in a bid."""
        found = set()
        for gi, wanted in units.items():
            group = self.groups[gi]
            for order_id, quantity in zip(group.orders, group.quantities, strict=True):
                if wanted <= 0:
                    break
                found.add(order_id)
                wanted -= quantity
        return found

    # --- the LP -----------------------------------------------------------------------------------

    def solve(
        self,
        offers: list[Offer] | None = None,
        imports: list[Trade] | None = None,
        exports: list[Trade] | None = None,
        stock_left: bool = False,
    ) -> Solution:
        """Solve the region's LP with the given import options, trades it receives and trades it makes.

        `offers` are other regions' offers the plan may buy from (at their price plus transport);
        `imports` are trades whose units arrive for this region's demand (they cost it nothing more:
        the host counts making and carrying them); `exports` are trades this region must make.
        The cost reported leaves out what offers would be paid, so the regions' costs add up to the
        federation's cost. With `stock_left`, the solution also says how much of each cell's stock
        its plan leaves unused.

        The LP (`solver.federation.region_lp`): machine time as buckets, row (cell, class, w)
        balancing the work of window w's bucket with the minutes used by the end of it, `used[w] -
        used[w before] = work`, `used[w]` at most the minutes free by w (one coefficient per unit
        and class, whatever the windows); per group, its units short, made on time in its near
        cells, late in the nearest LATE_CELLS, or bought from the cheapest offers
        (`_cheapest_offers`); per hosted trade, its units short or made in its cells
        (`export_cells`).
        """
        offers = offers or []
        exports = exports or []
        p = self.params
        base = self._base()
        demand_left = np.asarray(_demand_after_imports(self.groups, imports or []), dtype=np.float64)
        offer_index = {o.offer_id: i for i, o in enumerate(offers)}
        offers_by = _offers_by_design_window(offers)
        bought: list[list[tuple[int, float]]] = []
        # Per import option, in the LP's order: its offer, group, and what buying a unit pays out.
        paid: list[tuple[str, int, float]] = []
        for gi, g in enumerate(self.groups):
            options: list[tuple[int, float]] = []
            if demand_left[gi] > 0:
                tw = p.time_weight[g.priority]
                usable = offers_by.get((g.design, g.window), [])
                for offer, km in _cheapest_offers(usable, g.location, g.window, self.cell_deg, p, tw):
                    options.append((offer_index[offer.offer_id], offer.price + _landed(p, km, tw, g.window)))
                    paid.append((offer.offer_id, gi, offer.price + p.km_weight * km))
            bought.append(options)
        made_in: list[list[str]] = []
        hosted = []
        for trade in exports:
            tw = p.time_weight[trade.priority]
            cells = self.export_cells(trade)
            made_in.append([cell for cell, _ in cells])
            rows_of = self._export_rows
            hosted.append(
                Export(
                    units=float(trade.units),
                    short_cost=p.shortage_penalty[trade.priority],
                    options=[
                        (
                            _landed(p, km, tw, trade.window),
                            rows_of(base, cell, trade.design, trade.window),
                        )
                        for cell, km in cells
                    ],
                )
            )
        offer_units = np.array([o.units for o in offers], dtype=np.float64)
        lp = layout(base, demand_left, self._short_cost, offer_units, bought, hosted)
        solved = solve_layout(lp, RETRIES)
        if not solved.optimal:
            raise RuntimeError(f"region {self.region!r}: its LP did not solve")
        x = solved.primal
        # What the plan would pay for imports (price and carriage) is left out: once a trade is made,
        # its host counts making and carrying it.
        bought_units = x[lp.import_columns[lp.import_columns >= 0]].tolist()
        cost = solved.value - sum(u * money for u, (_, _, money) in zip(bought_units, paid, strict=True))
        taken: dict[str, dict[int, float]] = {}
        for units, (offer_id, gi, _) in zip(bought_units, paid, strict=True):
            taken.setdefault(offer_id, {})[gi] = units
        solution = replace(
            self._solution(cost, base, x, solved.dual, taken, lp.demand_rows),
            short_units=sum(x[lp.short_columns].tolist()),
        )
        for trade, cells, columns in zip(exports, made_in, lp.export_columns, strict=True):
            for cell, units in zip(cells, x[columns].tolist(), strict=True):
                if units > 1e-6:
                    solution.made.setdefault(trade.trade_id, {})[cell] = units
        if stock_left:
            used = activity(lp, x, base.stock_rows)
            for key, row, units in zip(base.stock_keys, base.stock_rows.tolist(), used.tolist(), strict=True):
                solution.stock_left[key] = max(0.0, float(lp.row_upper[row]) - units)
        return solution

    def _export_rows(self, base: Skeleton, cell: str, design: str, window: int) -> list[tuple[int, float]]:
        """The base rows a unit of `design` made in `cell` by `window` draws on, with its coefficients."""
        return [(base.row_of[key], c) for key, c in self._coefficients(cell, design, window)]

    def _base(self) -> Skeleton:
        """The part of the LP every solve shares (built at the first solve)."""
        if self._skeleton is None:
            p = self.params
            option_lists = []
            for gi, g in enumerate(self.groups):
                tw = p.time_weight[g.priority]
                past_due = overdue_weight(p.time_weight, g.priority) * max(0.0, self.horizon - g.window)
                options: list[tuple[float, str, str, int | None]] = []
                for rank, (cell, km) in enumerate(self.near[gi]):
                    options.append((_landed(p, km, tw, g.window), cell, g.design, g.window))
                    if rank < LATE_CELLS:
                        late = p.km_weight * km + p.lateness_penalty[g.priority]
                        late = late + tw * self.horizon + past_due
                        options.append((late, cell, g.design, None))
                option_lists.append(options)
            self._skeleton = skeleton(self.supply, option_lists, self._coefficients)
            self._short_cost = np.array(
                [p.shortage_penalty[g.priority] for g in self.groups], dtype=np.float64
            )
        return self._skeleton

    def _solution(
        self,
        cost: float,
        base: Skeleton,
        x: np.ndarray,
        dual: np.ndarray,
        taken: dict[str, dict[int, float]],
        demand_rows: np.ndarray,
    ) -> Solution:
        # One more minute of work in a bucket raises what it must balance: its marginal cost is the
        # bucket row's dual, negated (the row reads `work - used + used before = 0`).
        duals = dict(zip(base.bucket_keys, np.maximum(0.0, -dual[base.bucket_rows]).tolist(), strict=True))
        slack = dict(zip(base.bucket_keys, (base.bucket_upper - x[: base.buckets]).tolist(), strict=True))
        stock_price = np.maximum(0.0, -dual[base.stock_rows]).tolist()
        stock_duals = dict(zip(base.stock_keys, stock_price, strict=True))
        prices: dict[tuple[str, str, int], float] = {}
        spare: dict[tuple[str, str, int], float] = {}
        whole: dict[tuple[str, str, int], float] = {}
        for cell, supply in self.supply.items():
            # Every window any class of the cell counts (a class no machine of the cell is in counts
            # none, and which class comes first in the dict follows string hashing, so it varies
            # from process to process: taking the first class's windows lost every price at random).
            windows = sorted({w for by in supply.minutes.values() for w in by} - {HORIZON})
            for design in supply.can_make:
                steps = self.designs[design].steps
                for window in windows:
                    price = 0.0
                    free = math.inf
                    full = math.inf
                    for step in steps:
                        for cls in step_classes(step):
                            later = [w for w in supply.minutes[cls] if w >= window]
                            price += step.minutes * duals[cell, cls, min(later)]
                            free = min(free, min(slack[cell, cls, w] for w in later) / step.minutes)
                            full = min(full, supply.minutes[cls][window] / step.minutes)
                        for material, amount in step.materials.items():
                            price += amount * stock_duals.get((cell, material), 0.0)
                    prices[cell, design, window] = price
                    spare[cell, design, window] = max(0.0, free)
                    whole[cell, design, window] = max(0.0, full)
        imports = {
            (offer_id, gi): units
            for offer_id, by_group in taken.items()
            for gi, units in by_group.items()
            if units > 1e-6
        }
        values = dict(enumerate(dual[demand_rows].tolist()))
        return Solution(cost=cost, prices=prices, spare=spare, whole=whole, imports=imports, values=values)

    # --- what the region tells its peers -----------------------------------------------------------

    def offers(
        self,
        solution: Solution,
        round_: int,
        share: float = OFFER_SHARE,
        cell_shares: Mapping[str, float] | None = None,
    ) -> list[Offer]:
        """Offers for every (cell, design, window) the region's labs can make, at their shadow prices.

        The units are what is spare, or, where everything is in use, `share` of the capacity (the host
        gives it up at its shadow price: what it would lose). `cell_shares` lowers that share in the
        cells whose awards the host could not make in an earlier round (`solver.federation.net.
        trimmed_shares`); what is spare is offered whole.
        """
        out = []
        cell_shares = cell_shares or {}
        for (cell, design, window), price in sorted(solution.prices.items(), key=lambda kv: kv[0]):
            beyond = min(share, cell_shares.get(cell, share)) * solution.whole[cell, design, window]
            units = math.floor(max(solution.spare[cell, design, window], beyond))
            if units < 1:
                continue
            out.append(
                Offer(
                    offer_id=f"{self.region}.r{round_}.o{len(out)}",
                    host=self.region,
                    round=round_,
                    design=design,
                    window=window,
                    cell=cell,
                    units=units,
                    price=round(price, 6),
                )
            )
        return out

    def quoted_cost(self, trades: list[Trade]) -> float:
        """What the region's offers promised these hosted trades would cost it: per unit, the offer's
        price (its shadow price when offered) and the carriage and days from the offer's cell to the
        trade's, as its LP counts a unit made there (from its nearest cell able to make it when the
        offer's cell is not known)."""
        total = 0.0
        for trade in trades:
            target = cell_centre(trade.cell, self.cell_deg)
            source = self.supply.get(trade.source)
            if source is not None:
                km = haversine_km(source.centre, target)
            else:
                km = min((km for _, km in self.export_cells(trade)), default=0.0)
            landed = _landed(self.params, km, self.params.time_weight[trade.priority], trade.window)
            total += trade.units * (trade.price + landed)
        return total

    def export_cells(self, trade: Trade) -> list[tuple[str, float]]:
        """The own cells a hosted trade may be made in, with their distance to the trade's cell: the
        nearest that can make it, and the cell whose offer it answers (a region of 2,500 orders has
        more cells than `own_cells`, and an origin may buy from any cell's offer: the units must be
        makeable where they were offered). Kept per design, cell and source: the net asks for the
        same trades' cells in every solve of a round."""
        key = (trade.design, trade.cell, trade.source)
        if key not in self._export_cache:
            target = cell_centre(trade.cell, self.cell_deg)
            cells = self.near_cells(trade.design, target)
            source = self.supply.get(trade.source)
            known = {c for c, _ in cells}
            if source is not None and trade.design in source.can_make and trade.source not in known:
                cells.append((trade.source, haversine_km(source.centre, target)))
            self._export_cache[key] = cells
        return list(self._export_cache[key])

    def near_cells(self, design: str, place: Location) -> list[tuple[str, float]]:
        """The nearest own cells able to make `design`, with their distance to `place`."""
        able = [
            (haversine_km(s.centre, place), cell) for cell, s in self.supply.items() if design in s.can_make
        ]
        able.sort()
        return [(cell, km) for km, cell in able[: self.own_cells]]


def _transit(params: SolveParams, km: float) -> float:
    return (params.handling_hours + km / params.transport_kmh) / 24.0


def _landed(params: SolveParams, km: float, time_weight: float, window: float) -> float:
    """What a unit made `km` from where it is wanted costs by the time it lands there: its carriage, and
    the days until it arrives (the end of its due window, then the road). One formula for the units
    a region makes, imports and makes for a peer, so offers are ranked as the LP prices them."""
    return params.km_weight * km + time_weight * (window + _transit(params, km))


def _groups(problem: Problem, cell_deg: float) -> list[Group]:
    """Demands grouped by (design, cell, window, priority), most urgent first within a cell."""
    found: dict[tuple[str, str, int, str], Group] = {}
    for d in problem.demands:
        o = d.order
        key = (o.design, cell_of(o.delivery, cell_deg), window_of(problem.now, o.due_at), o.priority)
        if key not in found:
            # At its cell's centre, as a peer sees it: the regional and the global LPs then measure
            # a traded unit's trip as the federation prices it, and compare like with like.
            found[key] = Group(o.design, key[1], key[2], o.priority, cell_centre(key[1], cell_deg), 0)
        g = found[key]
        g.units += d.quantity
        g.orders.append(o.id)
        g.quantities.append(d.quantity)
    due = {d.order.id: (d.order.due_at, d.order.id) for d in problem.demands}
    for g in found.values():
        pairs = sorted(zip(g.orders, g.quantities, strict=True), key=lambda pair: due[pair[0]])
        g.orders, g.quantities = [o for o, _ in pairs], [q for _, q in pairs]
    rank = {p: i for i, p in enumerate(PRIORITIES)}
    return sorted(found.values(), key=lambda g: (g.design, g.cell, g.window, -rank[g.priority]))


def _supply(
    problem: Problem, designs: dict[str, Design], horizon: float, cell_deg: float, windows: list[int]
) -> dict[str, CellSupply]:
    """Per cell: minutes per class by each window and by the horizon, stock, and what it can make."""
    # Sorted, so that the LP's rows (and so its degenerate duals, the prices) do not follow string
    # hashing from one process to the next.
    classes = sorted({cls for d in designs.values() for s in d.steps for cls in step_classes(s)})
    cells: dict[str, CellSupply] = {}
    for state in problem.labs:
        if not state.live:
            continue
        cell = cell_of(state.lab.location, cell_deg)
        if cell not in cells:
            cells[cell] = CellSupply(
                cell,
                cell_centre(cell, cell_deg),
                {c: defaultdict(float) for c in classes},
                defaultdict(float),
                set(),
            )
        supply = cells[cell]
        for machine in state.lab.machines:
            per_day = machine.minutes_per_day()
            backlog = state.backlog_minutes.get(machine.id, 0.0)
            for cls in classes:
                if not _in_class(machine, cls, designs):
                    continue
                for w in [*windows, HORIZON]:
                    days = horizon if w == HORIZON else min(horizon, float(w))
                    supply.minutes[cls][w] += max(0.0, per_day * days - backlog)
        for material, amount in state.stock.items():
            supply.stock[material] += amount
        for design_id, design in designs.items():
            if all(any(step.can_run_on(m) for m in state.lab.machines) for step in design.steps):
                supply.can_make.add(design_id)
    for supply in cells.values():
        supply.minutes = {cls: dict(by) for cls, by in supply.minutes.items()}
        supply.stock = dict(supply.stock)
    return cells


def _in_class(machine: Machine, cls: Class, designs: dict[str, Design]) -> bool:
    """Whether a machine counts in a capacity class (its process; and the class's tags, if any)."""
    process = cls[1]
    if process not in machine.processes:
        return False
    if cls[0] == "process":
        return True
    for d in designs.values():
        for step in d.steps:
            if step.process == process and step_classes(step)[-1] == cls:
                return step.can_run_on(machine)
    return False


def _demand_after_imports(groups: list[Group], imports: list[Trade]) -> list[float]:
    """Units of each group left once imported trades cover the group of their design, cell, window
    and priority."""
    left = [float(g.units) for g in groups]
    for trade in imports:
        units = float(trade.units)
        for gi, g in enumerate(groups):
            if units <= 0:
                break
            if (g.design, g.cell, g.window, g.priority) == (
                trade.design,
                trade.cell,
                trade.window,
                trade.priority,
            ):
                taken = min(units, left[gi])
                left[gi] -= taken
                units -= taken
    return left


def _offers_by_design_window(offers: list[Offer]) -> dict[tuple[str, int], list[Offer]]:
    by: dict[tuple[str, int], list[Offer]] = defaultdict(list)
    for offer in offers:
        by[offer.design, offer.window].append(offer)
    return by


def _cheapest_offers(
    offers: list[Offer],
    place: Location,
    window: float,
    cell_deg: float,
    params: SolveParams,
    time_weight: float,
) -> list[tuple[Offer, float]]:
    """Per host, the IMPORT_CELLS of these offers whose units cost least landed at `place` (price,
    carriage and days in transit, as the LP counts them), with their distance to `place`.

    Nearest first, as it was until 5 December 2026, hid a host's far cells with spare machines
    behind its near cells whose offers were only their busy share at a high shadow price: at surge
    seed 10 (4 x 2,500 x 400) the net stopped bidding at 1.0120 of the global LP, where the global
    plan used those far cells; see docs/federation.md.
    """
    by_host: dict[str, list[tuple[float, float, Offer]]] = defaultdict(list)
    for offer in offers:
        km = _cell_km(offer.cell, place.lat, place.lon, cell_deg)
        landed = offer.price + _landed(params, km, time_weight, window)
        by_host[offer.host].append((landed, km, offer))
    out = []
    for host in sorted(by_host):
        cheapest = sorted(by_host[host], key=lambda found: (found[0], found[2].offer_id))[:IMPORT_CELLS]
        out += [(offer, km) for _, km, offer in cheapest]
    return out


@lru_cache(maxsize=1 << 18)
def _cell_km(cell: str, lat: float, lon: float, cell_deg: float) -> float:
    """Km from a cell's centre to a point: each round asks again for the same offers' cells and the
    same groups' places (some 870,000 times in the 10 rounds of 4 x 2,500 orders)."""
    return haversine_km(cell_centre(cell, cell_deg), Location(lat=lat, lon=lon))
