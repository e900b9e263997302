"""A scenario over real processes: the planner and one node process per lab, orders over HTTP.

The mesh is the demo's (`scenarios.demo.start_mesh`): a `cosmolocal planner serve` process and one
`cosmolocal node join` process per lab, over ZeroMQ, with the SQLite ledger in a temporary folder.
Time is compressed by `speed`, and the planner and its labs read one compressed clock
(`protocol.timeframe`: `planner serve --clock-speed --clock-anchor`, `node join --speed
--clock-anchor`): scenario time t is the mesh's time t plus a fixed shift, orders are posted at
their compressed times with their due dates in that frame, and the planner's plans, leases and
hours account count the same hours the labs work. (Before, the planner read the wall clock while
its labs ran `speed` times faster: due dates kept their real length, so an order placed days ago
looked as far from its due date as a new one, and the planner counted the labs' hours at wall
speed.) The speed is the scenario's `default_speed` (from the units it demands a day) unless given.
The planner solves with the scenario's `solve_seconds`, `k_nearest` and `transfer_radius_km` and
weighs by its `objective`; the transfers it plans go over the mesh (SHIP, INCOMING, ARRIVED) and are
counted from its ledger. Labs run with `--working-hours`: a machine works its `hours_per_day`, as the planner
and the simulation count it (by default the simulated executor runs machines around the clock,
which gave the live labs 24 / hours_per_day times their capacity). They run with `--rule-only` too:
they take work earliest leave-by first (`solver.jobshop.ranking`, the ASSIGN saying what the plan
meant), as the simulated labs do, without CP-SAT's improvement, which the simulation does not model.

The world is replayed as the simulation replays it (`scenarios.sim`): a lost lab's process is
stopped at its time and started again when it comes back; every lab gets its supply
(`restock_per_day`) at the start of each round through its control socket (`nodes.control`), and
the orders of that instant wait until every lab has answered it (`_Controls.settle`), as the
simulation restocks before it plans; a stock-out makes the lab lose that material and cuts its
supply until it ends; a machine down is told to its lab, and back up at its end. Only Cosmolocal
runs live; the baselines need the simulated replay.

Metrics have the simulation's keys where they can (`scenarios.metrics`): units count as made when
the planner records them (the ledger's job events, shifted back to scenario time; a job's last units
when its lab said it ended, if sooner: `_read_ledger`), delivered after
the simulation's handling time and road time, and only units made by the scenario's end count, as
in the simulation. On-time share and lead times (mean, p95) follow from that, and the plan's slip
(`plan_slip_rate`): units the plan counted on time that arrived after their due date, a job's
first `on_time_units` being its on-time ones, as its lab makes them first. The planner's own
solve time is reported in wall seconds and in simulated hours (`solve_sim_hours_max`), the measure
of whether the live speed leaves the planner time to think.
"""

from __future__ import annotations

import json
import math
import queue
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import zmq
from rich.console import Console

from nodes.control import ControlRequest, send_control
from protocol.footprint import CO2_KG_PER_TONNE_KM, CO2_SOURCE, MATERIAL_KG, unit_kg
from protocol.model import Order
from protocol.timeframe import compressed
from scenarios.demo import Mesh, start_mesh
from scenarios.metrics import weighted_percentile
from scenarios.sim import HANDLING_HOURS, replay_rounds
from scenarios.spec import LoadedScenario
from scenarios.world import World, build_world
from solver.model.geo import haversine_km

