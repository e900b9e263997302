"""A peer planner played by the test itself, over real CurveZMQ sockets, to script faults exactly.

It binds its ROUTER, connects a DEALER to the planner under test, sends heartbeats, and answers the
rounds as `behaviour` says: offers everything cheaply, awards every bid in full, and then leases
(or not), or falls silent after the first round. To an emergency request (SPEC.md 10.8) it answers
with `emergency_units` (each answer sent `emergency_repeat` times), or never; a take with units it
leases when `lease` says so. Every message it receives is kept.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from protocol import security
from protocol.peers import PeerEnvelope, decode_peer, encode_peer


@dataclass
class Behaviour:
    """What the fake does: its offers' designs, windows and cell; whether it leases; when it falls silent."""

    designs: tuple[str, ...]
    cell: str
    windows: range = range(0, 9)
    lease: bool = False
    silent_after_offers: bool = False
    #: Units it answers an EMERGENCY with (None: it never answers one), at `emergency_price` a unit.
    emergency_units: int | None = None
    emergency_price: float = 5.0
    #: How many times it sends each answer and each LEASE of the fast path (a retry is a repeat).
    emergency_repeat: int = 1


@dataclass
class FakePeer:
    """See the module docstring."""

    region: str
    keys_dir: Path
    endpoint: str
    planner: str
    planner_endpoint: str
    planner_key: bytes
    behaviour: Behaviour
    heartbeat_s: float = 0.1
    received: list[PeerEnvelope] = field(default_factory=list)
    silent: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _seq: int = 0

    def start(self) -> None:
        """Start its sockets and loop in a thread."""
        self._outbox: list[tuple[str, dict[str, Any] | bytes]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and close its sockets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def kinds(self) -> list[str]:
        """The kinds of every message received, in order."""
        return [m.kind for m in list(self.received)]

    def send(self, kind: str, body: dict[str, Any] | bytes) -> None:
        """Queue one message to the planner (sent by the loop's thread); `kind` "RAW" sends bytes as
        they are."""
        self._outbox.append((kind, body))

    def _run(self) -> None:
        ctx = zmq.Context()
        keys = security.load_keypair(self.keys_dir / "peer.key_secret")
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        security.make_server(router, keys, "peers")
        router.bind(self.endpoint)
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        security.make_client(dealer, security.ClientKeys(keys, self.planner_key))
        dealer.connect(self.planner_endpoint)
        self._dealer = dealer
        self._emit("PEER_HELLO", {"region": self.region, "epoch": 1, "heartbeat_ms": 100, "committed_seq": 0})
        beat = 0.0
        try:
            while not self._stop.is_set():
                if router.poll(20):
                    frames = router.recv_multipart()
                    self._take(decode_peer(frames[-1]))
                if self.silent:
                    continue
                while self._outbox:
                    self._emit(*self._outbox.pop(0))
                if time.monotonic() - beat >= self.heartbeat_s:
                    self._emit("HEARTBEAT", {"round": 0})
                    beat = time.monotonic()
        finally:
            ctx.destroy(linger=0)

    def _emit(self, kind: str, body: dict[str, Any] | bytes) -> None:
        if isinstance(body, bytes):
            self._dealer.send(body)
            return
        self._seq += 1
        self._dealer.send(encode_peer(kind, self.region, self._seq, 1, body))

    def _offers(self, round_: int) -> list[dict[str, Any]]:
        b = self.behaviour
        return [
            {
                "offer_id": f"{self.region}.r{round_}.o{n}",
                "round": round_,
                "design": design,
                "window": window,
                "cell": b.cell,
                "units": 10_000,
                "price": 0.0,
            }
            for n, (design, window) in enumerate((d, w) for d in b.designs for w in b.windows)
        ]

    def _take(self, message: PeerEnvelope) -> None:
        self.received.append(message)
        if self.silent:
            return
        body = message.body.model_dump(mode="json")
        if message.kind == "ROUND":
            r = body["round"]
            self._emit("OFFERS", {"round": r, "offers": self._offers(r)})
            if body["offers_only"]:
                if self.behaviour.silent_after_offers:
                    self.silent = True
                return
            self._emit("BIDS", {"round": r, "bids": []})
        elif message.kind == "BIDS":
            r = body["round"]
            awards = [{"bid_id": b["bid_id"], "round": r, "units": b["units"]} for b in body["bids"]]
            self._emit("AWARDS", {"round": r, "awards": awards})
            self._emit("COST", {"round": r, "cost": 0.0, "before": 0.0, "bids": 0})
        elif message.kind == "EMERGENCY" and self.behaviour.emergency_units is not None:
            answer = {
                "request_id": body["request_id"],
                "units": min(self.behaviour.emergency_units, body["units"]),
                "price": self.behaviour.emergency_price,
                "expires_at": _soon(),
            }
            for _ in range(self.behaviour.emergency_repeat):
                self._emit("EMERGENCY_OFFER", answer)
        elif message.kind == "EMERGENCY_TAKE" and body["units"] > 0 and self.behaviour.lease:
            lease = {"trade_id": body["trade_id"], "units": body["units"], "expires_at": _soon()}
            for _ in range(self.behaviour.emergency_repeat):
                self._emit("LEASE", lease)
        elif message.kind == "VOTE" and body["commit"] and self.behaviour.lease:
            for m in self.received:
                if m.kind == "BIDS" and m.body.round == body["round"]:
                    for bid in m.body.bids:
                        self._emit(
                            "LEASE",
                            {"trade_id": f"t.{bid.bid_id}", "units": bid.units, "expires_at": _soon()},
                        )


def _soon() -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
