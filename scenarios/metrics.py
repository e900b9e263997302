"""The measures a scenario reports per policy: service, lead time, transport, CO2, labs, solve time.

Honest by construction: every policy is measured by the same code on the same orders, and units not
delivered count against the fill rate (they are never dropped from the denominator). Lead times are
per unit, from the order being placed to its delivery, over delivered units only (missing units are
reported as such). Each rate (`kind = "rate"` demand) reports the days from its start until its
need is met: until the units delivered catch up with the units due, for good (`planner.need_met`).
Plan against reality: of the units a policy placed to arrive by their due date
(the solver's on-time units; every unit a baseline places, since it places work where it fits by the
due date), those that arrived late, and how many of those arrived after the plan's own date for them
(the lab made them later than planned), with why: a disruption at the lab while the units waited (a
stock-out, the lab lost, machines down) or, with none, the lab falling behind its plan. Transport
is great-circle distance lab -> delivery point (road distance is longer, for every policy alike).
CO2 is tonne-km times one stated factor, with a unit's mass from its design's materials.
Material shipped between labs (the solver's transfers) is part of the transport footprint: its
tonne-km (material mass times great-circle km sender -> receiver) are added to the units', and its
km are reported apart (parcels, not units, so they are not in km per unit).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from planner.need_met import need_met
from protocol.footprint import CO2_KG_PER_TONNE_KM, CO2_SOURCE, MATERIAL_KG, unit_kg
from scenarios.sim import PolicyRun
from scenarios.world import WorldEvent


def weighted_percentile(values: list[tuple[float, int]], q: float) -> float:
    """The q-quantile (0..1) of values each repeated `weight` times; nan when there are none."""
    total = sum(w for _, w in values)
    if total <= 0:
        return math.nan
    target = q * total
    seen = 0
    for value, weight in sorted(values):
        seen += weight
        if seen >= target - 1e-9:
            return value
    return sorted(values)[-1][0]


def gini(values: list[float]) -> float:
    """Gini coefficient of a list of non-negative numbers: 0 = all equal, near 1 = one takes all."""
    values = sorted(v for v in values if v >= 0)
    n = len(values)
    total = sum(values)
    if n == 0 or total <= 0:
        return 0.0
    cumulative = sum((i + 1) * v for i, v in enumerate(values))
    return (2.0 * cumulative) / (n * total) - (n + 1.0) / n


def _round(value: float, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


#: Why units planned on time arrived late, most specific first: a disruption at their lab while they
#: waited, or, with none, the lab falling behind its plan (queue, capacity or timing).
SLIP_CAUSES = ("stock_out", "lab_lost", "machine_down", "lab_behind")


def slip_cause(events: list[WorldEvent], lab_id: str, since: datetime, until: datetime) -> str:
    """Why units made at `lab_id` for an order placed at `since` arrived late at `until`."""
    kinds = {
        e.kind
        for e in events
        if e.lab_id == lab_id and e.start <= until and (e.end is None or e.end >= since)
    }
    return next((cause for cause in SLIP_CAUSES[:-1] if cause in kinds), "lab_behind")


def rate_needs(run: PolicyRun) -> list[dict[str, Any]]:
    """Per rate of the scenario: the days from its start until the units delivered catch up with
    the units due for good (`planner.need_met`), or None with the shortfall at the end of the replay."""
    orders = {o.id: o for o in run.world.orders}
    found = []
    for stream in run.world.streams:
        dues = [(orders[i].due_at, orders[i].quantity) for i in stream.order_ids]
        arrivals = [(d.delivered_at, d.units) for d in run.deliveries if d.order_id in stream.order_ids]
        met = need_met(dues, arrivals, stream.start, max(stream.start, run.world.end))
        found.append(
            {"rate": stream.id, "design": stream.design, "units_per_day": stream.units_per_day}
            | met.to_json()
        )
    return found


def policy_metrics(run: PolicyRun) -> dict[str, Any]:
    """The metrics of one policy's replay, as one flat JSON-ready object."""
    world = run.world
    scenario = world.loaded.scenario
    designs = world.loaded.designs
    orders = {o.id: o for o in world.orders}
    demanded = sum(o.quantity for o in world.orders)
    delivered = on_time = 0
    promised = slipped = slipped_after_plan = 0
    slip_causes = dict.fromkeys(SLIP_CAUSES, 0)
    unit_km = tonne_km = 0.0
    leads: list[tuple[float, int]] = []
    for d in run.deliveries:
        order = orders[d.order_id]
        delivered += d.units
        on_time += d.units if d.delivered_at <= order.due_at else 0
        promised += d.planned_on_time
        if d.delivered_at > order.due_at:
            slipped += d.planned_on_time
            if d.arrive_by is not None and d.delivered_at > d.arrive_by:
                slipped_after_plan += d.planned_on_time
            slip_causes[slip_cause(world.events, d.lab_id, order.created_at, d.delivered_at)] += (
                d.planned_on_time
            )
        unit_km += d.units * d.km
        tonne_km += d.units * unit_kg(designs[order.design]) / 1000.0 * d.km
        leads.append(((d.delivered_at - order.created_at) / timedelta(hours=1), d.units))
    transfer_tonne_km = sum(
        MATERIAL_KG.get(t.material, 0.0) * t.quantity / 1000.0 * t.km for t in run.transfers
    )
    tonne_km += transfer_tonne_km
    mean_lead = sum(v * w for v, w in leads) / delivered if delivered else math.nan
    stats = run.stats
    gap = (stats.objective - stats.bound) / stats.objective if stats.objective > 0 else 0.0
    needs = rate_needs(run)
    days_met = [n["days_until_met"] for n in needs]
    used = [lab.minutes_used for lab in run.labs]
    offered = sum(lab.minutes_offered for lab in run.labs)
    return {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "policy": run.policy,
        "orders": len(world.orders),
        "units_demanded": demanded,
        "units_delivered": delivered,
        "fill_rate": _round(delivered / demanded if demanded else 0.0, 4),
        "units_on_time": on_time,
        "units_late": delivered - on_time,
        "units_missing": demanded - delivered,
        "on_time_rate": _round(on_time / demanded if demanded else 0.0, 4),
        "units_planned_on_time": promised,
        "units_planned_on_time_arrived_late": slipped,
        "plan_slip_rate": _round(slipped / delivered if delivered else 0.0, 4),
        "units_slipped_after_planned_arrival": slipped_after_plan,
        "rates": needs,
        "rates_not_met": sum(1 for d in days_met if d is None),
        "rates_days_until_met_worst": max((d for d in days_met if d is not None), default=None),
        **{f"units_slipped_{cause}": units for cause, units in slip_causes.items()},
        "lead_time_mean_h": _round(mean_lead, 2),
        "lead_time_p95_h": _round(weighted_percentile(leads, 0.95), 2),
        "transport_unit_km": round(unit_km, 1),
        "km_per_unit": _round(unit_km / delivered if delivered else math.nan, 2),
        "transport_tonne_km": round(tonne_km, 3),
        "transfers": len(run.transfers),
        "transfer_km": round(sum(t.km for t in run.transfers), 1),
        "transfer_tonne_km": round(transfer_tonne_km, 4),
        "co2_kg": round(tonne_km * CO2_KG_PER_TONNE_KM, 3),
        "co2_factor_kg_per_tonne_km": CO2_KG_PER_TONNE_KM,
        "co2_source": CO2_SOURCE,
        "labs_available": len(run.labs),
        "labs_used": sum(1 for lab in run.labs if lab.units_made > 0),
        "load_gini": round(gini(used), 4),
        "utilisation": _round(sum(used) / offered if offered else 0.0, 4),
        "plans": stats.plans,
        "plan_objective": round(stats.objective, 3),
        "plan_bound": round(stats.bound, 3),
        "plan_gap": round(max(0.0, gap), 6),
        "plans_optimal": stats.optimal,
        "solve_seconds": round(run.solve_seconds, 3),
    }