#: The fastest default compression of time: one wall second is 33 simulated minutes, so a 1-second
#: solve is about 2 % of a simulated day, and a lab's loop paused for a second (a loaded host) costs
#: half an hour of work, not five (measured against 20,000 and 5,000: docs/live-vs-sim.md). It is the
#: default of the light scenarios (`default_speed`).
DEFAULT_SPEED = 2_000.0
#: Units demanded per simulated day up to which `DEFAULT_SPEED` holds. Measured on a loaded 2-core
#: host at 2,000x: valve-lombardy (72 a day, largest solve 1.5 s), fab-city-barcelona (267, 1.6 s) and
#: shields-and-splints-be (648, 1.9 s) kept the largest solve near a simulated hour; churn (1,102 a
#: day) took 9.9 s, 5.5 simulated hours, and 4.8 s (1.3 h) at 1,000x (docs/live-vs-sim.md).
LIGHT_UNITS_PER_DAY = 800.0
#: The slowest default: a day lasts 6 wall minutes.
MIN_DEFAULT_SPEED = 250.0
#: Wall seconds after the scenario's end for the labs' last reports to reach the planner.
REPORT_SLACK_S = 3.0
#: The longest wait, in wall seconds, for a round's supply to be answered by every lab before the
#: replay goes on to the orders of the same instant (`_Controls.settle`).
SUPPLY_SETTLE_S = 2.0


def units_per_day(world: World) -> float:
    """Units the scenario demands per simulated day, over the days its orders come in."""
    days = max(world.loaded.scenario.days, 1e-9)
    return sum(order.quantity for order in world.orders) / days


def default_speed(world: World) -> float:
    """The live speed of a scenario by default, from its size: `DEFAULT_SPEED` up to
    `LIGHT_UNITS_PER_DAY` units demanded a day, halved for each doubling beyond, never below
    `MIN_DEFAULT_SPEED`.

    Why the units a day: the planner's solves carry the open work (more units a day, more lines per
    order and more work planned again when a lab is lost or falls behind), so its largest solve grows
    with them, and with it the simulated hours a solve lasts at a given speed; the mesh's own work
    (job reports, the ledger, re-plans) grows with them too. Halving the speed for each doubling keeps
    the largest solve near the simulated hour it takes in the light scenarios at 2,000x.
    """
    ratio = units_per_day(world) / LIGHT_UNITS_PER_DAY
    halvings = max(0, math.ceil(math.log2(ratio) - 1e-9)) if ratio > 0 else 0
    return max(MIN_DEFAULT_SPEED, DEFAULT_SPEED / 2**halvings)


