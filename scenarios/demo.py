"""The demo mesh: a planner and labs at French cities as real processes, hospital orders, live progress.

Everything is real: each lab is its own `cosmolocal node join` process speaking ZeroMQ to a
`cosmolocal planner serve` process, orders go through the HTTP API, the plan comes from CP-SAT and
the ledger is an SQLite file in the work folder. Only the labs' clock runs faster than real time.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner.admission import Admissions, planner_keys
from planner.auth import TokenStore
from protocol.model import Lab, Location, Machine
from protocol.security import create_keypair
from scenarios.geography import City, largest_cities
from scenarios.printer_servers import OctoPrint, printer_lab
from solver.model.geo import haversine_km

#: Start-up allowance per lab process (a Python process imports the solver stack: seconds of CPU,
#: many times that when dozens start at once on two cores: 25 labs took 111 s to join on a host
#: loaded by other work, and 125 s was once not enough).
JOIN_SECONDS_PER_LAB = 10.0


@dataclass(frozen=True)
class DemoOptions:
    """How big, how fast, how long, and where the demo runs."""

    labs: int = 8
    speed: float = 10_000.0
    timeout_s: float = 60.0
    keep: bool = False
    workdir: Path | None = None
    seed: int = 7
    #: "octoprint": the first lab prints its FDM work on a real OctoPrint Virtual Printer.
    printers: str | None = None


@dataclass
class Mesh:
    """The processes of a running local mesh and where to reach them."""

    workdir: Path
    api: str
    mesh_endpoint: str
    planner: subprocess.Popen[bytes]
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: The command lines that started the planner and each lab (by lab id), to start them again.
    planner_argv: list[str] = field(default_factory=list)
    node_argv: dict[str, list[str]] = field(default_factory=dict)
    #: The planner's keys folder (None for an insecure mesh).
    keys_dir: Path | None = None
    #: Where labs connect (the planner's mesh endpoint, or a proxy in front of it).
    lab_endpoint: str = ""
    speed: float = 1.0
    #: A requester token of this planner (orders, the order list, the plan and /events need one).
    token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers that carry the requester token."""
        return {"Authorization": f"Bearer {self.token}"}

    def add_lab(
        self, lab: Lab, extra_args: Sequence[str] = (), file: Mapping[str, Any] | None = None
    ) -> subprocess.Popen[bytes]:
        """Write the lab's file (and key pair, admitted), start its `node join` process, keep its line.

        `file` is the lab file's content when it says more than the lab (printers): such a lab works
        in real time."""
        argv, process = start_lab(
            lab,
            self.workdir,
            self.lab_endpoint or self.mesh_endpoint,
            speed=self.speed if file is None else None,
            keys_dir=self.keys_dir,
            extra_args=extra_args,
            file=file,
        )
        self.node_argv[lab.id] = argv
        self.nodes.append(process)
        return process

    def restart_planner(self) -> subprocess.Popen[bytes]:
        """Start the planner again with the same command line (same ledger, ports and keys)."""
        self.planner = _spawn(self.planner_argv, self.workdir / "planner.log")
        return self.planner

    def restart_node(self, lab_id: str) -> subprocess.Popen[bytes]:
        """Start a lab's process again with the same command line (same lab file, keys and journal)."""
        index = list(self.node_argv).index(lab_id)
        self.nodes[index] = _spawn(self.node_argv[lab_id], self.workdir / f"{lab_id}.log")
        return self.nodes[index]

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM everything (labs first, so they say BYE), then SIGKILL what did not stop within
        `grace_s` (a planner that was under load may need longer to close its ledger)."""
        stop_processes([*self.nodes, self.planner], grace_s)


def start_lab(
    lab: Lab,
    workdir: Path,
    endpoint: str,
    *,
    speed: float | None = None,
    keys_dir: Path | None = None,
    extra_args: Sequence[str] = (),
    file: Mapping[str, Any] | None = None,
) -> tuple[list[str], subprocess.Popen[bytes]]:
    """Start a lab's `cosmolocal node join` process connecting to `endpoint`; its command line and process.

    The lab file is `workdir/LAB_ID.toml` (its journal beside it), the log `workdir/LAB_ID.log`.
    With `keys_dir` (a secure mesh) the lab's key pair is created in `workdir` and admitted in
    `keys_dir/admitted`, as an operator would with `node init` and `planner admit`; without it the
    lab joins an insecure mesh. `speed` is the simulated clock's (none given: real time); `file` is
    the lab file's content when it says more than the lab (printers); `extra_args` go last.
    """
    lab_file = workdir / f"{lab.id}.toml"
    if file is None:
        write_lab_file(lab, lab_file)
    else:
        lab_file.write_bytes(tomli_w.dumps(dict(file)).encode())
    if keys_dir is not None:
        public = create_keypair(workdir, lab.id, {"lab-id": lab.id}, overwrite=True)
        Admissions(keys_dir / "admitted").admit(public)
        lab_security = ["--planner-key", str(keys_dir / "planner.key")]
    else:
        lab_security = ["--insecure"]
    argv = [
        *_cli(),
        "node",
        "join",
        str(lab_file),
        "--planner",
        endpoint,
        *(["--speed", str(speed)] if speed is not None else []),
        *lab_security,
        *extra_args,
    ]
    return argv, _spawn(argv, workdir / f"{lab.id}.log")


def stop_processes(processes: Sequence[subprocess.Popen[bytes]], grace_s: float = 5.0) -> None:
    """SIGTERM every process still running, in the order given; SIGKILL those not ended `grace_s` later.

    One grace for them all, so stopping many takes no longer than stopping one."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port_pair() -> int:
    """A TCP port p on 127.0.0.1 such that p and p + 1 are both free now (mesh and field)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free pair of ports on 127.0.0.1")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def demo_labs(count: int, seed: int) -> list[Lab]:
    """Labs at the `count` largest French cities, with a seeded mix of machines and stock."""
    rng = random.Random(seed)
    labs = []
    for index, city in enumerate(largest_cities("FR", count)):
        machines = [
            Machine(
                id=f"printer-{n}",
                processes=["fdm"],
                speed=1.0,
                hours_per_day=12,
                tags={"bed_mm": 250 if n > 1 or index % 4 else 180},
            )
            for n in range(1, rng.randint(3, 6) + 1)
        ]
        if index % 5 != 4:
            machines.append(Machine(id="laser-1", processes=["laser"], hours_per_day=8))
        machines.append(Machine(id="bench-1", processes=["assembly"], speed=2.0, hours_per_day=10))
        stock = {
            "petg": round(rng.uniform(2.0, 5.0), 2),
            "pla": round(rng.uniform(0.5, 1.5), 2),
            "pet_sheet_0_5": round(rng.uniform(3.0, 8.0), 1),
            "elastic": round(rng.uniform(20.0, 60.0), 0),
        }
        if index in (1, 3):
            machines.append(
                Machine(id="sla-1", processes=["sla"], hours_per_day=16, tags={"medical_grade": True})
            )
            stock["resin"] = round(rng.uniform(0.5, 1.0), 2)
        labs.append(
            Lab(
                id=f"fablab-{city.slug}",
                name=f"Fablab {city.name}",
                location=city.location,
                machines=machines,
                stock=stock,
            )
        )
    return labs


def demo_orders(lab_count: int, seed: int, now: datetime) -> list[dict[str, Any]]:
    """Hospital orders delivered to other French cities: shields, splints and one emergency valve."""
    rng = random.Random(seed + 1)
    hospitals: list[City] = largest_cities("FR", 6, skip=lab_count)
    orders = []
    for index, city in enumerate(hospitals[:4]):
        orders.append(
            {
                "design": "face-shield",
                "quantity": rng.randint(40, 70),
                "priority": "urgent" if index % 2 else "routine",
                "due_in_h": rng.randint(60, 96),
                "city": city,
            }
        )
    for city in hospitals[4:6]:
        orders.append(
            {
                "design": "finger-splint",
                "quantity": rng.randint(20, 40),
                "priority": "routine",
                "due_in_h": 72,
                "city": city,
            }
        )
    orders.append(
        {
            "design": "charlotte-valve",
            "quantity": 12,
            "priority": "emergency",
            "due_in_h": 24,
            "city": hospitals[0],
        }
    )
    return [
        {
            "design": o["design"],
            "quantity": o["quantity"],
            "priority": o["priority"],
            "due_at": (now + timedelta(hours=o["due_in_h"])).isoformat(),
            "delivery": o["city"].location.model_dump(),
        }
        for o in orders
    ]


def write_lab_file(lab: Lab, path: Path) -> None:
    """The lab file a node operator would write with `cosmolocal node init`."""
    path.write_bytes(tomli_w.dumps(lab.model_dump(mode="json", exclude_none=True)).encode())


#: How long a planner may take to answer its first request: a Python start with its imports takes
#: seconds, and over half a minute at the load averages (20 and more) of a shared 2-core machine.
API_START_TIMEOUT_S = 90.0


def _cli() -> list[str]:
    return [sys.executable, "-m", "cosmolocal"]


def _spawn(argv: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    """Start one mesh process, its log appended to `log_file`."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log_file.open("ab"), env=env)


