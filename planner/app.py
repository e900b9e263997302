"""The planner's HTTP API (FastAPI), built by a factory; the lifespan starts the mesh and the loop.

Nothing happens at import time: `create_app(settings)` returns an app whose lifespan opens the
ledger, binds the ZeroMQ endpoints and starts the replanning loop, and undoes all of it on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

import zmq.asyncio
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from planner import contract
from planner.access import AUTHORIZATION, grant_of, may_follow_events, may_order, need_requester, public_lab
from planner.admission import Admissions, ZapHandler, planner_keys
from planner.auth import Grant, TokenStore
from planner.committed_bus import CommittedBus
from planner.core import OrderRejected, PlannerCore
from planner.federation import Federation, make_capture
from planner.federation_routes import router as federation_router
from planner.gcpace import pace_collector
from planner.ledger_writer import LedgerFailed
from planner.loopwatch import LoopWatch
from planner.mesh import MeshServer
from planner.overload import Overload, OverloadMiddleware
from planner.peers import PeerNode
from planner.rates import FORECAST_DAYS, RateRequest
from planner.replan import (
    Replanner,
    keep_planning_after,
    late_work_refill,
    late_work_window,
    start_solve_worker,
    warm_up,
)
from planner.size_limit import SizeLimitMiddleware
from planner.store import Ledger
from planner.streams import ChunkCache, EventStream, FrameCache, stream
from planner.trade_book import TradeBook
from planner.web_routes import router as web_router
from protocol import transport
from protocol.model import ID_PATTERN, OrderRequest, utcnow
from protocol.okh import catalogue
from protocol.security import KeyPair
from protocol.timeframe import compressed_clock
from solver.model.late_window import LATE_WORK_HOURS
from solver.model.objective import DEFAULT_OBJECTIVE, TRANSFER_RADIUS_KM, objective_weights
from solver.model.problem import SolveParams, commit_checkpoints

log = logging.getLogger(__name__)
#: Liveness windows that the units a lost lab may have made wait for it to come back and report,
#: before they are planned again (PlannerCore.doubt_s): 30 s with the default 1 s heartbeat.
DOUBT_WINDOWS = 10
#: How often a thread computing in the planner's process must let the event loop have the
#: interpreter lock (create_app's `own_process`); Python's default is 5 ms.
SWITCH_INTERVAL_S = 0.001


@dataclass(frozen=True)
class PlannerSettings:
    """Everything a planner process needs to know; given, never read from the environment here."""

    db_path: FilePath
    mesh_endpoint: str = "tcp://127.0.0.1:5570"
    field_endpoint: str | None = None
    heartbeat_ms: int = 1000
    liveness: int = 3
    solve_time_limit_s: float = 2.0
    solve_workers: int = 2
    k_nearest: int = 8
    #: What plans weigh (solver.model.objective): on-time, balanced or km.
    objective: str = DEFAULT_OBJECTIVE
    #: Largest HTTP request body accepted (an order is well under 2 KiB).
    max_request_bytes: int = 64 * 1024
    #: The planner's key pair and admitted labs (planner.admission); None runs an insecure mesh.
    keys_dir: FilePath | None = None
    #: Ask for requester or operator tokens to order, list orders, read the plan and every event
    #: (planner.access); False leaves all but the operator's routes open.
    require_tokens: bool = False
    #: Back-pressure (planner.overload): the event-loop lag past which requests get 503, the
    #: requests answered at once past which they do, and the orders a second past which 429.
    max_loop_lag_s: float = 0.25
    max_in_flight: int = 256
    orders_per_s: float = 1000.0
    orders_burst: int = 2000
    #: Solve in a worker process (off the event loop's interpreter lock), not a thread.
    solve_in_process: bool = True
    #: How much lower the solve worker's CPU priority is than the planner's loop (planner.replan,
    #: `start_solve_worker`); 0 keeps it equal.
    solve_niceness: int = 5
    #: Days ahead in which a rate's releases still to come are planned as demand (planner.rates).
    forecast_days: float = FORECAST_DAYS
    #: Hours of work a plan sends labs at once, and how finely it tells sooner from later: its first
    #: time checkpoint (`solver.model.problem.commit_checkpoints`), as a simulated replay's rounds are.
    #: A day by default: with shorter windows a planner that re-plans on every event spreads urgent
    #: work over whichever labs are free sooner, at more km (docs/live-vs-sim.md, "The commit window").
    commit_hours: float = 24.0
    #: Hours of a lab's machines the late work it is sent may fill (`solver.model.late_window`); the
    #: rest stays planned, so orders a lab can still make on time do not queue behind it. 0: the
    #: late work of the whole commit window is sent.
    late_work_hours: float = LATE_WORK_HOURS
    #: Farthest lab that may ship material to another (protocol/SPEC.md section 11; 0 ships nothing).
    #: The default is the one measured in the replay (docs/transfers.md).
    transfer_radius_km: float = TRANSFER_RADIUS_KM
    #: A replay's compressed time (protocol.timeframe): the planner's clock runs `clock_speed` times
    #: faster than the wall from `clock_anchor`, as its labs' clocks do. The windows it waits for
    #: processes (an answer, a lease's slack, a lost lab's doubt) are stretched by the same factor,
    #: so that they last as long in wall seconds. 1 (the default) is real time.
    clock_speed: float = 1.0
    clock_anchor: datetime | None = None
    #: This planner's region among its peer planners (planner.federation); None: no federation.
    peer_region: str | None = None
    #: Where its peer ROUTER binds (SPEC.md section 10.1).
    peer_endpoint: str = "tcp://127.0.0.1:5580"
    #: Seconds between the sessions of rounds it opens when it is the coordinator (0: only on request).
    federate_every_s: float = 0.0
    #: A file every frame sent to a peer is appended to, for inspection (planner.peer_serve format).
    peer_capture: FilePath | None = None

    def solve_params(self) -> SolveParams:
        """The solver parameters these settings give."""
        return SolveParams(
            time_limit_s=self.solve_time_limit_s,
            workers=self.solve_workers,
            k_nearest=self.k_nearest,
            time_weight=objective_weights(self.objective),
            transfer_radius_km=self.transfer_radius_km,
            time_checkpoints_days=commit_checkpoints(self.commit_hours),
        )


#: Seconds a token's check is taken from the last look (a revoked token is refused after at most this).
TOKEN_RECHECK_S = 1.0


class RecentTokens(TokenStore):
    """The token store, with each token's grant (or refusal) kept for TOKEN_RECHECK_S: a requester
    posting 200 orders a second costs one read of the token table a second, not 200 reads on the
    event loop (each one a trip through SQLite and a wait for the interpreter lock after it)."""

    def __init__(self, path: FilePath, monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(path)
        self.monotonic = monotonic
        self._recent: dict[str, tuple[float, Grant | None]] = {}

    def check(self, token: str) -> Grant | None:
        """`TokenStore.check`, from the last look when it is younger than TOKEN_RECHECK_S."""
        now = self.monotonic()
        found = self._recent.get(token)
        if found is not None and now - found[0] < TOKEN_RECHECK_S:
            return found[1]
        grant = super().check(token)
        if len(self._recent) >= 1024:  # strangers' guesses must not grow it without bound
            self._recent.clear()
        self._recent[token] = (now, grant)
        return grant


@dataclass
class Planner:
    """The running planner: what the routes reach through `request.app.state.planner`."""

    settings: PlannerSettings
    core: PlannerCore
    mesh: MeshServer
    replanner: Replanner
    epoch: int
    started: float
    zap: ZapHandler | None = None
    requests_too_large: int = 0
    overload: Overload | None = None
    #: What blocked the event loop, and where (planner.loopwatch).
    loop_watch: LoopWatch | None = None
    #: The federation with peer planners (planner.federation), when this planner has a region.
    federation: Federation | None = None


def _secure(ctx: zmq.asyncio.Context, settings: PlannerSettings) -> tuple[ZapHandler | None, KeyPair | None]:
    """Start the ZAP handler and load the planner's keys; (None, None) for an insecure mesh."""
    if settings.keys_dir is None:
        log.warning(
            "INSECURE MESH: no CurveZMQ. Anyone who can reach %s can join as any lab and read the "
            "field. Use this for local experiments only.",
            settings.mesh_endpoint,
        )
        return None, None
    keys, created = planner_keys(settings.keys_dir)
    admissions = Admissions(settings.keys_dir / "admitted")
    zap = ZapHandler(ctx, admissions)
    zap.start()
    public_file = settings.keys_dir / "planner.key"
    log.info(
        "mesh secured with CurveZMQ: planner key %s%s (labs join with --planner-key %s); "
        "%d labs admitted in %s",
        keys.public.decode(),
        " (new)" if created else "",
        public_file,
        len(admissions.admitted()),
        admissions.folder,
    )
    return zap, keys