class _Controls:
    """Talks to each lab's control socket from one thread per lab, so that a slow lab never holds up
    the replay's clock; requests to a lab keep their order. Supply a lab cannot take yet (stopped,
    not joined, not answering) is kept and sent with the next supply, as material waits at the door.
    `settle` waits until every request queued so far has been answered or given up.
    """

    def __init__(self, endpoints: dict[str, str], processes: dict[str, subprocess.Popen[bytes]]) -> None:
        self.endpoints = endpoints
        self.processes = processes
        self.context = zmq.Context()
        self.sent = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue[ControlRequest | None]] = {}
        self._threads: list[threading.Thread] = []
        self._pending: dict[str, dict[str, float]] = {}
        #: Requests queued and not yet answered or given up (`settle` waits for none).
        self._outstanding = 0
        self._idle = threading.Condition(self._lock)

    def running(self, lab_id: str) -> bool:
        """True while the lab's process runs."""
        process = self.processes.get(lab_id)
        return process is not None and process.poll() is None

    def send(self, lab_id: str, request: ControlRequest) -> None:
        """Queue a request for the lab (dropped if its process is not running when its turn comes)."""
        if lab_id not in self._queues:
            self._queues[lab_id] = queue.Queue()
            thread = threading.Thread(target=self._serve, args=(lab_id,), daemon=True)
            thread.start()
            self._threads.append(thread)
        with self._lock:
            self._outstanding += 1
        self._queues[lab_id].put(request)

    def settle(self, timeout_s: float) -> bool:
        """Wait until every request queued so far has been answered or given up (at most `timeout_s`
        wall seconds); True when none is left.

        A lab tells the planner of its supply (STOCK) before it answers the request, so after this the
        planner has heard of it. The replay settles the supply of a round before it posts the orders
        of the same instant, as the simulation restocks before it plans (`scenarios.sim`): an order
        that raced its round's supply was planned against the stock of the round before, a round's
        supply short at every lab (valve-lombardy: 7 of 20 order batches reached the planner before
        their round's supply reached fablab-milan).
        """
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout=timeout_s)

    def supply(self, lab_id: str, amounts: dict[str, float]) -> None:
        """Supply arriving now at the lab."""
        if any(amount > 0 for amount in amounts.values()):
            self.send(lab_id, ControlRequest(supply={m: a for m, a in amounts.items() if a > 0}))

    def forget_supply(self, lab_id: str, material: str) -> None:
        """A stock-out: what waits at the door is lost too."""
        with self._lock:
            self._pending.get(lab_id, {}).pop(material, None)

    def close(self) -> None:
        """Stop the threads (after the requests queued so far) and the context."""
        for requests in self._queues.values():
            requests.put(None)
        for thread in self._threads:
            thread.join(timeout=10.0)
        self.context.destroy(linger=0)

    def _serve(self, lab_id: str) -> None:
        requests = self._queues[lab_id]
        while (request := requests.get()) is not None:
            try:
                self._apply(lab_id, request)
            finally:
                with self._idle:
                    self._outstanding -= 1
                    self._idle.notify_all()

    def _apply(self, lab_id: str, request: ControlRequest) -> None:
        """Send one request to the lab (a supply with all that still waits at its door), if its process
        runs, and book the answer."""
        if request.supply:
            with self._lock:
                pending = self._pending.setdefault(lab_id, {})
                for material, amount in request.supply.items():
                    pending[material] = pending.get(material, 0.0) + amount
                request = ControlRequest(supply=dict(pending))
        if not self.running(lab_id):
            return
        try:
            answer = send_control(self.endpoints[lab_id], request, timeout_s=5.0, context=self.context)
        except TimeoutError:
            with self._lock:
                self.failed += 1
            return
        with self._lock:
            self.sent += 1
            if request.supply and answer.get("ok"):
                pending = self._pending[lab_id]
                for material, amount in request.supply.items():
                    pending[material] = pending.get(material, 0.0) - amount
                    if pending[material] <= 1e-12:
                        del pending[material]


