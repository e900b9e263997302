"""Fault injection on a real local mesh: a seeded schedule of crashes, pauses, floods and lies.

`run_chaos` starts a planner and labs as real processes (`scenarios.demo.start_mesh`), places
orders over HTTP with idempotency keys, and while the work runs injects faults:

- `lab_kill`: kill -9 of a lab mid-job, restarted a moment later (it resumes from its journal);
- `lab_pause`: SIGSTOP of a lab for longer than the liveness window, then SIGCONT;
- `planner_kill`: kill -9 of the planner, restarted on the same ledger and ports;
- `garbage`: 10,000 malformed and oversized frames from a rogue socket;
- `impostor`: a connection claiming to be one of the labs;
- `stranger` (secure mesh only): a connection with a key nobody admitted;
- `one_way` (insecure mesh only, through the proxy): a lab's frames to the planner are all lost for
  longer than the liveness window while the planner's still reach it, so the planner gives up a lab
  that still hears it;
- `duplicate_posts`: a burst of POSTs repeating orders' Idempotency-Keys.

On an insecure mesh every lab also talks through a lossy proxy (`scenarios.faults.proxy`) that drops,
duplicates and reorders a share of the frames (5 % each by default). When the orders are done (or
time is up) the invariants of `scenarios.faults.invariants` are checked from the recorded history.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import zmq

from planner.admission import Admissions
from protocol import transport
from protocol.codec import encode
from protocol.messages import Envelope, Hello
from protocol.model import Design, Lab
from protocol.okh import catalogue
from protocol.security import ClientKeys, create_keypair, load_keypair, load_public
from scenarios.demo import (
    API_START_TIMEOUT_S,
    Mesh,
    demo_labs,
    free_port,
    free_port_pair,
    start_mesh,
    wait_for,
)
from scenarios.faults import invariants
from scenarios.faults.proxy import LossyProxy, ProxyStopped
from scenarios.geography import largest_cities

FAULT_KINDS = ("lab_kill", "lab_pause", "planner_kill", "garbage", "impostor", "duplicate_posts")
SECURE_ONLY = ("stranger",)
INSECURE_ONLY = ("one_way",)
GARBAGE_FRAMES = 10_000
#: What a retried call returns.
T = TypeVar("T")


@dataclass(frozen=True)
class ChaosOptions:
    """The size of the mesh, the faults and how fast the labs work."""

    labs: int = 4
    orders: int = 6
    seed: int = 1
    #: Faults to inject; at least one of each kind is always included when there is room.
    faults: int = 7
    secure: bool = False
    #: Share of frames the proxy drops, and again duplicates, and again reorders (insecure mesh).
    loss: float = 0.05
    speed: float = 1_500.0
    heartbeat_ms: int = 300
    timeout_s: float = 150.0
    #: Seconds between two faults, drawn from this range: the default spreads the schedule over the
    #: work; a test may run it sooner (the faults are the same, the work meets them closer together).
    fault_gap_s: tuple[float, float] = (0.5, 2.0)
    workdir: Path | None = None


@dataclass
class ChaosReport:
    """What was injected, what happened, and whether every invariant held."""

    options: ChaosOptions
    verdicts: list[invariants.Verdict]
    faults: list[dict[str, Any]]
    counts: dict[str, Any]
    wall_s: float

    @property
    def ok(self) -> bool:
        """True when every invariant held."""
        return all(v.ok for v in self.verdicts)

    def to_json(self) -> dict[str, Any]:
        """One JSON object: options, invariants, faults and counts."""
        return {
            "labs": self.options.labs,
            "orders": self.options.orders,
            "seed": self.options.seed,
            "secure": self.options.secure,
            "ok": self.ok,
            "invariants": [{"name": v.name, "ok": v.ok, "detail": v.detail} for v in self.verdicts],
            "faults": self.faults,
            "counts": self.counts,
            "wall_s": round(self.wall_s, 1),
        }


@dataclass
class _Probe:
    """Probes /health every 200 ms; records latency, and whether the planner was meant to be up."""

    api: str
    started: float
    planner_up: threading.Event = field(default_factory=threading.Event)
    #: Answers from an older epoch (in flight when the planner was killed) do not count as "up".
    min_epoch: int = 0
    samples: list[tuple[float, float | None, bool]] = field(default_factory=list)
    last: dict[int, dict[str, Any]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=3.0) as client:
            while not self.stop.is_set():
                began = time.monotonic()
                try:
                    health = client.get(self.api + "/health").json()
                    latency: float | None = time.monotonic() - began
                    self.last[health["epoch"]] = health
                    if health["epoch"] >= self.min_epoch:
                        self.planner_up.set()  # up again after a restart once the new one answers
                except (httpx.HTTPError, ValueError):
                    latency = None
                self.samples.append((began - self.started, latency, self.planner_up.is_set()))
                self.stop.wait(0.2)


#: Most of the mesh's stock for a design that the orders may need: the stock sits in separate labs, so
#: not all of it can serve every order. Beyond it, orders go to another design: a fault run is about
#: faults, and an order no lab has the stock for would be reported short, not made.
STOCK_SHARE = 0.75


def _orders(count: int, labs: list[Lab], seed: int, now: datetime) -> list[dict[str, Any]]:
    """Seeded hospital orders at French cities without a lab, that the labs' stock can make (small
    enough to finish in a minute or two)."""
    rng = random.Random(seed)
    cities = largest_cities("FR", 8, skip=len(labs))
    kinds = [("face-shield", 6, 14), ("finger-splint", 4, 10), ("charlotte-valve", 2, 4)]
    designs = catalogue()
    room = {design: STOCK_SHARE * _units_in_stock(labs, designs[design]) for design, _, _ in kinds}
    orders = []
    for i in range(count):
        design, low, high = kinds[i % len(kinds)]
        city = cities[rng.randrange(len(cities))]
        quantity = rng.randint(low, high)
        priority = "emergency" if design == "charlotte-valve" else rng.choice(["routine", "urgent"])
        due_at = now + timedelta(hours=rng.randint(48, 96))
        if room[design] < quantity:  # out of stock for this design: the next one that has it
            for other, other_low, other_high in kinds[i % len(kinds) + 1 :] + kinds[: i % len(kinds)]:
                if room[other] >= max(other_low, min(quantity, other_high)):
                    design, quantity = other, max(other_low, min(quantity, other_high))
                    break
        room[design] -= quantity
        orders.append(
            {
                "design": design,
                "quantity": quantity,
                "priority": priority,
                "due_at": due_at.isoformat(),
                "delivery": city.location.model_dump(),
            }
        )
    return orders


def _units_in_stock(labs: list[Lab], design: Design) -> int:
    """Units of `design` the labs able to make it could make from their starting stock, all together."""
    per_unit = design.materials_per_unit()
    total = 0
    for lab in labs:
        if any(not any(step.can_run_on(m) for m in lab.machines) for step in design.steps):
            continue
        total += min((int(lab.stock.get(m, 0.0) / amount) for m, amount in per_unit.items()), default=0)
    return total


def _schedule(options: ChaosOptions, rng: random.Random) -> list[str]:
    kinds = list(FAULT_KINDS) + list(SECURE_ONLY if options.secure else INSECURE_ONLY)
    chosen = kinds[: options.faults]
    while len(chosen) < options.faults:
        chosen.append(rng.choice(kinds))
    rng.shuffle(chosen)
    return chosen


def run_chaos(options: ChaosOptions, say: Callable[[str], None] = lambda line: None) -> ChaosReport:
    """Run a seeded fault schedule over a real local mesh and check the invariants (module docstring)."""
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="cosmolocal-chaos-"))
    try:
        report = _run(options, workdir, say)
    except Exception as exc:
        raise ChaosError(
            f"the chaos run stopped: {exc}; its logs, journals and ledger are in {workdir}"
        ) from exc
    if options.workdir is None and report.ok:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not report.ok:
        say(f"an invariant failed: the logs, journals and ledger are kept in {workdir}")
    return report


class ChaosError(RuntimeError):
    """A chaos run could not be carried out (not an invariant failing: the run itself broke)."""


def _run(options: ChaosOptions, workdir: Path, say: Callable[[str], None] = lambda line: None) -> ChaosReport:
    began = time.monotonic()
    rng = random.Random(options.seed)
    labs = demo_labs(options.labs, seed=options.seed)
    proxy = None
    planner_port = free_port_pair()
    lab_port = None
    workdir.mkdir(parents=True, exist_ok=True)
    if not options.secure:
        lab_port = free_port()
        proxy = LossyProxy(
            f"tcp://127.0.0.1:{lab_port}",
            f"tcp://127.0.0.1:{planner_port}",
            rate=options.loss,
            seed=options.seed,
            log_path=workdir / "proxy.log",
        )
        proxy.start_and_wait()
    say(f"starting a planner and {len(labs)} labs in {workdir}")
    mesh = start_mesh(
        labs,
        workdir,
        options.speed,
        heartbeat_ms=options.heartbeat_ms,
        secure=options.secure,
        mesh_port=lab_port,
        planner_port=planner_port,
    )
    probe = _Probe(mesh.api, began)
    probe.planner_up.set()
    prober = threading.Thread(target=probe.run, daemon=True)
    prober.start()
    faults: list[dict[str, Any]] = []
    accepted: dict[str, str] = {}
    # One HTTP client for the whole run: a client per request costs ~25 ms of CPU (its TLS
    # context) in this process, which the proxy's relay and the /health probe would wait behind.
    http = httpx.Client(timeout=5.0, headers=mesh.headers)
    try:
        started = datetime.now(UTC)
        bodies = {
            f"chaos-{options.seed}-{i}": body
            for i, body in enumerate(_orders(options.orders, labs, options.seed, started))
        }
        for key, body in bodies.items():
            accepted[key] = _post(http, mesh, key, body)
        say(f"placed {len(accepted)} orders; injecting {options.faults} faults")
        for kind in _schedule(options, rng):
            time.sleep(rng.uniform(*options.fault_gap_s))
            fault = _inject(kind, mesh, http, labs, rng, options, bodies, accepted, probe, proxy)
            faults.append(fault)
            say(f"  {fault['at_s']:6.1f} s  {kind}: {fault['detail']}")
        _wait_until_done(http, mesh, set(accepted.values()), began + options.timeout_s)
        time.sleep(3 * options.heartbeat_ms / 1000)  # let the last reports and journals settle
        if proxy is not None and not proxy.alive:
            raise ProxyStopped(f"the lossy proxy stopped during the run; its log: {workdir / 'proxy.log'}")
        views = _final_views(http, mesh, accepted.values())
        history = invariants.read_ledger(workdir / "planner.db")
        journals = invariants.read_journals(workdir)
        probe.stop.set()
        prober.join(5)
        verdicts = [
            invariants.no_order_lost(set(accepted.values()), views),
            invariants.no_double_execution(history, journals, views),
            invariants.within_capacity_and_stock(
                labs, views, journals, started, invariants.read_late_units(workdir / "planner.db")
            ),
            invariants.labs_agree(journals, views),
            invariants.health_responsive(probe.samples),
            _duplicates_answered(faults),
        ]
        counts = _counts(history, probe, proxy, faults, views)
    finally:
        probe.stop.set()
        http.close()
        mesh.stop()
        if proxy is not None:
            proxy.stop()
    return ChaosReport(options, verdicts, faults, counts, time.monotonic() - began)


class _Busy(Exception):
    """The planner said 503 or 429: nothing was placed; ask again after its Retry-After."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"busy; retry after {retry_after_s:g} s")
        self.retry_after_s = retry_after_s


