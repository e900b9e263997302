"""What the web pages show that the JSON API does not already: a lab's jobs as its operator decides
on them, the planner's view of the lab's machine schedule, and the network's transport, CO2 and
fill rate over time.

Read-only functions over `PlannerCore` (its public state and its ledger's event log); they change
nothing, so the pages can call them at any time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from planner.core import ACTIVE_STATES, PlannerCore
from protocol.footprint import CO2_KG_PER_TONNE_KM, CO2_SOURCE, unit_kg
from solver.model.geo import haversine_km

#: Events read to draw the fill rate over time (the most recent ones when the log is longer).
FILL_EVENTS_LIMIT = 20_000
SCHEDULE_NOTE = (
    "The planner's view, not the lab's own sequence: each accepted job spans from when the lab "
    "accepted it (planner clock) to the lab's latest finish estimate (the lab's clock, which runs "
    "faster in a simulation), on every machine of the lab able to run one of its steps."
)


def _job_times(core: PlannerCore, order_id: str) -> dict[str, dict[str, str]]:
    """Per assignment of an order: when each job state was first recorded (ISO 8601)."""
    times: dict[str, dict[str, str]] = {}
    for event in core.ledger.events_of(f"order-{order_id}", limit=1000):
        if event.kind.startswith("job.") and "id" in event.data:
            times.setdefault(str(event.data["id"]), {}).setdefault(event.kind[4:], event.at)
    return times


def lab_jobs(core: PlannerCore, lab_id: str) -> list[dict[str, Any]]:
    """The lab's jobs, newest first, with what the operator needs to decide: design, due, place, km."""
    view = core.labs[lab_id]
    jobs = []
    for job in core.lab_json(view)["jobs"]:
        order = core.orders.get(job["order_id"])
        design = core.designs.get(order.design) if order else None
        jobs.append(
            job
            | {
                "awaiting_decision": job["state"] == "assigned",
                "design": order.design if order else None,
                "design_name": design.name if design else None,
                "due_at": order.due_at.isoformat() if order else None,
                "priority": order.priority if order else None,
                "delivery_place": order.delivery.place if order else None,
                "km": round(haversine_km(view.lab.location, order.delivery), 1) if order else None,
                "minutes_per_unit": design.minutes_per_unit() if design else None,
            }
        )
    jobs.reverse()
    return jobs


def schedule(core: PlannerCore, lab_id: str) -> dict[str, Any]:
    """Per machine, the spans of the lab's accepted jobs as the planner knows them (see SCHEDULE_NOTE)."""
    view = core.labs[lab_id]
    bars = []
    times_by_order: dict[str, dict[str, dict[str, str]]] = {}
    for job in core.lab_json(view)["jobs"]:
        if job["state"] not in ACTIVE_STATES - {"assigned"} and job["state"] != "done":
            continue
        order = core.orders.get(job["order_id"])
        if order is None:
            continue
        if order.id not in times_by_order:
            times_by_order[order.id] = _job_times(core, order.id)
        times = times_by_order[order.id].get(job["id"], {})
        start = times.get("accepted") or times.get("running") or times.get("assigned")
        end = job["eta"] or times.get("done")
        if start is None or end is None:
            continue
        if datetime.fromisoformat(end) < datetime.fromisoformat(start):
            end = start
        design = core.designs[order.design]
        machines = sorted({m.id for step in design.steps for m in view.lab.machines if step.can_run_on(m)})
        for machine_id in machines:
            bars.append(
                {
                    "machine": machine_id,
                    "assignment_id": job["id"],
                    "order_id": order.id,
                    "design": order.design,
                    "quantity": job["quantity"],
                    "units_done": job["units_done"],
                    "state": job["state"],
                    "start": start,
                    "end": end,
                }
            )
    return {
        "lab_id": lab_id,
        "machines": [m.id for m in view.lab.machines],
        "bars": bars,
        "note": SCHEDULE_NOTE,
    }


