"""msgpack codec for mesh messages: versioned, size-limited, validated.

`decode` is the only door from the network into the process: whatever the bytes, it returns an
`Envelope` or raises `ProtocolError`, never anything else. Nothing is pickled or evaluated.
"""

from __future__ import annotations

from typing import Any

import msgpack
from pydantic import ValidationError

from protocol.errors import ProtocolError, describe_validation_error
from protocol.messages import BODY_TYPES, KIND_OF, PROTOCOL_VERSION, Envelope

#: Largest frame accepted or produced, in bytes; an ASSIGN with a full design is a few KiB.
MAX_FRAME_BYTES = 256 * 1024
_ENVELOPE_KEYS = frozenset({"v", "kind", "sender", "seq", "epoch", "body"})
_MAX_SEQ = 2**63 - 1


def encode(message: Envelope, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """Serialise a message to one msgpack frame; refuses to produce a frame over `max_bytes`."""
    frame = msgpack.packb(
        {
            "v": message.version,
            "kind": KIND_OF[type(message.body)],
            "sender": message.sender,
            "seq": message.seq,
            "epoch": message.epoch,
            "body": message.body.model_dump(mode="json", exclude_defaults=False),
        },
        use_bin_type=True,
    )
    if len(frame) > max_bytes:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds the limit of {max_bytes} bytes")
    return frame


def decode(frame: bytes, max_bytes: int = MAX_FRAME_BYTES) -> Envelope:
    """Parse and validate one frame. Raises `ProtocolError` naming the problem on any bad input."""
    return _envelope_from(unpack_frame(frame, max_bytes))


def unpack_frame(frame: bytes, max_bytes: int = MAX_FRAME_BYTES) -> Any:
    """The msgpack value of one frame from the network, of at most `max_bytes`; any bad input raises
    `ProtocolError` naming the problem. Shared by the lab mesh and the peer mesh."""
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise ProtocolError(f"frame must be bytes, got {type(frame).__name__}")
    if len(frame) > max_bytes:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        return msgpack.unpackb(bytes(frame), raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(f"not a msgpack frame: {type(exc).__name__}") from None


def _envelope_from(raw: Any) -> Envelope:
    if not isinstance(raw, dict):
        raise ProtocolError(f"frame must be a map, got {type(raw).__name__}")
    keys = set(raw)
    if keys != _ENVELOPE_KEYS:
        missing = sorted(str(k) for k in _ENVELOPE_KEYS - keys)
        extra = sorted(str(k) for k in keys - _ENVELOPE_KEYS)
        raise ProtocolError(f"envelope fields wrong: missing {missing}, unexpected {extra}")
    version = raw["v"]
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(f"v: protocol version {version!r} not supported (speaks {PROTOCOL_VERSION})")
    kind = raw["kind"]
    if not isinstance(kind, str) or kind not in BODY_TYPES:
        raise ProtocolError(f"kind: unknown message kind {kind!r}")
    sender = raw["sender"]
    if not isinstance(sender, str) or not 0 < len(sender) <= 64:
        raise ProtocolError("sender: must be a non-empty string of at most 64 characters")
    for name in ("seq", "epoch"):
        value = raw[name]
        if type(value) is not int or not 0 <= value <= _MAX_SEQ:
            raise ProtocolError(f"{name}: must be a non-negative integer")
    body = raw["body"]
    if not isinstance(body, dict):
        raise ProtocolError(f"body: must be a map, got {type(body).__name__}")
    try:
        parsed = BODY_TYPES[kind].model_validate(body)
    except ValidationError as exc:
        raise ProtocolError(f"{kind} {describe_validation_error(exc, 'body')}") from None
    except Exception as exc:  # a validator must never take the process down
        raise ProtocolError(f"{kind} body invalid: {type(exc).__name__}") from None
    return Envelope(sender=sender, seq=raw["seq"], epoch=raw["epoch"], body=parsed, version=version)
