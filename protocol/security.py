"""CurveZMQ keys for the mesh: who may speak, proven by a key pair (SPEC.md section 8).

Keys live in ZeroMQ's certificate files (ZPL text, as `zmq.auth` reads them): `NAME.key` holds the
public key and may be shared; `NAME.key_secret` also holds the secret key and never leaves its
host (it is written readable by its owner only). A lab's certificate names the lab in its metadata
(`lab-id`), so that admitting it binds the key to that lab.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import zmq
import zmq.auth
import zmq.utils.z85

#: A Z85-encoded CURVE key is 40 characters.
Z85_KEY_LENGTH = 40
#: Socket-monitor events of a failed handshake (libzmq reports CURVE refusals nowhere else).
HANDSHAKE_FAILURES = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_METADATA_LINE = re.compile(r'^\s+([A-Za-z0-9_.-]+)\s*=\s*"([^"]*)"\s*$')


class KeyFileError(ValueError):
    """A key file is missing or unusable (the message names the file and the reason)."""


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair, Z85-encoded."""

    public: bytes
    secret: bytes


@dataclass(frozen=True)
class ClientKeys:
    """What a lab needs to speak CurveZMQ to a planner: its own pair and the planner's public key."""

    own: KeyPair
    server_public: bytes


def _certificate(public: bytes, secret: bytes | None, metadata: dict[str, str]) -> str:
    lines = [
        f"#   CurveZMQ {'secret' if secret else 'public'} certificate, written by cosmolocal on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "#   " + ("Keep this file on this host only." if secret else "Share this file freely."),
        "",
        "metadata",
        *(f'    {key} = "{value}"' for key, value in sorted(metadata.items())),
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def create_keypair(directory: Path, name: str, metadata: dict[str, str], overwrite: bool = False) -> Path:
    """Write `NAME.key` and `NAME.key_secret` (owner-only) in `directory`; return the public file."""
    directory.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not overwrite and (public_file.exists() or secret_file.exists()):
        raise KeyFileError(f"{public_file}: a key pair already exists here; keep it or remove it first")
    public, secret = zmq.curve_keypair()
    descriptor = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(_certificate(public, secret, metadata))
    public_file.write_text(_certificate(public, None, metadata), encoding="ascii")
    return public_file


def write_public(path: Path, public: bytes, metadata: dict[str, str]) -> None:
    """Write a public certificate (used when admitting a lab)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_certificate(public, None, metadata), encoding="ascii")


def load_keypair(secret_file: Path) -> KeyPair:
    """The key pair in a `.key_secret` file."""
    public, secret = _load(secret_file)
    if secret is None:
        raise KeyFileError(f"{secret_file}: holds no secret key (give the .key_secret file, not the .key)")
    return KeyPair(public, secret)


def load_public(value: str | Path) -> bytes:
    """A public key given as a certificate file or as its 40 Z85 characters."""
    text = str(value)
    if len(text) == Z85_KEY_LENGTH and not Path(text).exists():
        try:
            zmq.utils.z85.decode(text.encode())
        except (ValueError, KeyError):
            raise KeyFileError(f"{text!r}: neither a key file nor a Z85 public key") from None
        return text.encode()
    return _load(Path(text))[0]


def metadata(cert_file: Path) -> dict[str, str]:
    """The metadata of a certificate (e.g. the `lab-id` a lab's key was made for)."""
    found: dict[str, str] = {}
    section = ""
    for line in _read(cert_file).splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            section = line.strip()
        elif section == "metadata" and (match := _METADATA_LINE.match(line)):
            found[match.group(1)] = match.group(2)
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror}") from None


def _load(path: Path) -> tuple[bytes, bytes | None]:
    _read(path)
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: not a CurveZMQ certificate ({exc})") from None
    for key in (public, secret):
        if key is not None and len(key) != Z85_KEY_LENGTH:
            raise KeyFileError(f"{path}: a key is not {Z85_KEY_LENGTH} Z85 characters")
    return public, secret


def make_server(sock: zmq.Socket, keys: KeyPair, domain: str) -> None:
    """Make `sock` a CURVE server (before bind); the ZAP handler judges peers of `domain`."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())


def make_client(sock: zmq.Socket, keys: ClientKeys) -> None:
    """Make `sock` a CURVE client of the planner (before connect)."""
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.own.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.own.secret)
