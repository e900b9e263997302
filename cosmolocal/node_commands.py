"""`cosmolocal node ...`: describe a lab once (`init`), join a planner's mesh with it (`join`), and
report work done by hand (`report`)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cosmolocal.console import fail, out
from cosmolocal.logs import LEVELS, setup_logging
from nodes.agent import run_agent
from nodes.clock import SimClock
from nodes.config import (
    LabFileError,
    LabOptionError,
    LabSetup,
    check_lab_setup,
    lab_from_options,
    load_lab,
    load_lab_setup,
    parse_stock_spec,
    write_lab,
)
from nodes.control import ControlError, ControlRequest, check_endpoint, send_control
from nodes.executor import Executor
from nodes.journal import Journal, JournalError
from nodes.manual import ManualExecutor, Report, ReportInbox
from nodes.printers import PrinterError, PrinterExecutor, PrinterUnreachable, connect
from protocol.model import Lab
from protocol.okh import catalogue
from protocol.security import ClientKeys, KeyFileError, create_keypair, load_keypair, load_public

MACHINE_HELP = (
    "A machine as ID:PROCESSES[:SPEED[:HOURS[:TAG=VAL,...]]]; processes joined by '+'. "
    "Repeat for each machine. Examples: prusa-1:fdm:1.0:10:bed_mm=250  trotec:laser:1.5:8  bench:assembly"
)

PRINTERS_HELP = """\
[bold]Printers.[/] A lab whose printers run OctoPrint or Moonraker lets the agent
print its jobs. In the lab file, give each such machine its driver, its
server's address and a file holding its API key (never the key itself), and
name, for each design step it prints, the lab's own sliced G-code file and
the units one print of it makes:

  \\[\\[machines]]
  id = "prusa-1"
  processes = \\["fdm"]
  tags = { bed_mm = 250 }
  driver = "octoprint"             # or "moonraker"
  url = "http://192.168.1.20"
  api_key_file = "prusa-1.apikey"  # OctoPrint: Settings > Application Keys

  \\[\\[prints]]
  design = "face-shield"
  step = 1                         # the design's steps count from 1
  gcode = "gcode/headband-x4.gcode"
  units = 4                        # a plate of 4 headbands

A unit counts only when its print ends in success; a failed or cancelled
print fails the job. Steps with no G-code file (cutting, assembly) are the
lab's hand work. A missing file or a refused key stops `join` with what to
do; a server that does not answer counts as down until it does.
Without printer servers, join with --by-hand and report the units made with
`cosmolocal node report`.
"""

node_app = typer.Typer(
    name="node",
    help="Run a lab of the mesh: describe it once with [bold]init[/], then [bold]join[/] a planner.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _interactive() -> bool:
    """True when a person can answer prompts (stdin is a terminal)."""
    return sys.stdin.isatty()


def _show_lab(lab: Lab, path: Path) -> None:
    """Print the lab as written: who, where, machines and stock."""
    where = lab.location.place or f"{lab.location.lat:.4f}, {lab.location.lon:.4f}"
    out.print(f"[bold green]wrote[/] {path}: lab [bold]{lab.id}[/] ({lab.name}) at {where}", highlight=False)
    machines = Table("machine", "processes", "speed", "hours/day", "tags", title="machines")
    for m in lab.machines:
        tags = ", ".join(f"{k}={v}" for k, v in sorted(m.tags.items())) or "-"
        machines.add_row(m.id, "+".join(m.processes), f"{m.speed:g}", f"{m.hours_per_day:g}", tags)
    out.print(machines)
    if lab.stock:
        stock = Table("material", "amount", title="stock")
        for material, amount in sorted(lab.stock.items()):
            stock.add_row(material, f"{amount:g}")
        out.print(stock)
    else:
        out.print("stock: none yet (add lines under \\[stock] in the file, e.g. petg = 5.0)")
    public = path.with_suffix(".key")
    out.print(
        f"key pair: {public} (public: send it to the planner's operator, who runs "
        f"[bold]cosmolocal planner admit {public.name}[/]) and {public.name}_secret (keep it here)",
        highlight=False,
    )
    out.print(
        "printers: to let the agent print on OctoPrint or Moonraker, add driver, url and api_key_file "
        "to a machine and a \\[\\[prints]] entry per printed design step (G-code file and units per "
        "print); without a printer server, join with --by-hand and report units with "
        "`cosmolocal node report`. Details and an example: `cosmolocal node join --help`",
        highlight=False,
    )
    out.print(
        f"next: [bold]cosmolocal node join {path} --planner tcp://HOST:5570 --planner-key planner.key[/]",
        highlight=False,
    )


def _make_keys(lab: Lab, path: Path, overwrite: bool) -> None:
    """Write the lab's CurveZMQ key pair beside its lab file, naming the lab in the certificate."""
    try:
        create_keypair(path.parent, path.stem, {"lab-id": lab.id}, overwrite=overwrite)
    except KeyFileError as exc:
        fail(str(exc))


