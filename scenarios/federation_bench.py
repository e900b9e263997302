"""One synthetic federation solved three ways, federated, isolated and global, and measured.

- **federated**: the priced contract net (`solver.federation.net`), then each region's own integer
  plan with its committed trades (`solver.federation.plans`), each checked by the validator;
- **isolated**: each region's LP and integer plan alone;
- **global**: one LP over every region's cells and demands, and one integer plan of the merged
  problem by the usual allocator (its bound is valid for every plan on all labs).

`cost_ratio`, `isolated_ratio` and `rounds_to_1pct` compare the regional LPs (the plans the net
negotiates) with the global LP built the same way; `certified_gap_pct` compares the federated
integer plans' summed cost with the global integer plan's bound, a lower bound on every plan.
Every message the net would send is encoded with the peer codec (`protocol.peers`) and counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from protocol.peers import encode_peer
from scenarios.federation import Case, federation, merged
from solver.allocation.allocate import solve
from solver.federation.net import NetParams, run_net
from solver.federation.plans import plan_region
from solver.federation.region import RegionModel
from solver.model.problem import SolveParams

#: Own cells each global LP group may be made in: enough to reach every region's cells.
GLOBAL_CELLS = 64
#: Rounds are counted to the first one whose summed cost is within this share of the global LP.
WITHIN = 0.01


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


def solve_params(time_limit_s: float) -> SolveParams:
    """The regions' solve parameters: a short late window (the instances' due dates are 2-6 days)."""
    return SolveParams(late_window_days=2.0, time_limit_s=time_limit_s)


def bench_federation(bench: BenchParams) -> dict[str, Any]:
    """Solve the instance three ways and return the figures (see the module docstring)."""
    regions = federation(
        bench.regions, bench.orders_per_region, bench.labs_per_region, bench.seed, bench.case
    )
    params = solve_params(bench.time_limit_s)
    started = time.perf_counter()
    net = run_net({r.id: r.problem for r in regions}, params, NetParams())
    plans = [plan_region(r.id, r.problem, net.trades, params) for r in regions]
    seconds = time.perf_counter() - started
    whole = merged(regions)
    global_lp = RegionModel("global", whole, params, own_cells=GLOBAL_CELLS).solve().cost
    isolated_plans = [plan_region(r.id, r.problem, [], params) for r in regions]
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
        "valid": all(not p.violations for p in plans) and all(not p.violations for p in isolated_plans),
        "violations": sum(len(p.violations) for p in plans),
        "lp_federated": net.federated_cost,
        "lp_isolated": net.isolated_cost,
        "lp_global": global_lp,
        "plan_federated": federated_plan_cost,
        "plan_isolated": sum(p.cost for p in isolated_plans),
        "units_short_federated": sum(s.quantity for p in plans for s in p.plan.shortages),
        "units_short_isolated": sum(s.quantity for p in isolated_plans for s in p.plan.shortages),
    }
    if bench.global_plan:
        global_started = time.perf_counter()
        plan = solve(
            whole, SolveParams(late_window_days=2.0, time_limit_s=bench.time_limit_s * bench.regions)
        )
        figures["plan_global"] = plan.objective
        figures["plan_global_bound"] = plan.bound
        figures["global_seconds"] = time.perf_counter() - global_started
        figures["certified_gap_pct"] = 100.0 * (federated_plan_cost - plan.bound) / abs(plan.bound)
    else:
        figures["certified_gap_pct"] = None
    return figures


def _rounds_to(net: Any, global_lp: float) -> int | None:
    """The first round after which the committed summed cost is within WITHIN of the global LP."""
    if net.isolated_cost <= (1 + WITHIN) * global_lp:
        return 0
    for record in net.rounds:
        total = record.total_after if record.committed else record.total_before
        if total <= (1 + WITHIN) * global_lp:
            return record.round
    return None
