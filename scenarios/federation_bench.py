"""One synthetic federation solved three ways, federated, isolated and global, and measured.

- **federated**: the priced contract net (`solver.federation.net`), then each region's own integer
  plan alone and with its committed trades, started from the plan alone (`solver.federation.plans`),
  each checked by the validator; the trades are kept only if the plans with them cost, summed, no
  more than the plans alone (`integer_check`), else every region keeps its plan alone;
- **isolated**: each region's LP and integer plan alone;
- **global**: one LP over every region's cells and demands, and one integer plan of the merged
  problem by the usual allocator (its bound is valid for every plan on all labs).

`cost_ratio`, `isolated_ratio` and `rounds_to_1pct` compare the regional LPs (the plans the net
negotiates) with the global LP built the same way; `certified_gap_pct` compares the federated
integer plans' summed cost with the global integer plan's bound, a lower bound on every plan.
Every message the net would send is encoded with the peer codec (`protocol.peers`) and counted.

The integer plans of both sides spend the same deterministic budget of work
(`SolveParams.work_limit`, `WORK_PER_SECOND` per second of the bench's `time_limit_s`; the large
path counts its own work per demand), with the wall clock only a cap (`CAP_FACTOR` times the
budget's seconds; `LARGE_CAP_S` for the large path): two runs give the same plans, whatever else the
machine is doing, unless the cap cut one (`plans_cut_by_clock`). The regions' plans are independent,
so they run side by side through the project's executor seam (`scenarios.fanout`, a process pool of
`workers`, the largest plan first).

What is timed (`seconds`, `cpu_seconds`): the federated run, from the net's first solve to the final
check: the net, each trading region's plan with its trades, the validator and the check. The plans
alone come first and are timed apart (`isolated_seconds`): they are the isolated reference, and a
live planner holds its plan alone before any session opens (it plans its own orders first), so the
federation starts from it rather than making it. For the same reason the pool of `workers` processes
that solves the net's regional LPs side by side (`scenarios.federation_pool`) and then the plans
with trades is started, each worker holding every region's model, before the clock starts; its CPU,
start included, counts in `cpu_seconds`. The global LP and integer plan come after, untimed but for
`global_seconds`.
"""

from __future__ import annotations

import resource
import time
from concurrent.futures import Executor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

from protocol.model import Plan
from protocol.peers import encode_peer
from scenarios.fanout import fan_out, open_executor
from scenarios.federation import Case, federation, merged
from scenarios.federation_pool import PooledSolves, load, wait_ready
from solver.allocation.allocate import solve
from solver.federation.market import Trade
from solver.federation.net import NetParams, run_net
from solver.federation.plans import RegionalPlan, integer_check, plan_region
from solver.federation.region import RegionModel
from solver.model.problem import Problem, SolveParams

#: Own cells each global LP group may be made in: enough to reach every region's cells.
GLOBAL_CELLS = 64
#: Rounds are counted to the first one whose summed cost is within this share of the global LP.
WITHIN = 0.01
#: CP-SAT's deterministic time per second of the bench's `time_limit_s` (as
#: `solver.allocation.allocate.WORK_PER_SECOND`): the regions' budget of work.
WORK_PER_SECOND = 0.8
#: The wall clock's cap on a regional plan of the one-model path (up to `decompose_above` orders), in
#: multiples of its budget's seconds: far enough that on a busy machine the work, not the clock, ends
#: the solve. Not more: parts of that path (its certifying large-path run, the second stage) take a
#: share of the cap, so a cap of 30 times made a 4 x 120 x 24 surge cost 513 CPU s instead of ~70.
CAP_FACTOR = 6.0
#: The cap on a plan of the large path (above `decompose_above` orders), whose budget is its own work
#: per demand: at 60 s, plans of 2,500 orders were cut on a loaded host (load 8-14) and their greedy
#: fill left 20,288 units short where the LPs leave almost none.
LARGE_CAP_S = 300.0
#: A plan that took this share of its cap or more is counted as cut by the clock.
CUT_SHARE = 0.95
#: The large path's candidate radius for the regions' plans (`SolveParams.near_km`, 50 km by
#: default). A region's 400 labs sit within about 80 km, so 50 km held ~96 candidate labs per demand;
#: with none beyond the k nearest, room and trails, a 2,500-order region's plan came out the same
#: (2,457,599, rhone-alpes of 4 x 2,500 x 400 surge seed 1) in 16.7 CPU s instead of 38.4.
NEAR_KM = 0.0