def run_live(
    loaded: LoadedScenario,
    speed: float | None = None,
    console: Console | None = None,
    grace_s: float = 30.0,
    keep: Path | None = None,
) -> list[dict[str, Any]]:
    """Run the scenario live; returns one metrics object (policy `cosmolocal-live`).

    `speed`: how many times faster than real time (None: `default_speed`, from the scenario's size).
    `grace_s`: the longest wait after the scenario's end for every order's last report. `keep`: a
    folder to copy the mesh's logs and the planner's ledger to, for reading after the run (the run's
    own folder is removed).
    """
    console = console or Console(stderr=True)
    world = build_world(loaded)
    scenario = loaded.scenario
    if speed is None:
        speed = default_speed(world)
        per_day = units_per_day(world)
        console.print(f"live speed {speed:,.0f}x, the default at {per_day:,.0f} units a day (see --speed)")
    late_joiners = {e.lab_id for e in world.events if e.kind == "lab_joins"}
    started_labs = [lab for lab in world.labs if lab.id not in late_joiners]
    with tempfile.TemporaryDirectory(prefix="cosmolocal-live-") as temp:
        workdir = Path(temp)
        endpoints = {lab.id: f"ipc://{workdir}/c{index}.control" for index, lab in enumerate(world.labs)}
        # labs work their hours a day, as the plan and the simulated replay count them, and take
        # their work by the replay's own rule (earliest leave-by first), not improved by CP-SAT;
        # the planner and the labs read one compressed clock (protocol.timeframe)
        anchor = datetime.now(UTC)
        clock = ["--clock-anchor", anchor.isoformat()]
        node_args = {
            lab_id: ["--control", endpoint, "--working-hours", "--rule-only", *clock]
            for lab_id, endpoint in endpoints.items()
        }
        with console.status(f"starting a planner and {len(started_labs)} lab processes..."):
            mesh = start_mesh(
                started_labs,
                workdir,
                speed,
                planner_args=[
                    "--solve-seconds",
                    f"{scenario.solve_seconds:g}",
                    # time is compressed: a solve slowed by its priority costs simulated hours
                    "--solve-niceness",
                    "0",
                    "--objective",
                    scenario.objective,
                    "--k-nearest",
                    str(scenario.k_nearest),
                    "--transfer-radius-km",
                    f"{scenario.transfer_radius_km:g}",
                    "--forecast-days",
                    f"{scenario.forecast_days:g}",
                    "--clock-speed",
                    f"{speed:g}",
                    *clock,
                ],
                node_args=node_args,
            )
        processes: dict[str, subprocess.Popen[bytes]] = {
            lab.id: process for lab, process in zip(started_labs, mesh.nodes, strict=True)
        }
        controls = _Controls(endpoints, processes)
        try:
            shift, placed = _replay(mesh, world, speed, anchor, controls, node_args, console)
            deadline = time.monotonic() + grace_s
            with httpx.Client(base_url=mesh.api, timeout=10.0, headers=mesh.headers) as client:
                while True:
                    views = [client.get(f"/orders/{order_id}").json() for order_id, _ in placed]
                    if all(v["state"] == "done" for v in views) or time.monotonic() >= deadline:
                        break
                    time.sleep(0.5)
                plan = client.get("/plan").json()
        finally:
            for process in processes.values():
                if process not in mesh.nodes:
                    mesh.nodes.append(process)
            controls.close()
            mesh.stop()
        made, solves = _read_ledger(workdir / "planner.db")
        transfers = _read_transfers(workdir / "planner.db")
        health = _mesh_health(workdir)
        if keep is not None:
            _keep(workdir, keep)
    metrics = _metrics(world, speed, shift, placed, views, made, solves, plan)
    metrics |= _transfer_metrics(transfers, metrics)
    metrics |= health
    metrics["control_requests"] = controls.sent
    metrics["control_unanswered"] = controls.failed
    return [metrics]


def _timeline(world: World, speed: float) -> Iterator[tuple[float, int, str, Any]]:
    """(wall offset s, rank, action, item) of everything to replay: disruptions, supply, orders."""
    scenario = world.loaded.scenario
    for event in world.events:
        start = (event.start - world.start).total_seconds() / speed
        end = None if event.end is None else (event.end - world.start).total_seconds() / speed
        if event.kind in {"lab_lost", "lab_joins", "stock_out", "machine_down"}:
            yield (start, 0, f"{event.kind}:start", event)
            if end is not None:
                yield (end, 0, f"{event.kind}:end", event)
    for r in range(replay_rounds(world)):
        yield (r * scenario.round_hours * 3600.0 / speed, 1, "supply", None)
    for order in world.orders:
        yield ((order.created_at - world.start).total_seconds() / speed, 2, "order", order)
    yield ((world.end - world.start).total_seconds() / speed, 3, "end", None)


def _tell_rates(client: httpx.Client, world: World, shift: timedelta, console: Console) -> None:
    """Tell the planner the scenario's rates, one per stream and delivery point, as rates it plans for
    and does not release (`RateRequest.release`): the replay places their orders, and the planner
    prices its labs' minutes against what they will still bring, as the simulated policy does."""
    for stream in world.streams:
        weight = sum(w for _, w in stream.points)
        for location, w in stream.points:
            request = {
                "design": stream.design,
                "units_per_day": stream.units_per_day * w / weight,
                "starts_at": (stream.start + shift).isoformat(),
                "until": (stream.until + shift).isoformat(),
                "due_days": stream.due / timedelta(days=1),
                "delivery": location.model_dump(),
                "priority": stream.priority,
                "release": False,
            }
            response = client.post("/rates", json=request)
            if response.status_code != 201:
                console.print(f"[yellow]rate not taken[/]: {response.status_code} {response.text}")


