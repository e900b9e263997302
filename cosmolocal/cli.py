"""The `cosmolocal` command: planner, node, demo, bench. Each command is a thin call into a package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cosmolocal.bench_commands import bench_app
from cosmolocal.chaos_commands import chaos
from cosmolocal.federation_commands import federation_app
from cosmolocal.labs_commands import labs_app
from cosmolocal.logs import setup_logging
from cosmolocal.node_commands import node_app, parse_anchor
from cosmolocal.scenario_commands import scenario_app
from planner.rates import FORECAST_DAYS
from solver.model.late_window import LATE_WORK_HOURS
from solver.model.objective import DEFAULT_OBJECTIVE, TRANSFER_RADIUS_KM, Objective

app = typer.Typer(
    name="cosmolocal",
    help="Cosmolocal: design global, manufacture local. Plans open-design production across a mesh of labs.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
planner_app = typer.Typer(
    name="planner", help="Run the planner service (HTTP API + mesh endpoints).", no_args_is_help=True
)
app.add_typer(planner_app)
app.add_typer(node_app)
app.add_typer(bench_app)
app.add_typer(scenario_app)
app.add_typer(labs_app)
app.add_typer(federation_app)
app.command("chaos")(chaos)


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{value!r}: expected HOST:PORT, for example 127.0.0.1:8080")
    return host or "127.0.0.1", int(port)


@planner_app.command("serve")
def planner_serve(
    http: Annotated[str, typer.Option(help="HOST:PORT of the HTTP API.")] = "127.0.0.1:8080",
    mesh: Annotated[
        str, typer.Option(help="ZeroMQ endpoint the ROUTER binds for labs.")
    ] = "tcp://127.0.0.1:5570",
    field: Annotated[
        str | None, typer.Option(help="ZeroMQ endpoint of the field PUB socket [default: mesh port + 1].")
    ] = None,
    db: Annotated[Path, typer.Option(help="SQLite ledger file (created if missing).")] = Path(
        "var/planner.db"
    ),
    heartbeat_ms: Annotated[int, typer.Option(min=50, help="Heartbeat interval, both ways.")] = 1000,
    liveness: Annotated[int, typer.Option(min=2, help="Missed heartbeats before a lab is lost.")] = 3,
    solve_seconds: Annotated[float, typer.Option(min=0.1, help="Time limit of one solve.")] = 2.0,
    solve_niceness: Annotated[
        int,
        typer.Option(
            min=0,
            max=19,
            help="How much lower the solve worker's CPU priority is than the planner's (Unix nice): "
            "requests and lab frames are answered first and a re-plan waits a little; 0 for equal "
            "priority, as replays with compressed time use.",
        ),
    ] = 5,
    objective: Annotated[
        Objective,
        typer.Option(
            help="What plans weigh: on-time (a day sooner is worth 100-1,000 km per unit), balanced "
            "(25 km for routine work, as on-time for urgent and emergency work) or km (distance only; due "
            "dates still count). See solver/model/objective.py."
        ),
    ] = DEFAULT_OBJECTIVE,
    forecast_days: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=30.0,
            help="Days ahead in which a rate's releases still to come are planned as demand "
            "(POST /rates); 0 plans only what is ordered.",
        ),
    ] = FORECAST_DAYS,
    commit_hours: Annotated[
        float,
        typer.Option(
            min=0.01,
            max=168.0,
            help="Hours of work each plan sends labs at once (the rest is planned again later), and "
            "how finely plans tell sooner from later, as a simulated replay's rounds do. Shorter "
            "windows send urgent and emergency work to whichever lab is free sooner, at more km.",
        ),
    ] = 24.0,
    late_work_hours: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=168.0,
            help="Hours of a lab's machines the late work it is sent may fill; the rest waits for the "
            "next plan, so that orders a lab can still make on time do not queue behind units already "
            "late. A lab gets more only once under a sixth of it is queued. 0 sends the late work of "
            "the whole commit window.",
        ),
    ] = LATE_WORK_HOURS,
    keys: Annotated[
        Path | None,
        typer.Option(
            help="The planner's CurveZMQ key pair and admitted labs (created if missing) "
            "[default: a keys folder beside --db]."
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="No CurveZMQ: any process that reaches the mesh port can join as any lab. "
            "For local experiments only.",
        ),
    ] = False,
    open_http: Annotated[
        bool,
        typer.Option(
            "--open-http",
            help="Take orders and show the order list, plan and event stream without a requester "
            "token. For local experiments only.",
        ),
    ] = False,
    k_nearest: Annotated[
        int,
        typer.Option(min=1, max=100, help="Capable labs each order considers, nearest first."),
    ] = 8,
    transfer_radius_km: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Farthest lab that may ship material to another (protocol/SPEC.md section 11); "
            "0 ships nothing.",
        ),
    ] = TRANSFER_RADIUS_KM,
    clock_speed: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="For replays: the planner's clock runs this many times faster than the wall, as "
            "the labs' simulated clocks do (`node join --speed`); see --clock-anchor.",
        ),
    ] = 1.0,
    clock_anchor: Annotated[
        str | None,
        typer.Option(
            help="For replays: the wall instant (ISO 8601, UTC) from which the compressed clock "
            "runs; give the labs the same (`node join --clock-anchor`) [default: the planner's start].",
        ),
    ] = None,
    peer_region: Annotated[
        str | None,
        typer.Option(
            help="This planner's region among peer planners (SPEC.md section 10); its peers are those "
            "admitted with `planner peer add`. Needs CurveZMQ keys."
        ),
    ] = None,
    peer_endpoint: Annotated[
        str, typer.Option(help="Where the peer ROUTER binds, tcp://HOST:PORT.")
    ] = "tcp://127.0.0.1:5580",
    federate_every: Annotated[
        float,
        typer.Option(
            min=0.0, help="Seconds between the sessions of rounds it opens as coordinator (0: on request)."
        ),
    ] = 0.0,
    peer_capture: Annotated[
        Path | None, typer.Option(help="Append every frame sent to a peer to this file (for inspection).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the planner: orders over HTTP, labs over ZeroMQ, plans from CP-SAT, ledger in SQLite.

    The mesh is secured with CurveZMQ: only labs admitted with `cosmolocal planner admit` may
    join, and labs need the planner's public key (KEYS/planner.key) to connect. Orders need a
    requester token (`cosmolocal planner token create --role requester`); anyone may follow an
    order at its own address and see the public map.

    Example:

      [bold]cosmolocal planner serve --http 127.0.0.1:8080 --db var/planner.db[/]
    """
    from planner.app import PlannerSettings
    from planner.serve import serve

    setup_logging(log_level, "planner")
    host, port = _host_port(http)
    settings = PlannerSettings(
        db_path=db,
        mesh_endpoint=mesh,
        field_endpoint=field,
        heartbeat_ms=heartbeat_ms,
        liveness=liveness,
        solve_time_limit_s=solve_seconds,
        solve_niceness=solve_niceness,
        objective=objective,
        forecast_days=forecast_days,
        commit_hours=commit_hours,
        late_work_hours=late_work_hours,
        keys_dir=None if insecure else (keys or _keys_beside(db)),
        require_tokens=not open_http,
        k_nearest=k_nearest,
        transfer_radius_km=transfer_radius_km,
        clock_speed=clock_speed,
        clock_anchor=None if clock_anchor is None else parse_anchor(clock_anchor),
        peer_region=peer_region,
        peer_endpoint=peer_endpoint,
        federate_every_s=federate_every,
        peer_capture=peer_capture,
    )
    if peer_region is not None and insecure:
        typer.echo("error: --peer-region: peers need CurveZMQ keys; drop --insecure", err=True)
        raise typer.Exit(2)
    if insecure:
        typer.secho(
            "WARNING: --insecure: the mesh has no encryption and no admission; anyone who reaches "
            f"{mesh} can join as any lab. Use it for local experiments only.",
            err=True,
            fg="red",
            bold=True,
        )
    if open_http:
        typer.secho(
            "WARNING: --open-http: anyone who reaches the HTTP API can place orders and read every "
            "order and event. Use it for local experiments only.",
            err=True,
            fg="red",
            bold=True,
        )
    serve(settings, host=host, port=port, log_level=log_level)