def create_app(
    settings: PlannerSettings, clock: Callable[[], datetime] = utcnow, *, own_process: bool = False
) -> FastAPI:
    """Build the planner's app; the lifespan owns the ledger, sockets and background tasks.

    With `own_process` (a planner process of its own: `planner.serve`) the lifespan also tunes the
    interpreter for an event loop that must answer while threads compute (measured here):

    - everything alive once the planner has started (its imports, the ledger loaded) is moved out
      of the garbage collector's reach (`gc.freeze`): a full collection then walks only what was
      made since, instead of some 130,000 objects (about 90 ms of CPU each time, spent on the loop);
      and so is what has lived ten seconds from then on, thawed and collected once every ten
      minutes (`planner.gcpace`): the state the planner builds while it serves grew full
      collections to 183 ms at a thousand labs and ten thousand orders;
    - threads switch every `SWITCH_INTERVAL_S` instead of 5 ms: the loop gives up the interpreter
      lock at every wait on its sockets and must get it back from whichever thread computes (a
      solve before the worker process is ready, an emergency insertion, an explanation). At 5 ms,
      300 turns of a loop took 5.6 s beside a Python-bound thread, and 0.85 s at 1 ms.
    """
    designs = catalogue()
    if settings.clock_speed != 1.0:
        clock = compressed_clock(settings.clock_anchor or utcnow(), settings.clock_speed)
    overload = Overload(
        max_lag_s=settings.max_loop_lag_s,
        max_in_flight=settings.max_in_flight,
        orders_per_s=settings.orders_per_s,
        orders_burst=settings.orders_burst,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ledger = Ledger(settings.db_path)
        epoch = ledger.next_epoch()
        late_window = late_work_window(settings.late_work_hours, settings.clock_speed)
        core = PlannerCore(
            ledger=ledger,
            designs=designs,
            clock=clock,
            bus=CommittedBus(ledger),
            forecast_days=settings.forecast_days,
            late_work_hours=late_window,
            late_work_refill_hours=late_work_refill(late_window, settings.clock_speed),
        )
        core.load()
        # From here on the ledger is written by a thread of its own: no commit waits on the loop.
        ledger.start_writer(asyncio.get_running_loop())
        app.state.tokens = RecentTokens(settings.db_path)  # planner.access reads tokens through it
        ctx = zmq.asyncio.Context()
        field_endpoint = settings.field_endpoint or transport.field_endpoint_for(settings.mesh_endpoint)
        zap, keys = _secure(ctx, settings)
        mesh = MeshServer(
            core,
            ctx,
            settings.mesh_endpoint,
            field_endpoint,
            epoch,
            heartbeat_ms=settings.heartbeat_ms,
            liveness=settings.liveness,
            curve=keys,
            admissions=zap.admissions if zap is not None else None,
        )
        params = settings.solve_params()
        pool, ready = None, None
        if settings.solve_in_process:
            pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_solve_worker,
                initargs=(os.getpid(), settings.solve_niceness),
            )
            ready = pool.submit(warm_up)
        replanner = Replanner(
            core,
            mesh.send_assignments,
            params,
            executor=pool,
            executor_ready=ready,
            keep_planning_s=keep_planning_after(settings.clock_speed),
            clock_speed=settings.clock_speed,
        )

        def on_change(reason: str) -> None:
            replanner.request(reason)
            mesh.field_changed()

        core.on_change = on_change
        liveness_s = settings.liveness * settings.heartbeat_ms / 1000
        core.doubt_s = DOUBT_WINDOWS * liveness_s * settings.clock_speed
        core.answer_window_s *= settings.clock_speed
        core.lease_grace_min_s *= settings.clock_speed
        core.on_withdrawn = mesh.push_active
        loop_watch = LoopWatch()
        app.state.planner = Planner(
            settings,
            core,
            mesh,
            replanner,
            epoch,
            time.monotonic(),
            zap,
            overload=overload,
            loop_watch=loop_watch,
        )
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(overload.watch(stop)),
            asyncio.create_task(mesh.run(stop)),
            asyncio.create_task(replanner.run(stop)),
            asyncio.create_task(_watch_leases(core, stop, liveness_s)),
        ]
        if zap is not None:
            tasks.append(asyncio.create_task(zap.admissions.watch(stop)))
        federation = await _federate(settings, core, params)
        if federation is not None:
            app.state.planner.federation = federation
            tasks.append(asyncio.create_task(federation.run(stop)))
        if core.has_unplanned_demand():
            replanner.request("restart")
        if own_process:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
            gc.collect()
            gc.freeze()
            tasks.append(asyncio.create_task(pace_collector(stop)))
        loop_watch.start()  # after the start-up's one long step (the collection above), before serving
        log.info(
            "planner epoch %d: mesh %s, field %s, ledger %s",
            epoch,
            settings.mesh_endpoint,
            field_endpoint,
            settings.db_path,
        )
        try:
            yield
        finally:
            stop.set()
            await loop_watch.stop()
            core.bus.close()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            mesh.close()
            if federation is not None:
                await federation.node.stop()
                federation.book.close()
            if pool is not None:  # waits for a solve under way (its time limit), off the loop
                await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
            if zap is not None:
                await zap.stop()
            ctx.term()
            await asyncio.to_thread(ledger.close)  # the writer applies what is left, off the loop
            app.state.tokens.close()
            log.info("planner stopped")

    app = FastAPIOffline(
        title="Cosmolocal planner",
        version="0.1.0",
        description="Orders in, plans out: allocates open-design production to the nearest capable labs.",
        lifespan=lifespan,
    )
    _limit_request_size(app, settings.max_request_bytes)
    app.add_middleware(OverloadMiddleware, overload=lambda: overload)
    _routes(app, clock)
    app.include_router(web_router)  # the web pages and the operator's job decisions
    app.include_router(federation_router)  # the peers, trades and rounds of the federation
    contract.install(app, _security(settings.require_tokens), designs)
    return app


