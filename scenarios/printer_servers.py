"""Real printer servers on loopback, for the demo and the tests: OctoPrint with its Virtual Printer,
and Moonraker with a board-less Klippy (kalico) in file-output mode.

Each runs from its own venv, built by `make printers` under .venv-printers/ (their dependencies clash
with ours; $COSMOLOCAL_PRINTERS points elsewhere). A server that is not installed raises
`PrinterServerMissing` with what to do; tests skip on it with the reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from nodes.config import lab_to_toml
from nodes.printers import PrinterLink
from protocol.model import Lab, Machine

ROOT = Path(__file__).resolve().parents[1]
PRINTERS = Path(os.environ.get("COSMOLOCAL_PRINTERS") or ROOT / ".venv-printers")
KEY = "cosmolocal-test-key-0123456789abcdef"


class PrinterServerMissing(RuntimeError):
    """A printer server that is not installed here (the text says how to install it)."""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Any, timeout_s: float, what: str, step_s: float = 0.05) -> Any:
    """Poll `condition` until it returns something true; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(step_s)


def plate_gcode(moves: int = 20, dwell_ms: int = 0) -> bytes:
    """A small print: sped-up moves (the Virtual Printer honours M220), and dwells to make it last."""
    lines = ["M220 S1000", "G28", "G90", "M82", "G92 E0"]
    for i in range(moves):
        lines.append(f"G1 X{10 + (i * 13) % 100} Y{10 + (i * 7) % 100} E{i * 0.1:.2f} F6000")
        if dwell_ms and i % 4 == 0:
            lines.append(f"G4 P{dwell_ms}")
    return ("\n".join(lines) + "\n").encode()


