"""How the end-to-end tests start their real processes, and stop every one of them whatever happens.

Two shapes of test share it:

- a whole local mesh, a `cosmolocal planner serve` process and one `cosmolocal node join` process per
  lab (`running_mesh`, `Meshes`): the start-up of the demo and of the fault runs
  (`scenarios.demo.start_mesh`: ports, keys, the labs' clock speed, log files, waiting for the join);
- a planner the test runs in its own process (FastAPI's TestClient on real SQLite and real ZeroMQ,
  so that the test holds its clock and its settings) with real lab processes joining it
  (`LabProcesses`).

Each log is kept in the work folder and its end printed at teardown, so a failing test shows what
the processes said.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from planner.app import PlannerSettings
from protocol.model import Lab, Location, Machine
from scenarios.demo import Mesh, free_port_pair, start_lab, start_mesh, stop_processes, wait_for

#: Heartbeat of the meshes the tests start: a lab lost within 1.5 s, without flooding a loaded host.
HEARTBEAT_MS = 500
#: How much of each log's end is printed at teardown.
LOG_TAIL_CHARS = 3000


def show_logs(workdir: Path) -> None:
    """Print the end of every process log in `workdir` (pytest shows it when the test fails)."""
    for log in sorted(workdir.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-LOG_TAIL_CHARS:]}")


@contextmanager
def running_mesh(
    labs: list[Lab],
    workdir: Path,
    speed: float,
    heartbeat_ms: int = HEARTBEAT_MS,
    **options: Any,
) -> Iterator[Mesh]:
    """A planner and lab processes started by `scenarios.demo.start_mesh` (its keyword `options` too),
    once every lab joined; on leaving, every process is stopped and the logs are shown, even when the
    test failed. A start-up that fails stops what it started itself (start_mesh)."""
    mesh = start_mesh(labs, workdir, speed, heartbeat_ms, **options)
    try:
        yield mesh
    finally:
        mesh.stop()
        show_logs(workdir)


class Meshes:
    """The meshes one test starts, each stopped (and its logs shown) when the test ends."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack

    def start(self, labs: list[Lab], workdir: Path, speed: float, **options: Any) -> Mesh:
        """Start a mesh as `running_mesh` does; it runs until the test's teardown."""
        return self._stack.enter_context(running_mesh(labs, workdir, speed, **options))


def lyon_lab(hours_per_day: float) -> Lab:
    """A lab in Lyon with one 250 mm FDM printer, an assembly bench (both working `hours_per_day`) and
    5 kg of PLA: enough for the few finger splints a one-lab test orders."""
    return Lab(
        id="lab-lyon",
        name="Lab Lyon",
        location=Location(lat=45.76, lon=4.84, place="Lyon"),
        machines=[
            Machine(id="printer-1", processes=["fdm"], hours_per_day=hours_per_day, tags={"bed_mm": 250}),
            Machine(id="bench-1", processes=["assembly"], hours_per_day=hours_per_day),
        ],
        stock={"pla": 5.0},
    )


class LabProcesses:
    """Real lab processes (`cosmolocal node join`, insecure mesh) for a planner the test runs itself.

    `endpoint` is where the labs connect: the planner built from `planner_settings()` binds it. Each
    lab's file, journal and log are `LAB_ID.toml`, `LAB_ID.journal.json` and `LAB_ID.log` in `workdir`.
    """

    #: The planner's heartbeat: a lab is seen joining, or lost, within a second.
    HEARTBEAT_MS = 300
    #: How long a lab may take to say goodbye before it is killed.
    STOP_GRACE_S = 10.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.endpoint = f"tcp://127.0.0.1:{free_port_pair()}"
        self.processes: list[subprocess.Popen[bytes]] = []

    def planner_settings(self) -> PlannerSettings:
        """A planner on a fresh ledger in `workdir`, bound where the labs connect, solving in a worker
        process (off the event loop, as `planner serve` does) for at most a second."""
        return PlannerSettings(
            db_path=self.workdir / "planner.db",
            mesh_endpoint=self.endpoint,
            heartbeat_ms=self.HEARTBEAT_MS,
            solve_time_limit_s=1.0,
            solve_in_process=False,
        )

    def join(self, lab: Lab, *options: str) -> subprocess.Popen[bytes]:
        """Write the lab's file and start its `node join` process, with `options` (e.g. `--by-hand`)."""
        _, process = start_lab(lab, self.workdir, self.endpoint, extra_args=options)
        self.processes.append(process)
        return process

    def wait_for(self, condition: Callable[[], object], timeout_s: float, what: str) -> None:
        """Poll `condition` until true; fail at once if a lab process died, or when time runs out."""
        wait_for(condition, timeout_s, what, self.processes, self.workdir)

    def stop(self) -> None:
        """Stop every lab process (SIGTERM, then SIGKILL after the grace) and show the logs."""
        stop_processes(self.processes, self.STOP_GRACE_S)
        show_logs(self.workdir)
