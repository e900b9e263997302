"""The federation demo: regional planners with their labs as real processes, a surge into one region.

Each region (Lombardy, Rhône-Alpes, Switzerland, ...) runs its own `cosmolocal planner serve` with
its own ledger, keys and labs (`cosmolocal node join` processes), and the planners are peers admitted
by key (`planner peer add`). The first region gets orders for about twice what its labs can make by
their due dates, the others about 60 %. Once every planner has planned its own orders, the
coordinator opens a session of rounds (`POST /federation/negotiate`); committed trades become leases
that the hosts' labs make, and their progress comes back to the surging region's orders. The demo
prints what moved between regions and what each region delivered, and stops every process it started.
"""

from __future__ import annotations

import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from planner.peers import add_peer, peer_keys
from protocol.model import Lab
from protocol.timeframe import compressed
from scenarios.demo import Mesh, start_mesh
from scenarios.federation import FEDERATION_NOW, Region, federation
from scenarios.simulated_region import SimulatedLabs, admit, start_labs, wait_joined
from solver.model.problem import Demand


@dataclass(frozen=True)
class FederationDemoOptions:
    """How many regions, labs and orders, how fast, how long, and where the demo runs."""

    regions: int = 3
    labs_per_region: int = 3
    orders_per_region: int = 8
    speed: float = 10_000.0
    heartbeat_ms: int = 500
    timeout_s: float = 110.0
    seed: int = 3
    workdir: Path | None = None
    #: Each region's labs in one worker process instead of one process each (`scenarios.simulated_region`).
    simulated_labs: bool = False
    #: Where the figures go besides the tables (`run_federation_demo`).
    figures: dict[str, Any] | None = None


#: How often the demo asks the planners whether everything is made (seconds), by its size.
SETTLE_POLL_S = 0.25
SETTLE_POLL_LARGE_S = 2.0


@dataclass
class RegionMesh:
    """One region's running planner and labs."""

    region: str
    mesh: Mesh
    labs: list[Lab]
    peer_endpoint: str
    #: The region's labs when they are simulated many to a process (`scenarios.simulated_region`).
    simulated: SimulatedLabs | None = None

    def client(self) -> httpx.Client:
        """An HTTP client of this region's planner, with its requester token."""
        return httpx.Client(base_url=self.mesh.api, timeout=60.0, headers=self.mesh.headers)


def region_labs(region: Region) -> list[Lab]:
    """The region's labs as their operators describe them (machines, stock)."""
    return [
        s.lab.model_copy(update={"stock": {k: round(v, 3) for k, v in s.stock.items()}})
        for s in region.problem.labs
    ]


def region_orders(region: Region, now: datetime) -> list[dict[str, Any]]:
    """The region's orders as hospitals would post them, due as far from `now` as from the instance's."""
    return [order_request(d, now) for d in region.problem.demands]


def order_request(demand: Demand, now: datetime) -> dict[str, Any]:
    """One demand as a hospital would post it, due as far from `now` as from the instance's now."""
    return {
        "design": demand.order.design,
        "quantity": demand.quantity,
        "priority": demand.order.priority,
        "due_at": (now + (demand.order.due_at - FEDERATION_NOW)).isoformat(),
        "delivery": demand.order.delivery.model_dump(),
    }


