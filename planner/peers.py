"""The peer transport between regional planners (SPEC.md section 10.1, 10.2, 10.5).

Each planner binds one ROUTER (a CURVE server) that its peers' DEALERs connect to, and holds one
DEALER (a CURVE client) per peer. The peer list is fixed and admitted by key, with the lab mesh's
own machinery (`planner.admission`): the keys folder holds `peer.key`/`peer.key_secret` (this
planner's pair) and `peers/REGION.key` with `peers/REGION.endpoint` per admitted peer. The ZAP handler
refuses any other key; every frame's sender must be its key's region; malformed frames are counted
and dropped. Heartbeats go to every peer each interval; a peer silent for 3 intervals is lost and its
offers expire. `send` is the only door out: every frame it sends may be captured for inspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from planner.admission import Admissions, ZapHandler
from protocol import security
from protocol.errors import ProtocolError
from protocol.peers import OfferBody, PeerEnvelope, decode_peer, encode_peer, snapshot_slices

log = logging.getLogger(__name__)

PEER_KEY_NAME = "peer"
PEERS_FOLDER = "peers"
#: Intervals of silence after which a peer is lost (its offers expire).
LIVENESS = 3
#: Socket options every peer socket sets (SPEC.md section 1).
LINGER_MS = 200
MAX_MESSAGE_BYTES = 1024 * 1024


class PeerError(ValueError):
    """A peer cannot be added or used (names the file or region and the reason)."""


def peer_keys(keys_dir: Path, region: str) -> security.KeyPair:
    """This planner's peer key pair in `keys_dir`, created (naming `region`) on first use."""
    secret_file = keys_dir / f"{PEER_KEY_NAME}.key_secret"
    if not secret_file.exists():
        security.create_keypair(keys_dir, PEER_KEY_NAME, {"region": region})
    return security.load_keypair(secret_file)


def add_peer(keys_dir: Path, cert_file: Path, endpoint: str, region: str | None = None) -> str:
    """Admit a peer planner's key and remember its endpoint; return its region id."""
    if not endpoint.startswith("tcp://") or ":" not in endpoint[len("tcp://") :]:
        raise PeerError(f"--endpoint: expected tcp://HOST:PORT, got {endpoint!r}")
    name = region or security.metadata(cert_file).get("region")
    if not name:
        raise PeerError(f"{cert_file}: the certificate names no region; give --region REGION")
    folder = keys_dir / PEERS_FOLDER
    admitted = Admissions(folder).admit(cert_file, name)
    (folder / f"{admitted}.endpoint").write_text(endpoint + "\n", encoding="ascii")
    return admitted


def remove_peer(keys_dir: Path, region: str) -> bool:
    """Forget a peer: its key is no longer admitted and no DEALER connects to it. False if unknown."""
    folder = keys_dir / PEERS_FOLDER
    removed = Admissions(folder).revoke(region)
    (folder / f"{region}.endpoint").unlink(missing_ok=True)
    return removed


def peer_list(keys_dir: Path) -> dict[str, tuple[bytes, str]]:
    """Region -> (public key, endpoint) of every admitted peer with an endpoint."""
    folder = keys_dir / PEERS_FOLDER
    found = {}
    for region, public in Admissions(folder).admitted().items():
        endpoint_file = folder / f"{region}.endpoint"
        if endpoint_file.exists():
            found[region] = (public, endpoint_file.read_text(encoding="ascii").strip())
    return found


