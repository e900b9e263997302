"""One record type per message kind of the mesh protocol (see SPEC.md).

The envelope (`Envelope`) carries version, kind, sender, sequence and epoch; the body is one of the
records below, chosen by kind. `BODY_TYPES` is the single table the codec dispatches on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field

from protocol.model import Design, Identifier, Lab, Location, Name, Priority, Record, UtcDatetime

PROTOCOL_VERSION = 1


class Body(Record):
    """Base of every message body."""


# --- lab -> planner (DEALER -> ROUTER) ---------------------------------------------------------


class Hello(Body):
    """A lab introduces itself: its full description (an OKW-style facility record)."""

    lab: Lab
    #: Where the lab's agent stands after a restart: machine backlog in nominal minutes.
    backlog_minutes: dict[Identifier, float] = Field(default_factory=dict)


class Capacity(Body):
    """The lab's machines' queued work, in nominal minutes not yet done; sent on change."""

    backlog_minutes: dict[Identifier, float]


class Stock(Body):
    """The lab's free stock per material (reserved amounts already taken off); sent on change."""

    stock: dict[Name, float]


class Heartbeat(Body):
    """Liveness, both ways; from the planner it also names the lab's work it still counts on.

    `active` (planner to lab only) lists the assignments the planner holds this lab to. A job the
    lab runs that is missing from a newer heartbeat was withdrawn (the lab was lost, its lease
    lapsed, or the order was covered): the lab stops it and reports what it made. A job the lab has
    ended but that is still listed gets its DONE or FAILED again (the first may have been lost).
    None means "no judgement" (a lab's own heartbeat).

    `ended` (planner to lab only) acknowledges the DONE and FAILED the planner recorded since its
    last heartbeat to this lab: the lab repeats an end until it is acknowledged, because a planner
    that had already ended the job itself would otherwise never learn the units made last.

    `heard` (planner to lab only) is the envelope `seq` of the latest lab HEARTBEAT the planner
    read. It is the lab's work lease: the lab works until 2 heartbeat intervals after it *sent*
    that heartbeat, and the planner gives the lab up no sooner than 3 intervals after it *read* it,
    so a lab never works on what the planner may already have handed to others, however the link
    delays or drops frames in either direction.

    `promise` (lab to planner only): per job under way, the most units it will have made when the
    lease this heartbeat earns ends; the lab stops before making more until a newer one is heard.
    If the planner loses the lab, it holds those units out of re-plans until the lab reports.
    """

    active: list[Identifier] | None = None
    ended: list[Identifier] | None = None
    heard: int | None = Field(default=None, ge=0)
    promise: dict[Identifier, Annotated[int, Field(ge=0)]] | None = None


class Accept(Body):
    """The lab takes an assignment and will execute it."""

    assignment_id: Identifier
    eta: UtcDatetime | None = None


class Refuse(Body):
    """The lab declines an assignment; its units go back to demand."""

    assignment_id: Identifier
    reason: str = Field(min_length=1, max_length=500)


class Progress(Body):
    """Units of an assignment finished so far."""

    assignment_id: Identifier
    units_done: int = Field(ge=0)
    eta: UtcDatetime | None = None


class Done(Body):
    """Every unit of an assignment is made."""

    assignment_id: Identifier
    units_done: int = Field(ge=0)


class Failed(Body):
    """An assignment stopped before the end; units not done go back to demand."""

    assignment_id: Identifier
    units_done: int = Field(ge=0)
    reason: str = Field(min_length=1, max_length=500)


class Bye(Body):
    """The lab leaves the mesh on purpose."""

    reason: str = ""


class Shipped(Body):
    """The lab sent the material of a SHIP: it is off its free stock and on the road (SPEC.md 11)."""

    transfer_id: Identifier


class ShipRefused(Body):
    """The lab will not ship a transfer (not enough free stock, ...); the planner re-plans."""

    transfer_id: Identifier
    reason: str = Field(min_length=1, max_length=500)


class Arrived(Body):
    """Material announced by INCOMING reached the lab and joined its free stock."""

    transfer_id: Identifier


# --- planner -> lab (ROUTER -> DEALER) ---------------------------------------------------------


class DemandTrace(Record):
    """Unmet demand at a delivery place: what the field shows every lab."""

    order_id: Identifier
    design: Identifier
    location: Location
    unmet: int = Field(ge=0)
    priority: Priority


class CapacityTrace(Record):
    """A lab's free capacity, as the field shows it."""

    lab_id: Identifier
    location: Location
    free_minutes_per_day: float = Field(ge=0.0)
    live: bool = True


