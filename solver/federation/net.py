"""The rounds of the priced contract net over every region's model, in one process (the regions'
LPs solved in turn, or side by side through `RegionSolves`).

Each round (SPEC.md section 10.4):

1. every region solves its plan with the trades committed so far and the offers of the last round as
   import options, and bids for the imports its plan took;
2. each host awards its bids tentatively, within each of its cells' capacity (its offers of one cell
   share it), the bids that leave it the most first, scaled by the current step (a quarter at
   first, doubled after each commit up to 1, halved after each abort), and cut down until its own
   plan with them leaves no more units short than without and costs it no more than its offers
   quoted (`within_means`);
3. every region solves again with the committed and tentative trades and publishes one number, its
   cost; the round commits only if the summed cost fell;
4. every region offers for the next round at the shadow prices of its plan with the trades committed
   now and *no* import option: the plan the commit rule charges it; a host whose awards were cut in
   step 2 offers less of its busy capacity from those cells (`trimmed_shares`).

Why step 4 prices without imports (4 December 2026). Offers used to be priced from step 1's plan,
which could still import: a host near the origin then sold capacity at the price of importing its
replacement, but the commit rule, which solves without offers, charged it its own orders made late.
So such rounds aborted (surge seed 2: three in a row, 1.0116 after 10 rounds), or committed and left
the host buying for its own orders in the next rounds: a chain (Bavaria making Switzerland's units so
that Switzerland can make Lombardy's) where the global plan trades directly (seeds 3, 4, 6). Priced at
the plan the commit rule charges, a host's offers cost what the round will charge it, and the
origin's plan buys from the host that is really cheapest. Surge seeds 1-16 went from worst 1.0116
(seed 2) to worst 1.0055 (seed 4), in fewer rounds, at no extra solve (see docs/federation.md).

Every message a region would send is kept (`NetResult.messages`), so what leaves a region can be
counted and inspected. The transport (`planner.peers`) carries the same records between processes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from solver.federation.cells import CELL_DEG, cell_centre
from solver.federation.market import Bid, Message, Offer, Trade
from solver.federation.region import OFFER_SHARE, RegionModel, Solution
from solver.model.geo import haversine_km
from solver.model.problem import Problem, SolveParams

#: Halvings a host tries before it awards nothing (`within_means`), and the units left short it
#: lets pass (LP round-off).
MEANS_TRIES = 4
SHORT_TOLERANCE = 0.5
#: A round commits only if the summed cost fell by more than this share of it.
COMMIT_MARGIN = 1e-6
#: Share of the awarded units the first round takes: the first prices are those of regions alone and
#: overshoot; doubled after each commit (up to all), halved after each abort. With the awards within
#: each cell's capacity (`award_bids`), a quarter did as well as a half on surge seeds 1-8 (mean
#: cost_ratio 1.0058 against 1.0063; see docs/federation.md).
FIRST_STEP = 0.25


@dataclass(frozen=True)
class NetParams:
    """How the net runs: rounds, the share of busy capacity offered, the smallest step, the cell size."""

    max_rounds: int = 10
    offer_share: float = OFFER_SHARE
    min_step: float = 1.0 / 32.0
    cell_deg: float = CELL_DEG

    def __post_init__(self) -> None:
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {self.max_rounds}")
        if not 0.0 <= self.offer_share <= 1.0:
            raise ValueError(f"offer_share must lie within 0..1, got {self.offer_share}")
        if not 0.0 < self.min_step <= 1.0:
            raise ValueError(f"min_step must lie within (0, 1], got {self.min_step}")
        if self.cell_deg <= 0:
            raise ValueError(f"cell_deg must be positive, got {self.cell_deg}")


@dataclass(frozen=True)
class RoundRecord:
    """One round: its bids and awards, the summed cost before and with its trades, and the outcome."""

    round: int
    bids: int
    awarded_units: int
    total_before: float
    total_after: float
    committed: bool


@dataclass
class NetResult:
    """The outcome of the net: committed trades, each round, every message, costs and exposure."""

    regions: list[str]
    trades: list[Trade]
    rounds: list[RoundRecord]
    messages: list[Message]
    isolated: dict[str, float]
    federated: dict[str, float]
    #: Per region, the ids of its orders whose units were counted in a bid (they never left: only
    #: the bid's merged quantity did). Kept to count `orders_exposed_share`.
    exposed: dict[str, set[str]] = field(default_factory=dict)

    @property
    def isolated_cost(self) -> float:
        """Summed LP cost of the regions planning alone."""
        return sum(self.isolated.values())

    @property
    def federated_cost(self) -> float:
        """Summed LP cost of the regions with the committed trades."""
        return sum(self.federated.values())


@dataclass(frozen=True)
class SolveAsk:
    """One region's LP to solve: the offers it may buy from, the trades it receives and makes."""

    offers: tuple[Offer, ...] = ()
    imports: tuple[Trade, ...] = ()
    exports: tuple[Trade, ...] = ()