def _replay(
    mesh: Mesh,
    world: World,
    speed: float,
    anchor: datetime,
    controls: _Controls,
    node_args: dict[str, list[str]],
    console: Console,
) -> tuple[datetime, list[tuple[str, Order]]]:
    """Post the orders and apply supply and disruptions at their compressed times, to the scenario's end.

    Returns the shift from scenario time to the mesh's compressed time (`protocol.timeframe`; the
    mesh's time is scenario time plus the shift) and the placed orders (planner id, scenario order).
    """
    scenario = world.loaded.scenario
    labs_by_id = {lab.id: lab for lab in world.labs}
    processes = controls.processes
    share = scenario.round_hours / 24.0
    cut: set[tuple[str, str]] = set()  # (lab, material) whose supply a stock-out stopped
    timeline = sorted(_timeline(world, speed), key=lambda item: (item[0], item[1]))
    started, wall_start = time.monotonic(), datetime.now(UTC)
    # scenario time t is the mesh's time t + shift (the mesh's clock reads `compressed` from the anchor)
    shift = compressed(anchor, speed, wall_start) - world.start
    placed: list[tuple[str, Order]] = []
    supplied = False  # supply queued since the last order: the next order waits for its answers
    with httpx.Client(base_url=mesh.api, timeout=10.0, headers=mesh.headers) as client:
        if scenario.bid_prices:
            _tell_rates(client, world, shift, console)
        for at, _, kind, item in timeline:
            wait = started + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if kind == "order":
                if supplied:  # the round's supply first, as the simulation restocks before it plans
                    controls.settle(SUPPLY_SETTLE_S)
                    supplied = False
                request = {
                    "design": item.design,
                    "quantity": item.quantity,
                    "priority": item.priority,
                    "due_at": (item.due_at + shift).isoformat(),
                    "delivery": item.delivery.model_dump(),
                }
                response = client.post("/orders", json=request)
                if response.status_code != 201:
                    console.print(f"[red]order refused[/]: {response.status_code} {response.text}")
                    continue
                placed.append((response.json()["id"], item))
            elif kind == "supply":
                for lab_id, per_day in world.restock.items():
                    amounts = {m: a * share for m, a in per_day.items() if (lab_id, m) not in cut}
                    controls.supply(lab_id, amounts)
                supplied = True
            elif kind == "stock_out:start" and item.material:
                cut.add((item.lab_id, item.material))
                controls.forget_supply(item.lab_id, item.material)
                controls.send(item.lab_id, ControlRequest(lose=[item.material]))
            elif kind == "stock_out:end" and item.material:
                cut.discard((item.lab_id, item.material))
            elif kind in {"machine_down:start", "machine_down:end"}:
                machines = list(item.machine_ids)
                down = kind.endswith("start")
                controls.send(
                    item.lab_id, ControlRequest(down=machines if down else [], up=[] if down else machines)
                )
            elif kind == "lab_lost:start" and controls.running(item.lab_id):
                _stop_lab(processes[item.lab_id])
            elif kind in {"lab_lost:end", "lab_joins:start"} and not controls.running(item.lab_id):
                lab_id = item.lab_id
                known = lab_id in mesh.node_argv
                processes[lab_id] = (
                    mesh.restart_node(lab_id)
                    if known
                    else mesh.add_lab(labs_by_id[lab_id], node_args[lab_id])
                )
            elif kind == "end":
                time.sleep(REPORT_SLACK_S)
    return shift, placed


