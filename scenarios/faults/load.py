"""The load benchmark (`cosmolocal bench load`): a real planner process, simulated labs in a few
processes (real DEALER sockets, CurveZMQ), requesters posting orders at rising rates, and event
stream subscribers; the figures of DESIGN's targets, measured in one run.

Phases, in order:
1. raw ceiling: bare pyzmq + msgpack on loopback (scenarios.faults.load_labs.raw_receiver), the yardstick;
2. the labs join the planner (secure mesh: each lab's key is admitted first);
3. ingest: every lab sends CAPACITY at `blast_per_s` for `ingest_s`; the planner's /health counters
   say how many frames it took in (received, not rejected) a second;
4. orders: requesters post orders open-loop at rising rates while /health is probed every 100 ms
   and the subscribers follow /events; then every order that got a 201 is looked up in the ledger.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import zmq

from planner.admission import planner_keys
from protocol.security import write_public
from scenarios.demo import free_port, start_mesh
from scenarios.faults.load_clients import percentile, run_orders, run_subscribers
from scenarios.faults.load_labs import BLAST, RUN, STOP, make_lab, raw_receiver, raw_sender, run_labs


@dataclass
class LoadOptions:
    """How big and how long the load run is."""

    labs: int = 1000
    seconds: float = 60.0
    #: Rates (orders a second) the requesters rise through, each for seconds / len(rates).
    rates: tuple[float, ...] = (50.0, 100.0, 200.0, 300.0)
    subscribers: int = 200
    lab_processes: int = 4
    ingest_s: float = 5.0
    #: Seconds of the labs alone (heartbeats, CAPACITY every 2 s) before the ingest phase: the idle cost.
    idle_s: float = 5.0
    blast_per_s: float = 40.0
    raw_s: float = 3.0
    seed: int = 7
    workdir: Path | None = None
    #: Extra options for `planner serve`.
    planner_args: tuple[str, ...] = ()
    log: Any = field(default=None, repr=False)


def _say(options: LoadOptions, text: str) -> None:
    if options.log is not None:
        options.log(text)


def _health(api: str) -> dict[str, Any]:
    try:
        return httpx.get(api + "/health", timeout=5.0).json()
    except (httpx.HTTPError, ValueError):
        return {}


def _max_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Peak resident memory of a live process (VmHWM; VmRSS: now), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _ticks_s() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError):
        return 100.0


def cpu_s(pid: int, system_only: bool = False) -> float:
    """CPU seconds (user + system, or system only) a live process has used so far; 0.0 when it is
    gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # after the command's closing parenthesis: state is field 0, utime 11, stime 12
    return (int(fields[12]) + (0 if system_only else int(fields[11]))) / _ticks_s()


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (the planner's solve worker, for one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@dataclass
class CpuMeter:
    """CPU seconds of the planner (its own process, and its children: the solve worker) and of the
    harness's lab processes, read at the start and end of each phase: what the work cost, whatever
    share of the cores the host gave the processes (a busy host stretches the wall time, not this).
    Each phase also says the planner's resident memory at its end.
    """

    planner: int
    labs: list[int]
    began_wall: float = 0.0
    began: dict[str, float] = field(default_factory=dict)

    def read(self) -> dict[str, float]:
        """CPU seconds used so far, by part."""
        return {
            "planner": cpu_s(self.planner),
            "planner_system": cpu_s(self.planner, system_only=True),
            "solver": sum(cpu_s(child) for child in children_of(self.planner)),
            "labs": sum(cpu_s(pid) for pid in self.labs),
        }

    def start(self) -> None:
        """Begin a phase."""
        self.began_wall, self.began = time.monotonic(), self.read()

    def phase(self) -> dict[str, float]:
        """CPU seconds by part since `start`, with the phase's wall seconds (`wall`)."""
        now = self.read()
        used = {part: round(now[part] - self.began.get(part, 0.0), 2) for part in now}
        rss = round(_max_rss_mb(self.planner, "VmRSS"), 1)
        return used | {"wall": round(time.monotonic() - self.began_wall, 2), "planner_rss_mb": rss}


def _load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def measure_raw_ceiling(senders: int, seconds: float) -> float:
    """Messages a second a bare ROUTER receives and unpacks from `senders` blasting processes."""
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    receiver = spawn.Process(target=raw_receiver, args=(endpoint, seconds, results))
    receiver.start()
    blasters = [spawn.Process(target=raw_sender, args=(endpoint, 25, seconds + 3.0)) for _ in range(senders)]
    for blaster in blasters:
        blaster.start()
    try:
        rate = float(results.get(timeout=seconds + 240))  # spawning under a load of 30 took over 60 s
    finally:
        for process in [receiver, *blasters]:
            process.join(timeout=seconds + 10)
            if process.is_alive():
                process.kill()
    return rate


def run_load(options: LoadOptions) -> dict[str, Any]:
    """Run the whole benchmark; the figures as a JSON-ready dict (see module docstring)."""
    with tempfile.TemporaryDirectory(prefix="cosmolocal-load-") as scratch:
        workdir = options.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        return _run(options, workdir)


def _run(options: LoadOptions, workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"labs": options.labs, "load_before": _load_average()}
    _say(options, f"raw ceiling: bare pyzmq + msgpack for {options.raw_s:g} s")
    result["raw_ceiling_per_s"] = round(measure_raw_ceiling(options.lab_processes, options.raw_s))

    keys_dir = workdir / "keys"
    planner_pair, _ = planner_keys(keys_dir)
    labs = [make_lab(i, _rng(options.seed, i)) for i in range(options.labs)]
    lab_keys = [zmq.curve_keypair() for _ in labs]
    for lab, (public, _) in zip(labs, lab_keys, strict=True):
        write_public(keys_dir / "admitted" / f"{lab.id}.key", public, {"lab-id": lab.id})
    # The planner alone (its labs are simulated in the worker processes below), started as every
    # local mesh is (scenarios.demo.start_mesh): on the keys above, once its API answers.
    mesh = start_mesh([], workdir, 1.0, planner_args=["--log-level", "warning", *options.planner_args])
    api, endpoint, planner, token = mesh.api, mesh.mesh_endpoint, mesh.planner, mesh.token
    spawn = multiprocessing.get_context("spawn")
    phase = spawn.Value("i", RUN)
    lab_results = spawn.Queue()
    workers: list[Any] = []
    try:
        _say(options, f"starting {options.labs} labs in {options.lab_processes} processes")
        began = time.monotonic()
        share = -(-options.labs // options.lab_processes)
        for w in range(options.lab_processes):
            part = slice(w * share, (w + 1) * share)
            worker = spawn.Process(
                target=run_labs,
                args=(
                    [lab.model_dump(mode="json") for lab in labs[part]],
                    lab_keys[part],
                    endpoint,
                    planner_pair.public,
                    phase,
                    lab_results,
                ),
                kwargs={"blast_per_s": options.blast_per_s, "seed": options.seed + w},
            )
            worker.start()
            workers.append(worker)
        _wait_labs(api, options.labs, planner, workers, workdir)
        result["join_s"] = round(time.monotonic() - began, 1)
        meter = CpuMeter(planner.pid, [w.pid for w in workers if w.pid is not None])
        cpu: dict[str, Any] = {}

        _say(options, f"idle: {options.labs} labs heartbeating and reporting for {options.idle_s:g} s")
        before = _health(api)
        meter.start()
        time.sleep(options.idle_s)
        cpu["idle"] = meter.phase()
        after = _health(api)
        cpu["idle"]["frames"] = after.get("frames_received", 0) - before.get("frames_received", 0)

        _say(
            options,
            f"ingest: every lab sends CAPACITY at {options.blast_per_s:g}/s for {options.ingest_s:g} s",
        )
        before, t0 = _health(api), time.monotonic()
        meter.start()
        phase.value = BLAST
        time.sleep(options.ingest_s)
        phase.value = RUN
        cpu["ingest"] = meter.phase()
        after, t1 = _health(api), time.monotonic()
        taken = (after["frames_received"] - after["frames_rejected"]) - (
            before["frames_received"] - before["frames_rejected"]
        )
        result["ingest_per_s"] = round(taken / (t1 - t0))
        result["ingest_offered_per_s"] = round(options.labs * options.blast_per_s)
        result["ingest_ratio"] = round(result["ingest_per_s"] / max(1, result["raw_ceiling_per_s"]), 3)
        result["capacity_coalesced"] = after.get("capacity_coalesced", 0) - before.get(
            "capacity_coalesced", 0
        )
        result["load_ingest"] = _load_average()
        time.sleep(1.0)  # let the reports already sent drain before the orders begin

        meter.start()
        result |= _orders_phase(options, api, token, spawn)
        cpu["orders"] = meter.phase() | result.pop("_client_cpu")
        result["load_orders"] = _load_average()
        cpu["ingest"]["frames"] = taken
        cpu["orders"]["orders"] = len(result["_accepted_ids"])
        cpu["orders"]["sse_deliveries"] = result["sse_events"]
        result["cpu"] = cpu
        result["cpu_per_unit"] = per_unit_costs(cpu, options.labs)
        final = _health(api)
        result["labs_live_at_end"] = final.get("labs_live", 0)
        result["solves"] = final.get("solves", 0)
        result["max_rss_mb"] = round(_max_rss_mb(planner.pid), 1)
        phase.value = STOP
        counts = [lab_results.get(timeout=30) for _ in workers]
        time.sleep(0.5)
        final = _health(api)
        sent = sum(c["sent"] for c in counts)
        result["frames_sent"] = sent
        result["frames_received"] = final.get("frames_received", 0)
        result["frames_dropped"] = (
            sum(c["send_dropped"] for c in counts)
            + max(0, sent - final.get("frames_received", 0))
            + final.get("frames_rejected", 0)
        )
        result["refused_busy"] = final.get("refused_busy", 0)
        result["refused_rate"] = final.get("refused_rate", 0)
        result["loop_lag_max_ms"] = final.get("loop_lag_max_ms", 0.0)
        # what held the loop, and the garbage collector's pauses (planner.loopwatch)
        result["loop_block_places"] = final.get("loop_block_places", [])
        result["gc_collections"] = final.get("gc_collections", {})
    finally:
        phase.value = STOP
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
        mesh.stop(grace_s=15.0)
    accepted = result.pop("_accepted_ids", [])
    with sqlite3.connect(workdir / "planner.db") as ledger:
        stored = {row[0] for row in ledger.execute("SELECT id FROM orders")}
    result["orders_accepted"] = len(accepted)
    result["orders_lost"] = sum(1 for order_id in accepted if order_id not in stored)
    return result


def per_unit_costs(cpu: dict[str, dict[str, float]], labs: int) -> dict[str, float]:
    """What the planner's process costs per unit of work, in CPU microseconds, from the phases'
    CPU seconds (`CpuMeter`): each busy phase less what the same wall time costs idle.

    - `idle_cpu_per_s`: CPU seconds a second of `labs` live labs cost the planner (heartbeats both
      ways, CAPACITY every 2 s, liveness, field rebuilds), and `idle_us_per_lab_s` the same per lab;
    - `capacity_frame_us`: per frame taken in while every lab blasts CAPACITY;
    - `order_us`: per accepted order (its POST to the 201, ledger commit, events to every stream,
      the field and the solves it triggers on the planner's process);
    - `solver_cpu_s`: the solve worker's CPU over the orders phase (another process);
    - `labs_cpu_per_s`, `requesters_cpu_s`, `subscribers_cpu_s`: the harness's own share of the cores.
    """
    idle = cpu["idle"]
    idle_rate = idle["planner"] / max(idle["wall"], 1e-9)
    ingest, orders = cpu["ingest"], cpu["orders"]
    busy_ingest = max(0.0, ingest["planner"] - idle_rate * ingest["wall"])
    busy_orders = max(0.0, orders["planner"] - idle_rate * orders["wall"])
    return {
        "idle_cpu_per_s": round(idle_rate, 3),
        "idle_us_per_lab_s": round(idle_rate / max(labs, 1) * 1e6, 1),
        "idle_us_per_frame": round(idle["planner"] / max(idle.get("frames", 0), 1) * 1e6, 1),
        "capacity_frame_us": round(busy_ingest / max(ingest.get("frames", 0), 1) * 1e6, 1),
        "order_us": round(busy_orders / max(orders.get("orders", 0), 1) * 1e6, 1),
        "solver_cpu_s": orders["solver"],
        "labs_cpu_per_s": round(idle["labs"] / max(idle["wall"], 1e-9), 3),
        "requesters_cpu_s": orders.get("requesters", 0.0),
        "subscribers_cpu_s": orders.get("subscribers", 0.0),
    }


def _wait_labs(
    api: str, count: int, planner: subprocess.Popen[bytes], workers: list[Any], workdir: Path
) -> None:
    """Wait until `count` labs are live; fail at once if the planner or a lab process died."""
    deadline = time.monotonic() + 180.0
    while time.monotonic() < deadline:
        if _health(api).get("labs_live") == count:
            return
        if planner.poll() is not None or not all(w.is_alive() for w in workers):
            raise RuntimeError(f"a process died while {count} labs were joining; see {workdir}")
        time.sleep(0.5)
    raise TimeoutError(f"{count} labs did not all join within 180 s (see {workdir})")


def _rng(seed: int, index: int) -> Any:
    import random

    return random.Random(seed * 1_000_003 + index)


def _orders_phase(options: LoadOptions, api: str, token: str, spawn: Any) -> dict[str, Any]:
    """Requesters at rising rates with the /health prober, and the subscribers, at the same time."""
    step_s = options.seconds / len(options.rates)
    steps = [(rate, step_s) for rate in options.rates]
    results = spawn.Queue()
    sse_results = spawn.Queue()
    _say(
        options,
        f"orders at {', '.join(f'{r:g}' for r in options.rates)}/s, {step_s:g} s each; "
        f"{options.subscribers} subscribers on /events",
    )
    subscribers = spawn.Process(
        target=run_subscribers, args=(api, token, options.subscribers, options.seconds + 3.0, sse_results)
    )
    subscribers.start()
    time.sleep(2.0)  # the subscribers connect before the first order
    requesters = spawn.Process(target=run_orders, args=(api, token, steps, options.seed, results))
    requesters.start()
    orders = results.get(timeout=2 * options.seconds + 120)
    sse = sse_results.get(timeout=60)
    for process in (requesters, subscribers):
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    per_step = []
    accepted_ids: list[str] = []
    best: dict[str, Any] | None = None
    for step in orders["steps"]:
        accepted_ids += step["ids"]
        rate = len(step["ids"]) / max(step["elapsed_s"], 1e-9)
        row = {
            "offered_per_s": step["rate"],
            "accepted_per_s": round(rate, 1),
            "p50_ms": round(percentile(step["latencies"], 0.50), 1),
            "p99_ms": round(percentile(step["latencies"], 0.99), 1),
            "codes": step["codes"],
            "unsent_at_end": step.get("unsent_at_end", 0),
        }
        per_step.append(row)
        if best is None or row["accepted_per_s"] > best["accepted_per_s"]:
            best = row
    assert best is not None
    return {
        "orders_per_s": best["accepted_per_s"],
        "order_p50_ms": best["p50_ms"],
        "order_p99_ms": best["p99_ms"],
        "order_steps": per_step,
        "health_p99_ms": round(percentile(orders["health_ms"], 0.99), 1),
        "health_max_ms": round(max(orders["health_ms"], default=0.0), 1),
        "sse_lag_p99_ms": round(percentile(sse["lags_ms"], 0.99), 1),
        "sse_events": sse["events"],
        "sse_subscribers": sse["subscribers"],
        "_accepted_ids": accepted_ids,
        "_client_cpu": {"requesters": orders["cpu_s"], "subscribers": sse["cpu_s"]},
    }


def to_json(result: dict[str, Any]) -> str:
    """The result as one JSON line."""
    return json.dumps(result, sort_keys=True)