@dataclass(frozen=True)
class MeansAsk:
    """A host's awards to cut down to what it can make (`within_means`)."""

    standing: Solution
    imports: tuple[Trade, ...]
    exports: tuple[Trade, ...]
    awards: tuple[Trade, ...]


class RegionSolves(Protocol):
    """Where the regions' LPs of a step of the round are solved: each region's are independent of
    the others', as they are between planner processes."""

    def solve(self, asks: Mapping[str, SolveAsk]) -> dict[str, Solution]:
        """Each region's solution to its ask."""
        ...

    def within_means(self, asks: Mapping[str, MeansAsk]) -> dict[str, list[Trade]]:
        """Each host's awards, cut down to what it can make."""
        ...


class LocalSolves:
    """The regions' LPs solved one after the other in this process."""

    def __init__(self, models: Mapping[str, RegionModel]) -> None:
        self.models = models

    def solve(self, asks: Mapping[str, SolveAsk]) -> dict[str, Solution]:
        """Each region's solution to its ask, in the asks' order."""
        return {r: solve_ask(self.models[r], ask) for r, ask in asks.items()}

    def within_means(self, asks: Mapping[str, MeansAsk]) -> dict[str, list[Trade]]:
        """Each host's awards cut down to what it can make, in the asks' order."""
        return {r: means_of(self.models[r], ask) for r, ask in asks.items()}


def solve_ask(model: RegionModel, ask: SolveAsk) -> Solution:
    """A region's LP for one ask."""
    return model.solve(offers=list(ask.offers), imports=list(ask.imports), exports=list(ask.exports))


def means_of(model: RegionModel, ask: MeansAsk) -> list[Trade]:
    """A host's awards for one ask, cut down to what it can make."""
    return within_means(model, ask.standing, list(ask.imports), list(ask.exports), list(ask.awards))