def start_mesh(
    labs: list[Lab],
    workdir: Path,
    speed: float,
    heartbeat_ms: int = 1000,
    planner_args: Sequence[str] = (),
    node_args: Mapping[str, Sequence[str]] | None = None,
    secure: bool = True,
    mesh_port: int | None = None,
    planner_port: int | None = None,
    lab_files: Mapping[str, Mapping[str, Any]] | None = None,
    http_port: int | None = None,
) -> Mesh:
    """Start a planner and one node process per lab; return once the API answers and all labs joined.

    With no lab it starts the planner alone (the load benchmark simulates its labs in worker
    processes; a federation test drives its peers itself).

    With `secure` (the default) the mesh runs CurveZMQ: the planner's key pair and each lab's are
    created in the work folder and every lab is admitted, as operators would with `node init` and
    `planner admit`. `planner_args` are added to `planner serve`; `node_args` maps a lab id to
    options added to its `node join` (such as `--manual`). `mesh_port` lets labs connect elsewhere
    than the planner's port (e.g. through a proxy that the caller starts on `planner_port`).
    `lab_files` maps a lab id to its lab file's content when it drives printers (`Mesh.add_lab`).
    `http_port` and `planner_port` let a caller that starts several meshes at once choose every port
    before any is bound, so that no two meshes pick the same.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, planner_port = http_port or free_port(), planner_port or free_port_pair()
    planner_endpoint = f"tcp://127.0.0.1:{planner_port}"
    mesh_endpoint = f"tcp://127.0.0.1:{mesh_port or planner_port}"
    api = f"http://127.0.0.1:{http_port}"
    keys_dir = workdir / "keys" if secure else None
    security_args = ["--keys", str(keys_dir)] if keys_dir else ["--insecure"]
    if keys_dir is not None:
        planner_keys(keys_dir)
    tokens = TokenStore(workdir / "planner.db")
    try:
        token = tokens.create("requester", label="local mesh")
    finally:
        tokens.close()
    planner_argv = [
        *_cli(),
        "planner",
        "serve",
        "--http",
        f"127.0.0.1:{http_port}",
        "--mesh",
        planner_endpoint,
        "--db",
        str(workdir / "planner.db"),
        "--heartbeat-ms",
        str(heartbeat_ms),
        *security_args,
        *planner_args,
    ]
    mesh = Mesh(
        workdir=workdir,
        api=api,
        mesh_endpoint=planner_endpoint,
        planner=_spawn(planner_argv, workdir / "planner.log"),
        planner_argv=planner_argv,
        keys_dir=keys_dir,
        lab_endpoint=mesh_endpoint,
        speed=speed,
        token=token,
    )
    planner = mesh.planner
    try:
        wait_for(
            lambda: _get(api, "/health") is not None,
            API_START_TIMEOUT_S,
            "the planner's API to answer",
            processes=[planner],
            workdir=workdir,
        )
        for lab in labs:
            mesh.add_lab(lab, (node_args or {}).get(lab.id, ()), (lab_files or {}).get(lab.id))
        wait_for(
            lambda: (_get(api, "/health") or {}).get("labs_live") == len(labs),
            max(60.0, JOIN_SECONDS_PER_LAB * len(labs)),
            f"{len(labs)} labs to join",
            processes=[planner, *mesh.nodes],
            workdir=workdir,
        )
    except BaseException:
        mesh.stop()
        raise
    return mesh


def _get(api: str, path: str) -> Any:
    try:
        response = httpx.get(api + path, timeout=2.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def wait_for(
    condition: Any, timeout_s: float, what: str, processes: list[subprocess.Popen[bytes]], workdir: Path
) -> None:
    """Poll `condition` until true; fail with the log folder named if a process died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        dead = [p for p in processes if p.poll() is not None]
        if dead:
            raise RuntimeError(
                f"a process exited (code {dead[0].returncode}) while waiting for {what}; "
                f"see the logs in {workdir}"
            )
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}; see the logs in {workdir}")