def _keys_beside(db: Path) -> Path:
    """The default keys folder: `keys` beside the ledger file."""
    return db.parent / "keys"


@planner_app.command("admit")
def planner_admit(
    key_file: Annotated[Path, typer.Argument(metavar="LAB.key", help="The lab's public key file.")],
    lab: Annotated[
        str | None, typer.Option(help="The lab id [default: the one written in the key file].")
    ] = None,
    keys: Annotated[Path | None, typer.Option(help="The planner's keys folder.")] = None,
    db: Annotated[Path, typer.Option(help="The planner's ledger; its keys folder is beside it.")] = Path(
        "var/planner.db"
    ),
) -> None:
    """Admit a lab to the mesh by its public key (`cosmolocal node init` wrote LAB.key).

    A running planner takes it at the lab's next connection. Admitting a lab again replaces its key.

    Example:

      [bold]cosmolocal planner admit fablab-lyon.key --db var/planner.db[/]
    """
    from planner.admission import AdmissionError, Admissions
    from protocol.security import KeyFileError

    folder = (keys or _keys_beside(db)) / "admitted"
    try:
        lab_id = Admissions(folder).admit(key_file, lab)
    except (AdmissionError, KeyFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"admitted lab {lab_id} ({folder / (lab_id + '.key')})")


