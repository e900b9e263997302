"""The rounds of the priced contract net between planner processes (SPEC.md section 10.4).

A *session* is a run of rounds opened by the coordinator (the live region with the smallest id):

1. `ROUND` with `offers_only`: every region solves its LP alone (`solver.federation.region`, on the
   problem its planner holds now) and sends its `OFFERS` to every other.
2. Each following `ROUND` r: every region waits for the others' OFFERS of round r - 1, solves with
   them as import options and sends each host its `BIDS`; a host awards the bids it got on its
   previous offers (`solver.federation.net.award_bids`: within each of its cells' shared capacity,
   the bids that leave it the most first, times the round's step; then cut down until its own plan
   with them leaves no more units short and costs it no more than its offers quoted,
   `within_means`) and sends each origin its `AWARDS`; every
   region solves with the tentative trades and sends the coordinator its `COST` (with its cost
   before the round and how many bids it sent).
3. The coordinator writes the outcome first (commit only if the summed cost fell), then sends `VOTE`
   and `COMMIT` or `ABORT` to everyone. On COMMIT each region writes its trades (`planner.fed_leases`).
4. Once the round has ended here (whatever its outcome), every region sends its `OFFERS` of round r,
   priced from its plan with the trades committed now and no import option: the plan the commit
   rule charges it (`solver.federation.net`, step 4, says why); a host whose awards were cut offers
   less of those cells' busy capacity for the rest of the session (`trimmed_shares`).

A region that misses a peer's message because that peer is lost (silent for 3 heartbeats) or the
round times out drops the round and sends the coordinator `ABORT` (a veto): the coordinator then
aborts it. A region that loses the coordinator before hearing its outcome presumes an abort and
records it, and ignores a late COMMIT of that round: whatever the coordinator did, the lease rule
(`planner.fed_leases`: the origin's word decides each trade) keeps host and origin in step.

The LP solves run in a worker thread, so the planner's loop goes on serving meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from planner.fed_leases import Leases, day_start, day_zero
from planner.trade_book import TradeBook
from protocol.peers import CostBody, PartsInbox, PeerEnvelope, RoundStart, in_parts
from solver.federation.market import Bid, Offer, Trade
from solver.federation.net import (
    COMMIT_MARGIN,
    FIRST_STEP,
    NetParams,
    award_bids,
    region_bids,
    trimmed_shares,
    within_means,
)
from solver.federation.region import RegionModel, Solution
from solver.model.problem import Problem, SolveParams

log = logging.getLogger(__name__)

Send = Callable[[str, str, dict[str, Any]], Awaitable[None]]
#: Seconds a region waits for one phase of a round before it drops the round.
ROUND_TIMEOUT_S = 60.0
#: Day windows every region counts its capacity by and offers for, whatever its own demand: the
#: coming two weeks (a peer's orders may fall due on any of them).
OFFER_WINDOWS = tuple(range(15))
#: Kinds kept per (round, kind, sender) for the phases to wait on.
PHASE_KINDS = frozenset({"OFFERS", "BIDS", "AWARDS", "COST", "COMMIT", "ABORT", "VOTE"})


@dataclass
class RoundStats:
    """Counters of the rounds, for /federation and the demo."""

    sessions: int = 0
    rounds: int = 0
    committed: int = 0
    aborted: int = 0
    presumed_aborts: int = 0
    vetoes_sent: int = 0
    bids_sent: int = 0
    trades_committed: int = 0
    late_decisions_ignored: int = 0
    orders_exposed: set[str] = field(default_factory=set)


@dataclass
class Session:
    """What one region holds through a session: its model, offers, and the trades committed so far."""

    id: int
    model: RegionModel
    #: The UTC day every window of the session counts from (the coordinator's, `RoundStart.day`).
    day: date
    cost: float = 0.0
    offers: dict[str, Offer] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    #: The region's plan with the trades committed so far and no import option: its offers' prices.
    standing: Solution | None = None
    #: The share of its busy capacity each cell still offers (`solver.federation.net.trimmed_shares`).
    shares: dict[str, float] = field(default_factory=dict)


class Rounds:
    """One region's part in the rounds, and the coordinator's when it is the coordinator."""

    def __init__(
        self,
        region: str,
        problem: Callable[[], Problem],
        book: TradeBook,
        leases: Leases,
        send: Send,
        lost: Callable[[], set[str]],
        params: SolveParams,
        net: NetParams = NetParams(),
        clock: Callable[[], datetime] | None = None,
        round_timeout_s: float = ROUND_TIMEOUT_S,
    ) -> None:
        self.region = region
        self.problem = problem
        self.book = book
        self.leases = leases
        self.send = send
        self.lost = lost
        self.params = params
        self.net = net
        self.clock = clock or leases.core.clock
        self.round_timeout_s = round_timeout_s
        self.stats = RoundStats()
        self.session: Session | None = None
        self.latest_round = book.last_round()
        self.summaries: list[dict[str, Any]] = []
        #: The cells each peer offered from in the latest session (where the network page draws it).
        self.peer_cells: dict[str, set[str]] = {}
        self._got: dict[tuple[int, str], dict[str, Any]] = {}
        #: Parts of OFFERS, BIDS and AWARDS messages not yet whole.
        self._parts = PartsInbox()
        self._changed = asyncio.Event()
        self._taking_part = asyncio.Lock()
        self._negotiating = asyncio.Lock()

    # --- the messages of a round ------------------------------------------------------------------

    async def _send_parts(self, region: str, kind: str, body: dict[str, Any]) -> None:
        """Send an OFFERS, BIDS or AWARDS body, in as many parts as its list takes (`in_parts`)."""
        for part in in_parts(kind, body):
            await self.send(region, kind, part)

    def take(self, message: PeerEnvelope) -> None:
        """Keep a phase message (OFFERS, BIDS, AWARDS, COST, VOTE, COMMIT, ABORT) for whoever waits;
        a message in parts is kept once every part is here (a part sent again replaces itself)."""
        body = message.body
        round_ = getattr(body, "round", 0)
        body = self._parts.add(message.sender, message.kind, body)
        if body is None:
            return  # more parts to come
        if message.kind == "VOTE" and getattr(body, "commit", False):
            ended = self.book.round_outcome(round_)
            if ended in {"abort", "presumed abort"}:
                self.stats.late_decisions_ignored += 1
                log.warning(
                    "round %d: a commit from %s after the round ended here as %s; ignored",
                    round_,
                    message.sender,
                    ended,
                )
        self._got.setdefault((round_, message.kind), {})[message.sender] = body
        self.latest_round = max(self.latest_round, round_)
        self._changed.set()

    def _deliver(self, kind: str, round_: int, body: Any) -> None:
        """A message of this region to itself (the coordinator's own COST and outcome)."""
        self._got.setdefault((round_, kind), {})[self.region] = body
        self._changed.set()

    async def _collect(
        self, round_: int, kind: str, senders: list[str], veto: bool = False
    ) -> dict[str, Any] | None:
        """Wait until every sender's `kind` of `round_` is here; None when one of them is lost, the
        phase times out, or (with `veto`) a region vetoed the round."""
        deadline = time.monotonic() + self.round_timeout_s
        while True:
            got = self._got.get((round_, kind), {})
            if all(s in got for s in senders):
                return {s: got[s] for s in senders}
            if veto and self._got.get((round_, "ABORT")):
                return None
            missing = [s for s in senders if s not in got]
            if any(s in self.lost() for s in missing):
                log.warning(
                    "round %d: %s lost before its %s; the round is dropped",
                    round_,
                    ", ".join(s for s in missing if s in self.lost()),
                    kind,
                )
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning(
                    "round %d: no %s from %s within %.0f s",
                    round_,
                    kind,
                    ", ".join(missing),
                    self.round_timeout_s,
                )
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(left, 0.25))

    # --- a participant's round --------------------------------------------------------------------

    async def on_round(self, coordinator: str, start: RoundStart) -> None:
        """Take part in one round the coordinator opened (one round at a time)."""
        async with self._taking_part:
            if self.book.round_outcome(start.round) is not None:
                return  # a duplicate ROUND of a round that ended here
            self.latest_round = max(self.latest_round, start.round)
            try:
                await self._take_part(coordinator, start)
            except Exception:  # a failed solve drops the round; the planner goes on
                log.exception("round %d failed here; vetoed", start.round)
                await self._veto(coordinator, start.round)
            else:
                if not start.offers_only and self.session is not None:
                    # The next round's offers, whatever this round's outcome (module docstring, 4).
                    others = [x for x in start.regions if x != self.region]
                    await self._offer(self.session, self._standing(self.session), start.round, others)
            finally:
                for key in [k for k in self._got if k[0] < start.round - 2]:
                    del self._got[key]
                self._parts.drop_before(start.round - 2)

    async def _new_session(self, start: RoundStart) -> Session:
        problem = self.problem()
        day = start.day or day_zero(problem.now).date()
        windowed = replace(problem, now=day_start(day))
        model = await asyncio.to_thread(
            RegionModel, self.region, windowed, self.params, self.net.cell_deg, windows=OFFER_WINDOWS
        )
        alone = await asyncio.to_thread(model.solve)
        self.stats.sessions += 1
        return Session(start.session, model, day, cost=alone.cost, offers={}, standing=alone)

    def _standing(self, session: Session) -> Solution:
        """The session's plan with its committed trades and no import option (see `Session`)."""
        if session.standing is None:  # pragma: no cover - set when the session opens
            raise RuntimeError("a session's standing plan is set when it opens")
        return session.standing

    async def _take_part(self, coordinator: str, start: RoundStart) -> None:
        r = start.round
        others = [x for x in start.regions if x != self.region]
        if self.session is None or self.session.id != start.session:
            self.session = await self._new_session(start)
        session = self.session
        if start.offers_only:
            await self._offer(session, self._standing(session), r, others)
            return
        got = await self._collect(r - 1, "OFFERS", others)
        if got is None:
            await self._veto(coordinator, r)
            return
        book = [Offer(host=h, **o.model_dump(exclude={"expires_at"})) for h in others for o in got[h].offers]
        for host in others:
            if got[host].offers:
                self.peer_cells[host] = {o.cell for o in got[host].offers}
        mine = self._split(session.trades)
        solution = await asyncio.to_thread(session.model.solve, book, *mine)
        bids, units = region_bids(session.model, solution, {o.offer_id: o for o in book}, r)
        self.stats.orders_exposed |= session.model.exposed_orders(units)
        self.stats.bids_sent += len(bids)
        for host in others:
            to_host = [b.body() for b in bids if b.host == host]
            await self._send_parts(host, "BIDS", {"round": r, "bids": to_host})
        previous = session.offers
        got = await self._collect(r, "BIDS", others)
        if got is None:
            await self._veto(coordinator, r)
            return
        incoming = [
            Bid(origin=x, host=self.region, **b.model_dump())
            for x in others
            for b in got[x].bids
            if b.offer_id in previous
        ]
        awarded = [
            replace(t, trade_id=f"t.{_bid_of(t)}", day=session.day)
            for t in award_bids(incoming, previous, start.step, r, 0)
        ]
        # Only what this region can make without leaving more units short than its plan now does.
        hosted = await asyncio.to_thread(within_means, session.model, self._standing(session), *mine, awarded)
        session.shares = trimmed_shares(session.shares, awarded, hosted, self.net.offer_share)
        for origin in others:
            awards = [
                {"bid_id": _bid_of(t), "round": r, "units": t.units} for t in hosted if t.origin == origin
            ]
            await self._send_parts(origin, "AWARDS", {"round": r, "awards": awards})
        got = await self._collect(r, "AWARDS", others)
        if got is None:
            await self._veto(coordinator, r)
            return
        by_bid = {b.bid_id: b for b in bids}
        offers = {o.offer_id: o for o in book}
        received = []
        for host in others:
            for award in got[host].awards:
                bid = by_bid.get(award.bid_id)
                if bid is None or bid.host != host:
                    continue
                offer = offers[bid.offer_id]
                received.append(
                    Trade(
                        trade_id=f"t.{bid.bid_id}",
                        host=host,
                        origin=self.region,
                        design=offer.design,
                        window=offer.window,
                        cell=bid.cell,
                        units=min(award.units, bid.units),
                        price=offer.price,
                        round=r,
                        priority=bid.priority,
                        day=session.day,
                    )
                )
        tentative = hosted + received
        trades = self._split(session.trades + tentative)
        with_tentative = await asyncio.to_thread(session.model.solve, None, *trades)
        cost = with_tentative.cost
        body = {"round": r, "cost": round(cost, 6), "before": round(session.cost, 6), "bids": len(bids)}
        if coordinator == self.region:
            self._deliver("COST", r, CostBody.model_validate(body))
        else:
            await self.send(coordinator, "COST", body)
        outcome = await self._outcome(coordinator, r)
        if outcome == "commit":
            session.trades += tentative
            session.cost = cost
            session.standing = with_tentative
            self.book.record_round(r, "commit", None, None, self.clock().isoformat())
            new = await self.leases.commit(tentative, self.clock())
            self.stats.trades_committed += len(new)
        elif outcome == "abort":
            self.book.record_round(r, "abort", None, None, self.clock().isoformat())
        else:
            self.stats.presumed_aborts += 1
            self.book.record_round(r, "presumed abort", None, None, self.clock().isoformat())
            log.warning("round %d: no outcome from coordinator %s; presumed aborted", r, coordinator)

    def _split(self, trades: list[Trade]) -> tuple[list[Trade], list[Trade]]:
        """(imports, exports) of this region among `trades`."""
        return (
            [t for t in trades if t.origin == self.region],
            [t for t in trades if t.host == self.region],
        )

    async def _offer(self, session: Session, solution: Solution, r: int, others: list[str]) -> None:
        offers = session.model.offers(solution, r, self.net.offer_share, session.shares)
        session.offers = {o.offer_id: o for o in offers}
        for region in others:
            await self._send_parts(region, "OFFERS", {"round": r, "offers": [o.body() for o in offers]})

    async def _veto(self, coordinator: str, r: int) -> None:
        self.stats.vetoes_sent += 1
        if coordinator == self.region:
            self._deliver("ABORT", r, None)
        elif coordinator not in self.lost():
            await self.send(coordinator, "ABORT", {"round": r})
        if self.book.round_outcome(r) is None:
            self.book.record_round(
                r,
                "presumed abort" if coordinator in self.lost() else "abort",
                None,
                None,
                self.clock().isoformat(),
            )

    async def _outcome(self, coordinator: str, r: int) -> str | None:
        """'commit' or 'abort' as the coordinator decided; None if it was lost or never said."""
        if coordinator == self.region:
            got = await self._collect(r, "VOTE", [self.region])
        else:
            got = await self._collect(r, "VOTE", [coordinator])
        if got is None:
            return None
        return "commit" if got[coordinator].commit else "abort"

    # --- the coordinator's session ----------------------------------------------------------------

    def coordinator(self, live: list[str]) -> str:
        """The coordinator among the live regions: the smallest id."""
        return min([self.region, *live])

    async def negotiate(self, live: list[str]) -> dict[str, Any]:
        """Run one session of rounds among this region and its live peers (this region coordinates)."""
        async with self._negotiating:
            return await self._negotiate(live)

    async def _negotiate(self, live: list[str]) -> dict[str, Any]:
        regions = sorted({self.region, *live})
        started = time.perf_counter()
        r = max(self.latest_round, self.book.last_round()) + 1
        session_id = r
        summary: dict[str, Any] = {"session": session_id, "regions": regions, "rounds": []}
        if len(regions) < 2:
            summary["reason"] = "no live peer"
            return summary
        step = FIRST_STEP
        # One day for the whole session: a window read after midnight still means the same due date.
        day = day_zero(self.clock()).date()
        await self._open(
            RoundStart(round=r, session=session_id, regions=regions, step=step, offers_only=True, day=day)
        )
        for _ in range(self.net.max_rounds):
            regions = [x for x in regions if x == self.region or x not in self.lost()]
            if len(regions) < 2:
                break
            r += 1
            start = RoundStart(round=r, session=session_id, regions=regions, step=step, day=day)
            mine = asyncio.create_task(self._open(start))
            others = [x for x in regions if x != self.region]
            costs = await self._collect(r, "COST", regions, veto=True)
            if costs is None:
                commit, before, after, bids = False, None, None, 0
            else:
                before = sum(c.before or 0.0 for c in costs.values())
                after = sum(c.cost for c in costs.values())
                bids = sum(c.bids for c in costs.values())
                commit = bids > 0 and after < before - COMMIT_MARGIN * abs(before)
            outcome = "commit" if commit else "abort"
            # Written before anyone hears it: a coordinator that restarts knows what it decided.
            self.book.record_round(r, outcome, before, after, self.clock().isoformat())
            vote = {
                "round": r,
                "commit": commit,
                "total_before": round(before or 0.0, 6),
                "total_after": round(after or 0.0, 6),
            }
            self._deliver("VOTE", r, _Vote(commit))
            for region in others:
                if region not in self.lost():
                    await self.send(region, "VOTE", vote)
                    await self.send(region, "COMMIT" if commit else "ABORT", {"round": r})
            await mine
            self.stats.rounds += 1
            self.stats.committed += commit
            self.stats.aborted += not commit
            summary["rounds"].append(
                {"round": r, "bids": bids, "total_before": before, "total_after": after, "committed": commit}
            )
            if costs is not None and bids == 0:
                break
            step = min(1.0, 2.0 * step) if commit else step / 2.0
            if step < self.net.min_step:
                break
        summary["seconds"] = round(time.perf_counter() - started, 3)
        self.summaries = ([*self.summaries, summary])[-20:]
        return summary

    async def _open(self, start: RoundStart) -> None:
        """Send ROUND to every other region and take part in it here."""
        for region in start.regions:
            if region != self.region:
                await self.send(region, "ROUND", start.model_dump(mode="json"))
        await self.on_round(self.region, start)


@dataclass(frozen=True)
class _Vote:
    """The coordinator's own outcome, as its participant side reads it."""

    commit: bool


def _bid_of(trade: Trade) -> str:
    """The bid a host's trade answers (its id carries it after the first dot)."""
    return trade.trade_id.split(".", 1)[1]
