"""The vocabulary of DESIGN.md section 2 as typed, validated records.

Every part of Cosmolocal speaks in these records: the lab file, the wire, the HTTP API, the solver.
They are immutable and validated on construction, so a record that exists is a record that makes
sense (coordinates on Earth, positive quantities, known priorities); errors name the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

PRIORITIES: tuple[str, ...] = ("routine", "urgent", "emergency")
Priority = Literal["routine", "urgent", "emergency"]

#: Identifiers travel in URLs, file names and ZeroMQ identities: keep them plain.
ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
#: A process, material or tag name: lower-case words.
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.+-]{0,63}$")]
TagValue = bool | int | float | str


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone (UTC, ISO 8601 such as 2026-05-01T12:00:00Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:30+01:00 falls before the first instant a date holds in UTC, and
        # 9999-12-31T23:30-01:00 after the last: both are valid ISO 8601, and within a day of the
        # calendar's ends, so each is kept as that end rather than refused.
        return datetime.min.replace(tzinfo=UTC) if value.year == 1 else datetime.max.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]


class Record(BaseModel):
    """Base of every record: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Location(Record):
    """A point on Earth (WGS84 degrees) with an optional human-readable place name."""

    lat: float = Field(ge=-90.0, le=90.0, description="latitude in degrees")
    lon: float = Field(ge=-180.0, le=180.0, description="longitude in degrees")
    place: str | None = Field(default=None, max_length=200, description="city or site name")


class Machine(Record):
    """One machine of a lab: what it can do, how fast, how long each day, and its tags."""

    id: Identifier
    processes: list[Name] = Field(min_length=1)
    speed: float = Field(default=1.0, gt=0.0, le=100.0, description="1.0 = the design's nominal minutes")
    hours_per_day: float = Field(default=8.0, gt=0.0, le=24.0)
    tags: dict[Name, TagValue] = Field(default_factory=dict)

    def minutes_per_day(self) -> float:
        """Nominal (speed-adjusted) minutes of work this machine offers per day."""
        return self.hours_per_day * 60.0 * self.speed

    def satisfies(self, requirements: dict[str, TagValue]) -> bool:
        """True when every required tag is met: numbers are minimums, other values must be equal."""
        for tag, wanted in requirements.items():
            have = self.tags.get(tag)
            if have is None:
                return False
            if isinstance(wanted, bool) or isinstance(have, bool) or isinstance(wanted, str):
                if have != wanted:
                    return False
            elif not isinstance(have, int | float) or have < wanted:
                return False
        return True


class Lab(Record):
    """A node of the mesh: a fablab, makerspace or hospital workshop (an OKW facility)."""

    id: Identifier
    name: str = Field(min_length=1, max_length=200)
    location: Location
    machines: list[Machine] = Field(min_length=1)
    stock: dict[Name, float] = Field(default_factory=dict, description="material -> amount in its unit")
    public_key: str | None = Field(default=None, max_length=100)

    @field_validator("stock")
    @classmethod
    def _stock_not_negative(cls, stock: dict[str, float]) -> dict[str, float]:
        for material, amount in stock.items():
            if amount < 0:
                raise ValueError(f"stock of {material!r} is {amount}; it cannot be negative")
        return stock

    @model_validator(mode="after")
    def _machine_ids_unique(self) -> Lab:
        ids = [m.id for m in self.machines]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"machine ids must be unique; repeated: {', '.join(duplicates)}")
        return self

    def processes(self) -> set[str]:
        """Every process some machine of this lab offers."""
        return {p for m in self.machines for p in m.processes}


class Material(Record):
    """A consumable and the unit its amounts are counted in."""

    id: Name
    unit: str = Field(min_length=1, max_length=20)
    name: str = ""