def _post(http: httpx.Client, mesh: Mesh, key: str, body: dict[str, Any], timeout_s: float = 60.0) -> str:
    """POST an order with its Idempotency-Key; its id. Asked again while the planner is down, and
    after the `Retry-After` of a 503 or 429 (back-pressure: nothing was placed, so it is safe)."""

    def post() -> str:
        answer = http.post(f"{mesh.api}/orders", json=body, headers={"Idempotency-Key": key})
        if answer.status_code in (200, 201):
            return str(answer.json()["id"])
        if answer.status_code in (429, 503):
            try:
                wait = float(answer.headers.get("Retry-After", "1"))
            except ValueError:
                wait = 1.0
            raise _Busy(min(wait, 5.0))
        raise RuntimeError(f"order {key} refused: {answer.status_code} {answer.text}")

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _retrying(post, max(0.0, deadline - time.monotonic()), (httpx.HTTPError,), pause_s=0.2)
        except _Busy as busy:
            if time.monotonic() + busy.retry_after_s > deadline:
                raise RuntimeError(f"order {key}: the planner stayed busy for {timeout_s:g} s") from busy
            time.sleep(busy.retry_after_s)


def _retrying(
    call: Callable[[], T],
    timeout_s: float,
    errors: tuple[type[Exception], ...],
    pause_s: float = 0.5,
) -> T:
    """`call()`, asked again after `errors` (the planner down or restarting) until `timeout_s` is out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except errors:
            if time.monotonic() > deadline:
                raise
            time.sleep(pause_s)


def _inject(
    kind: str,
    mesh: Mesh,
    http: httpx.Client,
    labs: list[Lab],
    rng: random.Random,
    options: ChaosOptions,
    bodies: dict[str, dict[str, Any]],
    accepted: dict[str, str],
    probe: _Probe,
    proxy: LossyProxy | None,
) -> dict[str, Any]:
    at = time.monotonic() - probe.started
    liveness_s = 3 * options.heartbeat_ms / 1000
    if kind == "lab_kill":
        lab = rng.choice(labs).id
        process = mesh.nodes[list(mesh.node_argv).index(lab)]
        process.send_signal(signal.SIGKILL)
        process.wait()
        down = rng.uniform(0.5, 2.5)
        time.sleep(down)
        mesh.restart_node(lab)
        return {"kind": kind, "at_s": round(at, 1), "detail": f"{lab} killed, restarted after {down:.1f} s"}
    if kind == "lab_pause":
        lab = rng.choice(labs).id
        process = mesh.nodes[list(mesh.node_argv).index(lab)]
        pause = rng.uniform(liveness_s + 0.5, liveness_s + 2.5)
        process.send_signal(signal.SIGSTOP)
        time.sleep(pause)
        process.send_signal(signal.SIGCONT)
        return {"kind": kind, "at_s": round(at, 1), "detail": f"{lab} stopped for {pause:.1f} s"}
    if kind == "one_way":
        if proxy is None:
            raise ValueError("a one-way cut needs the lossy proxy (insecure mesh)")
        lab = rng.choice(labs).id
        cut = rng.uniform(liveness_s + 0.5, liveness_s + 2.5)
        proxy.cut(lab, "up", cut)
        time.sleep(cut)
        detail = f"{lab}'s frames to the planner lost for {cut:.1f} s (the planner's still reach it)"
        return {"kind": kind, "at_s": round(at, 1), "detail": detail}
    if kind == "planner_kill":
        probe.min_epoch = max(probe.last, default=0) + 1
        probe.planner_up.clear()
        mesh.planner.send_signal(signal.SIGKILL)
        mesh.planner.wait()
        time.sleep(0.5)
        mesh.restart_planner()
        wait_for(
            lambda: probe.planner_up.is_set(),
            API_START_TIMEOUT_S,
            "the planner to answer again",
            [mesh.planner],
            mesh.workdir,
        )
        return {"kind": kind, "at_s": round(at, 1), "detail": "planner killed and restarted on its ledger"}
    if kind == "garbage":
        sent = _garbage(mesh, rng)
        return {"kind": kind, "at_s": round(at, 1), "detail": f"{sent} malformed or oversized frames sent"}
    if kind == "impostor":
        answer = _impostor(mesh, rng.choice(labs))
        return {"kind": kind, "at_s": round(at, 1), "detail": answer}
    if kind == "stranger":
        answer = _stranger(mesh, rng.choice(labs))
        return {"kind": kind, "at_s": round(at, 1), "detail": answer}
    if kind == "duplicate_posts":
        keys = rng.sample(sorted(bodies), k=min(3, len(bodies)))
        burst = [k for k in keys for _ in range(8)]
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda k: _post(http, mesh, k, bodies[k]), burst))
        same = all(ids[i] == accepted[k] for i, k in enumerate(burst))
        return {
            "kind": kind,
            "at_s": round(at, 1),
            "detail": f"{len(burst)} repeated POSTs of {len(keys)} orders",
            "same_orders": same,
        }
    raise ValueError(f"unknown fault {kind!r}")


def _rogue(mesh: Mesh, identity: str) -> tuple[zmq.Context, zmq.Socket]:
    """A socket straight to the planner: admitted under its own name on a secure mesh."""
    ctx = zmq.Context()
    curve = _new_keys(mesh, "rogue", identity, admit=True) if mesh.keys_dir is not None else None
    return ctx, transport.connect_dealer(ctx, mesh.mesh_endpoint, identity, curve)


def _new_keys(mesh: Mesh, folder: str, lab_id: str, admit: bool) -> ClientKeys:
    """A fresh key pair for `lab_id` (admitted or not) and the planner's key, to connect with."""
    assert mesh.keys_dir is not None
    public = create_keypair(mesh.workdir / folder, lab_id, {"lab-id": lab_id}, overwrite=True)
    if admit:
        Admissions(mesh.keys_dir / "admitted").admit(public)
    return ClientKeys(
        own=load_keypair(public.with_suffix(".key_secret")),
        server_public=load_public(mesh.keys_dir / "planner.key"),
    )