async def _federate(settings: PlannerSettings, core: PlannerCore, params: SolveParams) -> Federation | None:
    """Start the peer node and the federation when the settings name a region (keys needed)."""
    if settings.peer_region is None:
        return None
    if settings.keys_dir is None:
        raise RuntimeError("--peer-region: peers need CurveZMQ keys; it cannot run with --insecure")
    node = PeerNode(
        settings.peer_region,
        settings.keys_dir,
        settings.peer_endpoint,
        heartbeat_s=settings.heartbeat_ms / 1000,
        capture=make_capture(settings.peer_capture),
    )
    book = TradeBook(settings.db_path)
    federation = Federation(
        core, node, book, params, every_s=settings.federate_every_s, time_scale=settings.clock_speed
    )
    await node.start()
    log.info(
        "federation: region %s, peers at %s, %d peers admitted",
        settings.peer_region,
        settings.peer_endpoint,
        len(node.live_peers()),
    )
    return federation


def _security(require_tokens: bool) -> contract.Security:
    """Which operations need a token (planner.access), as the OpenAPI document states it."""
    requester = "required" if require_tokens else "optional"
    return {
        ("post", "/orders"): requester,
        ("get", "/orders"): requester,
        ("post", "/rates"): requester,
        ("get", "/rates"): requester,
        ("get", "/plan"): requester,
        ("get", "/events"): requester,
        ("get", "/labs"): "optional",
        ("get", "/labs/{lab_id}"): "optional",
        ("get", "/labs/{lab_id}/jobs"): "required",
        ("post", "/labs/{lab_id}/jobs/{assignment_id}/decision"): "required",
        ("post", "/federation/negotiate"): requester,
    }