def _stop_lab(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """A lab is lost: stop its process (SIGTERM, then SIGKILL if it has not exited within `timeout_s`:
    on a loaded host a lab may take longer to say BYE, and a lost lab need not say it)."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)


#: Lines of the mesh's logs counted as signs of a mesh that cannot keep up (see `_mesh_health`).
_LOG_SIGNS = {
    "lab_stalls": "lab agent was suspended for",  # a lab's loop paused over its stall limit: time not worked
    "lab_holds": "the planner has not said it heard this lab",  # a lease lapsed: the lab stopped work
    # a lab given up after missed heartbeats: silent, its work planned again
    "labs_lost": "lost (silent for",
    # a lab that said BYE: the scenario's own losses (a stopped process) and every lab at the run's end
    "labs_left": "lost (left:",
}


def _mesh_health(workdir: Path) -> dict[str, int]:
    """How often the mesh fell behind, counted from its processes' logs."""
    counts = dict.fromkeys(_LOG_SIGNS, 0)
    for log_file in workdir.glob("*.log"):
        text = log_file.read_text(encoding="utf-8", errors="replace")
        for key, sign in _LOG_SIGNS.items():
            counts[key] += text.count(sign)
    return counts


def _keep(workdir: Path, keep: Path) -> None:
    """Copy the processes' logs and the planner's ledger (with its write-ahead log) to `keep`."""
    keep.mkdir(parents=True, exist_ok=True)
    for item in [*workdir.glob("*.log"), *workdir.glob("planner.db*")]:
        shutil.copy2(item, keep / item.name)


def _read_transfers(db_path: Path) -> list[dict[str, Any]]:
    """Every material transfer the planner dispatched, as its ledger keeps it (planner.shipments)."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT record, state FROM transfers ORDER BY rowid").fetchall()
    return [json.loads(record) | {"state": state} for record, state in rows]


def _transfer_metrics(transfers: list[dict[str, Any]], metrics: dict[str, Any]) -> dict[str, Any]:
    """The simulation's transfer keys (`scenarios.metrics`): parcels that left their sender (shipped or
    arrived), their km and tonne-km (in the transport footprint, as there), and the live mesh's own
    counts of transfers refused by their sender or made void by its loss."""
    left = [t for t in transfers if t["state"] in {"shipped", "arrived"}]
    tonne_km = sum(MATERIAL_KG.get(t["material"], 0.0) * t["quantity"] / 1000.0 * t["km"] for t in left)
    total = metrics["transport_tonne_km"] + tonne_km
    return {
        "transfers": len(left),
        "transfer_km": round(sum(t["km"] for t in left), 1),
        "transfer_tonne_km": round(tonne_km, 4),
        "transfers_arrived": sum(1 for t in left if t["state"] == "arrived"),
        "transfers_refused": sum(1 for t in transfers if t["state"] == "refused"),
        "transfers_void": sum(1 for t in transfers if t["state"] == "void"),
        "transport_tonne_km": round(total, 3),
        "co2_kg": round(total * CO2_KG_PER_TONNE_KM, 3),
    }


class Made(NamedTuple):
    """Units of a job made, as the planner's ledger records them."""

    at: datetime
    order_id: str
    lab_id: str
    units: int
    #: How many of them the plan counted on time: a job's first units are its on-time ones.
    planned_on_time: int = 0


def _read_ledger(db_path: Path) -> tuple[list[Made], list[float]]:
    """From the planner's ledger: units made as recorded (`Made`) and each plan's solve seconds.

    Units count as made when the planner records them, except the units a job's DONE brings: those
    count at the job's end as its lab last reported it (the ETA of its last PROGRESS or ACCEPT, in
    the shared frame), if that is sooner. A lab reports at its next tick and the planner reads the
    frame when its loop has a turn: at 2,000x the record came 0.01 to 0.09 simulated hours after the
    lab's own end on valve-lombardy, and its plans place valves to arrive at their due date, so the
    record alone made on-time valves late (14 of 34 late valves in one run). A lab's later PROGRESS
    always carries its new ETA, so the last one is when its last unit was made.
    """
    made: list[Made] = []
    done: dict[str, int] = {}
    ends: dict[str, datetime] = {}  # job id -> its end as its lab last reported it
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT at, kind, data FROM events WHERE kind LIKE 'job.%' ORDER BY seq").fetchall()
        plans = db.execute("SELECT record FROM plans ORDER BY version").fetchall()
    for at, kind, data in rows:
        job = json.loads(data)
        recorded = datetime.fromisoformat(at)
        when = min(recorded, ends[job["id"]]) if kind == "job.done" and job["id"] in ends else recorded
        if job.get("eta"):
            ends[job["id"]] = datetime.fromisoformat(job["eta"])
        units = int(job.get("units_done") or 0)
        before = done.get(job["id"], 0)
        if units > before:
            done[job["id"]] = units
            promised = max(0, min(units, int(job.get("on_time_units") or 0)) - before)
            made.append(Made(when, job["order_id"], job["lab_id"], units - before, promised))
    solves = [float(json.loads(record).get("solve_seconds", 0.0)) for (record,) in plans]
    return made, solves


