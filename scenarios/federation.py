"""Seeded synthetic federations: several regions, each with its own labs and orders, at a chosen load.

Used by `cosmolocal bench federation` and the federation benchmark. Each region sits around a real
place (Lombardy, Rhône-Alpes, Switzerland, ...); its labs and orders are scattered around it. Every
lab has an assembly bench and FDM printers, most a laser cutter; orders are face shields and finger
splints due in 2 to 6 days. Order quantities are scaled so that each region's demand for its
bottleneck (FDM minutes by the mean due date) is the case's load of its own capacity, counted on the
printers able to make it: a face shield needs a 200 mm bed, so its load is measured against those
printers alone as well as against every printer, and the tighter of the two sets the scale (a region
"at 60 %" on all its printers could otherwise be past 100 % on its large-bed ones):

- `surge`: the first region at twice its capacity, its peers at 60 %;
- `tight`: every region between 90 % and 100 %.

Stock is plentiful, so machine time is what binds. Same arguments, same federation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from protocol.model import Design, Lab, Location, Machine, Order
from protocol.okh import catalogue
from scenarios.scale import desktop_printers
from solver.model.problem import Demand, LabState, Problem

Case = Literal["surge", "tight"]
CASES: tuple[str, ...] = ("surge", "tight")
#: The fixed instant of every synthetic federation.
FEDERATION_NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
#: Region names and centres (lat, lon); beyond these, regions are placed on a ring around the Alps.
REGIONS: tuple[tuple[str, float, float], ...] = (
    ("lombardy", 45.58, 9.65),
    ("rhone-alpes", 45.55, 5.25),
    ("switzerland", 47.05, 8.05),
    ("bavaria", 48.35, 11.60),
    ("piedmont", 44.95, 7.75),
    ("tyrol", 47.15, 11.05),
    ("provence", 43.75, 5.75),
    ("baden", 48.35, 8.45),
)
#: Spread of labs and orders around a region's centre, in degrees (one standard deviation).
SPREAD_DEG = 0.35
DESIGNS: tuple[str, ...] = ("face-shield", "finger-splint")
#: Days from now within which orders fall due.
DUE_DAYS = (2.0, 6.0)


@dataclass(frozen=True)
class Region:
    """One region of a federation: its id and the problem only its own planner sees."""

    id: str
    centre: Location
    problem: Problem


def region_names(count: int) -> list[tuple[str, float, float]]:
    """`count` region (name, lat, lon): the named ones first, then others on a ring."""
    if count < 2:
        raise ValueError(f"regions: a federation needs at least 2 regions, got {count}")
    named = list(REGIONS[:count])
    for i in range(len(named), count):
        angle = 2 * math.pi * i / count
        named.append((f"region-{i}", 46.5 + 2.5 * math.sin(angle), 8.5 + 3.5 * math.cos(angle)))
    return named


def federation(
    regions: int, orders_per_region: int, labs_per_region: int, seed: int, case: Case
) -> list[Region]:
    """A seeded federation (see the module docstring); regions in a fixed order, the surging one first."""
    if orders_per_region < 1:
        raise ValueError(f"orders_per_region must be at least 1, got {orders_per_region}")
    if labs_per_region < 1:
        raise ValueError(f"labs_per_region must be at least 1, got {labs_per_region}")
    if case not in CASES:
        raise ValueError(f"case must be one of {', '.join(CASES)}, got {case!r}")
    rng = random.Random(seed)
    designs = {d: catalogue()[d] for d in DESIGNS}
    out = []
    for index, (name, lat, lon) in enumerate(region_names(regions)):
        load = (2.0 if index == 0 else 0.6) if case == "surge" else rng.uniform(0.9, 1.0)
        labs = [_lab(name, i, lat, lon, rng) for i in range(labs_per_region)]
        demands = _demands(name, orders_per_region, lat, lon, rng, labs, load, designs)
        problem = Problem(now=FEDERATION_NOW, designs=designs, labs=labs, demands=demands)
        out.append(Region(id=name, centre=Location(lat=lat, lon=lon, place=name), problem=problem))
    return out


def merged(regions: list[Region]) -> Problem:
    """All regions' labs and demands as one problem: what a single global planner would see."""
    first = regions[0].problem
    return Problem(
        now=first.now,
        designs=first.designs,
        labs=[s for r in regions for s in r.problem.labs],
        demands=[d for r in regions for d in r.problem.demands],
    )