def _limit_request_size(app: FastAPI, max_bytes: int) -> None:
    """Refuse request bodies over `max_bytes` with a readable 413, before they are read; counted."""

    def count(scope: Any) -> None:
        planner = getattr(scope["app"].state, "planner", None) if "app" in scope else None
        if planner is not None:
            planner.requests_too_large += 1

    app.add_middleware(SizeLimitMiddleware, max_bytes=max_bytes, refused=count)


async def _watch_leases(
    core: PlannerCore, stop: asyncio.Event, first_after_s: float, every_s: float = 1.0
) -> None:
    """Once a second, end the leases no lab renewed and release the units held in doubt too long
    (their units go back to demand), and place the rates' releases that have come due.

    The first look waits `first_after_s` (the labs' liveness window): a planner that restarts on
    its ledger gives the labs time to join again and report what they made while it was down, and
    a lab still working on its last word from the old planner stops within that window.
    """
    waits = [first_after_s]
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=waits.pop() if waits else every_s)
        if not stop.is_set():
            core.expire_leases()
            core.release_doubts()
            core.release_rates()


def _loop_blocks(watch: LoopWatch | None) -> dict[str, Any]:
    """/health's account of what blocked the event loop (planner.loopwatch)."""
    if watch is None:
        return {"loop_blocks": 0, "loop_block_max_ms": 0.0, "loop_block_places": [], "gc_collections": {}}
    blocks = watch.blocks
    return {
        "loop_blocks": blocks.count,
        "loop_block_max_ms": round(blocks.longest_ms, 1),
        "loop_block_places": blocks.top(),
        "gc_collections": watch.collections.summary(),
    }