def run_net(
    regions: dict[str, Problem],
    params: SolveParams = SolveParams(),
    net: NetParams = NetParams(),
    solves: RegionSolves | None = None,
) -> NetResult:
    """Run the priced contract net over `regions` (region id -> its own problem); see the module
    docstring. `solves` says where the regions' LPs are solved (one after the other here, by
    default; side by side in processes of their own, `scenarios.federation_pool`): the same
    solutions either way."""
    if len(regions) < 2:
        raise ValueError(f"regions: the net needs at least 2 regions, got {len(regions)}")
    names = sorted(regions)
    models = {r: RegionModel(r, regions[r], params, net.cell_deg) for r in names}
    lps = solves if solves is not None else LocalSolves(models)
    coordinator = names[0]
    messages: list[Message] = []
    committed: list[Trade] = []
    alone = lps.solve({r: SolveAsk() for r in names})
    costs = {r: alone[r].cost for r in names}
    isolated = dict(costs)
    # Round 0: every region offers at the prices of its plan alone, so the first round can bid.
    book: list[Offer] = [o for r in names for o in models[r].offers(alone[r], 0, net.offer_share)]
    for offer in book:
        messages += [Message(offer.host, r, "OFFER", offer.body()) for r in names if r != offer.host]
    step = FIRST_STEP
    # Each region's plan with the trades committed so far and no import option: the plan the commit
    # rule charges, and the one its offers are priced from.
    standing = dict(alone)
    rounds: list[RoundRecord] = []
    exposed: dict[str, set[str]] = defaultdict(set)
    # Per region, the share of its busy capacity each cell still offers (`trimmed_shares`).
    shares: dict[str, dict[str, float]] = {r: {} for r in names}
    for round_ in range(1, net.max_rounds + 1):
        solutions = lps.solve(
            {
                r: SolveAsk(
                    offers=tuple(o for o in book if o.host != r),
                    imports=tuple(t for t in committed if t.origin == r),
                    exports=tuple(t for t in committed if t.host == r),
                )
                for r in names
            }
        )
        offers_by_id = {o.offer_id: o for o in book}
        bids: list[Bid] = []
        for r in names:
            found, units = region_bids(models[r], solutions[r], offers_by_id, round_)
            bids += found
            exposed[r] |= models[r].exposed_orders(units)
        for bid in bids:
            messages.append(Message(bid.origin, bid.host, "BID", bid.body()))
        awarded = award_bids(bids, offers_by_id, step, round_, len(committed))
        tentative = []
        asks = {
            r: MeansAsk(
                standing[r],
                tuple(t for t in committed if t.origin == r),
                tuple(t for t in committed if t.host == r),
                tuple(t for t in awarded if t.host == r),
            )
            for r in names
        }
        means = lps.within_means({r: ask for r, ask in asks.items() if ask.awards})
        for r in names:
            kept = means.get(r, [])
            shares[r] = trimmed_shares(shares[r], list(asks[r].awards), kept, net.offer_share)
            tentative += kept
        for trade in tentative:
            messages.append(
                Message(
                    trade.host,
                    trade.origin,
                    "AWARD",
                    {"bid_id": _bid_of(trade), "round": round_, "units": trade.units},
                )
            )
        total = sum(costs.values())
        if not bids:
            rounds.append(RoundRecord(round_, 0, 0, total, total, False))
            break
        trades = committed + tentative
        new_solutions = lps.solve(
            {
                r: SolveAsk(
                    imports=tuple(t for t in trades if t.origin == r),
                    exports=tuple(t for t in trades if t.host == r),
                )
                for r in names
            }
        )
        new_costs = {r: new_solutions[r].cost for r in names}
        new_total = sum(new_costs.values())
        for r in names:
            if r != coordinator:
                messages.append(
                    Message(r, coordinator, "COST", {"round": round_, "cost": round(new_costs[r], 6)})
                )
        commit = new_total < total - COMMIT_MARGIN * abs(total)
        vote = {
            "round": round_,
            "commit": commit,
            "total_before": round(total, 6),
            "total_after": round(new_total, 6),
        }
        for r in names:
            if r != coordinator:
                messages.append(Message(coordinator, r, "VOTE", vote))
                messages.append(Message(coordinator, r, "COMMIT" if commit else "ABORT", {"round": round_}))
        rounds.append(
            RoundRecord(round_, len(bids), sum(t.units for t in tentative), total, new_total, commit)
        )
        if commit:
            committed = trades
            costs = new_costs
            standing = new_solutions
            step = min(1.0, 2.0 * step)
        else:
            step /= 2.0
            if step < net.min_step:
                break
        if round_ == net.max_rounds:
            break
        # The next round's offers, at the prices of the plans this round left (module docstring, 4).
        book = [o for r in names for o in models[r].offers(standing[r], round_, net.offer_share, shares[r])]
        for offer in book:
            messages += [Message(offer.host, r, "OFFER", offer.body()) for r in names if r != offer.host]
    return NetResult(names, committed, rounds, messages, isolated, costs, dict(exposed))


