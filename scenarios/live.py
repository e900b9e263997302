"""A scenario over real processes: the planner and one node process per lab, orders over HTTP.

The mesh is the demo's (`scenarios.demo.start_mesh`): a `cosmolocal planner serve` process and one
`cosmolocal node join` process per lab, over ZeroMQ, with the SQLite ledger in a temporary folder.
Time is compressed by `speed`: an order placed at scenario day d is posted d * 86,400 / speed
seconds after the start, labs execute `speed` times faster than real time, and due dates keep their
real length (so the planner sees the true machine capacity before each due date). A lost lab's
process is stopped at its time and started again when it comes back. Stock-outs and machines down are
not replayed live (they are announced). Only Cosmolocal runs live; the baselines need the simulated
replay. Metrics come from the planner's API: fill rate, units per lab, transport and CO2.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from protocol.footprint import CO2_KG_PER_TONNE_KM, CO2_SOURCE, unit_kg
from protocol.model import Location
from scenarios.demo import Mesh, start_mesh
from scenarios.spec import LoadedScenario
from scenarios.world import World, build_world
from solver.geo import haversine_km


def run_live(
    loaded: LoadedScenario, speed: float = 20_000.0, console: Console | None = None, grace_s: float = 30.0
) -> list[dict[str, Any]]:
    """Run the scenario live; returns one metrics object (policy `cosmolocal-live`)."""
    console = console or Console(stderr=True)
    world = build_world(loaded)
    scenario = loaded.scenario
    skipped = sorted({e.kind for e in world.events if e.kind not in {"lab_lost", "lab_joins"}})
    if skipped:
        console.print(f"[yellow]not replayed live[/]: {', '.join(skipped)}", highlight=False)
    # (wall offset s, action, lab id): lab_lost stops a process, its end (or lab_joins) starts one.
    actions: list[tuple[float, str, str]] = []
    late_joiners = set()
    for event in world.events:
        at = (event.start - world.start).total_seconds() / speed
        if event.kind == "lab_lost":
            actions.append((at, "stop", event.lab_id))
            if event.end is not None:
                actions.append(((event.end - world.start).total_seconds() / speed, "start", event.lab_id))
        elif event.kind == "lab_joins":
            late_joiners.add(event.lab_id)
            actions.append((at, "start", event.lab_id))
    started_labs = [lab for lab in world.labs if lab.id not in late_joiners]
    with tempfile.TemporaryDirectory(prefix="cosmolocal-live-") as temp:
        workdir = Path(temp)
        with console.status(f"starting a planner and {len(started_labs)} lab processes..."):
            mesh = start_mesh(started_labs, workdir, speed)
        processes: dict[str, subprocess.Popen[bytes]] = {
            lab.id: process for lab, process in zip(started_labs, mesh.nodes, strict=True)
        }
        try:
            placed = _replay(mesh, world, speed, actions, processes, console)
            deadline = time.monotonic() + grace_s
            with httpx.Client(base_url=mesh.api, timeout=10.0, headers=mesh.headers) as client:
                while time.monotonic() < deadline:
                    views = [client.get(f"/orders/{order_id}").json() for order_id in placed]
                    if all(v["state"] == "done" for v in views):
                        break
                    time.sleep(0.5)
                plan = client.get("/plan").json()
        finally:
            for process in processes.values():
                if process not in mesh.nodes:
                    mesh.nodes.append(process)
            mesh.stop()
    where = {lab.id: lab.location for lab in world.labs}
    demanded = sum(o.quantity for o in world.orders)
    delivered = sum(v["units_made"] for v in views)
    unit_km = tonne_km = 0.0
    used: set[str] = set()
    for view in views:
        kg = unit_kg(loaded.designs[view["design"]])
        for a in view["allocations"]:
            if a["units_done"] and a["lab_id"] in where:
                km = haversine_km(where[a["lab_id"]], Location.model_validate(view["delivery"]))
                unit_km += a["units_done"] * km
                tonne_km += a["units_done"] * kg / 1000.0 * km
                used.add(a["lab_id"])
    totals = plan.get("totals", {})
    return [
        {
            "scenario": scenario.name,
            "seed": scenario.seed,
            "policy": "cosmolocal-live",
            "orders": len(world.orders),
            "units_demanded": demanded,
            "units_delivered": delivered,
            "fill_rate": round(delivered / demanded, 4) if demanded else 0.0,
            "units_missing": demanded - delivered,
            "transport_unit_km": round(unit_km, 1),
            "km_per_unit": round(unit_km / delivered, 2) if delivered else None,
            "transport_tonne_km": round(tonne_km, 3),
            "co2_kg": round(tonne_km * CO2_KG_PER_TONNE_KM, 3),
            "co2_factor_kg_per_tonne_km": CO2_KG_PER_TONNE_KM,
            "co2_source": CO2_SOURCE,
            "labs_available": len(world.labs),
            "labs_used": len(used),
            "plans": totals.get("plans", 0),
            "plan_objective": totals.get("objective"),
            "plan_bound": totals.get("bound"),
            "speed": speed,
        }
    ]


def _replay(
    mesh: Mesh,
    world: World,
    speed: float,
    actions: list[tuple[float, str, str]],
    processes: dict[str, subprocess.Popen[bytes]],
    console: Console,
) -> list[str]:
    """Post the orders and apply lab arrivals and losses at their compressed times."""
    labs_by_id = {lab.id: lab for lab in world.labs}
    timeline: list[tuple[float, int, str, Any]] = [
        ((o.created_at - world.start).total_seconds() / speed, 1, "order", o) for o in world.orders
    ]
    timeline += [(at, 0, kind, lab_id) for at, kind, lab_id in actions]
    timeline.sort(key=lambda item: (item[0], item[1]))
    started = time.monotonic()
    placed = []
    with httpx.Client(base_url=mesh.api, timeout=10.0, headers=mesh.headers) as client:
        for at, _, kind, item in timeline:
            wait = started + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if kind == "order":
                now = datetime.now(UTC)
                request = {
                    "design": item.design,
                    "quantity": item.quantity,
                    "priority": item.priority,
                    "due_at": (now + (item.due_at - item.created_at)).isoformat(),
                    "delivery": item.delivery.model_dump(),
                }
                response = client.post("/orders", json=request)
                if response.status_code != 201:
                    console.print(f"[red]order refused[/]: {response.status_code} {response.text}")
                    continue
                placed.append(response.json()["id"])
            elif kind == "stop" and item in processes and processes[item].poll() is None:
                processes[item].send_signal(signal.SIGTERM)
                processes[item].wait(timeout=10)
            elif kind == "start" and (item not in processes or processes[item].poll() is not None):
                known = item in mesh.node_argv
                processes[item] = mesh.restart_node(item) if known else mesh.add_lab(labs_by_id[item])
    return placed