def start_federation(
    regions: list[Region],
    workdir: Path,
    speed: float,
    heartbeat_ms: int = 500,
    planner_args: dict[str, list[str]] | None = None,
    anchor: datetime | None = None,
    simulated_labs: bool = False,
) -> dict[str, RegionMesh]:
    """Start every region's planner (a peer of every other, admitted by key) and labs, in parallel;
    return once every planner answers and every lab joined. On failure, stop what was started.

    Their clocks run `speed` times faster than the wall from `anchor` (default: now). With
    `simulated_labs`, each region's labs run in one worker process (`scenarios.simulated_region`)
    instead of one `node join` process each."""
    ports = distinct_ports(4 * len(regions))
    # Per region: its mesh and field (a consecutive pair), its HTTP API, its peer ROUTER.
    mesh_ports = {r.id: ports[4 * i] for i, r in enumerate(regions)}
    http_ports = {r.id: ports[4 * i + 2] for i, r in enumerate(regions)}
    endpoints = {r.id: f"tcp://127.0.0.1:{ports[4 * i + 3]}" for i, r in enumerate(regions)}
    keys = {r.id: workdir / r.id / "keys" for r in regions}
    for r in regions:
        peer_keys(keys[r.id], r.id)
    for r in regions:
        for other in regions:
            if other.id != r.id:
                add_peer(keys[r.id], keys[other.id] / "peer.key", endpoints[other.id])
    started: dict[str, RegionMesh] = {}
    # Every planner and lab reads one clock, compressed by `speed` (protocol.timeframe), and labs
    # work the hours a day they declare. A planner on the wall clock, or labs working round the
    # clock, and the planner counts hours its labs spent (`PlannerCore._lab_state`) as still owed
    # for days of its own time: it plans its region's own orders late behind work long finished.
    clock = ["--clock-anchor", (anchor or datetime.now(UTC)).isoformat()]

    def start(region: Region) -> None:
        labs = region_labs(region)
        args = [
            "--peer-region", region.id,
            "--peer-endpoint", endpoints[region.id],
            "--peer-capture", str(workdir / region.id / "peer.frames"),
            "--clock-speed", f"{speed:g}",
            "--solve-niceness", "0",  # compressed time: a slowed solve costs simulated hours
            *clock,
            *(planner_args or {}).get(region.id, []),
        ]  # fmt: skip
        pairs = admit(labs, workdir / region.id / "keys") if simulated_labs else []
        mesh = start_mesh(
            [] if simulated_labs else labs,
            workdir / region.id,
            speed,
            heartbeat_ms,
            planner_args=args,
            planner_port=mesh_ports[region.id],
            http_port=http_ports[region.id],
            node_args={lab.id: ["--working-hours", *clock] for lab in labs},
        )
        started[region.id] = RegionMesh(region.id, mesh, labs, endpoints[region.id])
        if simulated_labs:
            keys_dir = workdir / region.id / "keys"
            simulated = start_labs(labs, pairs, keys_dir, mesh.mesh_endpoint, heartbeat_ms / 1000)
            started[region.id].simulated = simulated
            wait_joined(mesh.api, mesh.headers, simulated, region.id)

    # A region that fails is reported after the others have started, and every started one stopped.
    errors = side_by_side(regions, start)
    if errors:
        stop_federation(started)
        raise errors[0]
    return {r.id: started[r.id] for r in regions}


def distinct_ports(count: int) -> list[int]:
    """`count` free ports on 127.0.0.1 in pairs (p, p + 1), all held at once while chosen, so none
    repeats (a region's mesh and field take a pair; the rest take one each).

    They are drawn below the kernel's ephemeral range: a peer's DEALER retries its connection to a
    planner that is still starting, and a retry from an ephemeral source port equal to the port it
    aims at connects to itself on loopback and takes the port the planner is about to bind."""
    low, _ = _ephemeral_range()
    rng = random.SystemRandom()
    held: list[socket.socket] = []
    try:
        for _ in range(10_000):
            if len(held) >= count:
                break
            port = rng.randrange(max(1024, low - 12_000), low - 1)
            pair = [socket.socket(), socket.socket()]
            try:
                pair[0].bind(("127.0.0.1", port))
                pair[1].bind(("127.0.0.1", port + 1))
            except OSError:
                for sock in pair:
                    sock.close()
                continue
            held += pair
        if len(held) < count:
            raise RuntimeError("no free ports on 127.0.0.1 below the ephemeral range")
        return [s.getsockname()[1] for s in held[:count]]
    finally:
        for sock in held:
            sock.close()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux), or the usual default."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def stop_federation(meshes: dict[str, RegionMesh]) -> None:
    """Stop every region's labs and planner."""
    for region in meshes.values():
        if region.simulated is not None:
            region.simulated.stop()
        region.mesh.stop()