def _garbage(mesh: Mesh, rng: random.Random) -> int:
    ctx, sock = _rogue(mesh, "chaos-garbage")
    sent = 0
    try:
        time.sleep(0.3)  # the connection (and its handshake) is up
        deadline = time.monotonic() + 30.0
        for i in range(GARBAGE_FRAMES):
            size = 300 * 1024 if i % 100 == 0 else rng.randint(1, 256)
            frame = os.urandom(size)
            while time.monotonic() < deadline:
                try:
                    sock.send(frame, zmq.NOBLOCK)
                    sent += 1
                    break
                except zmq.Again:  # the planner's queue is full: the same frame again, a moment later
                    time.sleep(0.01)
    finally:
        sock.close(linger=500)
        ctx.term()
    return sent


def _impostor(mesh: Mesh, victim: Lab) -> str:
    ctx, sock = _rogue(mesh, "chaos-impostor")
    try:
        time.sleep(0.3)
        sock.send(encode(Envelope(sender=victim.id, seq=1, body=Hello(lab=victim))))
        answered = sock.poll(3000)
        reply = sock.recv() if answered else b""
    finally:
        sock.close(linger=0)
        ctx.term()
    return f"claimed to be {victim.id}: " + ("refused with ERROR" if b"ERROR" in reply else "no answer")


