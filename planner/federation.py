"""A planner's federation with the planners of other regions: its peer node, rounds and leases.

`Federation` ties together, inside one planner process and its event loop:

- the peer transport (`planner.peers.PeerNode`: CurveZMQ, admitted keys, heartbeats, refusals);
- the rounds of the priced contract net (`planner.fed_rounds`), on the problem the planner holds;
- the trades' leases, progress and resync (`planner.fed_leases`), in the planner's own ledger file
  (`planner.trade_book`);
- the emergency fast path (`planner.fed_emergency`): an emergency its labs cannot make in time is
  placed with a peer in one round trip, without waiting for a session.

One task reads the peer inbox and hands each message to its part; one follows the planner's events
(each plan it commits may leave an emergency short); one ticks every heartbeat (leases, progress,
the fast path's retries, and, on the coordinator, a session every `every_s` seconds when asked to).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from planner.core import PlannerCore
from planner.fed_emergency import Emergencies
from planner.fed_leases import Leases
from planner.fed_rounds import Rounds
from planner.peers import PeerNode
from planner.trade_book import TradeBook
from protocol.peers import (
    ConfirmBody,
    EmergencyBody,
    EmergencyOfferBody,
    EmergencyTakeBody,
    LeaseBody,
    PeerEnvelope,
    ProgressBody,
    RoundStart,
    SnapshotBody,
)
from solver.federation.cells import cell_centre, cell_of
from solver.federation.net import NetParams
from solver.model.problem import SolveParams

log = logging.getLogger(__name__)
#: Heartbeat intervals an origin waits for a host's LEASE before the trade expires (SPEC.md 10.7).
LEASE_WAIT_BEATS = 3


class Federation:
    """One planner's side of the federation (see the module docstring)."""

    def __init__(
        self,
        core: PlannerCore,
        node: PeerNode,
        book: TradeBook,
        params: SolveParams,
        every_s: float = 0.0,
        net: NetParams = NetParams(),
        lease_wait_s: float | None = None,
        round_timeout_s: float | None = None,
        emergency_wait_s: float | None = None,
        time_scale: float = 1.0,
    ) -> None:
        """`time_scale`: seconds of the planner's clock per wall second (1 but in a replay or demo
        whose planner reads a compressed clock, `protocol.timeframe`); the waits below are wall
        seconds, stretched by it where they are compared with the planner's clock."""
        self.core = core
        self.node = node
        self.book = book
        self.every_s = every_s
        self.region = node.region
        wait = lease_wait_s if lease_wait_s is not None else LEASE_WAIT_BEATS * node.heartbeat_s
        wait *= time_scale  # compared with the planner's clock (`Leases.tick`)
        self.leases = Leases(self.region, core, book, node.send, wait, net.cell_deg)
        extra = {} if round_timeout_s is None else {"round_timeout_s": round_timeout_s}
        self.rounds = Rounds(
            self.region,
            core.problem,
            book,
            self.leases,
            node.send,
            lambda: set(node.lost),
            params,
            net,
            **extra,
        )
        extra = {} if emergency_wait_s is None else {"answer_wait_s": emergency_wait_s}
        self.emergencies = Emergencies(
            self.region,
            core,
            book,
            self.leases,
            node.send,
            node.live_peers,
            params,
            node.heartbeat_s,
            self.rounds.stats.orders_exposed,
            net.cell_deg,
            time_scale=time_scale,
            **extra,
        )
        self.frames_unexpected = 0
        self._last_session = time.monotonic()
        self._tasks: set[asyncio.Task[Any]] = set()
        core.abroad = self.leases.abroad
        node.trades_with = self.leases.trades_with
        node.committed_seq = lambda: book.seq
        node.round = self.rounds.latest_round

    @property
    def coordinator(self) -> str:
        """The region that opens sessions now: the smallest id among this one and its live peers."""
        return self.rounds.coordinator(self.node.live_peers())

    async def negotiate(self) -> dict[str, Any]:
        """Run one session of rounds now (this planner must be the coordinator)."""
        self._last_session = time.monotonic()
        summary = await self.rounds.negotiate(self.node.live_peers())
        self.node.round = self.rounds.latest_round
        return summary

    async def run(self, stop: asyncio.Event) -> None:
        """Read the peer inbox and tick every heartbeat until `stop` is set."""
        reader = asyncio.create_task(self._read(), name="federation-read")
        follower = asyncio.create_task(self._follow(), name="federation-follow")
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.node.heartbeat_s)
                if stop.is_set():
                    break
                try:
                    await self._tick()
                except Exception:  # a tick that fails is logged; the next one tries again
                    log.exception("federation tick failed")
        finally:
            reader.cancel()
            follower.cancel()
            for task in [reader, follower, *self._tasks]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _tick(self) -> None:
        self.node.expire()
        live = set(self.node.live_peers())
        await self.leases.tick(self.core.clock(), live)
        await self.emergencies.tick()
        self.node.round = max(self.node.round, self.rounds.latest_round)
        due = self.every_s > 0 and time.monotonic() - self._last_session >= self.every_s
        if due and self.coordinator == self.region and live and not self.rounds._negotiating.locked():
            self._spawn(self.negotiate())

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("federation task failed", exc_info=task.exception())

    async def _follow(self) -> None:
        """After every plan this planner commits, look for emergencies it leaves short (the fast path)."""
        events = self.core.bus.subscribe()
        try:
            while True:
                event = await events.get()
                if event is None:  # cut off (or the planner stops): follow again from now
                    events = self.core.bus.subscribe()
                    continue
                if event.kind == "plan.committed":
                    try:
                        await self.emergencies.scan()
                    except Exception:  # the next plan or heartbeat scans again
                        log.exception("federation: the emergency scan failed")
        finally:
            self.core.bus.unsubscribe(events)

    async def _read(self) -> None:
        while True:
            message = await self.node.inbox.get()
            try:
                await self._take(message)
            except Exception:  # one bad message never stops the federation
                log.exception("federation: %s from %s could not be handled", message.kind, message.sender)

    async def _take(self, message: PeerEnvelope) -> None:
        kind, sender, body = message.kind, message.sender, message.body
        now = self.core.clock()
        if kind == "ROUND":
            assert isinstance(body, RoundStart)
            if self.region not in body.regions:
                self.frames_unexpected += 1
                return
            self._spawn(self.rounds.on_round(sender, body))
        elif kind in {"OFFERS", "BIDS", "AWARDS", "COST", "VOTE", "COMMIT", "ABORT"}:
            self.rounds.take(message)
        elif kind == "LEASE":
            assert isinstance(body, LeaseBody)
            await self.leases.on_lease(sender, body, now)
            self.emergencies.on_leased(body.trade_id)
        elif kind == "CONFIRM":
            assert isinstance(body, ConfirmBody)
            self.leases.on_confirm(sender, body, now)
        elif kind == "PROGRESS":
            assert isinstance(body, ProgressBody)
            self.leases.on_progress(sender, body)
        elif kind == "SNAPSHOT":
            assert isinstance(body, SnapshotBody)
            self.leases.on_snapshot(sender, body, now)
        elif kind == "EMERGENCY":
            assert isinstance(body, EmergencyBody)
            self._spawn(self.emergencies.on_request(sender, body))  # its LP runs off the reader
        elif kind == "EMERGENCY_OFFER":
            assert isinstance(body, EmergencyOfferBody)
            await self.emergencies.on_answer(sender, body)
        elif kind == "EMERGENCY_TAKE":
            assert isinstance(body, EmergencyTakeBody)
            await self.emergencies.on_take(sender, body)
        elif kind not in {"PEER_HELLO", "OFFER"}:
            self.frames_unexpected += 1

    def places(self) -> dict[str, dict[str, float]]:
        """Where each region sits on the network page's map, as coarsely as peers see it: this
        region at the centre of its labs' cells, a peer at the centre of the cells it offered from
        (or, for an origin, the cells its trades were delivered to)."""
        cells: dict[str, set[str]] = {
            self.region: {cell_of(v.lab.location, self.rounds.net.cell_deg) for v in self.core.labs.values()}
        }
        for region, offered in self.rounds.peer_cells.items():
            cells.setdefault(region, set()).update(offered)
        for row in self.book.rows.values():
            if row.trade.origin != self.region:
                cells.setdefault(row.trade.origin, set()).add(row.trade.cell)
        out = {}
        for region, found in sorted(cells.items()):
            if found:
                centres = [cell_centre(c, self.rounds.net.cell_deg) for c in found]
                out[region] = {
                    "lat": round(sum(c.lat for c in centres) / len(centres), 2),
                    "lon": round(sum(c.lon for c in centres) / len(centres), 2),
                }
        return out

    def status(self) -> dict[str, Any]:
        """What /federation shows: peers, the coordinator, trades, rounds and counters."""
        rows = list(self.book.rows.values())
        orders = [o for o in self.core.orders.values() if not o.id.startswith("lease-")]
        exposed = self.rounds.stats.orders_exposed
        stats = asdict(self.rounds.stats) | asdict(self.leases.stats)
        stats["orders_exposed"] = len(exposed)
        return {
            "region": self.region,
            "coordinator": self.coordinator,
            "live": self.node.live_peers(),
            "lost": sorted(self.node.lost),
            "round": self.rounds.latest_round,
            "orders_exposed_share": round(len(exposed) / len(orders), 4) if orders else 0.0,
            "trades": [r.to_json() | {"covered_units": sum(r.covers.values())} for r in rows],
            "flows": flows(self.region, rows),
            "places": self.places(),
            "rounds": self.book.rounds(20),
            "sessions": self.rounds.summaries[-5:],
            "emergency": self.emergencies.status(),
            "stats": stats
            | {
                "frames_unexpected": self.frames_unexpected,
                "peer_keys_refused": self.node.keys_refused,
                **{f"peer_{k}": v for k, v in asdict(self.node.stats).items()},
            },
        }


def flows(region: str, rows: list[Any]) -> list[dict[str, Any]]:
    """Units per (host, origin) of the live trades this region holds: what moves between regions."""
    totals: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        if row.state == "void":
            continue
        key = (row.trade.host, row.trade.origin)
        units = totals.setdefault(key, [0, 0])
        units[0] += row.units
        units[1] += row.units_done
    return [
        {"host": host, "origin": origin, "units": u, "units_done": d}
        for (host, origin), (u, d) in sorted(totals.items())
    ]


def make_capture(path: Any) -> Callable[[str, bytes], None] | None:
    """The capture of every frame sent (planner.peer_serve's file format), or None."""
    if path is None:
        return None
    from planner.peer_serve import capture_to

    return capture_to(path)