@node_app.command("init")
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the lab file.")] = Path("lab.toml"),
    id: Annotated[
        str | None, typer.Option("--id", help="Lab id: lower-case letters, digits, - _ . (e.g. fablab-lyon).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name, e.g. 'Fablab Lyon'.")] = None,
    lat: Annotated[float | None, typer.Option(help="Latitude in degrees (-90 to 90).")] = None,
    lon: Annotated[float | None, typer.Option(help="Longitude in degrees (-180 to 180).")] = None,
    place: Annotated[str | None, typer.Option(help="City or site name, e.g. Lyon.")] = None,
    machine: Annotated[list[str] | None, typer.Option("--machine", "-m", help=MACHINE_HELP)] = None,
    stock: Annotated[
        list[str] | None,
        typer.Option("--stock", "-s", help="Free stock as MATERIAL=AMOUNT in the material's unit; repeat."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the file if it exists.")] = False,
) -> None:
    """Write a lab file describing this lab: where it is, its machines and its stock.

    Missing id, name, coordinates or machine are asked for when run in a terminal. Printers driven
    through OctoPrint or Moonraker, and the lab's G-code files, are added to the file afterwards
    (see `cosmolocal node join --help`).

    Examples:

      cosmolocal node init --id fablab-lyon --name "Fablab Lyon" --lat 45.75 --lon 4.85 -m prusa-1:fdm

      cosmolocal node init lab.toml -m prusa-1:fdm:1.0:10:bed_mm=250 -m trotec:laser:1.5:8 -s petg=5
      (in a terminal, asks for the id, name and coordinates not given)
    """
    if path.exists() and not force:
        fail(f"{path}: already exists; choose another path or add --force to replace it")
    machines = list(machine or [])
    missing = [
        label
        for label, value in (("--id", id), ("--name", name), ("--lat", lat), ("--lon", lon))
        if value is None
    ]
    if not machines:
        missing.append("--machine")
    if missing and not _interactive():
        fail(f"missing {', '.join(missing)} (no terminal to ask on); see `cosmolocal node init --help`")
    if id is None:
        id = typer.prompt("Lab id (lower-case, e.g. fablab-lyon)")
    if name is None:
        name = typer.prompt("Lab name")
    if lat is None:
        lat = typer.prompt("Latitude (degrees)", type=float)
    if lon is None:
        lon = typer.prompt("Longitude (degrees)", type=float)
    if not machines:
        machines.append(typer.prompt("Machine as ID:PROCESSES[:SPEED[:HOURS[:TAG=VAL,...]]]"))
    try:
        lab = lab_from_options(id, name, lat, lon, place, machines, list(stock or []))
        write_lab(lab, path, overwrite=force)
    except (LabOptionError, LabFileError) as exc:
        fail(str(exc))
    _make_keys(lab, path, overwrite=force)
    _show_lab(lab, path)


@node_app.command("keys")
def keys(
    lab_file: Annotated[Path, typer.Argument(metavar="LAB.toml", help="The lab file.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key pair.")] = False,
) -> None:
    """Create the lab's CurveZMQ key pair beside its lab file (LAB.key and LAB.key_secret).

    `node init` does this already; use it for a lab file written by hand or to replace a lost key
    (the planner's operator then admits the new LAB.key).
    """
    try:
        lab = load_lab(lab_file)
    except LabFileError as exc:
        fail(str(exc))
    _make_keys(lab, lab_file, overwrite=force)
    public = lab_file.with_suffix(".key")
    out.print(f"wrote {public} and {public.name}_secret for lab {lab.id}", highlight=False)


def parse_anchor(value: str) -> datetime:
    """A `--clock-anchor`: an ISO 8601 instant with its time zone; a clear error otherwise."""
    try:
        anchor = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--clock-anchor {value!r}: expected an ISO 8601 instant, e.g. 2026-05-04T08:00:00+00:00")
    if anchor.tzinfo is None:
        fail(f"--clock-anchor {value!r}: give its time zone, e.g. 2026-05-04T08:00:00+00:00")
    return anchor


@node_app.command("join", epilog=PRINTERS_HELP)
def join(
    lab_file: Annotated[Path, typer.Argument(metavar="LAB.toml", help="The lab file (see `node init`).")],
    planner: Annotated[
        str, typer.Option(help="The planner's mesh endpoint, e.g. tcp://127.0.0.1:5570.")
    ] = "tcp://127.0.0.1:5570",
    speed: Annotated[
        float, typer.Option(help="Simulated execution runs this many times faster than real time.")
    ] = 1.0,
    fail_rate: Annotated[
        float, typer.Option(help="Probability that an accepted job fails part-way (simulation).")
    ] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed of the simulated failures.")] = None,
    manual: Annotated[
        bool,
        typer.Option(
            "--manual",
            help="Hold each job as offered until the lab's operator accepts or refuses it on the "
            "planner's lab page (needs an operator token: `cosmolocal planner token create`).",
        ),
    ] = False,
    planner_key: Annotated[
        str | None,
        typer.Option(
            help="The planner's public key: its planner.key file or the 40 characters in it "
            "(the planner logs both at start)."
        ),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(help="This lab's secret key file [default: beside the lab file, LAB.key_secret]."),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="No CurveZMQ (only against a planner started with --insecure)."),
    ] = False,
    journal: Annotated[
        Path | None,
        typer.Option(
            help="The lab's journal: what it accepted and made, so a restart forgets nothing "
            "[default: beside the lab file, LAB.journal.json].",
        ),
    ] = None,
    no_journal: Annotated[
        bool, typer.Option("--no-journal", help="Keep no journal (a restart forgets every job).")
    ] = False,
    by_hand: Annotated[
        bool,
        typer.Option(
            "--by-hand",
            help="No printer server: units count when the operator reports them with "
            "`cosmolocal node report` (instead of simulated execution).",
        ),
    ] = False,
    control: Annotated[
        str | None,
        typer.Option(
            help="Bind a local control socket (ipc://PATH) through which `cosmolocal node control` "
            "tells this agent of supply arriving, stock lost and machines down or back."
        ),
    ] = None,
    working_hours: Annotated[
        bool,
        typer.Option(
            "--working-hours",
            help="Simulated machines work only their hours_per_day, spread over the day (the capacity "
            "the planner counts), instead of around the clock.",
        ),
    ] = False,
    clock_anchor: Annotated[
        str | None,
        typer.Option(
            help="For replays: simulated time runs --speed times faster than the wall from this wall "
            "instant (ISO 8601, UTC), as the planner's clock does with the same anchor "
            "(`planner serve --clock-anchor`) [default: the lab's start].",
        ),
    ] = None,
    rule_only: Annotated[
        bool,
        typer.Option(
            "--rule-only",
            help="Simulated machines take work by the dispatching rule alone (earliest leave-by "
            "first, the rule the simulated replay's labs follow), without CP-SAT's improvement.",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Join a planner's mesh with a lab file: say HELLO, take jobs, run them, report progress.

    Jobs run on the lab's printers when the lab file names their servers (below), by hand with
    --by-hand, and otherwise in simulated time (--speed).

    Jobs are accepted or refused automatically (by machines and stock), or with --manual by the
    lab's operator on the planner's web page. Runs until Ctrl-C or SIGTERM, then says BYE and exits
    with code 0.

    Example:

      [bold]cosmolocal node join lab.toml --planner tcp://127.0.0.1:5570 --planner-key var/keys/planner.key[/]
    """
    if log_level.lower() not in LEVELS:
        fail(f"--log-level {log_level!r}: choose one of {', '.join(LEVELS)}")
    if not speed > 0:
        fail(f"--speed {speed}: must be greater than 0")
    if not 0.0 <= fail_rate <= 1.0:
        fail(f"--fail-rate {fail_rate}: must be between 0 and 1")
    if not planner.startswith(("tcp://", "ipc://", "inproc://")):
        fail(f"--planner {planner!r}: expected a ZeroMQ endpoint such as tcp://127.0.0.1:5570")
    if control is not None:
        try:
            check_endpoint(control)
        except ControlError as exc:
            fail(f"--control {exc}")
    try:
        setup = load_lab_setup(lab_file)
    except LabFileError as exc:
        fail(str(exc))
    lab = setup.lab
    if setup.links:
        if by_hand:
            fail("--by-hand: this lab file names printer servers; the agent prints its jobs (drop --by-hand)")
        if speed != 1.0 or fail_rate:
            fail("--speed and --fail-rate are for simulated labs: a lab with printers works in real time")
        _check_printers(setup)
    elif by_hand and (speed != 1.0 or fail_rate):
        fail("--speed and --fail-rate are for simulated labs: work by hand runs in real time")
    if working_hours and (setup.links or by_hand):
        fail("--working-hours is for simulated labs: printers and work by hand keep their real hours")
    if rule_only and (setup.links or by_hand):
        fail("--rule-only is for simulated labs: printers and work by hand are not scheduled by CP-SAT")
    if clock_anchor is not None and (setup.links or by_hand):
        fail("--clock-anchor is for simulated labs: printers and work by hand run in real time")
    anchor = None if clock_anchor is None else parse_anchor(clock_anchor)
    curve = None
    if insecure:
        typer.secho(
            "WARNING: --insecure: this lab's traffic is neither encrypted nor authenticated.",
            err=True,
            fg="red",
            bold=True,
        )
    else:
        if planner_key is None:
            fail(
                "--planner-key missing: give the planner's planner.key file (or its 40-character "
                "key), or --insecure against a planner started with --insecure"
            )
        try:
            curve = ClientKeys(
                own=load_keypair(key or lab_file.with_suffix(".key_secret")),
                server_public=load_public(planner_key),
            )
        except KeyFileError as exc:
            fail(f"{exc} (create the lab's keys with `cosmolocal node keys {lab_file}`)")
    book = None
    if not no_journal:
        book = Journal(journal or lab_file.with_name(f"{lab_file.stem}.journal.json"), lab.id)
        try:
            book.load()
        except JournalError as exc:
            fail(f"{exc} (move it away, or start with --no-journal)")
    setup_logging(log_level, lab.id)
    executor, reports = _execution(setup, lab_file, by_hand)
    try:
        asyncio.run(
            _join(
                lab,
                planner,
                speed,
                fail_rate,
                seed,
                manual,
                book,
                curve,
                executor,
                reports,
                control,
                working_hours,
                rule_only,
                anchor,
            )
        )
    except JournalError as exc:
        fail(f"{exc} (move it away, or start with --no-journal)")


async def _join(
    lab: Lab,
    planner: str,
    speed: float,
    fail_rate: float,
    seed: int | None,
    manual: bool = False,
    journal: Journal | None = None,
    curve: ClientKeys | None = None,
    executor: Callable[[SimClock], Executor] | None = None,
    reports: ReportInbox | None = None,
    control: str | None = None,
    working_hours: bool = False,
    rule_only: bool = False,
    clock_anchor: datetime | None = None,
) -> None:
    """Run the agent until SIGINT or SIGTERM asks it to stop (it then says BYE)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await run_agent(
            lab,
            planner,
            speed,
            stop,
            fail_rate=fail_rate,
            seed=seed,
            manual=manual,
            journal=journal,
            curve=curve,
            executor=executor,
            reports=reports,
            control=control,
            working_hours=working_hours,
            rule_only=rule_only,
            clock_anchor=clock_anchor,
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _inbox(lab_file: Path) -> ReportInbox:
    """Where `node report` leaves the operator's reports for the lab's agent: LAB.reports/ beside it."""
    return ReportInbox(lab_file.with_name(f"{lab_file.stem}.reports"))


def _execution(
    setup: LabSetup, lab_file: Path, by_hand: bool
) -> tuple[Callable[[SimClock], Executor] | None, ReportInbox | None]:
    """What runs the lab's jobs: its printers, the operator's reports, or (None) simulated time."""
    if setup.links:
        lab = setup.lab
        return (lambda clock: PrinterExecutor(lab.machines, clock, setup.links, setup.prints)), None
    if by_hand:
        machines = setup.lab.machines
        return (lambda clock: ManualExecutor(machines, clock)), _inbox(lab_file)
    return None, None


def _check_printers(setup: LabSetup) -> None:
    """Fail on what would stop the printers (files missing, a key refused); warn on a server down."""
    problems = check_lab_setup(setup, catalogue())
    if problems:
        fail("the lab's printers cannot work:\n  " + "\n  ".join(problems))

    async def probe() -> list[tuple[str, PrinterError]]:
        found = []
        for link in setup.links.values():
            try:
                server = connect(link, timeout_s=3.0)
            except PrinterError as exc:
                found.append((link.machine_id, exc))
                continue
            try:
                await server.status()
            except PrinterError as exc:
                found.append((link.machine_id, exc))
            finally:
                await server.close()
        return found

    for machine_id, exc in asyncio.run(probe()):
        if not isinstance(exc, PrinterUnreachable):
            fail(str(exc))
        typer.secho(
            f"WARNING: {exc}. Machine {machine_id} counts as down until its server answers.",
            err=True,
            fg="yellow",
        )


@node_app.command("report")
def report(
    lab_file: Annotated[Path, typer.Argument(metavar="LAB.toml", help="The lab file of the running lab.")],
    assignment: Annotated[str, typer.Argument(help="The job's assignment id (on the lab page, in the log).")],
    made: Annotated[int, typer.Option(help="Units finished and good since the last report.")] = 0,
    failed: Annotated[
        int, typer.Option(help="Units that failed: the job ends as FAILED, the units made so far stand.")
    ] = 0,
    reason: Annotated[str, typer.Option(help="Why the units failed (required with --failed).")] = "",
    journal: Annotated[
        Path | None,
        typer.Option(help="The lab's journal [default: beside the lab file, LAB.journal.json]."),
    ] = None,
) -> None:
    """Report work done by hand to the lab's running agent (started with `node join --by-hand`).

    The agent counts the units, writes its journal, and tells the planner (PROGRESS, DONE or FAILED).

    Examples:

      cosmolocal node report lab.toml o-12-a1 --made 4

      cosmolocal node report lab.toml o-12-a1 --failed 2 --reason "visor cracked on cutting"
    """
    try:
        lab = load_lab(lab_file)
        entry = Report(assignment, made, failed, reason)
    except LabFileError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(f"{exc} (see `cosmolocal node report --help`)")
    book = Journal(journal or lab_file.with_name(f"{lab_file.stem}.journal.json"), lab.id)
    try:
        state = book.load()
    except JournalError as exc:
        fail(str(exc))
    if state is not None:
        jobs = {j["assign"]["assignment_id"]: j for j in state.get("jobs", [])}
        under_way = sorted(a for a, j in jobs.items() if j["state"] in ("accepted", "running"))
        job = jobs.get(assignment)
        if job is None or job["state"] not in ("accepted", "running"):
            what = "not a job of this lab" if job is None else f"{job['state']}, not under way"
            fail(f"{assignment}: {what}; jobs under way: {', '.join(under_way) or 'none'}")
        left = job["assign"]["quantity"] - job["units_done"]
        if made > left:
            done, quantity = job["units_done"], job["assign"]["quantity"]
            fail(f"{assignment}: {done} of {quantity} units already made; {made} more is too many")
    written = _inbox(lab_file).put(entry)
    out.print(
        f"report {written.id[:8]} left for lab {lab.id}: {assignment} {made} made"
        + (f", {failed} failed ({reason.strip()})" if failed else "")
        + "; the running agent (`node join --by-hand`) applies it within a second",
        highlight=False,
    )


@node_app.command("control")
def control_command(
    endpoint: Annotated[str, typer.Argument(help="The agent's control socket (its --control), ipc://PATH.")],
    supply: Annotated[
        list[str] | None,
        typer.Option("--supply", help="Material that arrived, MATERIAL=AMOUNT in its unit; repeat."),
    ] = None,
    lose: Annotated[
        list[str] | None, typer.Option("--lose", help="A material lost entirely (free and reserved); repeat.")
    ] = None,
    down: Annotated[
        list[str] | None,
        typer.Option(
            "--down",
            help="A machine that stopped working; repeat (simulated labs and work by hand: a printer "
            "is down when its server says so).",
        ),
    ] = None,
    up: Annotated[list[str] | None, typer.Option("--up", help="A machine that works again; repeat.")] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the agent's answer.")] = 5.0,
) -> None:
    """Tell a running lab agent what changed at the lab: supply, stock lost, machines down or back.

    The agent stops the jobs it can no longer finish (reporting the units made) and tells the
    planner at once. Prints the agent's free stock and machines down.

    Example:

      [bold]cosmolocal node control ipc://var/lyon.control --down printer-2 --supply petg=2[/]
    """
    amounts: dict[str, float] = {}
    try:
        for spec in supply or []:
            material, amount = parse_stock_spec(spec)
            amounts[material] = amounts.get(material, 0.0) + amount
        request = ControlRequest(
            supply=amounts, lose=list(lose or []), down=list(down or []), up=list(up or [])
        )
    except LabOptionError as exc:
        fail(str(exc).replace("--stock", "--supply"))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        fail(f"bad request: {exc}")
    try:
        answer = send_control(endpoint, request, timeout_s=timeout)
    except (ControlError, TimeoutError) as exc:
        fail(str(exc))
    if not answer.get("ok"):
        fail(f"the agent refused: {answer.get('error')}")
    stock = ", ".join(f"{m}={a:g}" for m, a in sorted(answer.get("stock", {}).items())) or "none"
    out.print(
        f"free stock: {stock}; machines down: {', '.join(answer.get('down', [])) or 'none'}", highlight=False
    )
