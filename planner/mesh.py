"""The planner's side of the mesh: the ROUTER conversation with each lab and the PUB field.

One asyncio task owns each socket. Every frame from the network goes through the codec; a bad
frame is counted, logged once per peer, answered with ERROR when the peer is addressable, and
dropped. Liveness is judged here (heartbeats both ways); the rules live in `PlannerCore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from planner.admission import KEY_PROPERTY, Admissions
from planner.core import PlannerCore, UnknownAssignment
from planner.shipping import TransferRow, UnknownTransfer
from planner.store import AssignmentRow
from protocol import transport
from protocol.codec import decode, encode
from protocol.errors import ProtocolError
from protocol.messages import (
    Accept,
    Arrived,
    Assign,
    Body,
    Bye,
    Capacity,
    Decide,
    Done,
    Envelope,
    Error,
    ErrorCode,
    Failed,
    Field_,
    Heartbeat,
    Hello,
    Incoming,
    Progress,
    Refuse,
    Ship,
    Shipped,
    ShipRefused,
    Stock,
    Welcome,
    WorkReport,
)
from protocol.security import HANDSHAKE_FAILURES, KeyPair

log = logging.getLogger(__name__)
PLANNER_ID = "planner"
#: The longest wait between two sendings of an unanswered ASSIGN (the wait doubles from 2 s).
RESEND_MAX_S = 30.0
#: The longest the receive loop reads frames before letting the HTTP API and timers have a turn.
RECEIVE_TURN_S = 0.01
#: The longest the receive loop waits before it looks for frames itself (see `_receive`).
RECEIVE_POLL_MS = 100
#: After a turn that emptied the ROUTER, the receive loop waits this long before it looks again, so
#: that a thousand labs' steady frames (1,500 a second) are read in batches of about 15, not one
#: wake-up of the loop (a poll, its future, a selector turn) each. A frame waits at most this long
#: more. (The idle cost per frame stayed near 110 us with it, against 15 us in a flood: most of an
#: idle lab's cost is its own connection's libzmq and kernel work and the heartbeat's answer.)
RECEIVE_GATHER_S = 0.01
#: Frames queued unread per lab connection before libzmq stops reading it (TCP back-pressure: the
#: lab's own queue fills, and a lab that floods loses its newest frames, not the planner its memory).
#: A lab sends a frame or two a second; the queued frames are memory of libzmq's I/O thread, and
#: with 100,000 per connection a 5 s flood from 1,000 labs took the planner's memory from 230 to
#: 459 MB (with 100: to 345), never given back (docs/benchmarks.md, "Load").
LAB_RCVHWM = 100
#: How often the latest CAPACITY of each lab is applied: a report that arrives before the previous
#: one was applied replaces it (only the newest backlog matters), so ingest never queues. Each
#: application is one ledger transaction, one re-plan request and one field update for all labs.
CAPACITY_APPLY_S = 0.5
#: The shortest gap between two field updates, and the gap as a multiple of the time the last field
#: took to build. The field is advice to labs (where demand is); at 1,000 labs one build and
#: encoding takes some 15 ms, four a second were a sixth of an idle planner's loop.
FIELD_MIN_GAP_S = 1.0
FIELD_SHARE_GAP = 10.0


class NotWelcomed(ProtocolError):
    """A lab spoke before HELLO (or after the planner lost it): it must say HELLO again."""


@dataclass
class MeshStats:
    """Counters an operator reads on /health."""

    frames_received: int = 0
    frames_rejected: int = 0
    #: Frames dropped because their lab sent faster than its rate limit (also counted as rejected).
    frames_rate_limited: int = 0
    rejected_by_peer: Counter[str] = field(default_factory=Counter)
    sends_failed: int = 0
    assigns_sent: int = 0
    field_updates: int = 0
    #: Connections whose CurveZMQ handshake failed (no CURVE, wrong server key, refused by ZAP).
    handshakes_failed: int = 0
    #: Messages from an admitted key that claimed to be another lab (refused, logged).
    impersonations: int = 0
    #: Frames from a live connection whose key is no longer admitted (dropped; its lab is lost).
    frames_revoked: int = 0
    #: CAPACITY reports applied, and those replaced by a newer one from the same lab before that.
    capacity_applied: int = 0
    capacity_coalesced: int = 0
    #: SHIP and INCOMING frames sent, re-sendings included (SPEC.md section 11).
    ships_sent: int = 0
    incoming_sent: int = 0


class MeshServer:
    """ROUTER + PUB endpoints of the planner (see module docstring)."""

    def __init__(
        self,
        core: PlannerCore,
        ctx: zmq.asyncio.Context,
        mesh_endpoint: str,
        field_endpoint: str,
        epoch: int,
        heartbeat_ms: int = 1000,
        liveness: int = 3,
        resend_after_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        rate_per_s: float = 100.0,
        burst: int = 200,
        curve: KeyPair | None = None,
        admissions: Admissions | None = None,
    ) -> None:
        self.core = core
        #: The admitted keys, checked on every frame of a secure mesh (planner.admission).
        self.admissions = admissions
        self.rate_per_s = rate_per_s
        self.burst = burst
        #: Per peer: (tokens left, when counted): a bucket of `burst` tokens refilled at `rate_per_s`.
        self._bucket: dict[str, tuple[float, float]] = {}
        self.epoch = epoch
        self.heartbeat_ms = heartbeat_ms
        self.liveness = liveness
        self.resend_after_s = resend_after_s
        self.receive_gather_s = RECEIVE_GATHER_S
        self.monotonic = monotonic
        self.stats = MeshStats()
        self.router = transport.bind_router(ctx, mesh_endpoint, curve, rcv_hwm=LAB_RCVHWM)
        #: The same socket, used synchronously for sends: an unroutable send (a lab gone) raises at
        #: once instead of failing in a future nobody awaits.
        self._router_out = zmq.Socket.shadow(self.router.underlying)
        self.pub = transport.bind_pub(ctx, field_endpoint, curve)
        self._monitor = self.router.get_monitor_socket(HANDSHAKE_FAILURES) if curve is not None else None
        self.secure = curve is not None
        #: Lab id -> routing id of its latest connection (secure mesh: the ROUTER chooses routing ids).
        self._route: dict[str, bytes] = {}
        self.field_endpoint = transport.connectable(field_endpoint)
        self._seq_to: Counter[str] = Counter()
        self._field_seq = 0
        #: The field as last published (with `_field_seq`): the snapshot a WELCOME carries, so that
        #: a thousand labs joining do not each cost a field built anew (Clone pattern: snapshot at
        #: a sequence number, then the updates after it).
        self._published_field: Field_ | None = None
        self._field_dirty = asyncio.Event()
        self._last_heard: dict[str, float] = {}
        #: Per lab: the envelope seq of the latest HEARTBEAT read from it (its work lease, see HEARTBEAT).
        self._heard_seq: dict[str, int] = {}
        self._welcomed: set[str] = set()
        self._last_sent_assign: dict[str, float] = {}
        #: Per lab: when the planner last sent it a HEARTBEAT (an answer to its own, or the timer's).
        self._heartbeat_sent: dict[str, float] = {}
        #: Per unanswered assignment: seconds to wait before sending it again (doubles up to a cap).
        self._resend_wait: dict[str, float] = {}
        self._last_error_to: dict[str, float] = {}
        #: Per lab: assignments whose DONE/FAILED is recorded, to acknowledge in the next HEARTBEAT.
        self._ends_to_acknowledge: dict[str, list[str]] = {}
        #: Assignments made but not yet in the ledger's file: not sent before they are.
        self._unwritten: set[str] = set()
        #: Per lab: its newest CAPACITY not yet applied, (backlog, the lab's seq of it); see
        #: CAPACITY_APPLY_S. Which work a report holds is the core's to judge (`PlannerCore.take_backlogs`).
        self._pending_capacity: dict[str, tuple[dict[str, float], int]] = {}
        self._capacity_waiting = asyncio.Event()
        #: Per unanswered SHIP or INCOMING (kind, transfer id): (when last sent, wait before the next).
        self._transfer_sends: dict[tuple[str, str], tuple[float, float]] = {}
        core.shipments.on_sent = self.send_ships
        core.shipments.on_shipped = self._send_incoming

    def close(self) -> None:
        """Close both sockets (the context is closed by its owner)."""
        if self._monitor is not None:
            self.router.disable_monitor()
            self._monitor.close(linger=0)
        self.router.close(linger=0)
        self.pub.close(linger=0)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set."""
        tasks = [
            asyncio.create_task(self._receive(), name="mesh-receive"),
            asyncio.create_task(self._heartbeat(), name="mesh-heartbeat"),
            asyncio.create_task(self._publish_field(), name="mesh-field"),
            asyncio.create_task(self._apply_capacity(), name="mesh-capacity"),
        ]
        if self._monitor is not None:
            tasks.append(asyncio.create_task(self._watch_handshakes(self._monitor), name="mesh-monitor"))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # --- sending ------------------------------------------------------------------------------

    def send(self, lab_id: str, body: Body) -> bool:
        """Send one message to a lab; False (and counted) when the lab is not connected."""
        self._seq_to[lab_id] += 1
        frame = encode(Envelope(sender=PLANNER_ID, seq=self._seq_to[lab_id], body=body, epoch=self.epoch))
        try:
            route = self._route.get(lab_id, lab_id.encode())
            self._router_out.send_multipart([route, frame], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self.stats.sends_failed += 1
            log.debug("cannot send %s to lab %s: %s", type(body).__name__, lab_id, exc)
            return False
        return True

    def send_assignments(self, rows: list[AssignmentRow]) -> None:
        """Send ASSIGN for each new assignment once it is in the ledger's file (a lab never works on
        an assignment a restarted planner would not know); unacknowledged ones are re-sent by the
        heartbeat task."""
        ids = {row.id for row in rows}
        self._unwritten |= ids

        def send_written() -> None:
            self._unwritten -= ids
            for row in self.core.in_dispatch_order(rows):
                if row.state == "assigned":  # not refused, lost or withdrawn meanwhile
                    self._send_assign(row)

        self.core.ledger.after_commit(send_written)

    def send_decision(self, lab_id: str, assignment_id: str, accept: bool, reason: str) -> bool:
        """Forward a lab operator's decision on an offered assignment as DECIDE (SPEC.md section 7).

        False when the lab is not welcomed or not connected: the operator may decide again later.
        """
        if lab_id not in self._welcomed:
            return False
        return self.send(lab_id, Decide(assignment_id=assignment_id, accept=accept, reason=reason))

    def send_report(self, lab_id: str, assignment_id: str, made: int, failed: int, reason: str) -> bool:
        """Forward a lab operator's report of work done by hand as REPORT (SPEC.md section 9).

        False when the lab is not welcomed or not connected: the operator may report again later.
        """
        if lab_id not in self._welcomed:
            return False
        body = WorkReport(assignment_id=assignment_id, made=made, failed=failed, reason=reason)
        return self.send(lab_id, body)

    def _send_assign(self, row: AssignmentRow) -> None:
        order = self.core.orders[row.order_id]
        body = Assign(
            assignment_id=row.id,
            order_id=row.order_id,
            design=self.core.designs[order.design],
            quantity=row.quantity,
            due_at=order.due_at,
            delivery=order.delivery,
            priority=order.priority,
            # what the plan meant, so the lab ranks the job as the plan did (SPEC.md section 4)
            road_hours=self.core.road_hours(row),
            on_time_units=max(0, min(row.quantity, row.on_time_units)),
            arrive_by=None if row.arrive_by is None else datetime.fromisoformat(row.arrive_by),
        )
        self._last_sent_assign[row.id] = self.monotonic()
        if self.send(row.lab_id, body):
            self.stats.assigns_sent += 1

    def send_ships(self, rows: list[TransferRow]) -> None:
        """Send SHIP for each new transfer; unanswered ones are re-sent by the heartbeat task."""
        for row in rows:
            self._send_ship(row)

    def _send_ship(self, row: TransferRow) -> None:
        t = row.transfer
        body = Ship(
            transfer_id=row.id,
            material=t.material,
            quantity=t.quantity,
            to_lab=t.to_lab,
            arrive_at=t.arrive_at,
        )
        self._note_transfer_send("ship", row.id)
        if self.send(t.from_lab, body):
            self.stats.ships_sent += 1

    def _send_incoming(self, row: TransferRow) -> None:
        t = row.transfer
        body = Incoming(
            transfer_id=row.id,
            material=t.material,
            quantity=t.quantity,
            from_lab=t.from_lab,
            arrive_at=t.arrive_at,
        )
        self._note_transfer_send("incoming", row.id)
        if self.send(t.to_lab, body):
            self.stats.incoming_sent += 1

    def _note_transfer_send(self, kind: str, transfer_id: str) -> None:
        _, wait = self._transfer_sends.get((kind, transfer_id), (0.0, self.resend_after_s / 2))
        self._transfer_sends[kind, transfer_id] = (self.monotonic(), min(2 * wait, RESEND_MAX_S))

    def _resend_transfers(self, now: float) -> None:
        """SHIP and INCOMING not answered yet go out again, the wait doubling up to RESEND_MAX_S."""
        waiting: set[tuple[str, str]] = set()
        # One pass over the transfers, not one per lab: a thousand labs times every transfer a
        # second was a measurable share of the loop.
        for kind, lab_id, row in self.core.shipments.awaiting_answers():
            if lab_id not in self._welcomed:
                continue
            waiting.add((kind, row.id))
            sent, wait = self._transfer_sends.get((kind, row.id), (0.0, 0.0))
            if now - sent >= wait:
                log.info("re-sending unanswered %s of %s to lab %s", kind.upper(), row.id, lab_id)
                (self._send_ship if kind == "ship" else self._send_incoming)(row)
        self._transfer_sends = {k: v for k, v in self._transfer_sends.items() if k in waiting}

    def _send_heartbeat(self, lab_id: str) -> None:
        """HEARTBEAT to a lab: its work that still stands, the ends recorded, the latest seq read."""
        self._heartbeat_sent[lab_id] = self.monotonic()
        ended = self._ends_to_acknowledge.pop(lab_id, None)
        heartbeat = Heartbeat(
            active=self.core.active_assignments(lab_id), ended=ended, heard=self._heard_seq.get(lab_id)
        )
        if not self.send(lab_id, heartbeat) and ended:
            self._ends_to_acknowledge.setdefault(lab_id, []).extend(ended)

    def push_active(self, lab_id: str) -> None:
        """Tell a lab at once which of its work still stands (some was withdrawn); see HEARTBEAT."""
        if lab_id in self._welcomed:
            self._send_heartbeat(lab_id)

    def field_changed(self) -> None:
        """Ask for the field to be re-published (coalesced)."""
        self._field_dirty.set()

    # --- receiving ----------------------------------------------------------------------------

    def _peer_of(self, frames: list[zmq.Frame]) -> str | None:
        """Who sent `frames`: the lab its key was admitted for (secure), else its routing id; None
        when that key is no longer admitted (the frames are dropped, see `_revoked`)."""
        if self.secure:
            lab_id = frames[-1].get("User-Id")
            if self.admissions is not None:
                try:
                    key = frames[-1].get(KEY_PROPERTY).encode()
                except zmq.ZMQError:  # not set by our ZAP handler: nothing to vouch for this frame
                    key = b""
                if not self.admissions.holds(lab_id, key):
                    self._revoked(lab_id, frames[0].bytes)
                    return None
            self._route[lab_id] = frames[0].bytes
            return lab_id
        return frames[0].bytes.decode(errors="replace")

    def _revoked(self, lab_id: str, routing_id: bytes) -> None:
        """A frame on a connection whose key was revoked (or replaced): drop it, and when that
        connection is the lab's live one, the lab is lost (its work goes back to demand)."""
        self.stats.frames_revoked += 1
        if self._route.get(lab_id) != routing_id:
            return  # an old connection of a lab that has joined again with its new key
        del self._route[lab_id]
        log.warning("lab %s: its key is no longer admitted; its connection is ignored from now on", lab_id)
        if lab_id in self._welcomed:
            self._welcomed.discard(lab_id)
            self._ends_to_acknowledge.pop(lab_id, None)
            self.core.lab_lost(lab_id, "its key was revoked")
            self.field_changed()

    async def _receive(self) -> None:
        while True:
            # One await per turn, then the frames already queued are read without one (an await per
            # frame costs as much as the frame's own handling); after RECEIVE_TURN_S the loop lets
            # the HTTP API and the timers have their turn, under a flood too.
            #
            # The await is a poll with a timeout, never a bare receive: the socket's file descriptor
            # signals edges, and the sends on the synchronous shadow socket (`send`) consume them,
            # so a wake-up can be lost while frames wait. A receive then waits until some new
            # connection signals again, which over long-lived connections (labs behind a relay)
            # is never: the planner stopped reading its labs for good while its HTTP API still
            # answered (chaos seed 11, --loss 0.05). The timeout bounds a lost wake-up to its length.
            await self.router.poll(RECEIVE_POLL_MS, zmq.POLLIN)
            turn_began = time.monotonic()
            emptied = False
            while time.monotonic() - turn_began <= RECEIVE_TURN_S:
                try:
                    parts = [self._router_out.recv(flags=zmq.NOBLOCK, copy=False)]
                except zmq.Again:
                    emptied = True
                    break
                # A message's parts arrive together; `more` is read from the part itself (pyzmq's
                # recv_multipart asks the socket for RCVMORE each time: twice the CPU per frame).
                while parts[-1].more:
                    parts.append(self._router_out.recv(copy=False))
                self._take(parts)
            # Emptied: let frames gather (RECEIVE_GATHER_S); else the turn ran out: others' turn now.
            await asyncio.sleep(self.receive_gather_s if emptied else 0)

    def _take(self, parts: list[zmq.Frame]) -> None:
        """Check, decode and handle one message read from the ROUTER."""
        self.stats.frames_received += 1
        identity = self._peer_of(parts)
        if identity is None:
            return
        if len(parts) != 2:
            self._reject(
                identity, None, f"expected [identity, payload], got {len(parts)} frames", "malformed"
            )
            return
        frames = [part.bytes for part in parts]
        if not self._within_rate(identity):
            self.stats.frames_rate_limited += 1
            self._reject(identity, None, f"more than {self.rate_per_s:g} messages a second", "rate_limited")
            return
        try:
            message = decode(frames[1])
        except ProtocolError as exc:
            self._reject(identity, None, str(exc), "malformed")
            return
        try:
            self._handle(identity, message)
        except NotWelcomed as exc:
            self._reject(identity, message.seq, str(exc), "not_welcomed")
        except (ProtocolError, UnknownAssignment, UnknownTransfer) as exc:
            self._reject(identity, message.seq, str(exc), "invalid")
        except Exception:  # a bug in a handler must not stop the mesh
            log.exception("error handling %s from %s", message.kind, identity)

    def _within_rate(self, peer: str) -> bool:
        """Take one token from the peer's bucket; False when it is empty (the frame is dropped)."""
        now = self.monotonic()
        tokens, then = self._bucket.get(peer, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate_per_s)
        if tokens < 1.0:
            self._bucket[peer] = (tokens, now)
            return False
        self._bucket[peer] = (tokens - 1.0, now)
        return True

    def _reject(self, peer: str, seq: int | None, reason: str, code: ErrorCode) -> None:
        self.stats.frames_rejected += 1
        self.stats.rejected_by_peer[peer] += 1
        if self.stats.rejected_by_peer[peer] == 1:
            log.warning(
                "rejected a frame from %s: %s (further rejections from this peer are only counted)",
                peer,
                reason,
            )
        now = self.monotonic()
        if now - self._last_error_to.get(peer, -1e9) >= 1.0:
            self._last_error_to[peer] = now
            self.send(peer, Error(reason=reason[:500], code=code, ref_seq=seq))

    def _handle(self, identity: str, message: Envelope) -> None:
        if message.sender != identity:
            self._impersonation(identity, message.sender)
            raise ProtocolError(
                f"sender {message.sender!r} does not match the connection's lab id {identity!r}"
            )
        body = message.body
        self._last_heard[identity] = self.monotonic()
        if isinstance(body, Hello):
            self._hello(identity, body, message.seq)
            return
        if identity not in self._welcomed:
            raise NotWelcomed(f"{message.kind} before HELLO: say HELLO first")
        self.core.lab_seen(identity)
        match body:
            case Heartbeat(promise=promise):
                # Answered at once: `heard` renews the lab's work lease a round trip after it asked.
                self._heard_seq[identity] = message.seq
                if promise:
                    self.core.lab_promised(identity, promise)
                self._send_heartbeat(identity)
            case Capacity(backlog_minutes=backlog):
                waiting = self._pending_capacity.get(identity)
                if waiting is not None:
                    self.stats.capacity_coalesced += 1
                    if waiting[1] > message.seq:  # the lab sent the one waiting later: it stays
                        return
                self._pending_capacity[identity] = (backlog, message.seq)
                self._capacity_waiting.set()
            case Stock(stock=stock):
                self.core.lab_stock(identity, stock)
            case Accept(assignment_id=aid, eta=eta):
                self.core.job_update(identity, aid, "accepted", eta=eta, seq=message.seq)
            case Refuse(assignment_id=aid, reason=reason):
                self.core.job_update(identity, aid, "refused", reason=reason)
                self.field_changed()
            case Progress(assignment_id=aid, units_done=units, eta=eta):
                self.core.job_update(identity, aid, "running", units_done=units, eta=eta, seq=message.seq)
            case Done(assignment_id=aid, units_done=units):
                self._record_end(identity, aid, "done", units, None)
            case Failed(assignment_id=aid, units_done=units, reason=reason):
                self._record_end(identity, aid, "failed", units, reason)
            case Shipped(transfer_id=tid):
                self.core.shipments.answer(identity, tid, shipped=True)
            case ShipRefused(transfer_id=tid, reason=reason):
                self.core.shipments.answer(identity, tid, shipped=False, reason=reason)
            case Arrived(transfer_id=tid):
                self.core.shipments.arrived(identity, tid)
            case Bye(reason=reason):
                self._welcomed.discard(identity)
                self.core.lab_lost(identity, f"left: {reason or 'no reason given'}", said_bye=True)
                self.field_changed()
            case _:
                raise ProtocolError(f"{message.kind} is not a message a lab may send")

    def _record_end(
        self, lab_id: str, assignment_id: str, state: str, units: int, reason: str | None
    ) -> None:
        """Record a DONE or FAILED and acknowledge it in the next HEARTBEAT (SPEC.md section 5).

        An end naming an assignment that is not this lab's is acknowledged too (and answered with
        ERROR): repeating it could never change that.
        """
        try:
            self.core.job_update(lab_id, assignment_id, state, units_done=units, reason=reason)
        except UnknownAssignment:
            self._ends_to_acknowledge.setdefault(lab_id, []).append(assignment_id)
            raise
        # Acknowledged once the end is in the ledger's file: until then the lab keeps repeating it.
        self.core.ledger.after_commit(
            lambda: self._ends_to_acknowledge.setdefault(lab_id, []).append(assignment_id)
        )
        self.field_changed()

    def _impersonation(self, lab_id: str, claimed: str) -> None:
        """Count (and log, the first time per lab) a message claiming to come from another lab."""
        self.stats.impersonations += 1
        self.stats.rejected_by_peer[f"impersonation:{lab_id}"] += 1
        if self.stats.rejected_by_peer[f"impersonation:{lab_id}"] == 1:
            how = "the key of lab" if self.secure else "the connection of lab"
            log.warning("refused: %s %r claims to be lab %r (counted from now on)", how, lab_id, claimed)

    def _hello(self, identity: str, hello: Hello, seq: int) -> None:
        if hello.lab.id != identity:
            self._impersonation(identity, hello.lab.id)
            raise ProtocolError(f"HELLO for lab {hello.lab.id!r} on the connection of {identity!r}")
        self._pending_capacity.pop(identity, None)  # older than the backlog HELLO carries
        self.core.lab_hello(hello.lab, hello.backlog_minutes, seq)
        self._heard_seq.pop(identity, None)  # a new conversation: its seqs may start again from 1
        self._welcomed.add(identity)
        self.send(
            identity,
            Welcome(
                epoch=self.epoch,
                heartbeat_ms=self.heartbeat_ms,
                field_endpoint=self.field_endpoint,
                field_seq=self._field_seq,
                field=self._published_field if self._published_field is not None else self.core.field(),
                active=self.core.active_assignments(identity),
            ),
        )
        # Work assigned before a reconnect is offered again; the lab answers duplicates idempotently.
        for row in self.core.awaiting_answer(identity):
            if row.id in self._unwritten:
                continue  # sent once it is in the ledger's file (send_assignments)
            self._resend_wait.pop(row.id, None)
            self._send_assign(row)
        # Transfers too: the lab answers duplicates as the first time (SPEC.md section 11).
        for transfer in self.core.shipments.awaiting_ship(identity):
            self._transfer_sends.pop(("ship", transfer.id), None)
            self._send_ship(transfer)
        for transfer in self.core.shipments.awaiting_arrival(identity):
            self._transfer_sends.pop(("incoming", transfer.id), None)
            self._send_incoming(transfer)
        self.field_changed()

    async def _watch_handshakes(self, monitor: zmq.asyncio.Socket) -> None:
        """Count failed CurveZMQ handshakes (libzmq reports them only on the socket monitor)."""
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            self.stats.handshakes_failed += 1
            if self.stats.handshakes_failed == 1:
                log.warning(
                    "a connection from %s failed its CurveZMQ handshake (event %s); further failures "
                    "are only counted on /health",
                    event.get("endpoint", b"?").decode(errors="replace"),
                    event.get("event"),
                )

    # --- periodic -----------------------------------------------------------------------------

    def _unread(self) -> bool:
        """True when frames wait unread in the ROUTER: the planner is behind, not the labs silent."""
        return bool(self.router.getsockopt(zmq.EVENTS) & zmq.POLLIN)

    async def _heartbeat(self) -> None:
        interval = self.heartbeat_ms / 1000.0
        while True:
            await asyncio.sleep(interval)
            # A lab's HEARTBEAT may be among the frames still queued here: while the planner is
            # behind with its reading, silence is not judged, so a busy planner (a thousand labs
            # saying HELLO at once) does not lose its labs, and then spend its time on their losses.
            judge = not self._unread()
            now = self.monotonic()
            for count, lab_id in enumerate(list(self._welcomed)):
                if count % 100 == 99:
                    await asyncio.sleep(0)  # a thousand labs: let the receive loop have its turns
                    now = self.monotonic()
                if lab_id not in self._welcomed:
                    continue
                silent = now - self._last_heard.get(lab_id, now)
                if judge and silent > self.liveness * interval:
                    self._welcomed.discard(lab_id)
                    self._ends_to_acknowledge.pop(lab_id, None)  # it repeats them after its next HELLO
                    self.core.lab_lost(lab_id, f"silent for {silent:.1f} s")
                    self.field_changed()
                    continue
                # A lab heartbeating on time was answered within the interval: that answer is its
                # heartbeat from the planner (SPEC.md section 5), so a thousand labs cost a thousand
                # sends a second, not two thousand.
                if now - self._heartbeat_sent.get(lab_id, -1e9) >= interval:
                    self._send_heartbeat(lab_id)
            awaiting: set[str] = set()
            for lab_id in list(self._welcomed):
                for row in self.core.awaiting_answer(lab_id):
                    if row.id in self._unwritten:
                        continue  # sent once it is in the ledger's file (send_assignments)
                    awaiting.add(row.id)
                    wait = self._resend_wait.get(row.id, self.resend_after_s)
                    if now - self._last_sent_assign.get(row.id, 0.0) >= wait:
                        self._resend_wait[row.id] = min(2 * wait, RESEND_MAX_S)
                        log.info("re-sending unacknowledged %s to lab %s", row.id, lab_id)
                        self._send_assign(row)
            self._resend_wait = {k: v for k, v in self._resend_wait.items() if k in awaiting}
            self._last_sent_assign = {k: v for k, v in self._last_sent_assign.items() if k in awaiting}
            self._resend_transfers(now)

    async def _apply_capacity(self) -> None:
        while True:
            await self._capacity_waiting.wait()
            self._capacity_waiting.clear()
            self.apply_capacity()
            await asyncio.sleep(CAPACITY_APPLY_S)

    def apply_capacity(self) -> int:
        """Hand each lab's newest pending CAPACITY to the core, with the lab's seq of it: one ledger
        transaction for all of them (`PlannerCore.take_backlogs`), then one field update. Returns how
        many the core took."""
        pending, self._pending_capacity = self._pending_capacity, {}
        if not pending:
            return 0
        taken = self.core.take_backlogs(pending)
        self.stats.capacity_applied += taken
        if taken:
            self.field_changed()
        return taken

    async def _publish_field(self) -> None:
        while True:
            await self._field_dirty.wait()
            self._field_dirty.clear()
            self._field_seq += 1
            began = time.monotonic()
            self._published_field = self.core.field()
            built_s = time.monotonic() - began
            frame = encode(
                Envelope(sender=PLANNER_ID, seq=self._field_seq, body=self._published_field, epoch=self.epoch)
            )
            try:
                self.pub.send_multipart([transport.FIELD_TOPIC, frame], flags=zmq.NOBLOCK)
                self.stats.field_updates += 1
            except zmq.ZMQError as exc:
                log.debug("field update not published: %s", exc)
            # At most four field updates a second, and the field's building at most a tenth of the
            # loop's time (it walks every order: thousands of them under load).
            await asyncio.sleep(max(FIELD_MIN_GAP_S, FIELD_SHARE_GAP * built_s))