def post_orders(
    region: RegionMesh,
    orders: list[dict[str, Any]] | list[Demand],
    clock: Callable[[], datetime] | None = None,
) -> list[dict[str, Any]]:
    """Post a region's orders; return them as placed (a clear error on a refusal).

    With `clock` (the planners' clock), `orders` are the instance's demands, each dated when it is
    posted: thousands of posts take minutes of the planners' compressed time, and an order dated
    before them could be due before it is placed."""
    placed = []
    with region.client() as client:
        for k, entry in enumerate(orders):
            request = order_request(entry, clock()) if clock is not None else entry
            placed.append(_post_order(client, region.region, request, f"demo-{region.region}-{k}"))
    return placed


#: How often one order is posted again after the planner answered 429 or 503 (past its capacity).
POST_TRIES = 20


def _post_order(client: httpx.Client, region: str, request: dict[str, Any], key: str) -> dict[str, Any]:
    """Post one order; past the planner's capacity (429, 503) wait its Retry-After and post it again,
    under the same Idempotency-Key (one order, however many tries); a clear error on a refusal."""
    for _ in range(POST_TRIES):
        response = client.post("/orders", json=request, headers={"Idempotency-Key": key})
        if response.status_code in (429, 503):
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        if response.status_code not in (200, 201):  # 200: an earlier try of this key was placed
            raise RuntimeError(f"{region}: order refused: {response.status_code} {response.text}")
        return response.json()
    raise RuntimeError(f"{region}: the planner stayed past its capacity for {POST_TRIES} tries of one order")


def wait_planned(meshes: dict[str, RegionMesh], deadline: float) -> None:
    """Wait until every planner has committed a plan and is not solving."""
    while time.monotonic() < deadline:
        states = [_get(m, "/health") for m in meshes.values()]
        if all(s and s["plan_version"] > 0 and not s["solving"] for s in states):
            return
        time.sleep(0.2)
    raise TimeoutError("the planners did not plan their own orders in time")


def federation_status(region: RegionMesh) -> dict[str, Any]:
    """A region's /federation."""
    return _get(region, "/federation") or {}


def settled(meshes: dict[str, RegionMesh]) -> bool:
    """True when no trade is pending anywhere, every leased trade's units were made, and every
    region's own orders are done: what each region delivered is only worth printing then."""
    for region in meshes.values():
        with region.client() as client:
            orders = client.get("/orders").json()
        if any(o["state"] not in ("done", "cancelled") for o in orders):
            return False
        for trade in federation_status(region).get("trades", []):
            if trade["state"] == "pending":
                return False
            if trade["state"] == "leased" and trade["units_done"] < trade["units"]:
                return False
    return True


def delivered(region: RegionMesh, per_order: bool = True) -> dict[str, int]:
    """What a region ordered, and made: for its own orders (here and abroad), and for its peers.

    The units made abroad are read from each own order's page, or with `per_order` False (thousands
    of orders) from the region's flows: the units its peers made for it."""
    with region.client() as client:
        orders = client.get("/orders").json()
        own = [o for o in orders if not o["id"].startswith("lease-")]
        abroad = 0
        if per_order:
            for o in own:
                abroad += client.get(f"/orders/{o['id']}").json().get("units_made_abroad", 0)
        else:
            flows = federation_status(region).get("flows", [])
            abroad = sum(f["units_done"] for f in flows if f["origin"] == region.region)
    leases = [o for o in orders if o["id"].startswith("lease-")]
    return {
        "orders": len(own),
        "units_ordered": sum(o["quantity"] for o in own),
        "units_made": sum(min(o["units_made"], o["quantity"]) for o in own),
        "made_abroad": abroad,
        "orders_done": sum(1 for o in own if o["state"] == "done"),
        "made_for_peers": sum(o["units_made"] for o in leases),
    }