@dataclass(frozen=True)
class BenchParams:
    """The instance and how hard to solve it."""

    regions: int = 4
    orders_per_region: int = 300
    labs_per_region: int = 50
    seed: int = 1
    case: Case = "surge"
    time_limit_s: float = 10.0
    global_plan: bool = True
    #: Processes planning the regions side by side (1: one after the other, in this process).
    workers: int = 2

    def __post_init__(self) -> None:
        if self.time_limit_s <= 0:
            raise ValueError(f"time_limit_s must be positive, got {self.time_limit_s}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


def solve_params(time_limit_s: float) -> SolveParams:
    """The regions' solve parameters: a short late window (the instances' due dates are 2-6 days),
    `time_limit_s`'s worth of deterministic work with the clock a cap `CAP_FACTOR` times that, and no
    candidate radius on the large path (`NEAR_KM`). The setup cost stays the configured one in every
    solve (`SolveParams.scale_setup` off), so the regions' plans and the global plan cost in one
    currency."""
    return SolveParams(
        late_window_days=2.0,
        time_limit_s=CAP_FACTOR * time_limit_s,
        deterministic=True,
        work_limit=WORK_PER_SECOND * time_limit_s,
        near_km=NEAR_KM,
        scale_setup=False,
    )


def _plan_task(task: tuple[str, Problem, list[Trade], SolveParams, Plan | None]) -> RegionalPlan:
    """One region's integer plan (a task for the executor: plain data in, plain data out)."""
    region, problem, trades, params, warm = task
    if len(problem.demands) > params.decompose_above:
        params = replace(params, time_limit_s=max(params.time_limit_s, LARGE_CAP_S))
    return plan_region(region, problem, trades, params, warm_start=warm)


def _plan_all(
    tasks: list[tuple[str, Problem, list[Trade], SolveParams, Plan | None]],
    workers: int,
    executor: Executor | None = None,
) -> list[RegionalPlan]:
    """The regions' plans, side by side on a pool of `workers` processes (in this process for 1), the
    longest first so that the workers end together; in the order of `tasks`. A plan started from a
    plan in hand is expected to take as long as that one took, scaled by the units it now places:
    its own, less those it imports, plus those it hosts. Alone, a region at twice its capacity took
    19 s and the others about 5 s; with trades, the host that made 11,000-12,000 of its units took
    26-36 s, and expected as long as alone it was started last. Surge seed 8's federated run took
    62.3 and 59.8 s that way, 53.5 and 52.9 s now; over surge seeds 1, 4, 6 and 8 the worst went from
    62.3 to 53.5 s, though seed 1 went from 46.9 to 50 s (two large plans side by side share the
    cores). Plans with no plan in hand go by their demands. The pool is closed before this returns,
    so its workers' CPU seconds count in `_cpu_seconds`."""
    if workers == 1 or len(tasks) <= 1:
        return [_plan_task(t) for t in tasks]

    def expected(i: int) -> tuple[float, int]:
        region, problem, trades, _, warm = tasks[i]
        own = sum(d.quantity for d in problem.demands)
        if warm is None or own == 0:
            return (0.0, len(problem.demands))
        imported = sum(t.units for t in trades if t.origin == region)
        hosted = sum(t.units for t in trades if t.host == region)
        return (warm.solve_seconds * max(0, own - imported + hosted) / own, len(problem.demands))

    order = sorted(range(len(tasks)), key=lambda i: expected(i), reverse=True)
    if executor is not None:
        done = fan_out(executor, _plan_task, [tasks[i] for i in order])
    else:
        with open_executor("process", min(workers, len(tasks))) as pool:
            done = fan_out(pool, _plan_task, [tasks[i] for i in order])
    plans: list[RegionalPlan | None] = [None] * len(tasks)
    for i, plan in zip(order, done, strict=True):
        plans[i] = plan
    return [p for p in plans if p is not None]


def bench_federation(bench: BenchParams) -> dict[str, Any]:
    """Solve the instance three ways and return the figures (see the module docstring)."""
    regions = federation(
        bench.regions, bench.orders_per_region, bench.labs_per_region, bench.seed, bench.case
    )
    params = solve_params(bench.time_limit_s)
    # The regions' plans alone: the isolated reference, and each planner's plan in hand when a
    # session opens (a planner plans its own orders before it federates), timed apart.
    started = time.perf_counter()
    cpu = _cpu_seconds()
    isolated_plans = _plan_all([(r.id, r.problem, [], params, None) for r in regions], bench.workers)
    isolated_seconds = time.perf_counter() - started
    isolated_cpu = _cpu_seconds() - cpu
    alone = {p.region: p for p in isolated_plans}
    # The federated run: the net, every trading region's plan with its trades (started from its plan
    # in hand), the validator and the final check.
    problems = {r.id: r.problem for r in regions}
    cpu = _cpu_seconds()
    with ExitStack() as stack:
        solves: PooledSolves | None = None
        executor: Executor | None = None
        if bench.workers > 1:
            # Each region's planner is running when a session opens: its process, and its model
            # of its own problem, are there before the net starts (`wait_ready`).
            executor = stack.enter_context(
                open_executor("process", bench.workers, initializer=load, initargs=(problems, params))
            )
            wait_ready(executor, bench.workers)
            solves = PooledSolves(executor)
        started = time.perf_counter()
        net = run_net(problems, params, NetParams(), solves)
        net_seconds = time.perf_counter() - started
        trading = {t.host for t in net.trades} | {t.origin for t in net.trades}
        with_trades = _plan_all(
            [(r.id, r.problem, net.trades, params, alone[r.id].plan) for r in regions if r.id in trading],
            bench.workers,
            executor,
        )
    traded = {p.region: p for p in with_trades}
    traded_plans = [traded.get(r.id, alone[r.id]) for r in regions]
    kept = integer_check(isolated_plans, traded_plans)
    plans = traded_plans if kept else isolated_plans
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    whole = merged(regions)
    global_lp = RegionModel("global", whole, params, own_cells=GLOBAL_CELLS).solve().cost
    federated_plan_cost = sum(p.cost for p in plans)
    figures: dict[str, Any] = {
        "regions": bench.regions,
        "orders_per_region": bench.orders_per_region,
        "labs_per_region": bench.labs_per_region,
        "seed": bench.seed,
        "case": bench.case,
        "cost_ratio": net.federated_cost / global_lp,
        "isolated_ratio": net.isolated_cost / global_lp,
        "rounds": len(net.rounds),
        "rounds_to_1pct": _rounds_to(net, global_lp),
        "messages": len(net.messages),
        "bytes": sum(
            len(encode_peer(m.kind, m.sender, n, 0, m.body)) for n, m in enumerate(net.messages, start=1)
        ),
        "orders_exposed_share": sum(len(v) for v in net.exposed.values()) / len(whole.demands),
        "trades": len(net.trades),
        "units_traded": sum(t.units for t in net.trades),
        "seconds": seconds,
        "net_seconds": net_seconds,
        "cpu_seconds": cpu,
        "isolated_seconds": isolated_seconds,
        "isolated_cpu_seconds": isolated_cpu,
        "valid": all(not p.violations for p in [*plans, *traded_plans, *isolated_plans]),
        "violations": sum(len(p.violations) for p in plans),
        "lp_federated": net.federated_cost,
        "lp_isolated": net.isolated_cost,
        "lp_global": global_lp,
        "plan_federated": federated_plan_cost,
        "plan_with_trades": sum(p.cost for p in traded_plans),
        "plan_isolated": sum(p.cost for p in isolated_plans),
        "trades_kept": kept,
        "plan_statuses": sorted({p.plan.status for p in [*isolated_plans, *with_trades]}),
        "plans_cut_by_clock": sum(_cut(p, params) for p in [*isolated_plans, *with_trades]),
        "units_short_federated": sum(s.quantity for p in plans for s in p.plan.shortages),
        "units_short_with_trades": sum(s.quantity for p in traded_plans for s in p.plan.shortages),
        "units_short_isolated": sum(s.quantity for p in isolated_plans for s in p.plan.shortages),
    }
    if bench.global_plan:
        global_started = time.perf_counter()
        plan = solve(whole, solve_params(bench.time_limit_s * bench.regions))
        figures["plan_global"] = plan.objective
        figures["plan_global_bound"] = plan.bound
        figures["global_seconds"] = time.perf_counter() - global_started
        figures["certified_gap_pct"] = 100.0 * (federated_plan_cost - plan.bound) / abs(plan.bound)
    else:
        figures["certified_gap_pct"] = None
    return figures


def _cut(plan: RegionalPlan, params: SolveParams) -> bool:
    """Whether the wall-clock cap (not the work budget) probably ended a plan: the large path says so
    in its status; the one-model path took (nearly) all of the cap."""
    if "TIME_LIMIT" in plan.plan.status:
        return True
    return len(plan.problem.demands) <= params.decompose_above and (
        plan.plan.solve_seconds >= CUT_SHARE * params.time_limit_s
    )


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (the executor's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rounds_to(net: Any, global_lp: float) -> int | None:
    """The first round after which the committed summed cost is within WITHIN of the global LP."""
    if net.isolated_cost <= (1 + WITHIN) * global_lp:
        return 0
    for record in net.rounds:
        total = record.total_after if record.committed else record.total_before
        if total <= (1 + WITHIN) * global_lp:
            return record.round
    return None
