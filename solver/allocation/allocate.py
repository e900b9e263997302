"""Allocate demands to labs: the planner's question, written as an instance of the allocation core.

The mapping (see `solver.sparse.core` for the general formulation):

- one *item* per demand, its shortage priced by the order's priority;
- per candidate (demand, lab) edge, two *options* sharing one setup key: units *on time* and units
  *late* (after the due date, within the late window), the late ones paying the lateness penalty;
- *resources* are machine-minutes per (lab, machine, due-date bucket), counted cumulatively: the
  minutes a machine has free by the bucket's edge. A unit on time for a due date uses each step's
  minutes in every bucket from its own to the horizon; a late unit only in the horizon bucket;
- a step's work is a *pool* over the lab's machines eligible for it (per bucket), so machines that
  offer several processes are shared exactly;
- stock per (lab, material) is a resource too;
- cost per unit: km × km_weight (transport), less a bounded trail discount; setup per used edge.

Buckets are per lab, taken from the due dates of its candidate demands (at most `due_buckets`); a due
date between two bucket edges counts at the earlier edge, so capacity by a due date is never
over-promised. Large problems are solved through the linear relaxation of the whole problem
(`solver.large.path`).
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from protocol.model import Design, Plan, Shortage
from solver.large.bid_prices import bid_prices
from solver.large.path import meets, solve_large
from solver.model.candidates import Candidates, find_candidates, merge_candidates, shortage_reason
from solver.model.capability import flow_days, step_groups
from solver.model.lines import LineUnits, allocation_line, split_units
from solver.model.objective import objective_weights, overdue_weight, polished_priorities
from solver.model.problem import (
    LabState,
    Problem,
    SolveParams,
    bucket_edges,
    bucket_of,
    days_until,
    earliest_finish,
    free_minutes,
    horizon_days,
    in_transit,
    in_whole_units,
    is_due_checkpoint,
    transit,
    with_whole_units,
)
from solver.model.setup_cost import network_setup_cost
from solver.model.trail_strength import problem_trail_strengths
from solver.model.trails import DEFAULT_RULES, TrailRules
from solver.model.transfers import (
    Sender,
    idle_for,
    neighbours,
    senders_for,
    transfer_records,
    with_incoming,
    within_reach,
)
from solver.sparse.core import CoreParams, CoreProblem, CoreResult, Item, Option, solve_core

#: Share of the time limit the one-model path gives the large path first, for a bound valid for every
#: plan and a second plan (a problem this size usually takes milliseconds there).
CERTIFY_SHARE = 0.2
#: In deterministic mode without a `SolveParams.work_limit`: CP-SAT's deterministic time per second of
#: the time limit, a budget a machine of about this speed spends in that time (the same on any
#: machine; the time limit stays a cap).
WORK_PER_SECOND = 0.8
#: Work is counted in tenths of a nominal minute.
MINUTE_SCALE = 10
#: The second stage's (`polish`) share of the time limit and of the work budget, kept from the first
#: stage's model when some demand may be polished (0: no second stage).
POLISH_SHARE = 0.5
#: CP-SAT's linearization level in `polish`, whose objective setups dominate (50 per order and lab
#: against 1-5 km per unit in a city): with the full LP and its cuts, fab-city-barcelona's polish
#: rounds close in a tenth of the work they did not close in ten times more at the default level.
POLISH_LINEARIZATION = 2
#: Materials are counted in millionths of their unit (micro-kg, micro-m2, ...).
AMOUNT_SCALE = 1_000_000


#: The most of a solve's time limit that pricing the labs' minutes may take (`solver.large.bid_prices`).
PRICE_SHARE = 0.2


def solve(
    problem: Problem,
    params: SolveParams = SolveParams(),
    version: int = 0,
    warm_start: Plan | None = None,
    rules: TrailRules = DEFAULT_RULES,
) -> Plan:
    """Allocate every demand to nearby capable labs within capacity by due date and stock.

    `warm_start` (a plan for the same demands, such as the previous one) is tried first. Returns a
    `Plan` whose objective and bound are in cost units (those of `CostTerms`), with status OPTIMAL or
    FEASIBLE, or EMPTY when there is nothing to plan. Above `params.decompose_above` demands the
    whole problem goes through its linear relaxation (`solver.large.path`), and the warm start, fitted to
    today's capacity, is kept when the relaxation's plan costs more. Each (order, lab) pair costs
    `params.setup_cost` at most, less where the network's trips are short (`solver.model.setup_cost`,
    unless `params.scale_setup` is off).
    """
    if not problem.demands:
        return _empty_plan(version)
    if params.scale_setup:  # a split is charged as this network's trips make it (`solver.model.setup_cost`)
        params = replace(params, setup_cost=network_setup_cost(problem, params.setup_cost))
    if problem.future and not problem.bid_prices:
        # Priced once per solve; the LP's time comes off the solve's own, except where a budget of
        # work decides (deterministic mode), whose plans must not depend on the host's speed.
        started = time.perf_counter()
        seconds = max(1.0, PRICE_SHARE * params.time_limit_s)
        problem = replace(problem, bid_prices=bid_prices(problem, params.km_weight, seconds))
        if not params.deterministic:
            left = params.time_limit_s - (time.perf_counter() - started)
            params = replace(params, time_limit_s=max((1 - PRICE_SHARE) * params.time_limit_s, left))
    if len(problem.demands) > params.decompose_above:
        return solve_large(problem, params, version, rules, warm_start)
    return solve_small(problem, params, version, warm_start, rules)


def solve_small(
    problem: Problem,
    params: SolveParams = SolveParams(),
    version: int = 0,
    warm_start: Plan | None = None,
    rules: TrailRules = DEFAULT_RULES,
    certify: bool = True,
) -> Plan:
    """Solve the problem as one model (see `solve`, which calls this below the decomposition size).

    The model poses the problem on each order's candidate labs with due dates grouped per lab, so
    its own bound covers only its plans, and a valid plan outside it can cost less. With `certify`
    (the default), the large path (`solver.large.path`) runs first on `CERTIFY_SHARE` of the time limit:
    its Lagrangian bound holds for every valid plan on any lab (`bound_scope` "all"), and its plan,
    valid too, is kept when it costs less than the model's. Without it (the emergency fast path,
    where every millisecond counts), the plan is the model's, with the model's bound ("model").

    Material transfers (`solver.model.transfers`): the demands the large path's plan leaves short or late
    may also be made from material shipped to labs whose machines would idle. A plan that ships
    material carries the lower of the two bounds, in the model's scope (the large path plans no
    transfers, so its bound covers only the plans without). Without `certify` no demand is offered
    transfers (the emergency fast path offers them itself, `solver.allocation.emergency`).

    With `params.deterministic`, the model's solve spends a budget of work (`params.work_limit`, by
    default WORK_PER_SECOND per second of the time limit, less the large path's share), counted in
    CP-SAT's deterministic time and HiGHS's nodes, and the large path its own budgets: two runs of
    the same problem and seed give the same plan unless the time limit, a cap, cut one of them.
    """
    if not problem.demands:
        return _empty_plan(version)
    started = time.perf_counter()
    if params.whole_units:  # pooled machines' time in whole units (`with_whole_units`)
        problem = with_whole_units(problem)
    relaxed = None
    if certify:
        # The problem's units are set already: the large path need not set them again.
        share = replace(params, time_limit_s=CERTIFY_SHARE * params.time_limit_s, whole_units=False)
        relaxed = solve_large(problem, share, version, rules, warm_start)
    # The demands the large path's plan leaves short or late may also be made from material shipped
    # between labs (`solver.model.transfers`): only they, so the model stays small.
    ship_for = (
        _wanting(problem, relaxed) if relaxed is not None and params.transfer_radius_km > 0 else frozenset()
    )
    mapping = AllocationMapping(problem, params, rules, ship_for)
    warm = mapping.units_of(warm_start) if warm_start is not None else None
    # The time limit covers the whole solve: what the large path and building the model took comes
    # off the solver's share, and the second stage (`polish`, with the large path only) keeps its
    # own when some demand may be polished.
    free = polished_priorities(params.time_weight)
    polishing = certify and any(d.order.priority in free for d in problem.demands)
    polish_share = POLISH_SHARE if polishing else 0.0
    first = (1.0 - polish_share) * params.time_limit_s
    left = max(0.1 * params.time_limit_s, first - (time.perf_counter() - started))
    result = solve_core(
        mapping.core,
        CoreParams(
            time_limit_s=left,
            workers=params.workers,
            seed=params.seed,
            warm_start=warm,
            work_limit=_scaled(_work_limit(params, certify), 1.0 - polish_share),
            mip_share=_mip_share(params),
        ),
    )
    plan = mapping.plan(result, version, time.perf_counter() - started)
    if relaxed is None:
        return plan  # no large path: no demand was offered transfers (`Plan.transfers_considered`)
    best = plan if plan.objective <= relaxed.objective else relaxed
    if polishing and not best.shortages and not any(a.late_units for a in best.allocations):
        units = result.units if best is plan else mapping.units_of(relaxed)
        polished = polish(mapping, units, best, params, version, started, polish_share)
        if polished is not None:
            best = polished
    bound = min(relaxed.bound, best.objective)
    scope = "all"
    if best.transfers or any(a.received for a in best.allocations):
        # The large path's bound covers every plan without transfers (nor material in transit); a plan
        # with the ones the model offered may cost less, and only the model's own bound covers those.
        bound, scope = min(bound, plan.bound), "model"
    status = "OPTIMAL" if meets(bound, best.objective) else "FEASIBLE"
    return best.model_copy(
        update={
            "bound": bound,
            "bound_scope": scope,
            "status": status,
            "solve_seconds": time.perf_counter() - started,
            "transfers_considered": params.transfer_radius_km > 0,
        }
    )


def polish(
    mapping: AllocationMapping,
    units: list[int],
    first: Plan,
    params: SolveParams,
    version: int,
    started: float,
    share: float = POLISH_SHARE,
) -> Plan | None:
    """A lexicographic second stage: the first stage's service kept, then the shortest trips.

    The first stage (the weighted objective) decides how much each order gets and how much of it on
    time. This stage keeps that: every order is placed as fully, and none of its units becomes late
    (late units and units made from shipped or arriving material are capped at the first stage's),
    and then minimises km per unit, with only the `km` weighting's small time weights as tie-breaks
    and the setup cost, within the same machine minutes, stock and due dates. A unit whose due date
    leaves room moves to a nearer lab that can still make it in time, even if later. Only the units
    of `polished_priorities` move; the others keep the first stage's options (see
    `solver.model.objective`). `units` are the first plan `first` on this model's options, the warm
    start, so the result never costs more than it in this stage's terms. It runs until the solve's
    time limit (counted from `started`), and in deterministic mode on `share` of its work budget.
    None when no unit may move, nothing changes, or `first` is not all on this model's options.
    """
    placed = [0] * len(mapping.problem.demands)
    for e, u in zip(mapping.edge_options, units, strict=True):
        placed[e.demand] += u
    index = {d.order.id: i for i, d in enumerate(mapping.problem.demands)}
    expected = [0] * len(placed)
    for a in first.allocations:
        expected[index[a.order_id]] += a.quantity
    if placed != expected:
        return None  # the first plan is not all on this model's options (the large path's, off them)
    free = polished_priorities(params.time_weight)
    if not any(mapping.problem.demands[e.demand].order.priority in free for e in mapping.edge_options):
        return None
    weights = objective_weights("km")
    options = []
    for e, option, u in zip(mapping.edge_options, mapping.core.options, units, strict=True):
        order = mapping.problem.demands[e.demand].order
        priority = order.priority
        price = mapping.problem.bid_price(order.design, e.lab)
        cost = e.km * params.km_weight - e.discount + price + weights[priority] * e.arrival
        capped = e.late or e.sender is not None or bool(e.in_transit) or priority not in free
        options.append(replace(option, unit_cost=cost, max_units=u if capped else option.max_units))
    limit = params.time_limit_s
    budget = params.work_limit if params.work_limit is not None else limit * WORK_PER_SECOND
    core = replace(mapping.core, items=[Item(q, None) for q in placed], options=options)
    result = solve_core(
        core,
        CoreParams(
            time_limit_s=max(0.1 * limit, limit - (time.perf_counter() - started)),
            workers=params.workers,
            seed=params.seed,
            warm_start=units,
            work_limit=_scaled(budget, share) if params.deterministic else None,
            mip_share=_mip_share(params),
            linearization_level=POLISH_LINEARIZATION,
        ),
    )
    if result.status not in ("OPTIMAL", "FEASIBLE") or result.units == list(units):
        return None
    result = replace(
        result, short=[d.quantity - q for d, q in zip(mapping.problem.demands, placed, strict=True)]
    )
    return mapping.plan(result, version, time.perf_counter() - started)


def _mip_share(params: SolveParams) -> float:
    """The core's share of HiGHS: all, or none where only the clock bounds its root (`SolveParams.mip`)."""
    return 1.0 if params.mip else 0.0