def _get(region: RegionMesh, path: str) -> Any:
    try:
        response = httpx.get(region.mesh.api + path, timeout=5.0, headers=region.mesh.headers)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def run_federation_demo(options: FederationDemoOptions, console: Console | None = None) -> bool:
    """Run the demo end to end (see the module docstring); True when trades moved and were made.

    When `options.figures` is a dict, the run's figures are put in it: wall seconds by phase (start,
    orders posted, the planners' own plans, the rounds, until everything was made), the rounds, what
    moved and what each region delivered."""
    console = console or Console()
    started = time.monotonic()
    deadline = started + options.timeout_s
    temp = None if options.workdir else tempfile.TemporaryDirectory(prefix="cosmolocal-federation-")
    workdir = options.workdir or Path(temp.name)  # type: ignore[union-attr]
    regions = federation(
        options.regions, options.orders_per_region, options.labs_per_region, options.seed, "surge"
    )
    kind = "simulated many to a process" if options.simulated_labs else "as real processes"
    console.print(
        f"[bold]Cosmolocal federation demo[/]: {len(regions)} regional planners, "
        f"{options.labs_per_region} labs each, {kind}. Logs: {workdir}"
    )
    meshes: dict[str, RegionMesh] = {}
    anchor = datetime.now(UTC)
    phases: dict[str, float] = {}
    mark = started

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 1)
        mark = now

    try:
        with console.status("starting the planners and their labs..."):
            meshes = start_federation(
                regions,
                workdir,
                options.speed,
                options.heartbeat_ms,
                anchor=anchor,
                simulated_labs=options.simulated_labs,
            )
        lap("start_s")
        for r in regions:
            console.print(
                f"  {r.id:<12} planner {meshes[r.id].mesh.api}, peers at {meshes[r.id].peer_endpoint}"
            )
        with console.status("posting every region's orders..."):
            placed = _post_all(meshes, regions, lambda: compressed(anchor, options.speed))
        for r in regions:
            units = sum(o["quantity"] for o in placed[r.id])
            load = "a surge, about twice its capacity" if r is regions[0] else "about 60 % of its capacity"
            console.print(f"  {r.id:<12} {len(placed[r.id])} orders, {units} units: {load}")
        lap("orders_s")
        with console.status("each planner plans its own orders..."):
            wait_planned(meshes, deadline)
        lap("own_plans_s")
        coordinator = meshes[min(meshes)]
        left = max(1.0, deadline - time.monotonic())
        with console.status("rounds between the planners..."):
            response = httpx.post(
                coordinator.mesh.api + "/federation/negotiate", headers=coordinator.mesh.headers, timeout=left
            )
        if response.status_code != 200:
            raise RuntimeError(
                f"the session between the planners failed at {coordinator.region}: "
                f"{response.status_code} {response.text[:300]} (logs in {workdir})"
            )
        session = response.json()
        lap("rounds_s")
        _print_rounds(session, console)
        poll = SETTLE_POLL_LARGE_S if options.simulated_labs else SETTLE_POLL_S
        with console.status("the hosts' labs make the leased units..."):
            while time.monotonic() < deadline and not settled(meshes):
                time.sleep(poll)
        lap("settle_s")
        done = settled(meshes)
        ok = _print_outcome(meshes, console, time.monotonic() - started, per_order=not options.simulated_labs)
        if options.figures is not None:
            options.figures.update(_figures(options, session, meshes, phases, time.monotonic() - started))
            options.figures["settled"] = done
        return ok and done
    finally:
        with console.status("stopping every process..."):
            stop_federation(meshes)
        if temp is not None:
            temp.cleanup()


def _post_all(
    meshes: dict[str, RegionMesh], regions: list[Region], clock: Callable[[], datetime]
) -> dict[str, list[dict[str, Any]]]:
    """Every region's orders posted to its planner, the regions side by side, each dated by `clock`."""
    placed: dict[str, list[dict[str, Any]]] = {}

    def post(region: Region) -> None:
        placed[region.id] = post_orders(meshes[region.id], region.problem.demands, clock)

    errors = side_by_side(regions, post)
    if errors:
        raise errors[0]
    return placed