def _planner(request: Request) -> Planner:
    return request.app.state.planner


#: Seconds a client is asked to wait after a ledger failure: the planner must be restarted.
LEDGER_FAILED_RETRY_S = 30


async def _committed(planner: Planner) -> JSONResponse | None:
    """Wait until what the request changed is in the ledger's file; a 503 when it cannot be."""
    try:
        await planner.core.ledger.committed()
    except LedgerFailed as exc:
        detail = f"{exc}; nothing was placed: try again once the planner has been restarted"
        return JSONResponse(
            status_code=503,
            content={"detail": detail, "retry_after_s": LEDGER_FAILED_RETRY_S},
            headers={"Retry-After": str(LEDGER_FAILED_RETRY_S)},
        )
    return None


def _ledger_counters(ledger: Ledger) -> dict[str, Any]:
    """/health's account of the ledger's writer thread (planner.ledger_writer)."""
    writer = ledger.writer
    if writer is None:
        return {"ledger_pending": 0, "ledger_commits": 0, "ledger_largest_group": 0, "ledger_failed": None}
    return {
        "ledger_pending": writer.pending,
        "ledger_commits": writer.groups,
        "ledger_largest_group": writer.largest_group,
        "ledger_failed": None if writer.failed is None else str(writer.failed),
    }


#: Ids in paths: the server refuses (422) any that could not be an id, before looking it up (404).
OrderId = Annotated[str, Path(pattern=ID_PATTERN, description="the order's id, as POST /orders gave it")]
LabId = Annotated[str, Path(pattern=ID_PATTERN, description="the lab's id")]
#: An order's `Idempotency-Key`: what the server accepts, as the OpenAPI document says.
IDEMPOTENCY_KEY = Header(
    default=None,
    min_length=1,
    max_length=200,
    description="any 1 to 200 characters; a retry with the same key and order gives back the first order",
)
#: `OrderRejected.field` -> status: a due date past or a key used for another order conflict with
#: what the planner holds (its clock, its record of the key); the rest is invalid data.
REJECTION_STATUS = {"due_at": 409, "Idempotency-Key": 409}


RateId = Annotated[str, Path(pattern=ID_PATTERN, description="the rate's id, as POST /rates gave it")]


async def _may_order(request: Request, authorization: str | None = AUTHORIZATION) -> Grant | None:
    """`planner.access.may_order`, run on the event loop: FastAPI runs a plain function dependency
    in a worker thread, and that hop (two thread switches, a future) cost more of an order's CPU
    than the check itself, one read of an indexed row of the token table."""
    return may_order(request, authorization)


async def _known_order(order_id: OrderId, request: Request) -> str:
    """Dependency: 404 before a stream starts when there is no such order (on the loop: a lookup)."""
    if order_id not in _planner(request).core.orders:
        raise HTTPException(404, f"no order {order_id!r}")
    return order_id