def _scaled(work: float | None, share: float) -> float | None:
    """A share of a work budget (None, the wall clock's, stays None)."""
    return None if work is None else work * share


def _work_limit(params: SolveParams, certify: bool) -> float | None:
    """The model's budget of work in deterministic mode (None: the wall clock's), see `solve_small`."""
    if not params.deterministic:
        return None
    if params.work_limit is not None:
        return params.work_limit
    share = 1 - CERTIFY_SHARE if certify else 1.0
    return share * params.time_limit_s * WORK_PER_SECOND


def _wanting(problem: Problem, plan: Plan) -> frozenset[int]:
    """Indices of the demands a plan leaves short or late: those material transfers may help."""
    index = {d.order.id: i for i, d in enumerate(problem.demands)}
    short = {index[s.order_id] for s in plan.shortages if s.order_id in index}
    late = {index[a.order_id] for a in plan.allocations if a.late_units and a.order_id in index}
    return frozenset(short | late)


def _empty_plan(version: int) -> Plan:
    """The plan of a problem with nothing to plan: nothing allocated, and no plan can cost less."""
    return Plan(
        version=version, objective=0.0, bound=0.0, bound_scope="all", status="EMPTY", solve_seconds=0.0
    )


@dataclass(frozen=True, slots=True)
class EdgeOption:
    """What a core option stands for: demand, lab, distance, whether its units are late, and when
    they arrive at the latest (days from now)."""

    demand: int
    lab: int
    km: float
    late: bool
    discount: float  # trail discount per unit (>= 0)
    arrival: float = 0.0  # days from now: the finish checkpoint plus transport
    loosest: bool = True  # the last checkpoint of its kind (on time or late): where a warm start goes
    finish: float = 0.0  # days from now: the checkpoint its units are made by
    sender: Sender | None = None  # the lab shipping the materials in `shipped`, when not the lab's own
    shipped: tuple[tuple[str, float], ...] = ()  # (material, amount per unit) arriving by transfer
    #: (material, amount per unit) taken from material already on its way to the lab (`LabState.incoming`)
    in_transit: tuple[tuple[str, float], ...] = ()