def run_demo(options: DemoOptions, console: Console | None = None) -> bool:
    """Run the demo end to end; True when every order was made in time."""
    console = console or Console()
    started = time.monotonic()
    temp = None if options.workdir else tempfile.TemporaryDirectory(prefix="cosmolocal-demo-")
    workdir = options.workdir or Path(temp.name)  # type: ignore[union-attr]
    labs = demo_labs(options.labs, options.seed)
    printer_server, lab_files = None, {}
    if options.printers == "octoprint":
        printer_server = OctoPrint(workdir / "octoprint")
        labs[0], lab_files[labs[0].id] = printer_lab(labs[0], printer_server, workdir)
    console.print(
        f"[bold]Cosmolocal demo[/]: a planner and {len(labs)} labs at French cities, as real processes "
        f"(labs work {options.speed:g}x faster than real time). Logs: {workdir}"
    )
    mesh = None
    try:
        if printer_server is not None:
            with console.status("starting OctoPrint with its Virtual Printer..."):
                before = time.monotonic()
                printer_server.start()
                started += time.monotonic() - before  # the timeout is the mesh's, not OctoPrint's start
            console.print(
                f"{labs[0].name} prints on OctoPrint at {printer_server.url} (Virtual Printer, real time)"
            )
        with console.status("starting the planner and the labs..."):
            mesh = start_mesh(labs, workdir, options.speed, lab_files=lab_files)
        console.print(
            f"planner at {mesh.api} (mesh {mesh.mesh_endpoint}, CurveZMQ, {len(labs)} labs admitted by "
            "key); labs joined: " + ", ".join(lab.location.place or lab.id for lab in labs)
        )
        orders = demo_orders(len(labs), options.seed, datetime.now(UTC))
        placed = []
        with httpx.Client(base_url=mesh.api, timeout=10.0, headers=mesh.headers) as client:
            for request in orders:
                response = client.post("/orders", json=request)
                if response.status_code != 201:
                    console.print(f"[red]order refused[/]: {response.status_code} {response.text}")
                    return False
                placed.append(response.json())
            done = _follow(client, placed, console, started + options.timeout_s)
            _summary(client, placed, labs, console, time.monotonic() - started)
        if not done:
            console.print(
                f"[red]not every order was made within {options.timeout_s:.0f} s[/]; logs in {workdir}"
            )
        if options.keep:
            console.print(
                f"[bold]mesh left running[/]: map {mesh.api}/, order form {mesh.api}/order (requester "
                f"token: {mesh.token}), API docs {mesh.api}/docs. Ctrl-C stops it."
            )
            try:
                while mesh.planner.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
        return done
    finally:
        if mesh is not None:
            mesh.stop()
        if printer_server is not None:
            _octoprint_history(printer_server, console)
            printer_server.stop()
        if temp is not None:
            temp.cleanup()