def _routes(app: FastAPI, clock: Callable[[], datetime]) -> None:
    @app.post(
        "/orders",
        status_code=status.HTTP_201_CREATED,
        tags=["orders"],
        response_model=None,
        responses={
            201: {
                "description": "the order, placed and on disk",
                "headers": {"Location": {"description": "the order's URL", "schema": {"type": "string"}}},
                "links": {
                    "GetOrder": {
                        "operationId": "get_order",
                        "parameters": {"order_id": "$response.body#/id"},
                    },
                    "GetOrderExplanation": {
                        "operationId": "get_order_explanation",
                        "parameters": {"order_id": "$response.body#/id"},
                    },
                },
            },
            200: {
                "description": "the order this Idempotency-Key placed before (header Idempotent-Replayed)",
                "headers": {
                    "Location": {"description": "the order's URL", "schema": {"type": "string"}},
                    "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}},
                },
            },
            **contract.errors(409),
        },
        operation_id="post_order",
    )
    async def post_order(
        order: OrderRequest,
        request: Request,
        response: Response,
        idempotency_key: str | None = IDEMPOTENCY_KEY,
        _grant: Grant | None = Depends(_may_order),
    ) -> dict[str, Any] | JSONResponse:
        """Place an order. Durable before the answer; the answer carries the order id and status URL.

        With an `Idempotency-Key` header, a retried request gives back the order the first one made
        (status 200, header `Idempotent-Replayed: true`) instead of ordering twice; the same key with
        another order is 409. A due date that has passed is 409 too. Needs a requester token when the
        planner asks for tokens.
        """
        planner = _planner(request)
        try:
            accepted, replayed = planner.core.place_order(order, idempotency_key)
        except OrderRejected as exc:
            code = REJECTION_STATUS.get(exc.field)
            if code is not None:
                return JSONResponse(status_code=code, content={"detail": f"{exc.field}: {exc.reason}"})
            where = "header" if exc.field == "Idempotency-Key" else "body"
            return JSONResponse(
                status_code=422,
                content={"detail": [{"loc": [where, exc.field], "msg": exc.reason, "type": "value_error"}]},
            )
        # The answer waits for the order's commit (and a replay for the first order's), off the loop.
        if (refusal := await _committed(planner)) is not None:
            return refusal
        response.headers["Location"] = f"/orders/{accepted.id}"
        if replayed:
            response.status_code = status.HTTP_200_OK
            response.headers["Idempotent-Replayed"] = "true"
        return planner.core.order_view(accepted.id) or {}

    @app.get("/orders", tags=["orders"])
    async def list_orders(
        request: Request, authorization: str | None = AUTHORIZATION
    ) -> list[dict[str, Any]]:
        """Every order with its state and units made (a requester token when the planner asks)."""
        need_requester(request, authorization, "to list the orders")
        core = _planner(request).core
        return [
            o.model_dump(mode="json") | {"units_made": core.units_made(o.id)} for o in core.orders.values()
        ]

    @app.get("/orders/{order_id}", tags=["orders"], responses=contract.errors(404), operation_id="get_order")
    async def get_order(order_id: OrderId, request: Request) -> dict[str, Any]:
        """One order: allocations per lab with their cost terms, progress, state, shortage if any."""
        planner = _planner(request)
        view = planner.core.order_view(order_id)
        if view is None:
            raise HTTPException(404, f"no order {order_id!r}")
        if planner.federation is not None:
            view |= planner.federation.leases.abroad_view(order_id)
        return view

    @app.get(
        "/orders/{order_id}/explanation",
        tags=["orders"],
        responses=contract.errors(404),
        operation_id="get_order_explanation",
    )
    async def get_order_explanation(order_id: OrderId, request: Request) -> list[dict[str, Any]]:
        """Why each lab was chosen (its cost terms), and why the nearest others were not, with what
        would change that ("with 4.0 more fdm-hours before the due date, it could take 8 units")."""
        planner = _planner(request)
        if order_id not in planner.core.orders:
            raise HTTPException(404, f"no order {order_id!r}")
        # It reads every lab (a thousand on a large mesh): in a worker thread, so /health, the
        # mesh and every other request go on meanwhile.
        return await asyncio.to_thread(planner.core.explanation, order_id, planner.settings.solve_params())

    @app.post(
        "/rates",
        status_code=status.HTTP_201_CREATED,
        tags=["rates"],
        response_model=None,
        responses={
            201: {
                "description": "the rate, accepted and on disk; its first release is an order when due",
                "headers": {"Location": {"description": "the rate's URL", "schema": {"type": "string"}}},
                "links": {
                    "GetRate": {"operationId": "get_rate", "parameters": {"rate_id": "$response.body#/id"}}
                },
            },
            **contract.errors(409),
        },
        operation_id="post_rate",
    )
    async def post_rate(
        rate: RateRequest,
        request: Request,
        response: Response,
        _grant: Grant | None = Depends(_may_order),
    ) -> dict[str, Any] | JSONResponse:
        """Ask for a rate: `units_per_day` of a design, delivered to a place, until a date.

        The planner places one order a day (due `due_days` later), and plans the releases still to
        come within its forecast window as demand too, so today's plan leaves room for them; none is
        sent to a lab before it is ordered. A stream that releases no whole unit between its start and
        `until` (`until` past, or before `starts_at`, or a rate too small), or runs over a year, is
        409. Needs a requester token when the planner asks for tokens.
        """
        planner = _planner(request)
        try:
            accepted = planner.core.submit_rate(rate)
        except OrderRejected as exc:
            if exc.field != "design":  # a stream with no release left: a conflict with the clock
                return JSONResponse(status_code=409, content={"detail": f"{exc.field}: {exc.reason}"})
            return JSONResponse(
                status_code=422,
                content={"detail": [{"loc": ["body", exc.field], "msg": exc.reason, "type": "value_error"}]},
            )
        if (refusal := await _committed(planner)) is not None:
            return refusal
        response.headers["Location"] = f"/rates/{accepted.id}"
        return planner.core.rate_view(accepted.id) or {}

    @app.get("/rates", tags=["rates"])
    async def list_rates(request: Request, authorization: str | None = AUTHORIZATION) -> list[dict[str, Any]]:
        """Every rate with its state and the days until its need is met (a requester token when the
        planner asks)."""
        need_requester(request, authorization, "to list the rates")
        core = _planner(request).core
        views = [core.rate_view(rate_id) for rate_id in core.rates]
        return [{k: v for k, v in view.items() if k != "releases"} for view in views if view is not None]

    @app.get("/rates/{rate_id}", tags=["rates"], responses=contract.errors(404), operation_id="get_rate")
    async def get_rate(rate_id: RateId, request: Request) -> dict[str, Any]:
        """One rate: its releases (ordered and forecast), and the days until its need is met: when the
        units planned to arrive catch up with the units due for good, or null with the shortfall at
        the end of the forecast window (`planner.need_met`)."""
        view = _planner(request).core.rate_view(rate_id)
        if view is None:
            raise HTTPException(404, f"no rate {rate_id!r}")
        return view

    @app.get("/labs", tags=["labs"])
    async def list_labs(request: Request, authorization: str | None = AUTHORIZATION) -> list[dict[str, Any]]:
        """Every lab that joined, live or lost, with its machines and stock; its jobs for token holders."""
        core = _planner(request).core
        grant = grant_of(request, authorization)
        return [public_lab(core.lab_json(v), request, grant) for v in core.labs.values()]

    @app.get("/labs/{lab_id}", tags=["labs"], responses=contract.errors(404))
    async def get_lab(
        lab_id: LabId, request: Request, authorization: str | None = AUTHORIZATION
    ) -> dict[str, Any]:
        """One lab (its jobs for token holders, as in /labs)."""
        core = _planner(request).core
        view = core.labs.get(lab_id)
        if view is None:
            raise HTTPException(404, f"no lab {lab_id!r}")
        return public_lab(core.lab_json(view), request, grant_of(request, authorization))

    @app.get("/labs/{lab_id}/trails", tags=["labs"], responses=contract.errors(404))
    async def get_lab_trails(lab_id: LabId, request: Request) -> dict[str, Any]:
        """A lab's trails per design: strength, the discount it earns in the plan, and its history.

        Trails are about a lab's record with a design, visible to everyone, and they fade with time.
        """
        planner = _planner(request)
        if lab_id not in planner.core.labs:
            raise HTTPException(404, f"no lab {lab_id!r}")
        return planner.core.trails_view(lab_id, planner.settings.solve_params())

    @app.get("/designs", tags=["designs"])
    async def list_designs(request: Request) -> list[dict[str, Any]]:
        """The open designs this planner can allocate, with licence, source and per-unit steps."""
        return [d.model_dump(mode="json") for d in _planner(request).core.designs.values()]

    @app.get("/plan", tags=["plan"])
    async def get_plan(request: Request, authorization: str | None = AUTHORIZATION) -> dict[str, Any]:
        """The current plan: last solve's statistics, totals over every plan, every standing allocation
        (a requester token when the planner asks: allocations name orders)."""
        need_requester(request, authorization, "to read the plan (it names every order)")
        core = _planner(request).core
        summary = core.plan_summary(core.plan) if core.plan else {"version": 0, "status": "EMPTY"}
        return summary | {
            "totals": core.ledger.plan_totals(),
            "allocations": core.current_allocations(),
            "transfers": [row.to_json() for row in core.shipments.rows.values()],
        }

    @app.get("/health", tags=["operations"])
    async def health(request: Request) -> dict[str, Any]:
        """Liveness and counters: labs live, orders, solves, frames rejected."""
        planner = _planner(request)
        core, stats, overload = planner.core, planner.mesh.stats, planner.overload
        return {
            "status": "ok",
            "epoch": planner.epoch,
            "uptime_s": round(time.monotonic() - planner.started, 3),
            "labs_live": sum(1 for v in core.labs.values() if v.live),
            "labs_known": len(core.labs),
            "orders": len(core.orders),
            "orders_done": sum(1 for o in core.orders.values() if o.state == "done"),
            "plan_version": core.plan.version if core.plan else 0,
            "solves": planner.replanner.solves,
            "solving": planner.replanner.solving,
            "plans_rejected": core.plans_rejected,
            "solve_failures": planner.replanner.failures,
            "emergency_inserts": planner.replanner.emergency_inserts,
            "plans_cut_short": planner.replanner.cut_short,
            "plans_cut_short_dropped": planner.replanner.cut_short_dropped,
            "solve_time_limit_s": planner.replanner.params.time_limit_s,
            "leases_expired": core.leases_expired,
            "labs_lost": core.labs_lost,
            "units_reported_late": core.units_reported_late,
            "assignments_withdrawn": core.assignments_withdrawn,
            "units_in_doubt": core.units_in_doubt(),
            "units_held_in_doubt": core.units_held_in_doubt,
            "units_surplus": core.units_surplus(),
            "frames_received": stats.frames_received,
            "frames_rejected": stats.frames_rejected,
            "frames_rate_limited": stats.frames_rate_limited,
            "mesh_secure": planner.zap is not None,
            "handshakes_failed": stats.handshakes_failed,
            "keys_refused": planner.zap.stats.unknown_keys if planner.zap else 0,
            "impersonations_refused": stats.impersonations,
            "frames_revoked": stats.frames_revoked,
            "requests_too_large": planner.requests_too_large,
            "assigns_sent": stats.assigns_sent,
            "capacity_applied": stats.capacity_applied,
            "capacity_coalesced": stats.capacity_coalesced,
            "transfers_under_way": core.shipments.under_way(),
            "transfers_refused": core.shipments.refused,
            "transfers_void": core.shipments.voided,
            "event_listeners": core.bus.listeners,
            "loop_lag_ms": round(overload.lag_s * 1000, 1) if overload else 0.0,
            "loop_lag_max_ms": round(overload.stats.max_lag_ms, 1) if overload else 0.0,
            "refused_busy": overload.stats.refused_busy if overload else 0,
            "refused_rate": overload.stats.refused_rate if overload else 0,
            **_loop_blocks(planner.loop_watch),
            **_ledger_counters(core.ledger),
        }

    frames = FrameCache()
    chunks = ChunkCache()  # the whole stream and the network stream select alike for every subscriber

    @app.get("/events", response_class=EventStream, tags=["events"], responses=contract.errors(401))
    async def events(
        request: Request,
        last_event_id: str | None = Header(default=None),
        _grant: Grant | None = Depends(may_follow_events),
    ) -> EventStream:
        """Server-sent events of order, plan, job and lab changes; resumes after `Last-Event-ID`.

        A requester or operator token when the planner asks (a browser's EventSource sends no
        headers, hence also `?token=`).
        """
        return EventStream(
            stream(_planner(request).core, frames, last_event_id, lambda kind, data: data, "all", chunks)
        )

    @app.get(
        "/orders/{order_id}/events",
        response_class=EventStream,
        tags=["events"],
        responses=contract.errors(404),
    )
    async def order_events(
        order_id: str,
        request: Request,
        last_event_id: str | None = Header(default=None),
        _known: str = Depends(_known_order),
    ) -> EventStream:
        """One order's events (its state and its jobs), as /events; readable by whoever has its id."""

        def mine(kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
            if kind == "plan.committed":
                return {}  # a new plan may change the order's shortage: worth a look, nothing more
            return data if data.get("order_id", data.get("id")) == order_id else None

        return EventStream(stream(_planner(request).core, frames, last_event_id, mine, "order"))

    @app.get("/network/events", response_class=EventStream, tags=["events"])
    async def network_events(
        request: Request, last_event_id: str | None = Header(default=None)
    ) -> EventStream:
        """That something changed, and what kind of change, without its content: for public pages."""
        return EventStream(
            stream(_planner(request).core, frames, last_event_id, lambda kind, data: {}, "none", chunks)
        )