def transport(core: PlannerCore) -> dict[str, Any]:
    """Transport of made units and of all standing allocations: unit-km, tonne-km and CO2e."""
    made_unit_km = made_tonne_km = planned_unit_km = planned_tonne_km = 0.0
    for a in core.assignments.values():
        view, order = core.labs.get(a.lab_id), core.orders.get(a.order_id)
        if view is None or order is None:
            continue
        km = haversine_km(view.lab.location, order.delivery)
        kg = unit_kg(core.designs[order.design])
        made_unit_km += a.units_done * km
        made_tonne_km += a.units_done * kg / 1000.0 * km
        if a.state in ACTIVE_STATES or a.state == "done":
            planned_unit_km += a.quantity * km
            planned_tonne_km += a.quantity * kg / 1000.0 * km
    return {
        "made_unit_km": round(made_unit_km, 1),
        "made_tonne_km": round(made_tonne_km, 4),
        "made_co2_kg": round(made_tonne_km * CO2_KG_PER_TONNE_KM, 3),
        "planned_unit_km": round(planned_unit_km, 1),
        "planned_tonne_km": round(planned_tonne_km, 4),
        "planned_co2_kg": round(planned_tonne_km * CO2_KG_PER_TONNE_KM, 3),
        "co2_factor_kg_per_tonne_km": CO2_KG_PER_TONNE_KM,
        "co2_source": CO2_SOURCE,
    }


def fill_rate_series(core: PlannerCore) -> list[dict[str, Any]]:
    """Units made over units ordered, after each event that changed either (from the event log)."""
    last = core.ledger.last_event_seq()
    events = core.ledger.events_after(max(0, last - FILL_EVENTS_LIMIT), limit=FILL_EVENTS_LIMIT)
    ordered = made = 0
    done_by_job: dict[str, int] = {}
    points: list[dict[str, Any]] = []
    for event in events:
        data = event.data
        if event.kind == "order.created":
            ordered += int(data.get("quantity", 0))
        elif event.kind.startswith("job.") and "units_done" in data and "id" in data:
            before = done_by_job.get(data["id"], 0)
            after = max(before, int(data["units_done"]))
            done_by_job[data["id"]] = after
            if after == before:
                continue
            made += after - before
        else:
            continue
        points.append(
            {"at": event.at, "seq": event.seq, "ordered": ordered, "made": made, "fill_rate": made / ordered}
            if ordered
            else {"at": event.at, "seq": event.seq, "ordered": 0, "made": made, "fill_rate": None}
        )
    return points


def network(core: PlannerCore) -> dict[str, Any]:
    """The network page's figures: plan, totals, labs, orders, transport and fill rate over time."""
    plan = core.plan_summary(core.plan) if core.plan else {"version": 0, "status": "EMPTY"}
    ordered = sum(o.quantity for o in core.orders.values())
    made = sum(core.units_made(o) for o in core.orders)
    return {
        "plan": plan,
        "totals": core.ledger.plan_totals(),
        "labs_live": sum(1 for v in core.labs.values() if v.live),
        "labs_known": len(core.labs),
        "orders": len(core.orders),
        "orders_done": sum(1 for o in core.orders.values() if o.state == "done"),
        "units_ordered": ordered,
        "units_made": made,
        "fill_rate": made / ordered if ordered else None,
        "transport": transport(core),
        "fill_rate_over_time": fill_rate_series(core),
    }


def public_map(core: PlannerCore) -> dict[str, Any]:
    """What anyone may see on the map: delivery places and the plan's flows, without order ids.

    Orders are followed by their id (a capability), so the public map groups them by place: how
    many units are wanted there and made so far, and how many units flow from each lab to it.
    """
    places: dict[tuple[float, float], dict[str, Any]] = {}
    flows: dict[tuple[str, float, float], int] = {}
    for order in core.orders.values():
        at = (round(order.delivery.lat, 4), round(order.delivery.lon, 4))
        place = places.setdefault(
            at,
            {"lat": at[0], "lon": at[1], "place": order.delivery.place, "orders": 0, "units": 0, "made": 0},
        )
        place["orders"] += 1
        place["units"] += order.quantity
        place["made"] += core.units_made(order.id)
        place["open"] = place.get("open", False) or order.state != "done"
    for a in core.assignments.values():
        order = core.orders.get(a.order_id)
        if order is None or (a.state not in ACTIVE_STATES and not a.units_done):
            continue
        key = (a.lab_id, round(order.delivery.lat, 4), round(order.delivery.lon, 4))
        flows[key] = flows.get(key, 0) + (a.quantity if a.state in ACTIVE_STATES | {"done"} else a.units_done)
    lab_at = {lab_id: view.lab.location for lab_id, view in core.labs.items()}
    return {
        "deliveries": list(places.values()),
        "flows": [
            {
                "lab_id": lab_id,
                "from": {"lat": lab_at[lab_id].lat, "lon": lab_at[lab_id].lon},
                "to": {"lat": lat, "lon": lon},
                "units": units,
            }
            for (lab_id, lat, lon), units in sorted(flows.items())
            if lab_id in lab_at
        ],
    }
