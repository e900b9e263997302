"""From a scenario file to a concrete world: labs, orders over time, disruptions, all drawn with the seed.

Everything random is drawn here, once, from one `random.Random(seed)` in a fixed order (labs, then
demand, then disruptions), so every policy replays exactly the same world and the same seed gives the
same world. The central-factory baseline is a transform of that world (`central_world`): one site
with every lab's machines, stock and supply, hit by the same disruptions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from protocol.errors import ProtocolError
from protocol.model import Lab, Location, Machine, Order
from protocol.okw import load_facilities, slugify
from scenarios.forecast import RateStream
from scenarios.geography import largest_cities
from scenarios.spec import LabsSpec, LoadedScenario, PointsSpec, ScenarioError

CENTRAL_ID = "central-factory"


@dataclass(frozen=True)
class WorldEvent:
    """A resolved disruption for one lab: what, from when, until when (None: for good)."""

    kind: str  # lab_lost, lab_joins, stock_out, machine_down
    start: datetime
    end: datetime | None
    lab_id: str
    material: str | None = None
    machine_ids: tuple[str, ...] = ()
    drop: float | None = None  # stock_out: amount lost from stock (None: all of it)
    restock_cut: float | None = None  # stock_out: supply per day lost (None: all of it)


@dataclass(frozen=True)
class World:
    """One concrete replay of a scenario: the same for every policy."""

    loaded: LoadedScenario
    labs: list[Lab]
    restock: dict[str, dict[str, float]]  # lab id -> material -> amount per day
    orders: list[Order]
    events: list[WorldEvent]
    central: Location
    notes: list[str] = field(default_factory=list)  # what the import passed over, for the report
    #: The scenario's rates as known in advance (`scenarios.forecast`), with the orders each brought.
    streams: list[RateStream] = field(default_factory=list)

    @property
    def start(self) -> datetime:
        """When the replay starts (UTC)."""
        return self.loaded.scenario.start

    @property
    def orders_end(self) -> datetime:
        """When orders stop arriving (UTC): the scenario's `days` after its start."""
        return self.start + timedelta(days=self.loaded.scenario.days)

    @property
    def end(self) -> datetime:
        """When the replay ends (UTC): when the last order falls due, if that is after orders stop.

        An order placed on the last day is due after it; stopping the clock before then would count
        its units as missing while they are still within their time, and would favour a policy that
        makes everything at once over one that makes each unit in time for its date. Every policy
        keeps working, on the orders already placed, until the last due date.
        """
        last_due = max((order.due_at for order in self.orders), default=self.orders_end)
        return max(self.orders_end, last_due)


def _draw(value: float | tuple[float, float], rng: random.Random) -> float:
    if isinstance(value, int | float):
        return float(value)
    return round(rng.uniform(value[0], value[1]), 3)


def _template_machines(spec: LabsSpec, rng: random.Random) -> list[Machine]:
    machines: list[Machine] = []
    for template in spec.machines:
        present = rng.random() < template.share
        low, high = (template.count, template.count) if isinstance(template.count, int) else template.count
        n = rng.randint(low, high)
        if not present:
            continue
        machines += [
            Machine(
                id=f"{template.id}-{k}",
                processes=list(template.processes),
                speed=template.speed,
                hours_per_day=template.hours_per_day,
                tags=dict(template.tags),
            )
            for k in range(1, n + 1)
        ]
    if not machines and spec.machines:
        template = spec.machines[0]
        machines.append(
            Machine(
                id=f"{template.id}-1",
                processes=list(template.processes),
                speed=template.speed,
                hours_per_day=template.hours_per_day,
                tags=dict(template.tags),
            )
        )
    return machines


def _labs(loaded: LoadedScenario, rng: random.Random, notes: list[str]) -> list[Lab]:
    spec = loaded.scenario.labs
    where = f"{loaded.path}: labs"
    if spec.source == "cities":
        try:
            cities = largest_cities(spec.country or "", spec.count, spec.min_separation_km, spec.skip)
        except ValueError as exc:
            raise ScenarioError(f"{where}.count: {exc}") from None
        bases = [(f"fablab-{c.slug}"[:64], f"Fablab {c.name}", c.location, None) for c in cities]
    elif spec.source == "list":
        bases = [
            (slugify(site.place), site.place, Location(lat=site.lat, lon=site.lon, place=site.place), None)
            for site in spec.sites
        ]
    else:
        try:
            imported = load_facilities(
                loaded.resolve(spec.file or ""),
                loaded.resolve(spec.machines_file) if spec.machines_file else None,
                spec.country,
                loaded.resolve(spec.printers_file) if spec.printers_file else None,
            )
        except ProtocolError as exc:
            raise ScenarioError(f"{where}.file: {exc}") from None
        chosen = sorted(imported.labs, key=lambda lab: lab.id)[: spec.count]
        if not chosen:
            raise ScenarioError(f"{where}.file: no lab with coordinates in {spec.file} for {spec.country}")
        notes.append(
            f"{len(chosen)} labs read from {_file_name(spec.file or '')} ({imported.shape}); "
            f"{imported.skipped_no_location} records without coordinates skipped"
        )
        bases = [(lab.id, lab.name, lab.location, lab) for lab in chosen]
    labs = []
    for lab_id, name, location, imported_lab in bases:
        machines = _template_machines(spec, rng)
        if imported_lab is not None:
            listed = [m for m in imported_lab.machines if m.processes != ["assembly"]]
            bench = [m for m in imported_lab.machines if m.processes == ["assembly"]]
            if listed:
                machines = [*listed, *[m for m in machines if not set(m.processes) & _processes(listed)]]
            machines = machines + [b for b in bench if all(m.id != b.id for m in machines)]
        stock = {material: _draw(value, rng) for material, value in sorted(spec.stock.items())}
        if imported_lab is not None and imported_lab.stock:
            stock = dict(imported_lab.stock)
        labs.append(Lab(id=lab_id, name=name, location=location, machines=machines, stock=stock))
    return labs