#: Keys that measure the machine, not the scenario: left out when comparing two runs.
WALL_TIME_KEYS = frozenset({"solve_seconds"})

#: Which way is better for each numeric metric, for a sweep's worst seed: "higher", "lower", or None
#: where a metric describes the draw or the plan's size rather than how well it went.
BETTER: dict[str, str | None] = {
    "orders": None,
    "units_demanded": None,
    "units_delivered": "higher",
    "fill_rate": "higher",
    "units_on_time": "higher",
    "on_time_rate": "higher",
    "units_late": "lower",
    "units_missing": "lower",
    "units_planned_on_time": None,
    "units_planned_on_time_arrived_late": "lower",
    "plan_slip_rate": "lower",
    "units_slipped_after_planned_arrival": "lower",
    **{f"units_slipped_{cause}": "lower" for cause in SLIP_CAUSES},
    "lead_time_mean_h": "lower",
    "lead_time_p95_h": "lower",
    "transport_unit_km": "lower",
    "km_per_unit": "lower",
    "transport_tonne_km": "lower",
    "co2_kg": "lower",
    # Material transfers are a means, judged by fill and on-time share; their footprint is already in
    # transport_tonne_km and co2_kg.
    "transfers": None,
    "transfer_km": None,
    "transfer_tonne_km": None,
    "labs_available": None,
    "labs_used": None,
    "load_gini": "lower",
    "utilisation": None,
    "plans": None,
    "plan_objective": None,
    "plan_bound": None,
    "plan_gap": "lower",
    "plans_optimal": None,
    "solve_seconds": "lower",
    "rates_not_met": "lower",
    "rates_days_until_met_worst": "lower",
}


def series(run: PolicyRun, step_hours: float = 24.0) -> list[tuple[float, int, int]]:
    """(day, units demanded so far, units delivered so far) every `step_hours` over the replay."""
    world = run.world
    points = []
    steps = math.ceil((world.end - world.start) / timedelta(hours=step_hours) - 1e-9)
    created = sorted((o.created_at, o.quantity) for o in world.orders)
    arrived = sorted((d.delivered_at, d.units) for d in run.deliveries)
    for k in range(steps + 1):
        t = world.start + timedelta(hours=k * step_hours)
        demanded = sum(q for when, q in created if when <= t)
        delivered = sum(u for when, u in arrived if when <= t)
        points.append((k * step_hours / 24.0, demanded, delivered))
    return points