@planner_app.command("revoke")
def planner_revoke(
    lab: Annotated[str, typer.Argument(help="The lab id whose key is no longer admitted.")],
    keys: Annotated[Path | None, typer.Option(help="The planner's keys folder.")] = None,
    db: Annotated[Path, typer.Option(help="The planner's ledger; its keys folder is beside it.")] = Path(
        "var/planner.db"
    ),
) -> None:
    """Stop admitting a lab: a running planner ignores its live connection within a second and counts
    the lab lost, and its next connection is refused."""
    from planner.admission import Admissions

    folder = (keys or _keys_beside(db)) / "admitted"
    if not Admissions(folder).revoke(lab):
        typer.echo(f"error: lab {lab!r} is not admitted in {folder}", err=True)
        raise typer.Exit(2)
    typer.echo(f"revoked lab {lab}")


from cosmolocal.peer_commands import peer_app  # noqa: E402

planner_app.add_typer(peer_app)

token_app = typer.Typer(name="token", help="Access tokens for the planner's web pages.", no_args_is_help=True)
planner_app.add_typer(token_app)


@token_app.command("create")
def planner_token_create(
    role: Annotated[str, typer.Option(help="operator (decides on one lab's jobs) or requester.")],
    lab: Annotated[str | None, typer.Option(help="The lab an operator token is for.")] = None,
    label: Annotated[str, typer.Option(help="A note to recognise the token by, e.g. 'night shift'.")] = "",
    db: Annotated[Path, typer.Option(help="The planner's SQLite ledger file.")] = Path("var/planner.db"),
) -> None:
    """Create an access token and print it once (only its SHA-256 hash is stored).

    Example:

      [bold]cosmolocal planner token create --role operator --lab fablab-lyon --db var/planner.db[/]

    The lab's operator then opens http://PLANNER/lab/fablab-lyon?token=THE_TOKEN
    """
    from planner.auth import TokenError, TokenStore

    store = TokenStore(db)
    try:
        token = store.create(role, lab, label)
    except TokenError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    typer.echo(token)
    where = f" for lab {lab}" if lab else ""
    typer.echo(f"{role} token{where} created; it is shown only this once.", err=True)


@app.command("demo")
def demo(
    labs: Annotated[int, typer.Option(min=2, max=30, help="Lab processes to start.")] = 8,
    speed: Annotated[
        float, typer.Option(min=1.0, help="How many times faster than real time labs work.")
    ] = 10_000.0,
    timeout: Annotated[float, typer.Option(min=5.0, help="Give up after this many seconds.")] = 60.0,
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the mesh running and print the API URL.")
    ] = False,
    workdir: Annotated[
        Path | None,
        typer.Option(help="Where lab files, logs and the ledger go [default: a temporary folder]."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the lab and order mix.")] = 7,
    printers: Annotated[
        str | None,
        typer.Option(
            help="octoprint: the first lab prints on a real OctoPrint Virtual Printer (make printers)."
        ),
    ] = None,
) -> None:
    """Start a planner and labs at French cities as real processes, order, and watch it all get made.

    Exits 0 when every order is done, 1 otherwise.
    """
    from scenarios.demo import DemoOptions, run_demo
    from scenarios.printer_servers import PrinterServerMissing

    if printers not in (None, "octoprint"):
        raise typer.BadParameter("the demo drives octoprint only", param_hint="--printers")
    setup_logging("warning")
    options = DemoOptions(labs, speed, timeout, keep, workdir, seed, printers)
    try:
        ok = run_demo(options)
    except PrinterServerMissing as exc:
        typer.secho(str(exc), err=True, fg="red")
        raise typer.Exit(2) from None
    raise typer.Exit(0 if ok else 1)