@dataclass
class PeerStats:
    """Counters of the peer transport, for /health and tests."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    frames_malformed: int = 0
    impersonations: int = 0
    peers_lost: int = 0
    offers_expired: int = 0
    malformed_by_peer: dict[str, int] = field(default_factory=dict)


class PeerNode:
    """One planner's side of the federation (see the module docstring)."""

    def __init__(
        self,
        region: str,
        keys_dir: Path,
        endpoint: str,
        heartbeat_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        capture: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.region = region
        self.keys_dir = keys_dir
        self.endpoint = endpoint
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        self.capture = capture
        self.stats = PeerStats()
        self.epoch = int(time.time())
        self.last_heard: dict[str, float] = {}
        self.lost: set[str] = set()
        self.offers: dict[str, dict[str, OfferBody]] = {}
        self.inbox: asyncio.Queue[PeerEnvelope] = asyncio.Queue()
        self._own_offers: list[OfferBody] = []  # sent again in every SNAPSHOT
        #: What SNAPSHOT lists of the trades with a peer, and this planner's trade sequence: the
        #: federation (planner.federation) sets both; a bare peer node holds no trade.
        self.trades_with: Callable[[str], list[dict[str, Any]]] = lambda region: []
        self.committed_seq: Callable[[], int] = lambda: 0
        #: The latest round this planner took part in (sent in HEARTBEAT), and each peer's.
        self.round = 0
        self.peer_round: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        self._dealers: dict[str, zmq.asyncio.Socket] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ctx: zmq.asyncio.Context | None = None
        self._zap: ZapHandler | None = None
        self._router: zmq.asyncio.Socket | None = None

    @property
    def keys_refused(self) -> int:
        """Handshakes refused because the key is not an admitted peer's."""
        return self._zap.stats.unknown_keys if self._zap else 0

    async def start(self) -> None:
        """Start the ZAP handler, bind the ROUTER, connect a DEALER to every peer, start the loops."""
        keys = peer_keys(self.keys_dir, self.region)
        self._ctx = zmq.asyncio.Context()
        self._zap = ZapHandler(self._ctx, Admissions(self.keys_dir / PEERS_FOLDER))
        self._zap.start()
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, LINGER_MS)
        router.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        security.make_server(router, keys, "peers")
        router.bind(self.endpoint)
        self._router = router
        now = self.clock()
        for region, (public, endpoint) in sorted(peer_list(self.keys_dir).items()):
            dealer = self._ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, LINGER_MS)
            dealer.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            security.make_client(dealer, security.ClientKeys(keys, public))
            dealer.connect(endpoint)
            self._dealers[region] = dealer
            self.last_heard.setdefault(region, now)
        self._tasks = [
            asyncio.create_task(self._receive(), name="peers-receive"),
            asyncio.create_task(self._beat(), name="peers-heartbeat"),
        ]
        for region in self._dealers:
            await self.send(region, "PEER_HELLO", self._hello())

    async def stop(self) -> None:
        """Stop the loops and close every socket."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for dealer in self._dealers.values():
            dealer.close(linger=0)
        if self._router is not None:
            self._router.close(linger=0)
        if self._zap is not None:
            await self._zap.stop()
        if self._ctx is not None:
            self._ctx.term()

    def live_peers(self) -> list[str]:
        """The peers heard from within the last LIVENESS intervals."""
        return sorted(r for r in self._dealers if r not in self.lost)

    def live_offers(self) -> list[tuple[str, OfferBody]]:
        """(host, offer) for every offer of a live peer."""
        return [(host, offer) for host, by_id in sorted(self.offers.items()) for offer in by_id.values()]

    async def send(self, region: str, kind: str, body: dict[str, Any]) -> None:
        """Send one message to a peer (validated and encoded by `protocol.peers`), and capture it."""
        dealer = self._dealers.get(region)
        if dealer is None:
            raise PeerError(f"region {region!r} is not an admitted peer of {self.region!r}")
        self._seq[region] = self._seq.get(region, 0) + 1
        frame = encode_peer(kind, self.region, self._seq[region], self.epoch, body)
        if self.capture is not None:
            self.capture(region, frame)
        with contextlib.suppress(zmq.Again):
            await dealer.send(frame, flags=zmq.NOBLOCK)
            self.stats.frames_out += 1
            self.stats.bytes_out += len(frame)

    async def broadcast(self, kind: str, body: dict[str, Any]) -> None:
        """Send one message to every peer."""
        for region in sorted(self._dealers):
            await self.send(region, kind, body)

    def _hello(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "epoch": self.epoch,
            "heartbeat_ms": int(self.heartbeat_s * 1000),
            "committed_seq": self.committed_seq(),
        }

    async def _receive(self) -> None:
        assert self._router is not None
        while True:
            frames = await self._router.recv_multipart(copy=False)
            self.stats.frames_in += 1
            try:
                sender = frames[-1].get("User-Id")
            except zmq.ZMQError:
                sender = ""
            if len(frames) != 2:
                self._malformed(sender, "a peer frame is [identity, payload]")
                continue
            try:
                message = decode_peer(frames[1].bytes)
            except ProtocolError as error:
                self._malformed(sender, str(error))
                continue
            if message.sender != sender:
                self.stats.impersonations += 1
                log.warning(
                    "dropped a %s from key of %r claiming to be %r", message.kind, sender, message.sender
                )
                continue
            await self._take(message)

    def _malformed(self, sender: str, reason: str) -> None:
        self.stats.frames_malformed += 1
        self.stats.malformed_by_peer[sender] = self.stats.malformed_by_peer.get(sender, 0) + 1
        if self.stats.malformed_by_peer[sender] == 1:
            log.warning("dropped a malformed frame from peer %r: %s", sender, reason)

    async def _take(self, message: PeerEnvelope) -> None:
        region = message.sender
        self.last_heard[region] = self.clock()
        if region in self.lost:
            self.lost.discard(region)
            log.info("peer %r is back", region)
        if message.kind == "OFFER":
            assert isinstance(message.body, OfferBody)
            self.offers.setdefault(region, {})[message.body.offer_id] = message.body
        elif message.kind == "PEER_HELLO" and region in self._dealers:
            offers = [o.model_dump(mode="json") for o in self._own_offers]
            for body in snapshot_slices(self.committed_seq(), self.trades_with(region), offers):
                await self.send(region, "SNAPSHOT", body)
        if message.kind == "HEARTBEAT":
            self.peer_round[region] = max(self.peer_round.get(region, 0), getattr(message.body, "round", 0))
        else:
            await self.inbox.put(message)

    def keep_offers(self, offers: list[OfferBody]) -> None:
        """The offers a returning peer's SNAPSHOT lists (the latest this planner made)."""
        self._own_offers = list(offers)

    async def offer(self, offers: list[dict[str, Any]]) -> None:
        """Publish offers to every peer (and keep them for the SNAPSHOT a returning peer asks for)."""
        self._own_offers = [OfferBody.model_validate(o) for o in offers]
        for body in offers:
            await self.broadcast("OFFER", body)

    async def _beat(self) -> None:
        while True:
            await self.broadcast("HEARTBEAT", {"round": self.round})
            self.expire()
            await asyncio.sleep(self.heartbeat_s)

    def expire(self) -> None:
        """Mark peers silent for LIVENESS intervals lost; their offers expire."""
        now = self.clock()
        for region, heard in self.last_heard.items():
            if region not in self.lost and now - heard > LIVENESS * self.heartbeat_s:
                self.lost.add(region)
                self.stats.peers_lost += 1
                self.stats.offers_expired += len(self.offers.pop(region, {}))
                log.warning("peer %r is silent: lost, its offers expire", region)