class Field_(Body):
    """The stigmergic field: demand and capacity traces (a whole snapshot, versioned by seq)."""

    demand: list[DemandTrace] = Field(default_factory=list)
    capacity: list[CapacityTrace] = Field(default_factory=list)


class Welcome(Body):
    """The planner admits a lab: its epoch, heartbeat period and the field to start from."""

    epoch: int = Field(ge=0)
    heartbeat_ms: int = Field(gt=0)
    field_endpoint: str
    field_seq: int = Field(ge=0)
    field: Field_
    #: The lab's assignments the planner still counts on, as in HEARTBEAT.
    active: list[Identifier] | None = None


class Assign(Body):
    """A job for the lab: make `quantity` units of `design` for an order. Idempotent by id."""

    assignment_id: Identifier
    order_id: Identifier
    design: Design
    quantity: int = Field(gt=0)
    due_at: UtcDatetime
    delivery: Location
    priority: Priority


class Decide(Body):
    """A lab operator's decision on an assignment the lab holds as offered (manual mode).

    The planner forwards it from the operator's page. `accept` true: the lab runs its usual accept
    path (which may still refuse, for stock, with its own reason); false: the lab sends REFUSE with
    `reason`. For an assignment already answered, the lab repeats its first answer.
    """

    assignment_id: Identifier
    accept: bool
    reason: str = Field(default="", max_length=500)


class WorkReport(Body):
    """A lab operator's report of work done by hand on a job under way (SPEC.md section 9).

    The planner forwards it from the operator's page; the lab counts it like `cosmolocal node
    report` (`made` units made; `failed` units failed, which ends the job as FAILED with `reason`).
    """

    assignment_id: Identifier
    made: int = Field(default=0, ge=0, le=1_000_000)
    failed: int = Field(default=0, ge=0, le=1_000_000)
    reason: str = Field(default="", max_length=400)


class Ship(Body):
    """The plan has this lab send `quantity` of `material` to `to_lab`, expected there at
    `arrive_at`. Idempotent by `transfer_id`: a duplicate gets the first answer, never a second parcel."""

    transfer_id: Identifier
    material: Name
    quantity: float = Field(gt=0.0, le=1e9, allow_inf_nan=False)
    to_lab: Identifier
    arrive_at: UtcDatetime


class Incoming(Body):
    """Material shipped to this lab is on its way; it joins the free stock at `arrive_at`, not before."""

    transfer_id: Identifier
    material: Name
    quantity: float = Field(gt=0.0, le=1e9, allow_inf_nan=False)
    from_lab: Identifier
    arrive_at: UtcDatetime


ErrorCode = Literal["malformed", "not_welcomed", "invalid", "rate_limited"]


class Error(Body):
    """The planner tells a lab that one of its messages was rejected, and why.

    `code` is for programs: `malformed` (the frame failed the codec), `not_welcomed` (say HELLO
    first: the planner lost or forgot this lab), `invalid` (well-formed but not acceptable, such as
    an unknown assignment or another lab's id), `rate_limited` (the lab sends faster than the
    planner's per-lab limit; the message was dropped). `reason` is for people.
    """

    reason: str
    code: ErrorCode = "malformed"
    ref_seq: int | None = None


BODY_TYPES: dict[str, type[Body]] = {
    "HELLO": Hello,
    "CAPACITY": Capacity,
    "STOCK": Stock,
    "HEARTBEAT": Heartbeat,
    "ACCEPT": Accept,
    "REFUSE": Refuse,
    "PROGRESS": Progress,
    "DONE": Done,
    "FAILED": Failed,
    "BYE": Bye,
    "SHIPPED": Shipped,
    "SHIP_REFUSED": ShipRefused,
    "ARRIVED": Arrived,
    "WELCOME": Welcome,
    "ASSIGN": Assign,
    "DECIDE": Decide,
    "REPORT": WorkReport,
    "SHIP": Ship,
    "INCOMING": Incoming,
    "ERROR": Error,
    "FIELD": Field_,
}
KIND_OF: dict[type[Body], str] = {body_type: kind for kind, body_type in BODY_TYPES.items()}


@dataclass(frozen=True, slots=True)
class Envelope:
    """A whole message: who sent it, its kind and sequence number, and its body."""

    sender: str
    seq: int
    body: Body
    epoch: int = 0
    version: int = field(default=PROTOCOL_VERSION)

    @property
    def kind(self) -> str:
        """The message kind, derived from the body's type."""
        return KIND_OF[type(self.body)]