def side_by_side(regions: list[Region], work: Callable[[Region], None]) -> list[BaseException]:
    """Run `work` for every region, each in its own thread; what they raised, once all have ended
    (so one region's failure never leaves another's half done and unseen)."""
    errors: list[BaseException] = []

    def run(region: Region) -> None:
        try:
            work(region)
        except BaseException as error:  # returned to the caller, which raises it
            errors.append(error)

    threads = [threading.Thread(target=run, args=(r,)) for r in regions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def _flows(meshes: dict[str, RegionMesh]) -> dict[tuple[str, str], tuple[int, int]]:
    """(host, origin) -> (units leased, units made), as the regions' /federation pages say."""
    flows: dict[tuple[str, str], tuple[int, int]] = {}
    for region in meshes.values():
        for flow in federation_status(region).get("flows", []):
            flows[flow["host"], flow["origin"]] = (flow["units"], flow["units_done"])
    return flows


def _figures(
    options: FederationDemoOptions,
    session: dict[str, Any],
    meshes: dict[str, RegionMesh],
    phases: dict[str, float],
    seconds: float,
) -> dict[str, Any]:
    """The run's figures (see `run_federation_demo`)."""
    rounds = session.get("rounds", [])
    flows = _flows(meshes)
    return {
        "regions": options.regions,
        "labs_per_region": options.labs_per_region,
        "orders_per_region": options.orders_per_region,
        "seed": options.seed,
        "simulated_labs": options.simulated_labs,
        "seconds": round(seconds, 1),
        "phases": phases,
        "rounds": len(rounds),
        "rounds_committed": sum(1 for r in rounds if r.get("committed")),
        "units_leased": sum(units for units, _ in flows.values()),
        "units_made_for_peers": sum(done for _, done in flows.values()),
        "flows": [
            {"host": host, "origin": origin, "units": units, "units_done": done}
            for (host, origin), (units, done) in sorted(flows.items())
        ],
        "delivered": {
            region.region: delivered(region, per_order=not options.simulated_labs)
            for region in meshes.values()
        },
    }


def _print_rounds(session: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Rounds (session {session.get('session')}, {', '.join(session.get('regions', []))})")
    for column in ("round", "bids", "summed cost before", "with its trades", "outcome"):
        table.add_column(column, justify="right")
    for r in session.get("rounds", []):
        table.add_row(
            str(r["round"]),
            str(r["bids"]),
            f"{r['total_before']:,.0f}" if r["total_before"] is not None else "-",
            f"{r['total_after']:,.0f}" if r["total_after"] is not None else "-",
            "commit" if r["committed"] else "abort",
        )
    console.print(table)


def _print_outcome(
    meshes: dict[str, RegionMesh], console: Console, seconds: float, per_order: bool = True
) -> bool:
    exposed = {r.region: federation_status(r).get("orders_exposed_share", 0.0) for r in meshes.values()}
    flows = _flows(meshes)
    table = Table(title="What moved between regions")
    for column in ("made in", "for", "units leased", "units made"):
        table.add_column(column, justify="right" if column.startswith("units") else "left")
    for (host, origin), (units, done) in sorted(flows.items()):
        table.add_row(host, origin, str(units), str(done))
    console.print(table)
    table = Table(title="What each region delivered")
    for column in (
        "region",
        "orders",
        "done",
        "units ordered",
        "made",
        "of them abroad",
        "made for peers",
        "orders exposed",
    ):
        table.add_column(column, justify="left" if column == "region" else "right")
    for region in meshes.values():
        d = delivered(region, per_order)
        table.add_row(
            region.region,
            str(d["orders"]),
            str(d["orders_done"]),
            str(d["units_ordered"]),
            str(d["units_made"]),
            str(d["made_abroad"]),
            str(d["made_for_peers"]),
            f"{exposed[region.region]:.0%}",
        )
    console.print(table)
    console.print(f"finished in {seconds:.0f} s; no order id, lab or exact place left any region")
    return bool(flows)