def lab_checkpoints(
    arrival_dues: list[float], days: float, buckets: int, grid: tuple[float, ...]
) -> list[float]:
    """One lab's finish checkpoints (days from now, ascending, ending at the horizon): its due-date
    buckets (`bucket_edges`, on the dates units must be made by to arrive in time) and the time grid."""
    edges = bucket_edges(arrival_dues, days, buckets)
    return sorted({*edges, *(t for t in grid if t < days - 1e-9)})


def time_charged(finish: float, late: bool, due: float, grid: tuple[float, ...]) -> float:
    """The day a unit finishing by `finish` is charged time for: the first of its edge's checkpoints
    at or after it (a time checkpoint, or the date it must be made by to arrive in time).

    A lab's due-date buckets group due dates at the earlier edge, so a unit may be planned by an
    edge before its own date; it is charged as if made by that date (or the grid point before it).
    The whole network's relaxation (`solver.large.network`) has an option at each of those checkpoints
    at exactly this charge, so its bound covers the plans of this model too. Late units are already
    planned by a grid point or by the horizon.
    """
    if late:
        return finish
    return min([t for t in grid if finish - 1e-9 <= t <= due] + [due])


def finish_options(
    edges_days: list[float], due: float, grid: tuple[float, ...]
) -> list[tuple[int, bool, bool]]:
    """The checkpoints a unit due (made) by `due` may be planned to finish by: (index, late, loosest).

    On time: the grid points before `due` and the last checkpoint at or before it. Late: the grid
    points after it and the horizon. Each is a cumulative capacity row, so a unit finishing by an
    earlier checkpoint uses the machines of every later one too.
    """
    last = len(edges_days) - 1
    first = bucket_of(due, edges_days) if due > 0 else None
    on_time = [] if first is None else sorted({first, *(b for b in range(first) if edges_days[b] in grid)})
    late_from = 0 if first is None else first + 1
    late = (
        sorted({last, *(b for b in range(late_from, last) if edges_days[b] in grid)})
        if late_from <= last
        else []
    )
    if first == last:
        late = []
    return [(b, False, b == on_time[-1]) for b in on_time] + [(b, True, b == late[-1]) for b in late]