def _stranger(mesh: Mesh, victim: Lab) -> str:
    ctx = zmq.Context()
    curve = _new_keys(mesh, "stranger", victim.id, admit=False)
    sock = transport.connect_dealer(ctx, mesh.mesh_endpoint, victim.id, curve)
    try:
        with contextlib.suppress(zmq.Again):
            sock.send(encode(Envelope(sender=victim.id, seq=1, body=Hello(lab=victim))), zmq.NOBLOCK)
        answered = sock.poll(2000)
    finally:
        sock.close(linger=0)
        ctx.term()
    return f"unadmitted key claiming {victim.id}: " + (
        "answered (!)" if answered else "refused at the handshake"
    )


def _wait_until_done(http: httpx.Client, mesh: Mesh, order_ids: set[str], deadline: float) -> None:
    """Until every order is done (one request a round: the list of orders, not one per order)."""
    while time.monotonic() < deadline:
        try:
            answer = http.get(f"{mesh.api}/orders", timeout=3.0)
            answer.raise_for_status()
            states = {o["state"] for o in answer.json() if o["id"] in order_ids}
        except (httpx.HTTPError, ValueError, KeyError, TypeError):  # down, restarting, not answering
            states = set()
        if states == {"done"}:
            return
        time.sleep(0.5)