def _octoprint_history(server: OctoPrint, console: Console) -> None:
    """OctoPrint's own record of the prints the lab ran on it."""
    try:
        files = [f for f in server.files() if f["name"].startswith("cl-")]
    except httpx.HTTPError:
        return
    ok = sum((f.get("prints") or {}).get("success", 0) for f in files)
    failed = sum((f.get("prints") or {}).get("failure", 0) for f in files)
    console.print(
        f"OctoPrint's job history: {len(files)} plates uploaded, {ok} printed in success, {failed} failed"
    )


def _follow(client: httpx.Client, placed: list[dict[str, Any]], console: Console, deadline: float) -> bool:
    """Live progress bars, one per order, until every order is done or the deadline passes."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks = {
            o["id"]: progress.add_task(
                f"{o['quantity']:>3} x {o['design']:<16} -> {o['delivery']['place']:<12} {o['priority']:<9}",
                total=o["quantity"],
                state=o["state"],
            )
            for o in placed
        }
        while time.monotonic() < deadline:
            states = []
            for order_id, task in tasks.items():
                view = client.get(f"/orders/{order_id}").json()
                labs = sorted(
                    {
                        a["lab_id"].removeprefix("fablab-")
                        for a in view["allocations"]
                        if a["state"] != "refused"
                    }
                )
                progress.update(
                    task, completed=view["units_made"], state=f"{view['state']:<11} {', '.join(labs)}"
                )
                states.append(view["state"])
            if all(s == "done" for s in states):
                return True
            time.sleep(0.25)
    return False


def _summary(
    client: httpx.Client, placed: list[dict[str, Any]], labs: list[Lab], console: Console, seconds: float
) -> None:
    """The closing table: what was made where, how far it travelled, how good the plan was."""
    where = {lab.id: lab.location for lab in labs}
    table = Table(title="Orders")
    for column in ("order", "design", "priority", "made / ordered", "labs", "unit-km", "state"):
        table.add_column(column, justify="right" if column in {"made / ordered", "unit-km"} else "left")
    ordered = made = done = 0
    unit_km = 0.0
    used: set[str] = set()
    for o in placed:
        view = client.get(f"/orders/{o['id']}").json()
        delivery = Location.model_validate(view["delivery"])
        order_km = sum(
            a["units_done"] * haversine_km(where[a["lab_id"]], delivery)
            for a in view["allocations"]
            if a["lab_id"] in where
        )
        lab_ids = sorted({a["lab_id"] for a in view["allocations"] if a["units_done"]})
        used.update(lab_ids)
        ordered += view["quantity"]
        made += view["units_made"]
        done += view["state"] == "done"
        unit_km += order_km
        table.add_row(
            view["id"][:10],
            view["design"],
            view["priority"],
            f"{view['units_made']} / {view['quantity']}",
            ", ".join(x.removeprefix("fablab-") for x in lab_ids),
            f"{order_km:,.0f}",
            view["state"],
        )
    console.print(table)
    plan = client.get("/plan").json()
    health = client.get("/health").json()
    totals = Table(title="Summary", show_header=False)
    totals.add_column("what")
    totals.add_column("value", justify="right")
    totals.add_row("orders done", f"{done} / {len(placed)}")
    totals.add_row("units made / ordered", f"{made} / {ordered}")
    totals.add_row("fill rate", f"{made / ordered:.1%}" if ordered else "-")
    totals.add_row("labs used", f"{len(used)} of {len(labs)}")
    totals.add_row("transport (unit-km)", f"{unit_km:,.0f}")
    totals.add_row("mean km per unit", f"{unit_km / made:,.0f}" if made else "-")
    totals.add_row("solves run", str(health["solves"]))
    sums = plan["totals"]
    gap = (sums["objective"] - sums["bound"]) / sums["objective"] if sums["objective"] > 0 else 0.0
    quality = "all proven optimal" if sums["all_optimal"] else f"gap {gap:.2%}"
    if sums.get("bound_scope") == "model":
        # An emergency insertion's bound covers its own model only (docs/scale-dump.md).
        quality += "; emergency bounds: their model only"
    totals.add_row(
        f"plan objective / bound ({sums['plans']} plan{'s' if sums['plans'] != 1 else ''})",
        f"{sums['objective']:,.1f} / {sums['bound']:,.1f} ({quality})",
    )
    totals.add_row("frames rejected", str(health["frames_rejected"]))
    totals.add_row("wall time", f"{seconds:.1f} s")
    console.print(totals)