class AllocationMapping:
    """The core problem of one allocation problem, and the way back from core units to a plan."""

    def __init__(
        self,
        problem: Problem,
        params: SolveParams,
        rules: TrailRules = DEFAULT_RULES,
        ship_for: frozenset[int] = frozenset(),
    ) -> None:
        """The model of `problem`; the demands of `ship_for` (indices) may also be made from material
        shipped between labs, and their candidates reach the labs that could use it."""
        self.problem = problem
        self.params = params
        self.rules = rules
        self.strengths = problem_trail_strengths(problem, rules)
        self.days = horizon_days(problem, params)
        self.near = neighbours(problem, params) if ship_for else {}
        # Material on its way counts for candidate search: a lab waiting for it is not left out.
        seen = with_incoming(problem)
        self.candidates: Candidates = find_candidates(
            seen,
            params.k_nearest,
            self.days,
            params.trail_candidates,
            params.room_candidates,
            feed_labs=True,
            rules=rules,
        )
        if self.near:
            focus = sorted(ship_for)
            reach = within_reach(seen, self.near)
            more = find_candidates(
                replace(reach, demands=[problem.demands[d] for d in focus]),
                params.k_nearest,
                self.days,
                params.trail_candidates,
                params.room_candidates,
                rules=rules,
            )
            self.candidates = merge_candidates(self.candidates, more, np.array(focus, dtype=np.int64))
        self.due = [days_until(problem, d.order.due_at) for d in problem.demands]
        self.edge_options: list[EdgeOption] = []
        options: list[Option] = []
        # Each (lab, design)'s machines per step, found once: every order of the design there shares them.
        groups_at: dict[tuple[int, str], tuple[frozenset[str], ...]] = {}
        capacity: dict[str, float] = {}
        pools: dict[str, frozenset[str]] = {}
        scale: dict[str, int] = {}
        by_lab: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for d, cands in enumerate(self.candidates.edges):
            for c in cands:
                by_lab[c.lab].append((d, c.km))
        for lab_index, edges in sorted(by_lab.items()):
            state = problem.labs[lab_index]
            pace = {m.id: m.minutes_per_day() for m in state.lab.machines}
            # A unit leaves its lab its design's flow time after the lab's machine minutes are counted.
            flow: dict[str, float] = {}
            for d, _ in edges:
                design = problem.designs[problem.demands[d].order.design]
                if design.id not in flow:
                    groups = groups_at[lab_index, design.id] = step_groups(state.lab, design)
                    flow[design.id] = flow_days(state.lab, design, groups) if params.flow_time else 0.0
            arrival: dict[int, tuple[float, float]] = {}
            for d, km in edges:
                travel = transit(params, km) + flow[problem.demands[d].order.design]
                arrival[d] = (self.due[d] - travel, travel)
            edges_days = lab_checkpoints(
                [arrival[d][0] for d, _ in edges], self.days, params.due_buckets, params.time_checkpoints_days
            )
            for b, edge_day in enumerate(edges_days):
                whole = is_due_checkpoint(edge_day, self.days, params.time_checkpoints_days)
                for machine_id, minutes in free_minutes(state, edge_day, whole).items():
                    name = _machine(lab_index, machine_id, b)
                    capacity[name] = minutes
                    scale[name] = MINUTE_SCALE
            lab_free = free_minutes(state, self.days)
            for material, amount in state.stock.items():
                capacity[_stock(lab_index, material)] = amount
                scale[_stock(lab_index, material)] = AMOUNT_SCALE
            on_the_way = in_transit(state, problem.now)
            for material, (amount, _) in on_the_way.items():
                capacity[_arriving(lab_index, material)] = amount
                scale[_arriving(lab_index, material)] = AMOUNT_SCALE
            for d, km in edges:
                design = problem.designs[problem.demands[d].order.design]
                groups = groups_at[lab_index, design.id]
                discount = self._discount(design.id, state, km)
                unit_cost = km * params.km_weight - discount + problem.bid_price(design.id, lab_index)
                priority = problem.demands[d].order.priority
                due, travel = arrival[d]
                setup = f"{d}@{lab_index}"
                short_of = (
                    idle_for(state, design, groups, lab_free, problem.demands[d].quantity)
                    if d in ship_for and lab_index in self.near
                    else []
                )
                senders = (
                    senders_for(
                        problem, self.near.get(lab_index, []), short_of, design, params.transfer_senders
                    )
                    if short_of
                    else []
                )
                per_unit = design.materials_per_unit()
                coming = sorted(m for m, amount in per_unit.items() if amount > 0 and m in on_the_way)
                # Only units made from material on its way wait for it (the rest skip the sum).
                making = making_days(pace, design, groups) if coming or senders else 0.0
                arrives = max((on_the_way[m][1] for m in coming), default=0.0)
                coming_at = arrives + making
                finishes = finish_options(edges_days, due, params.time_checkpoints_days)
                earliest = earliest_finish(problem, params, problem.demands[d])
                for b, late, loosest in finishes:
                    if edges_days[b] < earliest - 1e-9:
                        continue  # a forecast's units are made a commit window after they are ordered
                    charged = time_charged(edges_days[b], late, due, params.time_checkpoints_days)
                    cost = unit_cost + params.time_weight[priority] * (charged + travel)
                    if late:
                        past_due = max(0.0, charged + travel - self.due[d])
                        cost += params.lateness_penalty[priority] + past_due * overdue_weight(
                            params.time_weight, priority
                        )
                    uses: dict[str, float] = defaultdict(float)
                    for step, group in zip(design.steps, groups, strict=True):
                        for bucket in range(b, len(edges_days)):
                            pool = _pool(lab_index, group, bucket)
                            if pool not in pools:
                                pools[pool] = frozenset(_machine(lab_index, m, bucket) for m in group)
                            uses[pool] += step.minutes
                    for material, amount in design.materials_per_unit().items():
                        uses[_stock(lab_index, material)] += amount
                    options.append(Option(item=d, unit_cost=cost, uses=dict(uses), setup=setup))
                    base = EdgeOption(
                        d, lab_index, km, late, discount, charged + travel, loosest, edges_days[b]
                    )
                    self.edge_options.append(base)
                    if coming and _twin_checkpoint(finishes, edges_days, b, late, loosest, coming_at):
                        twin_uses = after_arrival(
                            uses, state, pace, lab_index, design, groups, edges_days, b, arrives, capacity,
                            params.time_checkpoints_days,
                        )  # fmt: skip
                        for material in coming:
                            twin_uses.pop(_stock(lab_index, material), None)
                            twin_uses[_arriving(lab_index, material)] = per_unit[material]
                        options.append(Option(item=d, unit_cost=cost, uses=twin_uses, setup=setup))
                        self.edge_options.append(
                            replace(base, in_transit=tuple((m, per_unit[m]) for m in coming))
                        )
                    for sender in senders:
                        ready = sender.arrival + making
                        if not _twin_checkpoint(finishes, edges_days, b, late, loosest, ready):
                            continue
                        shipped_uses = after_arrival(
                            uses, state, pace, lab_index, design, groups, edges_days, b, sender.arrival,
                            capacity, params.time_checkpoints_days,
                        )  # fmt: skip
                        twin = self._shipped_option(base, cost, shipped_uses, setup, design, short_of, sender)
                        options.append(twin)
                        for material, _ in self.edge_options[-1].shipped:
                            capacity[_stock(sender.lab, material)] = problem.labs[sender.lab].stock.get(
                                material, 0.0
                            )
                            scale[_stock(sender.lab, material)] = AMOUNT_SCALE
        items = [Item(d.quantity, params.shortage_penalty[d.order.priority]) for d in problem.demands]
        setups = {o.setup: params.setup_cost for o in options if o.setup is not None}
        setups.update({k: params.transfer_handling_cost for o in options for k in o.extra_setups})
        scale.update({name: MINUTE_SCALE for name in capacity if name.startswith("w|")})  # `after_arrival`
        self.core = CoreProblem(items, options, capacity, pools, setups, scale)
        #: Some option makes units from shipped material (see `solver.model.transfers`).
        self.offers_transfers = any(e.sender is not None for e in self.edge_options)

    def _shipped_option(
        self,
        base: EdgeOption,
        cost: float,
        uses: dict[str, float],
        setup: str,
        design: Design,
        materials: list[str],
        sender: Sender,
    ) -> Option:
        """The option `base` made from `materials` shipped by `sender` instead of the lab's own stock.

        It draws them from the sender's stock (shared with the sender's own work), pays the distance
        term per unit and the handling term once per (sender, receiver, material), and exists only at
        checkpoints the material reaches in time; records its `EdgeOption` too.
        """
        per_unit = design.materials_per_unit()
        twin_uses = dict(uses)
        extra = 0.0
        for material in materials:
            twin_uses.pop(_stock(base.lab, material), None)
            twin_uses[_stock(sender.lab, material)] = per_unit[material]
            extra += per_unit[material] * sender.km * self.params.transfer_km_weight
        self.edge_options.append(
            replace(base, sender=sender, shipped=tuple((m, per_unit[m]) for m in materials))
        )
        return Option(
            item=base.demand,
            unit_cost=cost + extra,
            uses=twin_uses,
            setup=setup,
            extra_setups=tuple(_transfer_key(sender.lab, base.lab, m) for m in materials),
        )

    def _discount(self, design_id: str, state: LabState, km: float) -> float:
        strength = self.strengths.get((design_id, state.lab.id), 0.0)
        if strength <= 0.0:
            return 0.0
        return float(self.params.trail_discount(strength, km))

    def units_of(self, plan: Plan) -> list[int]:
        """Units per core option for a plan of the same demands (allocations off the candidates dropped)."""
        wanted: dict[tuple[str, str, bool], list[int]] = defaultdict(lambda: [0, 0])
        for a in plan.allocations:
            for late, early, rest in split_units(a):
                wanted[a.order_id, a.lab_id, late][0] += early
                wanted[a.order_id, a.lab_id, late][1] += rest
        first = min(self.params.time_checkpoints_days, default=-1.0)
        units = [0] * len(self.edge_options)
        loosest: dict[tuple[str, str, bool], int] = {}
        for i, e in enumerate(self.edge_options):
            key = (self.problem.demands[e.demand].order.id, self.problem.labs[e.lab].lab.id, e.late)
            if key not in wanted or e.sender is not None or e.in_transit:
                continue
            if e.loosest:
                loosest[key] = i
                units[i] += wanted[key][1]
            if e.finish <= first + 1e-9 and wanted[key][0]:
                units[i] += wanted[key][0]
                wanted[key][0] = 0
        for key, (early, _) in wanted.items():
            if early and key in loosest:  # no first-checkpoint option there: the loosest takes them
                units[loosest[key]] += early
        return units

    def plan(self, result: CoreResult, version: int, seconds: float) -> Plan:
        """The plan of a core result: one allocation per used (order, lab), its cost terms, shortages."""
        per_edge: dict[tuple[int, int], LineUnits] = {}
        received: dict[tuple[int, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        shipped: dict[tuple[int, int, str], tuple[float, float]] = {}
        for e, units in zip(self.edge_options, result.units, strict=True):
            if units > 0:
                line = per_edge.setdefault((e.demand, e.lab), LineUnits())
                line.add(int(units), e.late, e.finish, e.arrival, self.params)
                for material, per_unit in e.in_transit:
                    received[e.demand, e.lab][material] += per_unit * units
                if e.sender is not None:
                    for material, per_unit in e.shipped:
                        received[e.demand, e.lab][material] += per_unit * units
                        key = (e.sender.lab, e.lab, material)
                        amount = shipped.get(key, (0.0, e.sender.km))[0]
                        shipped[key] = (amount + per_unit * units, e.sender.km)
        discounts = {(e.demand, e.lab): (e.km, e.discount) for e in self.edge_options}
        allocations = []
        objective = 0.0
        for (d, lab), line in sorted(per_edge.items()):
            km, discount = discounts[d, lab]
            allocation = allocation_line(self.problem, self.params, d, lab, km, discount, line)
            if (d, lab) in received:
                got = dict(sorted(received[d, lab].items()))
                allocation = allocation.model_copy(update={"received": got})
            objective += allocation.cost.total
            allocations.append(allocation)
        transfers = transfer_records(self.problem, self.params, shipped)
        objective += sum(t.cost for t in transfers)
        shortages = []
        for d, demand in enumerate(self.problem.demands):
            short = result.short[d]
            if short > 0:
                objective += self.params.shortage_penalty[demand.order.priority] * short
                shortages.append(Shortage(order_id=demand.order.id, quantity=short, reason=self.reason(d)))
        return Plan(
            version=version,
            allocations=allocations,
            shortages=shortages,
            transfers=transfers,
            objective=objective,
            bound=min(result.bound, objective),
            status=result.status,
            solve_seconds=max(0.0, seconds),
        )

    def reason(self, d: int) -> str:
        """Why units of demand `d` are short, in a line a requester can read."""
        return shortage_reason(self.problem, self.candidates, d)


def making_days(pace: dict[str, float], design: Design, groups: tuple[frozenset[str], ...]) -> float:
    """Days one unit of `design` takes at the lab from the moment its material is there: each step
    in turn on its fastest eligible machine, at the pace of the machine's hours spread over the day
    (`Machine.minutes_per_day`), as labs and the simulated replay work them.

    A unit made from material on its way cannot finish when the material arrives, only this long
    after: counted at the arrival, valves whose resin came by parcel at 05:28 were planned to leave
    by 07:20 and left at 07:22, 900 km from a hospital that needed them by midnight
    (valve-lombardy, seed 23)."""
    fastest = [max((pace[m] for m in group), default=0.0) for group in groups]
    return sum(step.minutes / most for step, most in zip(design.steps, fastest, strict=True) if most > 0)


def after_arrival(
    uses: dict[str, float],
    state: LabState,
    pace: dict[str, float],
    lab_index: int,
    design: Design,
    groups: tuple[frozenset[str], ...],
    edges_days: list[float],
    b: int,
    arrival: float,
    capacity: dict[str, float],
    grid: tuple[float, ...],
) -> dict[str, float]:
    """`uses` of a unit finishing by checkpoint `b` from material arriving at `arrival` (days from
    now), plus its minutes on the lab's machines between the arrival and each checkpoint from `b` on;
    the capacity of those windows is set in `capacity` (what the machines work in them, less the
    backlog they still owe then).

    The machine pools count a lab's minutes from now: without the windows, units waiting for a parcel
    were planned into minutes that pass before it comes. Six valves whose resin arrived at 06:06 were
    planned to leave by 08:02; two resin printers made them by 10:31 (valve-lombardy, seed 23).
    One window per arrival: units of two parcels arriving at different times are each held to their
    own window, not both to the earlier one's (a lab rarely waits for two at once). At a due date's
    checkpoint (`grid`: the time checkpoints, which are not) the minutes are whole units where the
    lab counts them (`solver.model.problem.is_due_checkpoint`), as the lab's own rows are.

    A machine that makes whole units one at a time (`LabState.unit_minutes`) is mostly in the middle
    of one when a parcel comes, and finishes it first: its window opens a unit later. Opened at the
    arrival, valves planned on time from resin that came at 05:28 were made at 07:34 and reached the
    hospital 3 minutes late (valve-lombardy, seed 23: 16 of 733 valves planned on time arrived
    late, 2.18 %).
    """
    windowed = dict(uses)
    for step, group in zip(design.steps, groups, strict=True):
        for bucket in range(b, len(edges_days)):
            name = _window(lab_index, group, bucket, arrival)
            if name not in capacity:
                edge = edges_days[bucket]
                whole = is_due_checkpoint(edge, edges_days[-1], grid)
                capacity[name] = sum(
                    in_whole_units(
                        max(0.0, pace[m] * edge - _free_from(state, pace, m, arrival)),
                        state.unit_minutes.get(m, 0.0) if whole else 0.0,
                    )
                    for m in group
                )
            windowed[name] = windowed.get(name, 0.0) + step.minutes
    return windowed


def _free_from(state: LabState, pace: dict[str, float], machine: str, arrival: float) -> float:
    """The machine minutes (counted from now, at its pace) before machine `machine` can start a unit
    from material arriving at `arrival` (days from now): after its backlog, and after the arrival and
    the unit it is then making (`after_arrival`)."""
    in_hand = state.unit_minutes.get(machine, 0.0) if arrival > 0 else 0.0
    return max(state.backlog_minutes.get(machine, 0.0), pace[machine] * arrival + in_hand)


def _twin_checkpoint(
    finishes: list[tuple[int, bool, bool]],
    edges_days: list[float],
    b: int,
    late: bool,
    loosest: bool,
    arrival: float,
) -> bool:
    """Whether units made from shipped material get an option at checkpoint `b`: it must come no
    earlier than the material (`arrival`, days from now), and be the first such checkpoint of its
    kind (on time or late) or the loosest. Two per kind keep the model small; the ones between add
    little (a unit charged a little more time than it needs)."""
    if edges_days[b] + 1e-9 < arrival:
        return False
    first = next((c for c, k, _ in finishes if k == late and edges_days[c] + 1e-9 >= arrival), None)
    return loosest or b == first


#: Names of the model's resources, kept between builds: a model names the same machine and pool at
#: every option that uses it, and a planner re-plans the same labs round after round.
NAMES_KEPT = 1 << 16


@functools.lru_cache(maxsize=NAMES_KEPT)
def _machine(lab: int, machine_id: str, bucket: int) -> str:
    return f"m|{lab}|{machine_id}|{bucket}"


@functools.lru_cache(maxsize=NAMES_KEPT)
def _pool(lab: int, group: frozenset[str], bucket: int) -> str:
    return f"p|{lab}|{'+'.join(sorted(group))}|{bucket}"


def _stock(lab: int, material: str) -> str:
    return f"s|{lab}|{material}"


def _window(lab: int, group: frozenset[str], bucket: int, arrival: float) -> str:
    return f"w|{lab}|{'+'.join(sorted(group))}|{bucket}|{arrival:.9f}"


def _arriving(lab: int, material: str) -> str:
    return f"i|{lab}|{material}"


def _transfer_key(sender: int, receiver: int, material: str) -> str:
    return f"t|{sender}|{receiver}|{material}"