def _file_name(text: str) -> str:
    """The last part of a path, for notes."""
    return text.replace("\\", "/").rsplit("/", 1)[-1]


def _processes(machines: list[Machine]) -> set[str]:
    return {p for m in machines for p in m.processes}


def _points(spec: PointsSpec, where: str) -> list[tuple[Location, float]]:
    if spec.source == "list":
        return [(Location(lat=p.lat, lon=p.lon, place=p.place), p.weight) for p in spec.points]
    try:
        cities = largest_cities(spec.country, spec.count, spec.min_separation_km, spec.skip)
    except ValueError as exc:
        raise ScenarioError(f"{where}.at.count: {exc}") from None
    return [(c.location, float(max(1, c.population))) for c in cities]


def _orders(loaded: LoadedScenario, rng: random.Random) -> tuple[list[Order], list[RateStream]]:
    scenario = loaded.scenario
    orders: list[Order] = []
    streams: list[RateStream] = []

    def add(design: str, quantity: int, day: float, due_days: float, priority: str, at: Location) -> None:
        created = scenario.start + timedelta(days=day)
        orders.append(
            Order(
                id=f"o-{len(orders) + 1:06d}",
                design=design,
                quantity=quantity,
                due_at=created + timedelta(days=due_days),
                delivery=at,
                priority=priority,  # type: ignore[arg-type]
                created_at=created,
            )
        )

    for index, demand in enumerate(scenario.demand):
        points = _points(demand.at, f"{loaded.path}: demand.{index}")
        total_weight = sum(w for _, w in points)
        if demand.kind == "order":
            for location, _ in points:
                add(
                    demand.design,
                    demand.quantity or 1,
                    demand.day,
                    demand.due_days,
                    demand.priority,
                    location,
                )
            continue
        until = min(demand.until_day or scenario.days, scenario.days)
        day = demand.from_day
        first = len(orders)
        while day < until - 1e-9:
            ramp = 1.0
            if demand.ramp_days > 0:
                ramp = min(1.0, (day - demand.from_day + demand.every_days) / demand.ramp_days)
            total = (demand.units_per_day or 0.0) * demand.every_days * ramp
            for location, weight in points:
                noise = 1.0 + demand.jitter * rng.uniform(-1.0, 1.0)
                quantity = round(total * weight / total_weight * noise)
                if quantity > 0:
                    add(demand.design, quantity, day, demand.due_days, demand.priority, location)
            day += demand.every_days
        streams.append(
            RateStream(
                id=f"rate-{index}",
                design=demand.design,
                priority=demand.priority,
                points=tuple(points),
                units_per_day=demand.units_per_day or 0.0,
                start=scenario.start + timedelta(days=demand.from_day),
                until=scenario.start + timedelta(days=until),
                every=timedelta(days=demand.every_days),
                ramp_days=demand.ramp_days,
                due=timedelta(days=demand.due_days),
                order_ids=frozenset(o.id for o in orders[first:]),
            )
        )
    orders.sort(key=lambda o: (o.created_at, o.id))
    return orders, streams