class Step(Record):
    """One fabrication step of one unit of a design."""

    process: Name
    minutes: float = Field(gt=0.0, le=7 * 24 * 60, description="nominal minutes per unit")
    materials: dict[Name, float] = Field(default_factory=dict, description="material -> amount per unit")
    requires: dict[Name, TagValue] = Field(
        default_factory=dict, description="machine tags needed: numbers are minimums, others must equal"
    )
    note: str = ""

    def can_run_on(self, machine: Machine) -> bool:
        """True when this machine offers the process and meets the required tags."""
        return self.process in machine.processes and machine.satisfies(self.requires)


class Design(Record):
    """An open design (Open Know-How style): what it is, its licence and source, and its steps."""

    id: Identifier
    name: str = Field(min_length=1, max_length=200)
    version: str = "1.0"
    licence: str = Field(min_length=1, max_length=100, description="SPDX identifier or licence name")
    source: str = Field(min_length=1, max_length=500, description="where the design files are published")
    description: str = ""
    steps: list[Step] = Field(min_length=1)
    references: list[str] = Field(default_factory=list, description="public sources of the figures")

    def minutes_per_unit(self) -> float:
        """Nominal machine minutes one unit needs, all steps together."""
        return sum(s.minutes for s in self.steps)

    def materials_per_unit(self) -> dict[str, float]:
        """Material -> amount one unit consumes, all steps together."""
        total: dict[str, float] = {}
        for step in self.steps:
            for material, amount in step.materials.items():
                total[material] = total.get(material, 0.0) + amount
        return total

    def processes(self) -> set[str]:
        """Every process this design needs."""
        return {s.process for s in self.steps}


class OrderRequest(Record):
    """What a requester asks for. Carries no personal data: a place, not a person."""

    design: Identifier
    quantity: int = Field(gt=0, le=1_000_000)
    due_at: UtcDatetime
    delivery: Location
    priority: Priority = "routine"
    accepts_licences: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="licences the requester accepts (SPDX ids or names as the catalogue spells them); "
        "empty accepts any",
    )


ORDER_STATES: tuple[str, ...] = ("open", "planned", "in_progress", "done", "cancelled")
OrderState = Literal["open", "planned", "in_progress", "done", "cancelled"]


class Order(Record):
    """An accepted order, as the planner keeps it."""

    id: Identifier
    design: Identifier
    quantity: int = Field(gt=0)
    due_at: UtcDatetime
    delivery: Location
    priority: Priority = "routine"
    accepts_licences: list[str] = Field(default_factory=list, max_length=50)
    created_at: UtcDatetime
    state: OrderState = "open"


class CostTerms(Record):
    """Why an allocation costs what it costs: the terms of the objective, per allocation."""

    km: float = Field(ge=0.0, description="great-circle distance lab -> delivery")
    transport: float = Field(ge=0.0, description="transport cost term (unit-km weighted)")
    setup: float = Field(default=0.0, ge=0.0)
    lateness: float = Field(default=0.0, ge=0.0)
    trail: float = Field(default=0.0, description="discount from the design x lab trail (<= 0)")
    capacity: float = Field(
        default=0.0,
        ge=0.0,
        description="what the lab's minutes these units take are worth to the demand known to be "
        "coming, beyond the capable lab where they are worth least (solver.large.bid_prices)",
    )
    time: float = Field(
        default=0.0,
        ge=0.0,
        description="days until the units are planned to arrive, weighted by priority (a late "
        "emergency unit's days past its due date weigh three times)",
    )

    @property
    def total(self) -> float:
        """The allocation's share of the plan's objective."""
        return self.transport + self.setup + self.lateness + self.trail + self.capacity + self.time


