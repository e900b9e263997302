"""The lab agent: joins a planner's mesh, takes assignments, runs them, and reports (SPEC.md).

One asyncio task runs one loop that owns both sockets: the DEALER (identity = lab id) for the
conversation with the planner and, once welcomed, the SUB for the field. The loop waits on both with
a poller (never busy-looping: it wakes on a frame or every `tick_seconds`), then runs its timers:

- until WELCOME: HELLO again with backoff (0.5 s doubling to 30 s), logging each retry; a HELLO the
  socket could not take yet (no connection) goes out as soon as the connection is up;
- once welcomed: HEARTBEAT every heartbeat interval, after WELCOME and after taking a job; after 3 intervals
  without a frame from the planner (or when it answers from another epoch), drop the connection and
  say HELLO again (resynchronise);
- work only under a lease: until 2 heartbeat intervals after sending the latest HEARTBEAT the
  planner says it read (`heard`), and no further than that heartbeat's `promise` of units per job.
  The planner gives a lab up 3 intervals after it last read from it, so the lab has stopped before
  its jobs can be handed to others, and the planner knows what it may have made. Nothing is worked
  before the first lease;
- every tick: advance the simulated execution, send PROGRESS/DONE/FAILED and STOCK as they happen,
  and CAPACITY when the machine backlog changed (at most twice a second).

With a control socket (`control`, `cosmolocal node join --control ipc://PATH`; see `nodes.control`)
the lab's operator tells the agent of supply arriving, stock lost and machines down or back; the
agent reports STOCK, the jobs it had to stop (FAILED), and its working machines in a new HELLO.

In manual mode (`manual=True`, `cosmolocal node join --manual`) a new ASSIGN is held as offered until
the operator's decision comes back from the planner as a DECIDE (SPEC.md section 7).

Every frame goes through `protocol.codec.decode`; a malformed one is counted per peer, the first of
each peer is logged, and it is dropped. Nothing a peer sends can stop the loop.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from nodes.clock import SimClock
from nodes.control import ControlError, ControlRequest, check_endpoint, parse_request
from nodes.executor import Executor
from nodes.journal import Journal, JournalError
from nodes.manual import Report, ReportInbox
from nodes.parcels import Parcels
from nodes.simulated import DEFAULT_CP_SECONDS, SimulatedExecutor
from nodes.workshop import JobStatus, Reply, Workshop
from protocol import transport
from protocol.codec import decode, encode
from protocol.errors import ProtocolError
from protocol.messages import (
    Accept,
    Assign,
    Body,
    Bye,
    Capacity,
    Decide,
    Done,
    Envelope,
    Error,
    Failed,
    Field_,
    Heartbeat,
    Hello,
    Incoming,
    Progress,
    Ship,
    Shipped,
    Stock,
    Welcome,
    WorkReport,
)
from protocol.model import Lab, utcnow
from protocol.security import HANDSHAKE_FAILURES, ClientKeys
from protocol.timeframe import compressed

log = logging.getLogger(__name__)

#: Frames read from one socket before timers get a turn (keeps timers alive under a flood).
_DRAIN_LIMIT = 500
#: Heartbeat interval assumed before the planner says otherwise, in seconds.
DEFAULT_HEARTBEAT_SECONDS = 1.0
#: Intervals without a frame after which the planner counts as gone.
LIVENESS_INTERVALS = 3
#: Intervals after sending the latest HEARTBEAT the planner read, after which the lab holds its work
#: (before the planner, at LIVENESS_INTERVALS after reading it, gives the lab up): units made while
#: cut off could be planned again elsewhere.
HOLD_INTERVALS = 2
#: Heartbeats kept to look up the planner's `heard` (older ones than it echoes are dropped anyway).
_SENT_TIMES_KEPT = 4096
#: A pause of the agent's loop longer than this (process suspended, laptop asleep) is not worked.
STALL_SECONDS = 1.0
#: Heartbeat intervals before an unacknowledged DONE/FAILED is sent again (the wait then doubles).
END_REPEAT_INTERVALS = 3
#: The longest wait between two sendings of an unacknowledged DONE/FAILED, in seconds.
END_REPEAT_MAX_SECONDS = 60.0
#: A machine's backlog must move by this many nominal minutes to be worth a CAPACITY.
CAPACITY_STEP_MINUTES = 1.0


@dataclass(slots=True)
class AgentCounters:
    """What the agent has seen and done, for logs, tests and the operator."""

    frames_rejected: int = 0
    frames_rejected_by_peer: dict[str, int] = field(default_factory=dict)
    assignments_received: int = 0
    duplicates: int = 0
    hellos_sent: int = 0
    handshakes_failed: int = 0
    hello_retries: int = 0
    welcomes: int = 0
    resyncs: int = 0
    holds: int = 0
    stalls: int = 0
    withdrawn: int = 0
    fields_applied: int = 0
    messages_sent: int = 0
    messages_unsent: int = 0
    controls_applied: int = 0


class LabAgent:
    """A lab's presence in the mesh (see the module docstring). Create it, then `await run(stop)`.

    `speed` runs the simulated execution that many times faster than the wall clock. `clock` (a
    `SimClock` reading the same monotonic clock) and `monotonic` (the timer clock) are injectable
    for tests; `fail_rate` is the probability that an accepted job fails part-way (failure
    injection for scenarios), drawn from a `random.Random(seed)`. With `manual`, jobs wait for the
    operator's DECIDE (see `Workshop`).
    """

    def __init__(
        self,
        lab: Lab,
        planner_endpoint: str,
        *,
        speed: float = 1.0,
        context: zmq.asyncio.Context | None = None,
        clock: SimClock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        fail_rate: float = 0.0,
        seed: int | None = None,
        tick_seconds: float = 0.1,
        hello_backoff: tuple[float, float] = (0.5, 30.0),
        capacity_interval: float = 0.5,
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
        self.lab = lab
        self.control_endpoint = None if control is None else check_endpoint(control)
        self._control: zmq.asyncio.Socket | None = None
        self.planner_endpoint = planner_endpoint
        # with a replay's anchor, simulated time is the frame its planner reads (protocol.timeframe)
        start = utcnow() if clock_anchor is None else compressed(clock_anchor, speed)
        self.clock = clock or SimClock(start, speed, monotonic)
        #: The replay's shared frame, if any: an idle lab keeps its clock at it (`_keep_in_frame`).
        self._frame_anchor = clock_anchor
        self.clock.stall_seconds = _stall_limit(DEFAULT_HEARTBEAT_SECONDS)
        if executor is not None and (working_hours or rule_only):
            raise ValueError(
                "working_hours and rule_only are for simulated execution only (real work keeps real hours)"
            )
        runner = (
            executor(self.clock)
            if executor is not None
            else SimulatedExecutor(
                lab.machines,
                self.clock,
                working_hours=working_hours,
                cp_time_limit_s=0.0 if rule_only else DEFAULT_CP_SECONDS,
            )
        )
        if fail_rate and not isinstance(runner, SimulatedExecutor):
            raise ValueError("fail_rate injects failures into simulated execution only")
        self.workshop = Workshop(lab, runner, fail_rate, random.Random(seed), manual=manual)
        #: Material this lab ships and receives (SPEC.md section 11); its stock is the workshop's.
        self.parcels = Parcels()
        #: Where the operator's reports of work done by hand arrive (`cosmolocal node report`).
        self.reports = reports
        self.counters = AgentCounters()
        self.journal = journal
        self.curve = curve
        self._monitor: zmq.asyncio.Socket | None = None
        self._journal_dirty = False
        self.tick_seconds = tick_seconds
        self.capacity_interval = capacity_interval
        self._backoff_initial, self._backoff_max = hello_backoff
        self._monotonic = monotonic
        self._context = context
        self._own_context = context is None
        self._dealer: zmq.asyncio.Socket | None = None
        self._sub: zmq.asyncio.Socket | None = None
        self._seq = 0
        # conversation state
        self.welcomed = False
        self.epoch = 0
        self.heartbeat_seconds = DEFAULT_HEARTBEAT_SECONDS
        self.field: Field_ | None = None
        self.field_seq = 0
        self.field_endpoint: str | None = None
        self._hello_unsent = False
        self._hello_round = 1
        self._backoff = self._backoff_initial
        self._next_hello = 0.0
        self._last_sent = 0.0
        self._last_heard = 0.0
        self._next_tick = 0.0
        self._capacity_sent: dict[str, float] | None = None
        self._capacity_at = float("-inf")
        self._capacity_dirty = True
        self._logged_peers: set[str] = set()
        #: Envelope seq of the latest ASSIGN of each job: a HEARTBEAT older than it cannot withdraw it.
        self._assign_seq: dict[str, int] = {}
        #: Per unacknowledged DONE/FAILED: (when to send it again, the wait after that).
        self._end_repeat: dict[str, tuple[float, float]] = {}
        #: (envelope seq, monotonic send time, promise) of the HEARTBEATs sent, oldest first.
        self._sent_at: collections.deque[tuple[int, float, dict[str, int]]] = collections.deque(
            maxlen=_SENT_TIMES_KEPT
        )
        self._last_heartbeat = float("-inf")
        #: Monotonic instant until which work may go on (the planner's latest word on this lab).
        self._lease_until = float("-inf")
        #: Units per job the lease allows (the promise of the heartbeat that earned it).
        self._lease_promise: dict[str, int] = {}
        self._lapse_logged = False

    # --- state for tests and operators ---------------------------------------------------------

    @property
    def jobs(self) -> dict[str, JobStatus]:
        """Every assignment received, by id, with its state and units done."""
        return self.workshop.jobs

    @property
    def stock(self) -> dict[str, float]:
        """Free stock per material (reserved amounts already taken off)."""
        return dict(self.workshop.stock)

    @property
    def hello_attempts(self) -> int:
        """HELLO messages handed to the socket so far."""
        return self.counters.hellos_sent

    # --- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Join the mesh and serve until `stop` is set; then say BYE and close the sockets."""
        stop = stop or asyncio.Event()
        if self._context is None:
            self._context = zmq.asyncio.Context()
        log.info(
            "lab %s (%d machines) joining planner at %s%s",
            self.lab.id,
            len(self.lab.machines),
            self.planner_endpoint,
            " in manual mode: jobs wait for the operator's decision" if self.workshop.manual else "",
        )
        self._resume_from_journal()
        await self.workshop.executor.start()
        try:
            self._open_dealer()
            self._open_control()
            await self._send_hello()
            self.clock.notice_stall()  # start-up is not a suspension
            self.clock.release()
            self.clock.lease(self._lease_until)  # nothing is worked before the planner's first lease
            while not stop.is_set():
                await self._wait_and_read()
                await self._run_timers()
            said_bye = await self._send(Bye(reason="lab agent stopped"))
            how = "BYE sent to" if said_bye else "no BYE: no connection to"
            log.info("lab %s left the mesh (%s %s)", self.lab.id, how, self.planner_endpoint)
        finally:
            await self.workshop.executor.close()
            self._close_sockets()
            if self._own_context and self._context is not None:
                self._context.destroy(linger=transport.LINGER_MS)
                self._context = None

    def _resume_from_journal(self) -> None:
        """Take up the jobs and stock of the journal a previous run of this lab left, if any."""
        if self.journal is None:
            return
        saved = self.journal.load()
        if saved is None:
            log.info("no journal at %s yet: starting with the lab file's stock", self.journal.path)
            return
        try:
            self.workshop.from_journal(saved, self.clock.now())
            self.parcels.from_journal(saved.get("parcels"))
        except (KeyError, TypeError, ValueError) as exc:
            raise JournalError(f"{self.journal.path}: cannot resume from it: {exc}") from None
        under_way = sum(1 for j in self.workshop.jobs.values() if j.state in ("accepted", "running"))
        log.info(
            "resumed from journal %s: %d jobs known, %d under way, free stock %s",
            self.journal.path,
            len(self.workshop.jobs),
            under_way,
            self.workshop.stock_message().stock,
        )

    def _remember(self) -> None:
        """Write the journal before anything that depends on it goes out (a failed write is logged)."""
        if self.journal is None:
            self.workshop.executor.journaled()  # nothing to write: work need not wait for it
            return
        try:
            self.journal.save(self.workshop.to_journal() | {"parcels": self.parcels.to_journal()})
            self._journal_dirty = False
            self.workshop.executor.journaled()
        except OSError as exc:
            log.error("cannot write the journal %s: %s", self.journal.path, exc)

    async def _wait_and_read(self) -> None:
        """Wait (at most one tick) for frames on either socket and handle every frame that is ready."""
        dealer = self._dealer
        assert dealer is not None
        poller = zmq.asyncio.Poller()
        poller.register(dealer, zmq.POLLIN | (zmq.POLLOUT if self._hello_unsent else 0))
        if self._sub is not None:
            poller.register(self._sub, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        if self._control is not None:
            poller.register(self._control, zmq.POLLIN)
        timeout_ms = max(1, int(self.tick_seconds * 1000))
        events = dict(await poller.poll(timeout_ms))
        if self._notice_stall():
            await self._recover_from_stall()
            return  # what was queued while suspended goes with the old connection
        dealer_events = events.get(dealer, 0)
        if dealer_events & zmq.POLLOUT and self._hello_unsent:
            await self._send_hello()
        if dealer_events & zmq.POLLIN:
            await self._drain(dealer, self.planner_endpoint, self._on_planner_frames)
        monitor = self._monitor
        if monitor is not None and not monitor.closed and events.get(monitor, 0) & zmq.POLLIN:
            self._on_handshake_failed(parse_monitor_message(await monitor.recv_multipart()))
        sub = self._sub
        if sub is not None and not sub.closed and events.get(sub, 0) & zmq.POLLIN:
            await self._drain(sub, self.field_endpoint or "field", self._on_field_frames)
        control = self._control
        if control is not None and events.get(control, 0) & zmq.POLLIN:
            await self._drain(control, "control", self._on_control_frames)

    async def _drain(
        self, sock: zmq.asyncio.Socket, peer: str, handle: Callable[[list[bytes], str], Awaitable[None]]
    ) -> None:
        for _ in range(_DRAIN_LIMIT):
            if sock.closed:  # a handler replaced it (resync): the new socket is read next turn
                return
            try:
                frames = await sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                await handle(frames, peer)
            except Exception:  # a bug here must not take the lab off the mesh
                log.exception("internal error while handling a frame from %s; frame dropped", peer)

    def _notice_stall(self) -> bool:
        """True when the process was suspended since the last look (the clock holds itself then).

        The clock finds the stall whoever reads it first, so that time is never worked; here the
        agent learns of it and recovers (see `_recover_from_stall`).
        """
        gap = self.clock.notice_stall()
        if gap is None:
            return False
        self.counters.stalls += 1
        log.warning("lab agent was suspended for %.1f s; no work is counted for that time", gap)
        return True

    async def _recover_from_stall(self) -> None:
        """Hold the work and say HELLO again: only the planner's answer may let it go on.

        While the process was suspended the planner may have given this lab up and handed its jobs to
        others; the frames queued meanwhile are stale, and reading them would make the silence look
        short. The old connection goes with them; the WELCOME that answers the new HELLO lists the jobs
        the planner still counts on, and the others are stopped before any more of them is made.
        """
        self.counters.holds += 1
        self.clock.hold()
        if self.welcomed:
            log.warning("holding work and saying HELLO again after the suspension: what is still ours?")
            await self._resync()

    async def _run_timers(self) -> None:
        if self._notice_stall():
            await self._recover_from_stall()
        now = self._monotonic()
        if not self.welcomed:
            if now >= self._next_hello:
                self._backoff = min(self._backoff * 2, self._backoff_max)
                self.counters.hello_retries += 1
                self._hello_round += 1
                log.warning(
                    "planner at %s %s; HELLO again (attempt %d), next retry in %.1f s",
                    self.planner_endpoint,
                    "not reachable yet" if self._hello_unsent else "not answering",
                    self._hello_round,
                    self._backoff,
                )
                await self._send_hello()
        else:
            silent = now - self._last_heard
            if silent > LIVENESS_INTERVALS * self.heartbeat_seconds:
                log.warning(
                    "planner at %s silent for %.1f s (%d heartbeat intervals); reconnecting and "
                    "saying HELLO again",
                    self.planner_endpoint,
                    silent,
                    LIVENESS_INTERVALS,
                )
                await self._resync()
            elif now - self._last_heartbeat >= self.heartbeat_seconds:
                await self._send_heartbeat()
            if self._lease_until > float("-inf") and now >= self._lease_until and not self._lapse_logged:
                self._lapse_logged = True
                self.counters.holds += 1
                log.warning(
                    "the planner has not said it heard this lab for %.1f s; holding work until it "
                    "does, so that nothing is made twice if it hands this lab's jobs to others",
                    now - self._lease_until + HOLD_INTERVALS * self.heartbeat_seconds,
                )
            await self._repeat_unacknowledged_ends(now)
        if now >= self._next_tick:
            self._next_tick = now + self.tick_seconds
            await self._tick(now)

    async def _tick(self, now: float) -> None:
        """Advance the simulated execution and report what changed."""
        sim_now = self.clock.now()
        taken, changes = self._take_reports(sim_now)
        changes += self.workshop.advance(sim_now)
        arrivals = self.parcels.arrive(sim_now, self.workshop.stock)
        if changes or taken or arrivals or self._journal_dirty or self.workshop.executor.journal_dirty:
            self._remember()
        if arrivals:
            await self._on_arrivals(arrivals)
        for report in taken:  # in the journal now: a restart will not count it again
            assert self.reports is not None
            self.reports.done(report)
        for body in changes:
            await self._send_job_message(body)
        if not self.welcomed:
            return
        backlog = self.workshop.backlog_minutes(sim_now)
        if now - self._capacity_at < self.capacity_interval:
            return
        changed = self._capacity_dirty or _backlog_moved(self._capacity_sent, backlog)
        if changed and await self._send(Capacity(backlog_minutes=backlog)):
            self._capacity_sent, self._capacity_at, self._capacity_dirty = backlog, now, False

    def _take_reports(self, now: datetime) -> tuple[list[Report], list[Body]]:
        """Apply the operator's reports of work done by hand that arrived since the last tick."""
        if self.reports is None:
            return [], []
        taken = self.reports.take()
        messages: list[Body] = []
        for report in taken:
            try:
                messages += self.workshop.report(report, now)
            except (KeyError, ValueError) as exc:
                log.error("report %s for %s not applied: %s", report.id, report.assignment_id, exc)
        return taken, messages

    # --- frames from the planner ---------------------------------------------------------------

    async def _on_planner_frames(self, frames: list[bytes], peer: str) -> None:
        if len(frames) != 1:
            self._reject(peer, f"expected 1 frame from the DEALER, got {len(frames)}")
            return
        message = self._decode(
            peer,
            frames[0],
            (Welcome, Assign, Decide, WorkReport, Heartbeat, Error, Ship, Incoming),
            "from the planner",
        )
        if message is None:
            return
        body = message.body
        self._last_heard = self._monotonic()
        if isinstance(body, Welcome):
            await self._on_welcome(message, body)
            return
        if not self.welcomed:
            self._hello_soon()
        if self.welcomed and message.epoch != self.epoch:
            log.warning(
                "planner at %s now speaks from epoch %d (welcomed in epoch %d): it restarted; "
                "saying HELLO again",
                self.planner_endpoint,
                message.epoch,
                self.epoch,
            )
            await self._resync()
            if not isinstance(body, Assign | Decide | Ship | Incoming):
                return
        if isinstance(body, Assign):
            self._assign_seq[body.assignment_id] = message.seq
            await self._on_assign(body)
        elif isinstance(body, Heartbeat):
            if body.ended:
                self._on_ends_acknowledged(body.ended)
            if self.welcomed and body.active is not None:
                await self._reconcile(body.active, message.seq)
            if self.welcomed:
                self._renew_lease(body.heard)
        elif isinstance(body, Decide):
            await self._on_decide(body)
        elif isinstance(body, Ship | Incoming):
            await self._on_transfer(body)
        elif isinstance(body, WorkReport):
            self._on_work_report(body, message)
        elif isinstance(body, Error):
            log.warning("planner rejected our message %s: %s", body.ref_seq, body.reason)
            if self.welcomed and body.code == "not_welcomed":
                log.warning("planner at %s forgot this lab; saying HELLO again", self.planner_endpoint)
                await self._resync()

    def _on_work_report(self, body: WorkReport, message: Envelope) -> None:
        """The operator's report of work done by hand, from the lab page: counted as `node report`'s.

        Its id is the planner's epoch and sequence number, so a frame received twice counts once.
        The next tick sends what it implies and writes the journal first."""
        report_id = f"planner-{message.epoch}-{message.seq}"
        try:
            entry = Report(body.assignment_id, body.made, body.failed, body.reason, report_id)
            self.workshop.report(entry, self.clock.now())
        except (KeyError, ValueError) as exc:
            log.error("report from the lab page for %s not applied: %s", body.assignment_id, exc)
            return
        self._journal_dirty = True

    def _hello_soon(self) -> None:
        """The planner speaks to this lab before any WELCOME: it is up, and its WELCOME was lost on
        the way. HELLO again at the first backoff step, not after a long one: meanwhile the planner
        may hand this lab work, and soon gives it up for sending no heartbeat."""
        if self._backoff > self._backoff_initial:
            self._backoff = self._backoff_initial
            self._next_hello = min(self._next_hello, self._monotonic() + self._backoff_initial)

    async def _on_welcome(self, message: Envelope, welcome: Welcome) -> None:
        new_epoch = message.epoch != self.epoch or welcome.epoch != self.epoch
        self.counters.welcomes += 1
        self.welcomed = True
        self._hello_unsent = False
        self._backoff = self._backoff_initial
        self.epoch = welcome.epoch
        self.heartbeat_seconds = welcome.heartbeat_ms / 1000.0
        self.clock.stall_seconds = _stall_limit(self.heartbeat_seconds)
        if new_epoch:  # sequence numbers restart with the planner
            self._assign_seq = dict.fromkeys(self._assign_seq, 0)
        if new_epoch or welcome.field_seq >= self.field_seq or self.field is None:
            self.field, self.field_seq = welcome.field, welcome.field_seq
        log.info(
            "welcomed by planner at %s (epoch %d, heartbeat %d ms); field at seq %d from %s",
            self.planner_endpoint,
            welcome.epoch,
            welcome.heartbeat_ms,
            welcome.field_seq,
            welcome.field_endpoint,
        )
        self._connect_field(welcome.field_endpoint)
        await self._send(self.workshop.stock_message())
        self._capacity_dirty = True
        self._capacity_at = float("-inf")
        for body in self.workshop.resync_messages():
            await self._send_job_message(body)
        for body in self.parcels.resync_messages(self.clock.now()):
            await self._send(body)
        if welcome.active is not None:
            await self._reconcile(welcome.active, message.seq)
        self.clock.release()
        await self._send_heartbeat()  # its answer is the first lease of this conversation

    async def _send_heartbeat(self) -> None:
        """HEARTBEAT with the promise of the lease it may earn: units per job by the lease's end."""
        span = HOLD_INTERVALS * self.heartbeat_seconds
        promise = self.workshop.promise(self.clock.now() + timedelta(seconds=span * self.clock.speed))
        seq = self._seq + 1
        if await self._send(Heartbeat(promise=promise or None)):
            self._sent_at.append((seq, self._last_sent, promise))
            self._last_heartbeat = self._last_sent

    def _renew_lease(self, heard: int | None) -> None:
        """Work may go on until HOLD_INTERVALS after sending HEARTBEAT `heard`, which the planner read,
        and up to the units it promised.

        The planner gives this lab up no sooner than LIVENESS_INTERVALS after reading it, so the
        lease ends first, however long the frames took either way. An echo older than one already
        used, or of a heartbeat this process never sent, renews nothing.
        """
        if heard is None:
            return
        while self._sent_at and self._sent_at[0][0] < heard:
            self._sent_at.popleft()
        if not self._sent_at or self._sent_at[0][0] != heard:
            return
        _, sent, promise = self._sent_at[0]
        until = sent + HOLD_INTERVALS * self.heartbeat_seconds
        if until <= self._lease_until:
            return
        self._lease_until, self._lease_promise = until, promise
        self._apply_lease()
        if self._lapse_logged and until > self._monotonic():
            self._lapse_logged = False
            log.info("the planner hears this lab again; work goes on")

    def _keep_in_frame(self) -> None:
        """In a replay's shared frame, a lab with no job under way brings its clock up to the frame's
        time (`SimClock.catch_up`): the time it was held (before its first lease, or waiting for its
        planner) cost no work, so it must not make all its later work count as made later."""
        if self._frame_anchor is None:
            return
        if any(job.state in ("accepted", "running") for job in self.workshop.jobs.values()):
            return
        self.clock.catch_up(compressed(self._frame_anchor, self.clock.speed))

    def _apply_lease(self) -> None:
        """Give the clock the lease: its deadline, and the first instant a unit beyond its promise
        would be finished on the current schedule (asked again whenever the schedule changes)."""
        self._keep_in_frame()
        self.clock.lease(self._lease_until, self.workshop.limit(self._lease_promise))

    async def _reconcile(self, active: list[str], seq: int) -> None:
        """Stop the jobs the planner withdrew and repeat ends it missed; then work may go on."""
        judgeable = lambda aid: self._assign_seq.get(aid, 0) < seq  # noqa: E731
        changes = self.workshop.reconcile(set(active), judgeable, self.clock.now())
        if changes:
            self._remember()
        for body in changes:
            if isinstance(body, Failed | Done) and body.assignment_id not in active:
                self.counters.withdrawn += 1
            await self._send_job_message(body)
        if self.clock.held:
            log.info("the planner answers again; work goes on")
            self.clock.release()

    def _on_ends_acknowledged(self, ended: list[str]) -> None:
        """The planner has these DONE/FAILED in its ledger: stop repeating them."""
        for aid in ended:
            self._end_repeat.pop(aid, None)
            if self.workshop.acknowledge_end(aid):
                self._journal_dirty = True

    async def _repeat_unacknowledged_ends(self, now: float) -> None:
        """Send again each DONE/FAILED the planner has not acknowledged within its wait.

        Runs every turn of the loop: only the ends whose wait is over are looked up.
        """
        due = [aid for aid, (at, _) in self._end_repeat.items() if now >= at]
        for aid in due:
            end = self.workshop.end_message(aid)
            if end is not None:
                log.info("no acknowledgement of the end of %s yet; sending it again", aid)
                await self._send_job_message(end)

    async def _on_assign(self, assign: Assign) -> None:
        self.counters.assignments_received += 1
        self._keep_in_frame()  # an idle lab takes the work at its planner's time
        reply = self.workshop.receive(assign, self.clock.now())
        if reply.duplicate:
            self.counters.duplicates += 1
            log.info("ASSIGN %s is a duplicate; answering as before", assign.assignment_id)
        await self._send_reply(reply)

    async def _on_transfer(self, body: Ship | Incoming) -> None:
        """SHIP: ship from the free stock or refuse (STOCK goes before SHIPPED); INCOMING: expect the
        parcel. Both are written to the journal before they are answered (SPEC.md section 11)."""
        if isinstance(body, Ship):
            answers, new = self.parcels.ship(body, self.workshop.stock)
        else:
            answers, new = self.parcels.expect(body)
        if new:
            self._remember()
        if new and any(isinstance(answer, Shipped) for answer in answers):
            await self._send(self.workshop.stock_message())  # the parcel is off the free stock
        for answer in answers:
            await self._send(answer)

    async def _on_arrivals(self, arrivals: list[Body]) -> None:
        """Parcels arrived: ARRIVED first, then the STOCK that holds them, so the planner never counts
        the material both on its way and in stock."""
        for body in arrivals:
            await self._send(body)
        await self._send_job_message(self.workshop.stock_message())

    async def _on_decide(self, decision: Decide) -> None:
        """The operator's decision on an offered job, forwarded by the planner."""
        await self._send_reply(self.workshop.decide(decision, self.clock.now()))

    async def _send_reply(self, reply: Reply) -> None:
        """Send the answer to an ASSIGN or DECIDE; a new ACCEPT goes after the CAPACITY it implies.

        A job taken changes the schedule: the lease's limit is set again, and a HEARTBEAT follows
        so that the new job is promised (and can be worked) a round trip later.
        """
        if not reply.duplicate:
            self._remember()
            self._apply_lease()
        for body in reply.messages:
            if isinstance(body, Accept) and not reply.duplicate:
                # The new backlog goes before ACCEPT, so the planner never counts the job as free time.
                backlog = self.workshop.backlog_minutes(self.clock.now())
                if await self._send(Capacity(backlog_minutes=backlog)):
                    self._capacity_sent, self._capacity_at = backlog, self._monotonic()
            await self._send_job_message(body)
        self._capacity_dirty = True
        if any(isinstance(body, Accept) for body in reply.messages) and not reply.duplicate and self.welcomed:
            await self._send_heartbeat()

    async def _on_control_frames(self, frames: list[bytes], peer: str) -> None:
        """One request on the control socket: apply it, tell the planner, answer (see nodes.control)."""
        assert self._control is not None
        if len(frames) < 2:
            self._reject(peer, f"expected [identity, ..., request], got {len(frames)} frame(s)")
            return
        try:
            request = parse_request(frames[-1])
            answer = await self._apply_control(request)
        except (ControlError, ValueError) as exc:
            self._reject(peer, str(exc))
            answer = {"ok": False, "error": str(exc)[:500]}
        await self._control.send_multipart([*frames[:-1], json.dumps(answer).encode()])

    async def _apply_control(self, request: ControlRequest) -> dict[str, object]:
        """Apply a change of the lab itself; the planner hears of it at once."""
        known = {m.id for m in self.lab.machines}
        unknown = sorted((set(request.down) | set(request.up)) - known)
        if unknown:  # checked first, so a request is applied whole or not at all
            raise ControlError(
                f"no machine {', '.join(unknown)} in lab {self.lab.id}; its machines: "
                f"{', '.join(sorted(known))}"
            )
        if (request.down or request.up) and not self.workshop.executor.takes_machines_down:
            raise ControlError(
                f"lab {self.lab.id} prints on its printers, which are down when their servers say so "
                "(offline, in error); --down and --up are for simulated labs and work by hand"
            )
        now = self.clock.now()
        messages: list[Body] = []
        for material, amount in request.supply.items():
            messages.append(self.workshop.supply(material, amount))
        for material in request.lose:
            messages += self.workshop.lose_stock(material, now)
        machines_changed = False
        for machine_id in request.down:
            machines_changed |= machine_id not in self.workshop.down
            messages += self.workshop.machine_down(machine_id, now)
        for machine_id in request.up:
            machines_changed |= self.workshop.machine_up(machine_id)
        self.counters.controls_applied += 1
        self._remember()
        self._apply_lease()
        for body in messages:
            if not isinstance(body, Stock):
                await self._send_job_message(body)
        if any(isinstance(body, Stock) for body in messages):
            await self._send_job_message(self.workshop.stock_message())  # the stock as it now stands
        self._capacity_dirty = True
        if machines_changed and self.welcomed:
            await self._send_hello()  # the planner plans on the working machines only
        return {"ok": True, "stock": dict(self.workshop.stock), "down": sorted(self.workshop.down)}

    async def _on_field_frames(self, frames: list[bytes], peer: str) -> None:
        if len(frames) != 2 or frames[0] != transport.FIELD_TOPIC:
            self._reject(peer, f"expected [b'field', payload] from the PUB, got {len(frames)} frame(s)")
            return
        message = self._decode(peer, frames[1], (Field_,), "on the field")
        if message is None:
            return
        if message.seq > self.field_seq:
            self.field, self.field_seq = message.body, message.seq
            self.counters.fields_applied += 1

    def _decode(self, peer: str, frame: bytes, kinds: tuple[type[Body], ...], where: str) -> Envelope | None:
        """The message in `frame` if it is valid and of an expected kind; else counted, dropped, None."""
        try:
            message = decode(frame)
        except ProtocolError as exc:
            self._reject(peer, str(exc))
            return None
        if not isinstance(message.body, kinds):
            self._reject(peer, f"unexpected kind {message.kind} {where}")
            return None
        return message

    def _reject(self, peer: str, reason: str) -> None:
        """Count a malformed frame (per peer and in total); log the first of each peer."""
        self.counters.frames_rejected += 1
        by_peer = self.counters.frames_rejected_by_peer
        by_peer[peer] = by_peer.get(peer, 0) + 1
        if peer not in self._logged_peers:
            self._logged_peers.add(peer)
            log.warning("dropped a malformed frame from %s: %s (further ones are only counted)", peer, reason)

    # --- sending -------------------------------------------------------------------------------

    async def _send_hello(self) -> None:
        lab = self.workshop.working_lab()
        backlog = self.workshop.backlog_minutes(self.clock.now())
        sent = await self._send(Hello(lab=lab, backlog_minutes=backlog), count_unsent=False)
        self._hello_unsent = not sent
        if sent:
            self.counters.hellos_sent += 1
        self._next_hello = self._monotonic() + self._backoff

    async def _send_job_message(self, body: Body) -> None:
        """Send a job message; while not welcomed, PROGRESS/DONE/FAILED/STOCK wait for the resync.

        ACCEPT and REFUSE always go out: they answer an ASSIGN the planner has just sent.
        """
        if not self.welcomed and isinstance(body, Progress | Done | Failed | Stock):
            return
        sent = await self._send(body)
        if not sent or not isinstance(body, Done | Failed):
            return
        if self.workshop.awaits_acknowledgement(body.assignment_id):
            _, wait = self._end_repeat.get(body.assignment_id, (0.0, 0.0))
            wait = min(END_REPEAT_MAX_SECONDS, max(END_REPEAT_INTERVALS * self.heartbeat_seconds, 2 * wait))
            self._end_repeat[body.assignment_id] = (self._monotonic() + wait, wait)

    async def _send(self, body: Body, count_unsent: bool = True) -> bool:
        """Hand one message to the DEALER without waiting; False when no connection can take it."""
        if self._dealer is None:
            return False
        seq = self._seq + 1  # numbers count messages that left, so the planner sees no gap
        try:
            frame = encode(Envelope(sender=self.lab.id, seq=seq, epoch=self.epoch, body=body))
        except ProtocolError as exc:
            log.error("cannot send %s to %s: %s", type(body).__name__, self.planner_endpoint, exc)
            return False
        try:
            await self._dealer.send(frame, zmq.DONTWAIT)
        except zmq.Again:
            if count_unsent:
                self.counters.messages_unsent += 1
                log.debug("no connection to %s; %s not sent", self.planner_endpoint, type(body).__name__)
            return False
        self._seq = seq
        self.counters.messages_sent += 1
        self._last_sent = self._monotonic()
        return True

    # --- sockets -------------------------------------------------------------------------------

    def _open_dealer(self) -> None:
        assert self._context is not None
        self._dealer = transport.connect_dealer(self._context, self.planner_endpoint, self.lab.id, self.curve)
        if self.curve is not None:
            self._monitor = self._dealer.get_monitor_socket(HANDSHAKE_FAILURES)

    def _open_control(self) -> None:
        """Bind the control socket when asked for one (a stale socket file of a previous run is replaced)."""
        if self.control_endpoint is None:
            return
        assert self._context is not None
        self._control = self._context.socket(zmq.ROUTER)
        self._control.setsockopt(zmq.LINGER, 0)
        self._control.bind(self.control_endpoint)
        log.info("control socket at %s (supply, stock lost, machines down or back)", self.control_endpoint)

    def _close_dealer(self, linger: int | None = 0) -> None:
        """Close the DEALER and its monitor; `linger` None lets queued messages (a BYE) go first."""
        if self._dealer is None:
            return
        if self._monitor is not None:
            self._dealer.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        self._dealer.close(linger=linger)
        self._dealer = None

    def _on_handshake_failed(self, event: dict) -> None:
        """The planner refused this lab's CurveZMQ handshake: say why and what to do, once in a while."""
        self.counters.handshakes_failed += 1
        if self.counters.handshakes_failed in (1, 10, 100) or self.counters.handshakes_failed % 1000 == 0:
            log.error(
                "the planner at %s refused this lab's connection (%d times so far): its key is not "
                "admitted for lab %s, or --planner-key is not the planner's key. Send the lab's .key "
                "file to the planner's operator: `cosmolocal planner admit LAB.key`",
                self.planner_endpoint,
                self.counters.handshakes_failed,
                self.lab.id,
            )

    def _connect_field(self, endpoint: str) -> None:
        """Subscribe to the field at `endpoint` (kept when unchanged); a bad endpoint is logged only."""
        endpoint = _reachable(endpoint, self.planner_endpoint)
        if self._sub is not None and endpoint == self.field_endpoint:
            return
        if self._sub is not None:
            self._sub.close(linger=0)
            self._sub = None
        assert self._context is not None
        try:
            self._sub = transport.connect_sub(self._context, endpoint, curve=self.curve)
        except zmq.ZMQError as exc:
            log.error("cannot subscribe to the field at %s: %s; going on without its updates", endpoint, exc)
            return
        self.field_endpoint = endpoint

    async def _resync(self) -> None:
        """Drop the conversation and start again with HELLO (the planner may have restarted)."""
        self.counters.resyncs += 1
        self.welcomed = False
        self._backoff = self._backoff_initial
        self._hello_round = 1
        self._close_dealer()
        self._open_dealer()
        await self._send_hello()

    def _close_sockets(self) -> None:
        if self._control is not None:
            self._control.close(linger=0)
            self._control = None
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        self._close_dealer(linger=None)


def _stall_limit(heartbeat_seconds: float) -> float:
    """The loop pause, in wall seconds, beyond which the process counts as suspended."""
    return max(STALL_SECONDS, HOLD_INTERVALS * heartbeat_seconds)


def _backlog_moved(before: dict[str, float] | None, after: dict[str, float]) -> bool:
    """True when a machine's backlog moved enough to tell the planner (or emptied, or appeared)."""
    if before is None or before.keys() != after.keys():
        return True
    for machine, minutes in after.items():
        old = before[machine]
        if abs(minutes - old) >= CAPACITY_STEP_MINUTES or (minutes == 0) != (old == 0):
            return True
    return False


def _reachable(endpoint: str, planner_endpoint: str) -> str:
    """A field endpoint given in bind form (tcp://*:P, tcp://0.0.0.0:P) points at the planner's host."""
    try:
        parts = urlsplit(endpoint)
        if parts.scheme == "tcp" and parts.hostname in {"*", "0.0.0.0"} and parts.port is not None:
            host = urlsplit(planner_endpoint).hostname or "127.0.0.1"
            return f"tcp://{host}:{parts.port}"
    except ValueError:  # not a URL libzmq would take either; connecting will say so
        pass
    return endpoint


async def run_agent(
    lab: Lab,
    planner_endpoint: str,
    speed: float = 1.0,
    stop: asyncio.Event | None = None,
    *,
    fail_rate: float = 0.0,
    seed: int | None = None,
    context: zmq.asyncio.Context | None = None,
    manual: bool = False,
    journal: Journal | None = None,
    curve: ClientKeys | None = None,
    executor: Callable[[SimClock], Executor] | None = None,
    reports: ReportInbox | None = None,
    control: str | None = None,
    working_hours: bool = False,
    rule_only: bool = False,
    clock_anchor: datetime | None = None,
) -> LabAgent:
    """Run a lab agent for `lab` against the planner at `planner_endpoint` until `stop` is set.

    With `manual`, jobs wait for the operator's decision (DECIDE) instead of an automatic answer.
    `executor` makes what runs the jobs from the agent's clock (default: simulated execution);
    `reports` is where the operator's reports of work done by hand arrive. `control` binds the lab's
    control socket (`nodes.control`); `working_hours` has simulated machines work only their hours a day;
    `rule_only` schedules simulated machines by the dispatching rule alone (no CP-SAT improvement);
    `clock_anchor` starts simulated time in a replay's shared frame (`protocol.timeframe`).
    Returns the agent (its counters, jobs and stock) after it said BYE and closed its sockets.
    """
    agent = LabAgent(
        lab,
        planner_endpoint,
        speed=speed,
        fail_rate=fail_rate,
        seed=seed,
        context=context,
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
    await agent.run(stop)
    return agent