def _metrics(
    world: World,
    speed: float,
    shift: timedelta,
    placed: list[tuple[str, Order]],
    views: list[dict[str, Any]],
    made: list[Made],
    solves: list[float],
    plan: dict[str, Any],
) -> dict[str, Any]:
    """The live run's metrics, with the simulated metrics' keys (see the module docstring)."""
    scenario = world.loaded.scenario
    kmh = scenario.transport_kmh
    orders = dict(placed)
    where = {lab.id: lab.location for lab in world.labs}
    demanded = sum(o.quantity for o in world.orders)
    counted: dict[str, int] = {}
    delivered = on_time = after_end = 0
    unit_km = tonne_km = 0.0
    leads: list[tuple[float, int]] = []
    used: set[str] = set()
    promised = slipped = 0
    for at, order_id, lab_id, units, planned_on_time in sorted(made):
        order = orders.get(order_id)
        if order is None or lab_id not in where:
            continue
        units = min(units, order.quantity - counted.get(order_id, 0))  # never more than ordered
        if units <= 0:
            continue
        made_at = at - shift
        if made_at > world.end:
            after_end += units
            continue
        counted[order_id] = counted.get(order_id, 0) + units
        km = haversine_km(where[lab_id], order.delivery)
        delivered_at = made_at + timedelta(hours=HANDLING_HOURS + km / kmh)
        delivered += units
        on_time += units if delivered_at <= order.due_at else 0
        promised += min(units, planned_on_time)
        slipped += min(units, planned_on_time) if delivered_at > order.due_at else 0
        leads.append(((delivered_at - order.created_at) / timedelta(hours=1), units))
        unit_km += units * km
        tonne_km += units * unit_kg(world.loaded.designs[order.design]) / 1000.0 * km
        used.add(lab_id)
    mean_lead = sum(v * w for v, w in leads) / delivered if delivered else math.nan
    totals = plan.get("totals", {})
    return {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "policy": "cosmolocal-live",
        "orders": len(world.orders),
        "units_demanded": demanded,
        "units_delivered": delivered,
        "fill_rate": round(delivered / demanded, 4) if demanded else 0.0,
        "units_on_time": on_time,
        "units_late": delivered - on_time,
        "units_missing": demanded - delivered,
        "on_time_rate": round(on_time / demanded, 4) if demanded else 0.0,
        "units_planned_on_time": promised,
        "units_planned_on_time_arrived_late": slipped,
        "plan_slip_rate": round(slipped / delivered, 4) if delivered else 0.0,
        "lead_time_mean_h": _round(mean_lead),
        "lead_time_p95_h": _round(weighted_percentile(leads, 0.95)),
        "units_made_after_end": after_end,
        "units_made_reported": sum(v["units_made"] for v in views),
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
        "solve_seconds": round(sum(solves), 3),
        "solve_seconds_max": round(max(solves, default=0.0), 3),
        "solve_sim_hours_max": round(max(solves, default=0.0) * speed / 3600.0, 2),
        "speed": speed,
    }


def _round(value: float, digits: int = 2) -> float | None:
    return None if math.isnan(value) else round(value, digits)