class Allocation(Record):
    """One line of a plan: `quantity` units of an order made at a lab, with its cost terms."""

    order_id: Identifier
    lab_id: Identifier
    quantity: int = Field(gt=0)
    cost: CostTerms
    late_units: int = Field(default=0, ge=0, description="units planned to arrive after the due date")
    early_units: int = Field(
        default=0,
        ge=0,
        description="units planned to be made by the plan's first time checkpoint (a day by default): the "
        "work to start now; the rest may still move at the next re-plan",
    )
    arrive_by: UtcDatetime | None = Field(
        default=None, description="when the last of these units is planned to reach the delivery point"
    )
    received: dict[Name, float] = Field(
        default_factory=dict,
        description="material -> amount of it these units use that reaches the lab by a transfer "
        "(see Transfer); the rest comes from the lab's own stock",
    )

    @field_validator("received")
    @classmethod
    def _received_positive(cls, received: dict[str, float]) -> dict[str, float]:
        for material, amount in received.items():
            if amount <= 0:
                raise ValueError(f"received amount of {material!r} is {amount}; it must be positive")
        return received


class Transfer(Record):
    """Material a plan ships from a lab that has more than its own work needs to a lab whose machines
    would otherwise idle: its own distance, cost and lead time.

    The receiving lab may use it only from `arrive_at` on: work that uses it is planned to finish no
    earlier. Its cost is in the plan's cost units (see `solver.model.objective`).
    """

    material: Name
    from_lab: Identifier
    to_lab: Identifier
    quantity: float = Field(gt=0.0, description="amount of material, in the material's unit")
    km: float = Field(ge=0.0, description="great-circle distance sender -> receiver")
    ship_at: UtcDatetime
    arrive_at: UtcDatetime
    cost: float = Field(ge=0.0, description="distance x quantity term plus the fixed handling term")

    @model_validator(mode="after")
    def _coherent(self) -> Transfer:
        if self.from_lab == self.to_lab:
            raise ValueError(f"from_lab and to_lab are both {self.from_lab!r}; a transfer joins two labs")
        if self.arrive_at < self.ship_at:
            raise ValueError("arrive_at must not be before ship_at")
        return self


class Shortage(Record):
    """Units of an order no lab can make in time: reported, never hidden."""

    order_id: Identifier
    quantity: int = Field(gt=0)
    reason: str


class Plan(Record):
    """A set of allocations with its objective, lower bound and solve statistics."""

    version: int = Field(ge=0)
    allocations: list[Allocation] = Field(default_factory=list)
    shortages: list[Shortage] = Field(default_factory=list)
    transfers: list[Transfer] = Field(
        default_factory=list, description="material shipped between labs for the allocations' work"
    )
    objective: float
    bound: float
    bound_scope: Literal["model", "all"] = Field(
        default="model",
        description=(
            "what `bound` covers: 'all', no valid plan on any labs without material transfers costs "
            "less; 'model', no plan of the "
            "model as the solver posed it does (each order's candidate labs, due dates grouped per "
            "lab), and a plan outside it could cost less; the emergency fast path and plans that ship "
            "material between labs report that"
        ),
    )
    status: str = Field(
        description="OPTIMAL (the objective meets the bound, in its scope), FEASIBLE, or EMPTY when there "
        "was nothing to plan"
    )
    solve_seconds: float = Field(ge=0.0)
    transfers_considered: bool = Field(
        default=False,
        description="whether the path that made the plan could ship material between labs: the one-model "
        "path and the emergency fast path do when `transfer_radius_km` > 0; the large path (above "
        "`decompose_above` demands) never does, so its plan may leave short or late units that a "
        "transfer would have served (docs/transfers.md)",
    )

    @property
    def gap(self) -> float:
        """Relative gap between objective and lower bound (0 when proven optimal)."""
        if self.objective <= 0:
            return 0.0
        return max(0.0, (self.objective - self.bound) / abs(self.objective))


JOB_STATES: tuple[str, ...] = ("assigned", "accepted", "refused", "running", "done", "failed")
JobState = Literal["assigned", "accepted", "refused", "running", "done", "failed"]


def utcnow() -> datetime:
    """The current time in UTC; the one place the wall clock is read for records."""
    return datetime.now(UTC)
