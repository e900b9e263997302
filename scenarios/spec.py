"""The scenario file: a TOML description of a real situation to replay (labs, designs, demand, disruptions).

A scenario names where its labs are (generated at real cities from GeoNames, or read from an Open
Know-Where / fablabs.io file), which open designs are made, the demand over time (single orders, or
rates in units per day until a date, spread over delivery points such as hospitals), the disruptions
(labs lost, labs joining, stock running out, machines down) and the seed of every random choice.

Shape (every field is documented on the models below)::

    name = "visor-surge-fr"
    title = "..."
    seed = 7
    start = 2020-03-23T00:00:00Z
    days = 28
    round_hours = 24
    late_window_days = 7         # Cosmolocal may plan units up to this many days late (the planner's default)
    objective = "balanced"       # on-time, balanced or km: what a day sooner is worth in km
    sources = ["where the figures come from", ...]

    [labs]
    source = "cities"            # or "okw" with file = "PATH" (optionally machines_file, printers_file)
    country = "FR"
    count = 40
    [[labs.machines]]            # machine mix; count = [min, max] per lab, share = labs that have it
    id = "printer"
    processes = ["fdm"]
    count = [6, 18]
    hours_per_day = 10
    tags = { bed_mm = 250 }
    [labs.stock]                 # initial stock per lab, [min, max] drawn with the seed
    petg = [2.0, 5.0]
    [labs.restock_per_day]       # material reaching each lab per day (the supply chain)
    petg = 2.0

    [[demand]]
    design = "face-shield"
    kind = "rate"                # one order per point every `every_days`, `units_per_day` in total
    units_per_day = 3600
    until_day = 28
    due_days = 3
    priority = "urgent"
    at = { source = "cities", country = "FR", count = 30 }

    [[disruptions]]
    kind = "lab_lost"            # lab_lost, lab_joins, stock_out, machine_down
    day = 6
    until_day = 10
    count = 3

Every error names the file, the field and the reason (`ScenarioError`), so the file can be fixed
without reading code.
"""

from __future__ import annotations

import re
import tomllib
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocol.errors import ProtocolError, describe_validation_error
from protocol.model import Design, Identifier, Name, Priority, TagValue
from protocol.okh import catalogue, load_okh
from scenarios.geography import largest_cities
from solver.model.objective import DEFAULT_OBJECTIVE, Objective
from solver.model.problem import SolveParams

BUILTIN_DIR = Path(__file__).with_name("builtin")
#: Days ahead in which Cosmolocal plans what known rates will bring, unless a scenario says otherwise.
#: Off: one day ahead helped churn and valve-lombardy but cost visor-surge-fr up to 7.5 points of
#: on-time share (docs/rates.md).
FORECAST_DAYS = 0.0


class ScenarioError(ValueError):
    """A scenario file that cannot be read or does not describe a scenario; names file, field, reason."""


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone, for example 2020-03-23T00:00:00Z")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Range = tuple[float, float]
CountRange = tuple[int, int]


class MachineTemplate(_Model):
    """A kind of machine the generated labs have: how many per lab and in what share of labs."""

    id: Identifier = Field(description="machine id prefix; machines are numbered id-1, id-2, ...")
    processes: list[Name] = Field(min_length=1)
    count: int | CountRange = Field(default=1, description="machines per lab, or [min, max] drawn per lab")
    speed: float = Field(default=1.0, gt=0.0, le=100.0)
    hours_per_day: float = Field(default=8.0, gt=0.0, le=24.0)
    tags: dict[Name, TagValue] = Field(default_factory=dict)
    share: float = Field(default=1.0, ge=0.0, le=1.0, description="share of labs that have this machine")

    @model_validator(mode="after")
    def _count_range(self) -> MachineTemplate:
        low, high = (self.count, self.count) if isinstance(self.count, int) else self.count
        if low < 0 or high < low or high > 200:
            raise ValueError(
                f"count must be a number or [min, max] with 0 <= min <= max <= 200, got {self.count}"
            )
        return self


class Point(_Model):
    """One delivery point given by coordinates."""

    place: str = Field(min_length=1, max_length=200)
    lat: float = Field(ge=-90.0, le=90.0)
    lon: float = Field(ge=-180.0, le=180.0)
    weight: float = Field(default=1.0, gt=0.0, description="share of a rate this point receives")