class OctoPrint:
    """One OctoPrint server with its Virtual Printer, in its own base folder."""

    def __init__(self, basedir: Path) -> None:
        self.binary = PRINTERS / "octoprint" / "bin" / "octoprint"
        if not self.binary.exists():
            raise PrinterServerMissing(f"OctoPrint is not installed at {self.binary} (run `make printers`)")
        self.basedir = basedir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        (basedir / "data" / "appkeys").mkdir(parents=True, exist_ok=True)
        (basedir / "config.yaml").write_text(
            "server: {firstRun: false, onlineCheck: {enabled: false}, pluginBlacklist: {enabled: false},"
            " pythonEolCheck: {enabled: false}}\n"
            "serial: {port: VIRTUAL, baudrate: 115200, autoconnect: true}\n"
            "plugins: {virtual_printer: {enabled: true}, _disabled: [announcements, softwareupdate,"
            " tracking, errortracking, discovery, achievements, pluginmanager, health_check]}\n"
        )
        (basedir / "users.yaml").write_text(
            "lab:\n  active: true\n  apikey: null\n  groups: [admins, users]\n  password: x\n"
            "  permissions: []\n  roles: [user, admin]\n  settings: {}\n"
        )
        (basedir / "data" / "appkeys" / "keys.yaml").write_text(
            f"lab:\n- {{app_id: cosmolocal, api_key: {KEY}}}\n"
        )
        self.key_file = basedir / "octoprint.apikey"
        self.key_file.write_text(KEY + "\n")

    def link(
        self, machine_id: str = "prusa-1", key_file: Path | None = None, url: str | None = None
    ) -> PrinterLink:
        return PrinterLink(machine_id, "octoprint", url or self.url, key_file or self.key_file)

    def start(self) -> OctoPrint:
        log = (self.basedir / "octoprint.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "serve",
                "--iknowwhatimdoing",
                "--basedir",
                str(self.basedir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._operational, 90.0, "OctoPrint's Virtual Printer to be operational", 0.2)
        return self

    def _operational(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"OctoPrint exited ({self.process.returncode}); see {self.basedir}/octoprint.log"
            )
        try:
            return self.api("GET", "/api/job").json().get("state") == "Operational"
        except httpx.HTTPError:
            return False

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"X-Api-Key": KEY}, timeout=5.0, **kwargs)

    def state(self) -> str:
        return str(self.api("GET", "/api/job").json()["state"])

    def prints(self, name: str) -> dict[str, Any]:
        """OctoPrint's own record of a file's prints (`success`, `failure`), {} if it has none."""
        response = self.api("GET", f"/api/files/local/{name}")
        return response.json().get("prints") or {} if response.status_code == 200 else {}

    def files(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/api/files/local").json()["files"])

    def print_file(self, name: str, data: bytes) -> None:
        """Upload and start a print as someone else would (not through the lab)."""
        self.api("POST", "/api/files/local", files={"file": (name, data)}).raise_for_status()
        self.api(
            "POST", f"/api/files/local/{name}", json={"command": "select", "print": True}
        ).raise_for_status()

    def reconnect(self) -> None:
        """After an injected fatal error the printer is offline: connect it again."""
        self.api("POST", "/api/connection", json={"command": "connect"})
        wait_until(lambda: self.state() == "Operational", 30.0, "the Virtual Printer to reconnect", 0.2)

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


PRINTER_CFG = """\
[mcu]
serial: /dev/null

[printer]
kinematics: cartesian
max_velocity: 300
max_accel: 3000
max_z_velocity: 5
max_z_accel: 100

[stepper_x]
step_pin: PF0
dir_pin: PF1
enable_pin: !PD7
microsteps: 16
rotation_distance: 40
endstop_pin: ^PE5
position_endstop: 0
position_max: 200
homing_speed: 50

[stepper_y]
step_pin: PF6
dir_pin: PF7
enable_pin: !PF2
microsteps: 16
rotation_distance: 40
endstop_pin: ^PJ1
position_endstop: 0
position_max: 200
homing_speed: 50

[stepper_z]
step_pin: PL3
dir_pin: PL1
enable_pin: !PK0
microsteps: 16
rotation_distance: 8
endstop_pin: ^PD3
position_endstop: 0.5
position_max: 200

[extruder]
step_pin: PA4
dir_pin: PA6
enable_pin: !PA2
microsteps: 16
rotation_distance: 33.5
nozzle_diameter: 0.400
filament_diameter: 1.750
heater_pin: PB4
sensor_type: EPCOS 100K B57560G104F
sensor_pin: PK5
control: pid
pid_Kp: 22.2
pid_Ki: 1.08
pid_Kd: 114
min_temp: 0
max_temp: 250

[heater_bed]
heater_pin: PH5
sensor_type: EPCOS 100K B57560G104F
sensor_pin: PK6
control: watermark
min_temp: 0
max_temp: 130

[virtual_sdcard]
path: {gcodes}

[pause_resume]

[display_status]
"""


class Moonraker:
    """Moonraker with a real Klippy behind it, without a board (file-output mode)."""

    def __init__(self, basedir: Path, klipper_dict: Path) -> None:
        bin_dir = PRINTERS / "moonraker" / "bin"
        self.moonraker, self.klippy = bin_dir / "moonraker", bin_dir / "kalico"
        if not self.moonraker.exists() or not self.klippy.exists():
            raise PrinterServerMissing(
                f"Moonraker or kalico is not installed in {bin_dir} (run `make printers`)"
            )
        if not klipper_dict.is_file():
            raise PrinterServerMissing(f"no Klipper data dictionary at {klipper_dict} (the shared folder)")
        self.klipper_dict = klipper_dict
        self.basedir = basedir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data = basedir / "data"
        (data / "gcodes").mkdir(parents=True, exist_ok=True)
        (data / "config").mkdir(parents=True, exist_ok=True)
        self.socket = basedir / "klippy.sock"
        (basedir / "printer.cfg").write_text(PRINTER_CFG.format(gcodes=data / "gcodes"))
        (basedir / "moonraker.conf").write_text(
            f"[server]\nhost: 127.0.0.1\nport: {self.port}\nklippy_uds_address: {self.socket}\n\n"
            "[authorization]\ntrusted_clients:\n  127.0.0.0/8\n\n"
            "[machine]\nprovider: none\nvalidate_service: False\n\n[history]\n"
        )
        self.processes: list[subprocess.Popen[bytes]] = []

    def link(self, machine_id: str = "voron-1") -> PrinterLink:
        return PrinterLink(machine_id, "moonraker", self.url, None)

    def start(self) -> Moonraker:
        log = (self.basedir / "servers.log").open("ab")
        self.processes = [
            subprocess.Popen(
                [
                    str(self.klippy),
                    str(self.basedir / "printer.cfg"),
                    "-o",
                    "/dev/null",
                    "-d",
                    str(self.klipper_dict),
                    "-a",
                    str(self.socket),
                    "-I",
                    str(self.basedir / "pty"),
                    "-l",
                    str(self.basedir / "klippy.log"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
            subprocess.Popen(
                [
                    str(self.moonraker),
                    "-d",
                    str(self.basedir / "data"),
                    "-c",
                    str(self.basedir / "moonraker.conf"),
                    "-l",
                    str(self.basedir / "moonraker.log"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
        ]
        wait_until(self._ready, 120.0, "Moonraker to report Klippy ready", 0.2)
        return self

    def _ready(self) -> bool:
        for process in self.processes:
            if process.poll() is not None:
                raise AssertionError(f"a printer server exited; see the logs in {self.basedir}")
        try:
            return self.api("GET", "/server/info").json()["result"]["klippy_state"] == "ready"
        except (httpx.HTTPError, KeyError, ValueError):
            return False

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=5.0, **kwargs)

    def history(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/server/history/list", params={"limit": 100}).json()["result"]["jobs"])

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.processes = []


#: The G-code the demo's printer labs print: per design, (step number, units one plate makes).
DEMO_PRINTS = {"face-shield": (1, 4), "finger-splint": (1, 6)}


def printer_lab(lab: Lab, server: OctoPrint, folder: Path) -> tuple[Lab, dict[str, Any]]:
    """`lab` as a lab whose one FDM printer is OctoPrint's Virtual Printer: its other FDM printers
    go (the planner then counts only the printer that really prints), the printer gets the driver,
    and each design of `DEMO_PRINTS` gets a sliced file (written in `folder`).

    Returns the lab and the mapping its lab file holds (printer fields and [[prints]] included)."""
    others = [m for m in lab.machines if "fdm" not in m.processes]
    printer = Machine(id="printer-1", processes=["fdm"], speed=1.0, hours_per_day=12, tags={"bed_mm": 250})
    lab = lab.model_copy(update={"machines": [printer, *others]})
    data = lab_to_toml(lab)
    data["machines"][0].update(
        {"driver": "octoprint", "url": server.url, "api_key_file": str(server.key_file)}
    )
    data["prints"] = []
    for design, (step, units) in DEMO_PRINTS.items():
        gcode = folder / f"{lab.id}-{design}-x{units}.gcode"
        gcode.write_bytes(plate_gcode(24))
        data["prints"].append({"design": design, "step": step, "gcode": str(gcode), "units": units})
    return lab, data
