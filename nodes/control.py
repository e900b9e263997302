"""The lab's control socket: its operator (or a scenario) tells the running agent what changed here.

A lab knows things the planner cannot see: a delivery of material arrived, a material was lost, a
machine broke down or works again. `cosmolocal node join --control ipc://PATH` binds a local socket
for these; `cosmolocal node control ipc://PATH ...` (or `send_control`) sends one request and waits
for the answer. The agent applies the change to its job book (`nodes.workshop`), stops the jobs it
can no longer finish (FAILED, with the units made), and tells the planner: STOCK for the stock, a
new HELLO with the working machines when machines change.

One request is one JSON object, every field optional::

    {"supply": {"resin": 0.1}, "lose": ["petg"], "down": ["sla-1"], "up": ["sla-1"]}

The answer is ``{"ok": true, "stock": {...}, "down": [...]}`` or ``{"ok": false, "error": "..."}``
naming the field and the reason. Only `ipc://` endpoints are taken: the socket is a file on the
lab's machine, reachable by whoever may write there, never from the network.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import zmq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.errors import describe_validation_error
from protocol.model import Identifier, Name

#: The largest request taken (bytes); anything longer is refused unread.
MAX_REQUEST_BYTES = 64 * 1024


class ControlError(ValueError):
    """A control request or endpoint that cannot be used; the text names the field and the reason."""


class ControlRequest(BaseModel):
    """What changed at the lab (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    supply: dict[Name, Annotated[float, Field(gt=0.0)]] = Field(
        default_factory=dict, description="material -> amount that arrived, in the material's unit"
    )
    lose: list[Name] = Field(default_factory=list, description="materials lost entirely (free and reserved)")
    down: list[Identifier] = Field(default_factory=list, description="machines that stopped working")
    up: list[Identifier] = Field(default_factory=list, description="machines that work again")


def check_endpoint(endpoint: str) -> str:
    """The endpoint if it is a local `ipc://` one; else ControlError saying why."""
    if not endpoint.startswith("ipc://") or len(endpoint) <= len("ipc://"):
        raise ControlError(f"{endpoint!r}: expected a local socket such as ipc:///run/lab.control")
    return endpoint


def parse_request(frame: bytes) -> ControlRequest:
    """Decode one request; ControlError naming the field and the reason when it is not one."""
    if len(frame) > MAX_REQUEST_BYTES:
        raise ControlError(f"request of {len(frame)} bytes exceeds {MAX_REQUEST_BYTES}")
    try:
        raw = json.loads(frame)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(f"not a JSON object: {exc}") from None
    if not isinstance(raw, dict):
        raise ControlError(f"not a JSON object: got {type(raw).__name__}")
    try:
        return ControlRequest.model_validate(raw)
    except ValidationError as exc:
        raise ControlError(describe_validation_error(exc)) from None


def send_control(
    endpoint: str, request: ControlRequest, timeout_s: float = 2.0, context: zmq.Context | None = None
) -> dict[str, Any]:
    """Send one request to a lab agent's control socket and return its answer.

    Raises TimeoutError when no answer comes within `timeout_s` (no agent listens there, or it is
    stopped), ControlError for a bad endpoint.
    """
    check_endpoint(endpoint)
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send_multipart([b"", request.model_dump_json(exclude_defaults=True).encode()])
        if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise TimeoutError(f"no answer from the lab agent at {endpoint} within {timeout_s:g} s")
        frames = sock.recv_multipart()
        return dict(json.loads(frames[-1]))
    finally:
        sock.close(linger=0)
