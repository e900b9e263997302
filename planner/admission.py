"""Who may join the mesh: the planner's key pair, the folder of admitted labs, and the ZAP handler.

The planner keeps its CurveZMQ key pair and an allow-list folder under one keys folder
(`var/keys` beside the ledger by default): `planner.key` (public, handed to labs),
`planner.key_secret`, and `admitted/LAB_ID.key`, one public certificate per admitted lab.
`cosmolocal planner admit LAB.key` adds one; the running planner sees it at the next connection.

libzmq asks the ZAP handler (RFC 27, on `inproc://zeromq.zap.01`) about every CURVE handshake:
- the key must be admitted (on the mesh's ROUTER and the field's PUB alike); an unknown key's
  handshake fails and nothing of it reaches the mesh;
- an admitted key's connection carries its lab id as ZAP User-Id on every frame, and the key
  itself as the `X-Key` property. The mesh knows the lab by that, never by what the frames claim: a
  known key claiming another lab's id is refused and logged there (`planner.mesh`);
- the mesh checks every frame's key against the folder (re-read at most every `RECHECK_S`), so a
  revoked key (`cosmolocal planner revoke`, or a lab admitted again with a new key) is cut off on its
  live connection too, not only at its next handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.asyncio

from protocol import security

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
PLANNER_KEY_NAME = "planner"
#: The connection property (ZAP metadata) that carries the key a connection was admitted with.
KEY_PROPERTY = "X-Key"
#: Seconds between two reads of the admitted folder for the mesh's per-frame check.
RECHECK_S = 0.5
_LAB_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class AdmissionError(ValueError):
    """A lab cannot be admitted (names the file or lab and the reason)."""


def planner_keys(keys_dir: Path) -> tuple[security.KeyPair, bool]:
    """The planner's key pair from `keys_dir`, created on first use; True when it was just created."""
    secret_file = keys_dir / f"{PLANNER_KEY_NAME}.key_secret"
    created = False
    if not secret_file.exists():
        security.create_keypair(keys_dir, PLANNER_KEY_NAME, {"role": "planner"})
        created = True
    return security.load_keypair(secret_file), created


class Admissions:
    """The allow-list folder: `LAB_ID.key` per admitted lab (see the module docstring)."""

    def __init__(self, folder: Path, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.folder = folder
        self.monotonic = monotonic
        self._by_key: dict[bytes, str] = {}
        self._seen: dict[str, float] = {}
        self._read_at = -float("inf")
        #: True while `watch` re-reads the folder in a worker thread: `holds` then reads only that.
        self._watched = False

    def admit(self, cert_file: Path, lab_id: str | None = None) -> str:
        """Admit the lab whose public certificate is `cert_file`; return its lab id.

        The lab id comes from `lab_id`, else from the certificate's `lab-id` metadata (written by
        `cosmolocal node init`). Admitting a lab again replaces its key (a new laptop, a lost key).
        """
        public = security.load_public(cert_file)
        lab = lab_id or security.metadata(cert_file).get("lab-id")
        if not lab:
            raise AdmissionError(f"{cert_file}: the certificate names no lab; give --lab LAB_ID")
        if not _LAB_ID.match(lab):
            raise AdmissionError(f"lab id {lab!r}: lower-case letters, digits, - _ . (at most 64)")
        for other, key in self._scan().items():
            if key == public and other != lab:
                raise AdmissionError(f"{cert_file}: this key is already admitted for lab {other!r}")
        security.write_public(self.folder / f"{lab}.key", public, {"lab-id": lab})
        return lab

    def revoke(self, lab_id: str) -> bool:
        """Remove a lab's key; its next connection is refused. False when it was not admitted."""
        path = self.folder / f"{lab_id}.key"
        if not path.exists():
            return False
        path.unlink()
        return True

    def admitted(self) -> dict[str, bytes]:
        """Lab id -> public key, as the folder holds them now."""
        return self._scan()

    def lab_of(self, public: bytes) -> str | None:
        """The lab a key was admitted for, or None.

        A key admitted at the last look is taken from it, as `holds` does (a revoked key is refused
        from the next look on, RECHECK_S at most); only an unknown key has the folder read again,
        at once, so a lab admitted a moment ago is let in. A thousand labs joining at once with keys
        known cost no look at a thousand files each (a glob and a stat per key, on the event loop).
        """
        if not self._watched and self.monotonic() - self._read_at >= RECHECK_S:
            self._refresh()
        lab = self._by_key.get(public)
        if lab is None:
            self._refresh()
            lab = self._by_key.get(public)
        return lab

    def holds(self, lab_id: str, public: bytes) -> bool:
        """True while `public` is still the admitted key of `lab_id` (for every frame: the folder is
        looked at no more often than every RECHECK_S)."""
        if not self._watched and self.monotonic() - self._read_at >= RECHECK_S:
            self._refresh()
        return self._by_key.get(public) == lab_id

    async def watch(self, stop: asyncio.Event) -> None:
        """Re-read the folder every RECHECK_S in a worker thread until `stop` is set.

        `holds` runs for every frame on the planner's event loop; its look at the folder (a glob and
        a stat per key) took up to 0.57 s there when the disk was busy (chaos runs, load 19). While
        this runs, `holds` only reads what the last look found, which a look replaces whole.
        """
        self._watched = True
        try:
            while not stop.is_set():
                await asyncio.to_thread(self._refresh)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), RECHECK_S)
        finally:
            self._watched = False

    def _refresh(self) -> None:
        """Read the folder again when a key file was added, removed or rewritten since the last look.

        One `scandir` and a stat per file (a glob and a `Path.stat` per file cost four times the CPU:
        at 1,000 admitted labs, 17 ms every RECHECK_S, a thirtieth of a core for nothing new)."""
        self._read_at = self.monotonic()
        try:
            with os.scandir(self.folder) as entries:
                seen = {e.name: e.stat().st_mtime_ns for e in entries if e.name.endswith(".key")}
        except OSError:
            seen = {}
        if seen != self._seen:
            self._seen = seen
            self._by_key = {key: lab for lab, key in self._scan().items()}

    def _scan(self) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob("*.key")):
            try:
                found[path.stem] = security.load_public(path)
            except security.KeyFileError as exc:
                log.error("ignoring %s in the admitted folder: %s", path, exc)
        return found