def region_bids(
    model: RegionModel, solution: Solution, offers: dict[str, Offer], round_: int
) -> tuple[list[Bid], dict[int, int]]:
    """The region's bids: the imports its plan took, merged per (offer, delivery cell, priority); and
    the units bid from each of its demand groups (to count the orders whose units were in a bid).

    A bid names one priority, and the trade it becomes covers only orders of that priority, so its
    host charges the time of exactly the units it serves."""
    units: dict[tuple[str, str, str], float] = defaultdict(float)
    value: dict[tuple[str, str, str], float] = defaultdict(float)
    groups: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for (offer_id, gi), amount in solution.imports.items():
        g = model.groups[gi]
        key = (offer_id, g.cell, g.priority)
        units[key] += amount
        value[key] += amount * solution.values.get(gi, 0.0)
        groups[key].add(gi)
    bids = []
    used: dict[int, float] = defaultdict(float)
    for key, amount in sorted(units.items()):
        offer_id, cell, priority = key
        whole = int(amount + 1e-6)
        if whole < 1:
            continue
        offer = offers[offer_id]
        bids.append(
            Bid(
                bid_id=f"{model.region}.r{round_}.b{len(bids)}",
                origin=model.region,
                host=offer.host,
                offer_id=offer_id,
                round=round_,
                units=whole,
                window=offer.window,
                cell=cell,
                max_price=round(max(offer.price, value[key] / amount), 6),
                priority=priority,
            )
        )
        for gi in groups[key]:
            used[gi] += solution.imports[offer_id, gi]
    return bids, {gi: math.ceil(amount - 1e-6) for gi, amount in used.items()}