def _point(lat: float, lon: float, rng: random.Random) -> Location:
    return Location(
        lat=round(min(89.0, max(-89.0, rng.gauss(lat, SPREAD_DEG))), 5),
        lon=round(rng.gauss(lon, SPREAD_DEG * 1.4), 5),
    )


def _lab(region: str, index: int, lat: float, lon: float, rng: random.Random) -> LabState:
    machines = [Machine(id="bench", processes=["assembly"], hours_per_day=rng.choice([8.0, 10.0]))]
    machines += desktop_printers(rng.choice([1, 1, 2, 3, 4]), rng)
    if rng.random() < 0.7:
        machines.append(Machine(id="laser", processes=["laser"], hours_per_day=8.0))
    stock = {"petg": 1000.0, "pla": 1000.0, "pet_sheet_0_5": 1000.0, "elastic": 10000.0}
    lab = Lab(
        id=f"{region}-lab{index:04d}",
        name=f"Lab {index} of {region}",
        location=_point(lat, lon, rng),
        machines=machines,
    )
    return LabState(lab=lab, backlog_minutes={}, stock=stock)


def _fdm_minutes_by(labs: list[LabState], days: float, design: Design | None = None) -> float:
    """FDM minutes by `days` of every printer, or of those able to run every FDM step of `design`."""
    steps = [] if design is None else [s for s in design.steps if s.process == "fdm"]
    return sum(
        m.minutes_per_day() * days
        for s in labs
        for m in s.lab.machines
        if "fdm" in m.processes and all(step.can_run_on(m) for step in steps)
    )


def _load_share(
    wanted: dict[str, float], labs: list[LabState], designs: dict[str, Design], days: float
) -> float:
    """The share of the region's FDM capacity its demand takes on its tightest printers: the whole
    demand against every printer, and each design's against the printers able to make it."""
    total = _fdm_minutes_by(labs, days)
    shares = [sum(wanted.values()) / total] if total > 0 else []
    for design_id, minutes in wanted.items():
        able = _fdm_minutes_by(labs, days, designs[design_id])
        if able > 0 and minutes > 0:
            shares.append(minutes / able)
    return max(shares, default=0.0)


def _demands(
    region: str,
    count: int,
    lat: float,
    lon: float,
    rng: random.Random,
    labs: list[LabState],
    load: float,
    designs: dict[str, Design],
) -> list[Demand]:
    drafts = []
    for i in range(count):
        design = rng.choices(DESIGNS, weights=[3, 2])[0]
        priority = rng.choices(["routine", "urgent", "emergency"], weights=[85, 12, 3])[0]
        due = rng.uniform(*DUE_DAYS)
        drafts.append((i, design, priority, due, rng.randint(5, 40), _point(lat, lon, rng)))
    fdm_per_unit = {d: sum(s.minutes for s in designs[d].steps if s.process == "fdm") for d in DESIGNS}
    wanted: dict[str, float] = {}
    for _, d, _, _, q, _ in drafts:
        wanted[d] = wanted.get(d, 0.0) + q * fdm_per_unit[d]
    share = _load_share(wanted, labs, designs, sum(DUE_DAYS) / 2)
    scale = load / share if share > 0 else 1.0
    demands = []
    for i, design, priority, due, quantity, place in drafts:
        units = max(1, round(quantity * scale))
        order = Order(
            id=f"{region}-o{i:05d}",
            design=design,
            quantity=units,
            due_at=FEDERATION_NOW + timedelta(days=due),
            delivery=place,
            priority=priority,
            created_at=FEDERATION_NOW,
        )
        demands.append(Demand(order=order, quantity=units))
    return demands