@dataclass
class ZapStats:
    """What the authenticator decided, for /health."""

    accepted: int = 0
    unknown_keys: int = 0
    refused_by_key: Counter[str] = field(default_factory=Counter)


class ZapHandler:
    """Answers libzmq's ZAP requests for the planner's sockets (see the module docstring).

    Start it (`await start()`) before binding the CURVE sockets: with no handler bound, libzmq
    would let every CURVE client in.
    """

    def __init__(self, ctx: zmq.asyncio.Context, admissions: Admissions) -> None:
        self.admissions = admissions
        self.stats = ZapStats()
        self._sock = ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(ZAP_ENDPOINT)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Serve ZAP requests in a task of the running loop."""
        self._task = asyncio.create_task(self._serve(), name="zap")

    async def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sock.close(linger=0)

    async def _serve(self) -> None:
        while True:
            frames = await self._sock.recv_multipart()
            try:
                reply = self.judge(frames)
            except Exception:  # a bug here must not let anyone in, nor stop the planner
                log.exception("ZAP request could not be judged; refusing it")
                reply = None
            if reply is not None:
                await self._sock.send_multipart(reply)

    def judge(self, frames: list[bytes]) -> list[bytes] | None:
        """The reply to one ZAP request (RFC 27); None for a request too malformed to answer."""
        try:
            split = frames.index(b"")
        except ValueError:
            return None
        envelope, request = frames[: split + 1], frames[split + 1 :]
        if len(request) < 6:
            return None
        version, request_id, _domain, address, _identity, mechanism = request[:6]
        credentials = request[6:]

        def answer(code: bytes, text: str, user: str = "", metadata: bytes = b"") -> list[bytes]:
            return [*envelope, version, request_id, code, text.encode(), user.encode(), metadata]

        if mechanism != b"CURVE" or not credentials:
            return answer(b"400", "CURVE required")
        key = zmq.utils.z85.encode(credentials[0])
        lab = self.admissions.lab_of(key)
        where = address.decode(errors="replace")
        if lab is None:
            self.stats.unknown_keys += 1
            if self._first_refusal(key):
                log.warning(
                    "refused a connection from %s: key %s is not admitted (the lab's operator sends "
                    "its .key file; admit it with `cosmolocal planner admit LAB.key`)",
                    where,
                    key.decode(),
                )
            return answer(b"400", "key not admitted")
        self.stats.accepted += 1
        return answer(b"200", "OK", lab, zap_metadata({KEY_PROPERTY: key}))

    def _first_refusal(self, key: bytes) -> bool:
        """Count a refusal of `key`; True for its first (logged; later ones are only counted)."""
        self.stats.refused_by_key[key.decode()] += 1
        return self.stats.refused_by_key[key.decode()] == 1


def zap_metadata(properties: dict[str, bytes]) -> bytes:
    """ZAP reply metadata (RFC 27: ZMTP properties): each name's length, name, value's length, value."""
    out = bytearray()
    for name, value in properties.items():
        encoded = name.encode()
        out += bytes([len(encoded)]) + encoded + len(value).to_bytes(4, "big") + value
    return bytes(out)