def within_means(
    model: RegionModel,
    standing: Solution,
    imports: list[Trade],
    exports: list[Trade],
    awards: list[Trade],
    tries: int = MEANS_TRIES,
) -> list[Trade]:
    """A host's awards, cut down until its plan with them leaves no more units short than its plan
    without them (`standing`, with the committed `imports` and `exports`) and costs it no more than
    its quotes promised (`RegionModel.quoted_cost`); none if `tries` halvings do not get there.

    A host's offers are priced at the margin of its plan, and a round's awards at scale (thousands of
    units) can go far past the point where that price holds: at 4 x 2,500 x 400 (surge seed 1), a
    round awarded a full host 1,698 more units and its plan left 580 units of its trades short,
    58 M of shortage that aborted the round, and the same offers did it again in later rounds. The
    host sees this before it answers, from its own plan alone, and answers only what it can make.

    Short of shortage, the same overshoot sold a host's room at the price of its spare minutes:
    at 4 x 120 x 24 (surge seeds 22, 25, 37) Switzerland sold Lombardy 254, 290 and 217 units in the
    first three rounds at 2 to 51 a unit, its own orders then went late, and from round 4 it bought
    their units from Bavaria and Rhone-Alpes: a chain Bavaria -> Switzerland -> Lombardy that no
    later round undoes, where the global plan ships Bavaria -> Lombardy (cost_ratio 1.0147, 1.0102,
    1.0168). The vote let each sale through, since Lombardy's shortage saved more than Switzerland's
    lateness cost, though Bavaria could have saved Lombardy the same for less. A host that answers
    only what it can make at the cost it quoted leaves the rest of the bid to the next round's
    offers, its own dearer ones among them (surge seeds 1-40: worst 1.0074, mean 1.0025, against
    1.0168 and 1.0044; see docs/federation.md).
    """
    if not awards:
        return []
    for _ in range(tries):
        made = model.solve(imports=imports, exports=[*exports, *awards])
        kept_short = made.short_units <= standing.short_units + SHORT_TOLERANCE
        rise = made.cost - standing.cost
        if kept_short and rise <= model.quoted_cost(awards) + COMMIT_MARGIN * abs(standing.cost):
            return awards
        awards = [replace(t, units=t.units // 2) for t in awards if t.units >= 2]
        if not awards:
            return []
    return []


def trimmed_shares(
    shares: Mapping[str, float], awarded: list[Trade], kept: list[Trade], share: float
) -> dict[str, float]:
    """A host's share of busy capacity offered per cell, lowered where it could not make its awards.

    When `within_means` cuts a host's awards, the cells they were offered from were busier than their
    offers said: the host gives up `share` of its busy capacity at its shadow price, but its own
    orders had no other lab to go to. Offered again at the same share, the same bids come back and
    are cut again, round after round, while the origin does not bid the peers that could make the
    units (surge seed 6 at 4 x 2,500 x 400: three rounds of awards cut to 0-133 units of 1,400, then
    1,954 units from other hosts once the offers had shrunk by themselves). So each of those cells'
    busy share is scaled by the share of the awards the host kept: to zero where it kept none. What a
    cell has spare is still offered whole (`RegionModel.offers`). The host learns this from its own
    plan; nothing about it leaves the region but smaller offers.
    """
    trimmed = dict(shares)
    asked = sum(t.units for t in awarded)
    made = sum(t.units for t in kept)
    if asked == 0 or made >= asked:
        return trimmed
    for cell in {t.source for t in awarded}:
        trimmed[cell] = trimmed.get(cell, share) * made / asked
    return trimmed


def award_bids(
    bids: list[Bid], offers: dict[str, Offer], step: float, round_: int, first: int
) -> list[Trade]:
    """Hosts' tentative awards, within each host cell's capacity, times `step`.

    A host's offers of one cell, for every design and day window, sell the same machines: the units
    of its offer for window 4 include those of its offer for window 2, and a face shield and a finger
    splint take the same printers. Awarding each offer its full units sold the same minutes several
    times over, and the summed-cost rule let it through whenever the origin's gain was larger: the
    host then ended full, its own orders late, with trades that no later round can undo (surge seeds
    3 and 5 stalled at 1.02 that way). So a cell's awards share one budget. A unit of design d due
    in window w uses 1/units(d, W) of the cell's budget at every window W >= w it has an offer for,
    and no window's budget goes past 1.

    Within a cell, the bids that leave the host the most are served first: the most the origin would
    pay less the carriage from the offer's cell to the bid's (the host pays that carriage), so that
    a near origin is not crowded out by a far one that values the unit a little more.
    """
    by_cell: dict[tuple[str, str], list[Bid]] = defaultdict(list)
    offered: dict[tuple[str, str], dict[tuple[str, int], int]] = defaultdict(dict)
    for offer in offers.values():
        offered[offer.host, offer.cell][offer.design, offer.window] = offer.units
    for bid in bids:
        offer = offers[bid.offer_id]
        by_cell[offer.host, offer.cell].append(bid)
    trades = []
    for key in sorted(by_cell):
        table = offered[key]
        windows = sorted({w for _, w in table})
        used = dict.fromkeys(windows, 0.0)
        for bid in sorted(by_cell[key], key=lambda b: (-_surplus(b, offers[b.offer_id]), b.bid_id)):
            offer = offers[bid.offer_id]
            later = [
                (w, table[offer.design, w])
                for w in windows
                if w >= offer.window and (offer.design, w) in table
            ]
            room = min((max(0.0, 1.0 - used[w]) * units for w, units in later), default=0.0)
            units = min(bid.units, int(room + 1e-9))
            units = max(1, int(units * step)) if units >= 1 else 0
            if units < 1:
                continue
            for w, offered_units in later:
                used[w] += units / offered_units
            trades.append(
                Trade(
                    trade_id=f"t{first + len(trades)}.{bid.bid_id}",
                    host=offer.host,
                    origin=bid.origin,
                    design=offer.design,
                    window=offer.window,
                    cell=bid.cell,
                    units=units,
                    price=offer.price,
                    round=round_,
                    priority=bid.priority,
                    source=offer.cell,
                )
            )
    return trades


def _surplus(bid: Bid, offer: Offer, cell_deg: float = CELL_DEG) -> float:
    """What a bid leaves its host per unit, before the host's own cost: the most the origin would pay
    less the carriage (one cost unit per km, `SolveParams.km_weight`'s default) from the offer's cell
    to the bid's."""
    return bid.max_price - haversine_km(cell_centre(offer.cell, cell_deg), cell_centre(bid.cell, cell_deg))


def _bid_of(trade: Trade) -> str:
    """The bid a trade answers (its id carries it after the first dot)."""
    return trade.trade_id.split(".", 1)[1]