class LabsSpec(_Model):
    """Where the labs are and what they have."""

    source: Literal["cities", "okw", "list"] = Field(
        default="cities",
        description="cities: at the largest cities (GeoNames); okw: from an OKW file; list: at `sites`",
    )
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166 alpha-2 code")
    count: int = Field(default=10, ge=1, le=3000, description="labs to place (okw: at most this many)")
    skip: int = Field(default=0, ge=0, description="cities passed over before the first lab")
    min_separation_km: float = Field(default=40.0, ge=0.0)
    file: str | None = Field(
        default=None, description="okw: OKW / fablabs.io JSON file (relative to this file)"
    )
    machines_file: str | None = Field(default=None, description="okw: fablabs.io geomachines CSV to join")
    printers_file: str | None = Field(
        default=None, description="okw: OKW 3D-printer catalogue CSV giving joined printers their bed"
    )
    sites: list[Point] = Field(default_factory=list, description="list: named places of the labs")
    machines: list[MachineTemplate] = Field(default_factory=list)
    stock: dict[Name, float | Range] = Field(default_factory=dict)
    restock_per_day: dict[Name, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> LabsSpec:
        if self.source == "okw" and not self.file:
            raise ValueError("source = 'okw' needs file = 'PATH' (an OKW or fablabs.io JSON file)")
        if self.source == "cities" and not self.country:
            raise ValueError("source = 'cities' needs country = 'XX'")
        if self.source == "list" and not self.sites:
            raise ValueError("source = 'list' needs sites = [{ place, lat, lon }, ...]")
        if self.source != "okw" and not self.machines:
            raise ValueError(f"labs from {self.source} need at least one [[labs.machines]] template")
        for material, value in self.stock.items():
            low, high = (value, value) if isinstance(value, int | float) else value
            if low < 0 or high < low:
                raise ValueError(f"stock.{material}: need 0 <= min <= max, got {value}")
        return self


class PointsSpec(_Model):
    """Delivery points: the largest cities of a country (weighted by population) or a list."""

    source: Literal["cities", "list"] = "cities"
    country: str = Field(default="FR", pattern=r"^[A-Z]{2}$")
    count: int = Field(default=1, ge=1, le=500)
    skip: int = Field(default=0, ge=0)
    min_separation_km: float = Field(default=40.0, ge=0.0)
    points: list[Point] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_points(self) -> PointsSpec:
        if self.source == "list" and not self.points:
            raise ValueError("source = 'list' needs points = [{ place, lat, lon }, ...]")
        return self


class DemandSpec(_Model):
    """Demand for one design: single orders at a day, or a rate in units per day until a day."""

    design: Identifier
    kind: Literal["rate", "order"] = "rate"
    at: PointsSpec
    priority: Priority = "routine"
    due_days: float = Field(gt=0.0, le=60.0, description="an order is due this many days after it is placed")
    units_per_day: float | None = Field(default=None, gt=0.0, description="rate: units per day, all points")
    from_day: float = Field(default=0.0, ge=0.0)
    until_day: float | None = Field(default=None, gt=0.0)
    ramp_days: float = Field(default=0.0, ge=0.0, description="rate: days to grow linearly to full rate")
    every_days: float = Field(default=1.0, gt=0.0, description="rate: one order per point this often")
    jitter: float = Field(default=0.3, ge=0.0, le=1.0, description="rate: +/- share of random variation")
    quantity: int | None = Field(default=None, gt=0, le=1_000_000, description="order: units per point")
    day: float = Field(default=0.0, ge=0.0, description="order: when it is placed")

    @model_validator(mode="after")
    def _kind_fields(self) -> DemandSpec:
        if self.kind == "rate" and self.units_per_day is None:
            raise ValueError("kind = 'rate' needs units_per_day")
        if self.kind == "order" and self.quantity is None:
            raise ValueError("kind = 'order' needs quantity")
        if self.until_day is not None and self.until_day <= self.from_day:
            raise ValueError(f"until_day ({self.until_day}) must come after from_day ({self.from_day})")
        return self


class Disruption(_Model):
    """Something going wrong (or a lab arriving) at a given day, for some labs, perhaps until a day."""

    kind: Literal["lab_lost", "lab_joins", "stock_out", "machine_down"]
    day: float = Field(ge=0.0)
    until_day: float | None = Field(
        default=None, description="when it ends (lab_lost, stock_out, machine_down)"
    )
    labs: list[Identifier] = Field(default_factory=list, description="lab ids; or use count")
    count: int = Field(default=0, ge=0, description="number of labs picked with the seed")
    material: Name | None = Field(default=None, description="stock_out: which material")
    process: Name | None = Field(default=None, description="machine_down: one machine offering this process")

    @model_validator(mode="after")
    def _fields(self) -> Disruption:
        if not self.labs and self.count == 0:
            raise ValueError("name the labs (labs = [...]) or how many to pick (count = N)")
        if self.kind == "stock_out" and not self.material:
            raise ValueError("stock_out needs material")
        if self.kind == "machine_down" and not self.process:
            raise ValueError("machine_down needs process")
        if self.until_day is not None and self.until_day <= self.day:
            raise ValueError(f"until_day ({self.until_day}) must come after day ({self.day})")
        return self


class CentralSpec(_Model):
    """Where the central-factory baseline stands (default: the first lab, at the largest city)."""

    place: str | None = None
    lat: float | None = Field(default=None, ge=-90.0, le=90.0)
    lon: float | None = Field(default=None, ge=-180.0, le=180.0)


class Scenario(_Model):
    """A scenario to replay: its labs, designs, demand over time, disruptions and seed."""

    name: Identifier
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    sources: list[str] = Field(default_factory=list, description="public sources of the figures")
    seed: int = 0
    start: Annotated[datetime, AfterValidator(_utc)]
    days: float = Field(gt=0.0, le=365.0)
    round_hours: float = Field(default=24.0, gt=0.0, le=168.0, description="time between planning rounds")
    solve_seconds: float = Field(default=1.0, gt=0.0, le=60.0, description="time limit of one solve")
    k_nearest: int = Field(default=8, ge=1, le=100)
    late_window_days: float = Field(
        default=SolveParams().late_window_days,
        ge=0.0,
        le=60.0,
        description="days after an order's due date in which Cosmolocal may still plan its units, as "
        "the planner does (its default); units beyond it are left for a later round",
    )
    transport_kmh: float = Field(default=60.0, gt=0.0, description="door-to-door road speed")
    objective: Objective = Field(
        default=DEFAULT_OBJECTIVE,
        description="how Cosmolocal weighs a day sooner against a km shorter: on-time, balanced or km "
        "(solver.model.objective)",
    )
    forecast_days: float = Field(
        default=FORECAST_DAYS,
        ge=0.0,
        le=30.0,
        description="days ahead in which Cosmolocal plans the orders its known rates will bring "
        "(scenarios.forecast); 0 plans only the orders placed",
    )
    bid_prices: bool = Field(
        default=True,
        description="Cosmolocal prices each lab's minutes against what the known rates will still "
        "release within a lead time, where the labs near it are short (solver.large.bid_prices); false plans "
        "each round against its open orders alone",
    )
    transfer_radius_km: float = Field(
        default=SolveParams().transfer_radius_km,
        ge=0.0,
        le=5000.0,
        description="how far Cosmolocal may ship material from a lab with more than its own work needs "
        "to a lab whose machines would idle (solver.model.transfers); 0 ships none",
    )
    designs: list[str] = Field(default_factory=list, description="extra OKH manifests (relative paths)")
    labs: LabsSpec
    demand: list[DemandSpec] = Field(min_length=1)
    disruptions: list[Disruption] = Field(default_factory=list)
    central: CentralSpec = CentralSpec()
    policies: list[Literal["cosmolocal", "central-factory", "nearest-greedy", "board"]] = Field(
        default_factory=lambda: ["cosmolocal", "central-factory", "nearest-greedy", "board"]
    )


class LoadedScenario(BaseModel):
    """A validated scenario with where it came from and the designs it may use."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    scenario: Scenario
    path: Path
    designs: dict[str, Design]
    #: What a variant changed beyond what was asked (a separation cut to fit a smaller country).
    notes: tuple[str, ...] = ()

    def resolve(self, relative: str) -> Path:
        """A path named in the scenario: relative to the scenario file first, then to the working folder."""
        candidate = Path(relative).expanduser()
        if candidate.is_absolute():
            return candidate
        beside = (self.path.parent / candidate).resolve()
        return beside if beside.exists() else candidate.resolve()

    def variant(
        self, seed: int | None = None, objective: Objective | None = None, country: str | None = None
    ) -> LoadedScenario:
        """The same scenario with another seed, objective and/or country (None keeps the current one).

        `country` (ISO 3166 alpha-2) moves everything the scenario draws from a country's cities, its
        labs and its delivery points, to that country's cities: the same situation elsewhere, to try
        a policy on ground it was not tuned on. Labs or points given as a list stay where they are;
        a scenario with nothing drawn from cities is refused, since it would not move.
        """
        update: dict[str, object] = {}
        notes: list[str] = []
        if seed is not None:
            update["seed"] = seed
        if objective is not None:
            update["objective"] = objective
        if country is not None:
            moved, notes = self._moved_to(country)
            update.update(moved)
        if not update:
            return self
        scenario = self.scenario.model_copy(update=update)
        return self.model_copy(update={"scenario": scenario, "notes": (*self.notes, *notes)})

    def _moved_to(self, country: str) -> tuple[dict[str, object], list[str]]:
        """The fields that move the scenario to `country`, and notes on what had to give way."""
        if not re.fullmatch(r"[A-Z]{2}", country):
            raise ScenarioError(f"country: {country!r} is not an ISO 3166 alpha-2 code such as DE or ES")
        scenario = self.scenario
        moved: dict[str, object] = {}
        notes: list[str] = []
        if scenario.labs.source == "cities":
            moved["labs"] = _moved_cities(scenario.labs, country, "labs", notes)
        demand = [
            d.model_copy(update={"at": _moved_cities(d.at, country, f"demand.{index}.at", notes)})
            if d.at.source == "cities"
            else d
            for index, d in enumerate(scenario.demand)
        ]
        if any(d.at.source == "cities" for d in scenario.demand):
            moved["demand"] = demand
        if not moved:
            raise ScenarioError(
                f"{self.path}: country: the scenario draws neither labs nor delivery points from a "
                "country's cities (both are lists), so it cannot move"
            )
        if "labs" in moved and scenario.central.lat is not None:
            moved["central"] = CentralSpec()  # the factory stands at the new country's largest city
        return moved, notes


#: A scenario moved to a smaller country keeps its number of labs and delivery points: the
#: separation between their cities is cut by this factor at a time, down to the floor, until the
#: country has that many cities.
SEPARATION_STEP = 0.8
SEPARATION_FLOOR_KM = 5.0
_Cities = TypeVar("_Cities", "LabsSpec", "PointsSpec")


def _moved_cities(spec: _Cities, country: str, where: str, notes: list[str]) -> _Cities:
    """`spec` (labs or delivery points at a country's cities) moved to `country`, as many as before.

    When `country` has too few cities at the file's separation, it is cut (see SEPARATION_STEP),
    and a note in `notes` says so.
    """
    separation = _fitting_separation(country, spec.count, spec.skip, spec.min_separation_km)
    if separation != spec.min_separation_km:
        notes.append(
            f"{where}: {spec.count} cities of {country} are at least {separation:g} km apart, not the "
            f"file's {spec.min_separation_km:g} km"
        )
    return spec.model_copy(update={"country": country, "min_separation_km": separation})


def _fitting_separation(country: str, count: int, skip: int, separation: float) -> float:
    """The largest separation, at most `separation`, at which `country` has `count` cities after `skip`.

    `separation` itself when none down to the floor fits: drawing the world then names the shortfall.
    """
    trial = separation
    while True:
        try:
            largest_cities(country, count, trial, skip)
            return trial
        except ValueError:
            if trial <= SEPARATION_FLOOR_KM:
                return separation
            trial = max(SEPARATION_FLOOR_KM, round(trial * SEPARATION_STEP, 1))


def load_scenario(path: Path, seed: int | None = None) -> LoadedScenario:
    """Read and validate a scenario file; `seed` replaces the file's seed. Raises `ScenarioError`."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    if seed is not None:
        raw["seed"] = seed
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(f"{path}: {describe_validation_error(exc)}") from None
    loaded = LoadedScenario(scenario=scenario, path=path, designs=dict(catalogue()))
    designs = dict(catalogue())
    for index, relative in enumerate(scenario.designs):
        try:
            design = load_okh(loaded.resolve(relative))
        except ProtocolError as exc:
            raise ScenarioError(f"{path}: designs.{index}: {exc}") from None
        designs[design.id] = design
    for index, demand in enumerate(scenario.demand):
        if demand.design not in designs:
            known = ", ".join(sorted(designs))
            raise ScenarioError(
                f"{path}: demand.{index}.design: unknown design {demand.design!r}; known designs: {known}"
            )
    for field_name in ("file", "machines_file", "printers_file"):
        relative = getattr(scenario.labs, field_name)
        if relative and not loaded.resolve(relative).exists():
            raise ScenarioError(f"{path}: labs.{field_name}: no such file {relative!r}")
    return LoadedScenario(scenario=scenario, path=path, designs=designs)


@cache
def builtin_scenarios() -> dict[str, Path]:
    """The scenarios that ship with Cosmolocal, by name."""
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.toml"))}


def find_scenario(name_or_file: str) -> Path:
    """A built-in scenario by name, or a scenario file by path. Raises `ScenarioError` if neither."""
    builtin = builtin_scenarios()
    if name_or_file in builtin:
        return builtin[name_or_file]
    path = Path(name_or_file)
    if path.exists():
        return path
    raise ScenarioError(
        f"{name_or_file}: neither a built-in scenario ({', '.join(builtin)}) nor an existing file"
    )