def _order_view(http: httpx.Client, mesh: Mesh, order_id: str) -> dict[str, Any]:
    """The planner's public view of an order; raises httpx.HTTPStatusError on an error status."""
    response = http.get(f"{mesh.api}/orders/{order_id}")
    response.raise_for_status()
    view: dict[str, Any] = response.json()
    return view


def _final_views(
    http: httpx.Client, mesh: Mesh, order_ids: Iterable[str], timeout_s: float = 30.0
) -> dict[str, dict[str, Any]]:
    """Every order's view at the end of the run, asking again while the planner is slow to answer."""
    ids = list(order_ids)
    return _retrying(
        lambda: {o: _order_view(http, mesh, o) for o in ids}, timeout_s, (httpx.HTTPError, ValueError)
    )


def _duplicates_answered(faults: list[dict[str, Any]]) -> invariants.Verdict:
    bursts = [f for f in faults if f["kind"] == "duplicate_posts"]
    ok = all(f["same_orders"] for f in bursts)
    posts = sum(int(f["detail"].split()[0]) for f in bursts)
    return invariants.Verdict(
        "repeated POSTs give back the same order", ok, f"{posts} repeated POSTs in {len(bursts)} bursts"
    )


def _counts(
    history: list[invariants.HistoryEvent],
    probe: _Probe,
    proxy: LossyProxy | None,
    faults: list[dict[str, Any]],
    views: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    per_epoch = probe.last.values()
    replans = invariants.replan_seconds_after_loss(history)
    counts: dict[str, Any] = {
        "faults": {kind: sum(1 for f in faults if f["kind"] == kind) for kind in {f["kind"] for f in faults}},
        "orders": len(views),
        "orders_done": sum(1 for v in views.values() if v["state"] == "done"),
        "units_ordered": sum(v["quantity"] for v in views.values()),
        "units_made": sum(v["units_made"] for v in views.values()),
        "plans": sum(1 for e in history if e.kind == "plan.committed"),
        "labs_lost": sum(1 for e in history if e.kind == "lab.lost"),
        "planner_epochs": len(probe.last),
        "frames_rejected": sum(h["frames_rejected"] for h in per_epoch),
        "frames_rate_limited": sum(h["frames_rate_limited"] for h in per_epoch),
        "impersonations_refused": sum(h["impersonations_refused"] for h in per_epoch),
        "keys_refused": sum(h["keys_refused"] for h in per_epoch),
        "units_reported_late": sum(h["units_reported_late"] for h in per_epoch),
        "assignments_withdrawn": sum(h["assignments_withdrawn"] for h in per_epoch),
        "units_held_in_doubt": sum(h.get("units_held_in_doubt", 0) for h in per_epoch),
        "replan_after_lost_lab_s": [round(s, 2) for s in replans],
        "health_probes": len(probe.samples),
        "health_slowest_ms": round(
            1000 * max((s[1] for s in probe.samples if s[1] is not None), default=0.0)
        ),
        # What kept the planner's event loop from answering (planner.loopwatch), per epoch.
        "loop_lag_max_ms": max((h.get("loop_lag_max_ms", 0.0) for h in per_epoch), default=0.0),
        "loop_block_max_ms": max((h.get("loop_block_max_ms", 0.0) for h in per_epoch), default=0.0),
        "loop_block_places": [p for h in per_epoch for p in h.get("loop_block_places", [])[:3]],
    }
    if proxy is not None:
        link = proxy.stats
        counts["link"] = {
            what: link.total(what)
            for what in ("relayed", "dropped", "duplicated", "reordered", "cut", "stale")
        } | {"unsent": link.unsent, "errors": link.errors, "loop_gap_max_ms": round(link.loop_gap_max_ms, 1)}
    return counts