def _events(
    loaded: LoadedScenario, labs: list[Lab], rng: random.Random, notes: list[str]
) -> list[WorldEvent]:
    scenario = loaded.scenario
    ids = [lab.id for lab in labs]
    by_id = {lab.id: lab for lab in labs}
    events: list[WorldEvent] = []
    for index, disruption in enumerate(scenario.disruptions):
        where = f"{loaded.path}: disruptions.{index}"
        unknown = [lab for lab in disruption.labs if lab not in by_id]
        if unknown:
            raise ScenarioError(
                f"{where}.labs: unknown lab ids {', '.join(unknown)}; labs are {', '.join(ids[:8])}..."
            )
        # a machine down is drawn among the labs that have a machine offering the process
        pool = [
            lab_id
            for lab_id in ids
            if disruption.kind != "machine_down"
            or any(disruption.process in m.processes for m in by_id[lab_id].machines)
        ]
        count = disruption.count
        if not disruption.labs and count > len(pool):
            if disruption.kind != "machine_down":
                raise ScenarioError(f"{where}.count: {count} labs asked for, the scenario has {len(pool)}")
            # Which labs have the process is drawn with the seed: another seed of the same file may
            # draw fewer of them than the count, and it still runs, on every one there is.
            notes.append(
                f"disruptions.{index}: {count} labs asked for with a {disruption.process} machine down, "
                f"the draw of seed {scenario.seed} has {len(pool)}: {len(pool)} taken"
            )
            count = len(pool)
        picked = list(disruption.labs) or sorted(rng.sample(pool, count))
        start = scenario.start + timedelta(days=disruption.day)
        end = None if disruption.until_day is None else scenario.start + timedelta(days=disruption.until_day)
        for lab_id in picked:
            machines: tuple[str, ...] = ()
            if disruption.kind == "machine_down":
                offering = [m.id for m in by_id[lab_id].machines if disruption.process in m.processes]
                if not offering:
                    continue
                machines = (offering[0],)
            events.append(WorldEvent(disruption.kind, start, end, lab_id, disruption.material, machines))
    return events


def build_world(loaded: LoadedScenario) -> World:
    """The concrete world of a loaded scenario, drawn with its seed."""
    scenario = loaded.scenario
    rng = random.Random(scenario.seed)
    notes: list[str] = list(loaded.notes)
    labs = _labs(loaded, rng, notes)
    restock = {lab.id: dict(scenario.labs.restock_per_day) for lab in labs}
    orders, streams = _orders(loaded, rng)
    if not orders:
        raise ScenarioError(f"{loaded.path}: demand: no order falls within the {scenario.days:g} days")
    events = _events(loaded, labs, rng, notes)
    central = scenario.central
    if central.lat is not None and central.lon is not None:
        site = Location(lat=central.lat, lon=central.lon, place=central.place or "central factory")
    elif central.place:
        match = [lab for lab in labs if (lab.location.place or "").lower() == central.place.lower()]
        if not match:
            raise ScenarioError(
                f"{loaded.path}: central.place: no lab at {central.place!r}; give lat and lon"
            )
        site = match[0].location
    else:
        site = labs[0].location
    return World(loaded, labs, restock, orders, events, site, notes, streams)


def central_world(world: World) -> World:
    """The same world with one factory holding every lab's machines, stock and supply, at one place.

    Machines keep their speed and hours (so total machine capacity is identical); a disruption of a
    lab becomes the loss of that lab's machines or supply at the factory, so both face the same hits.
    """
    machines: list[Machine] = []
    owner: dict[str, list[str]] = {}
    stock: dict[str, float] = {}
    restock: dict[str, float] = {}
    for index, lab in enumerate(world.labs):
        mine = [m.model_copy(update={"id": f"l{index}-{m.id}"[:64]}) for m in lab.machines]
        owner[lab.id] = [m.id for m in mine]
        machines += mine
        for material, amount in lab.stock.items():
            stock[material] = stock.get(material, 0.0) + amount
        for material, amount in world.restock.get(lab.id, {}).items():
            restock[material] = restock.get(material, 0.0) + amount
    factory = Lab(
        id=CENTRAL_ID, name="Central factory", location=world.central, machines=machines, stock=stock
    )
    by_id = {lab.id: lab for lab in world.labs}
    events = []
    for event in world.events:
        if event.kind == "lab_lost":
            events.append(
                replace(event, kind="machine_down", lab_id=CENTRAL_ID, machine_ids=tuple(owner[event.lab_id]))
            )
        elif event.kind == "lab_joins":
            # the lab's machines are missing at the factory until the day the lab would have joined
            events.append(
                WorldEvent(
                    "machine_down", world.start, event.start, CENTRAL_ID, None, tuple(owner[event.lab_id])
                )
            )
        elif event.kind == "machine_down":
            index = [lab.id for lab in world.labs].index(event.lab_id)
            ids = tuple(f"l{index}-{m}"[:64] for m in event.machine_ids)
            events.append(replace(event, lab_id=CENTRAL_ID, machine_ids=ids))
        elif event.kind == "stock_out" and event.material:
            lab = by_id[event.lab_id]
            events.append(
                replace(
                    event,
                    lab_id=CENTRAL_ID,
                    drop=lab.stock.get(event.material, 0.0),
                    restock_cut=world.restock.get(lab.id, {}).get(event.material, 0.0),
                )
            )
    return World(
        world.loaded,
        [factory],
        {CENTRAL_ID: restock},
        world.orders,
        events,
        world.central,
        world.notes,
        world.streams,
    )
