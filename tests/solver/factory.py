"""Small builders for solver tests: machines, labs, orders and problems with the catalogue's designs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from protocol.model import Design, Lab, Location, Machine, Order, Plan, Step
from protocol.okh import catalogue
from solver.model.problem import Demand, LabState, Problem, SolveParams

NOW = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
#: Fast, deterministic settings for tests.
#: Quick solves with no late window: units that cannot be made by the due date are short.
FAST = SolveParams(time_limit_s=2.0, workers=1, late_window_days=0.0)
#: Delivery taken as instant: a unit made by its due date arrives by it. For tests of capacity at
#: due dates, where an hour of handling would move the boundary.
INSTANT = {"handling_hours": 0.0, "transport_kmh": 1e12}
#: The distance-only objective (`solver.model.objective`'s "km"), with instant delivery: for tests of the
#: distance and capacity logic alone, where the time term would rightly split an order to finish sooner.
KM_ONLY = replace(FAST, time_weight=dict.fromkeys(("routine", "urgent", "emergency"), 0.0), **INSTANT)
#: Plenty of every material the catalogue's designs use.
#: The flow time of a face shield at a lab of one 8-hour machine per step: its laser cut (3 minutes)
#: and assembly (4) follow the print (`solver.model.capability.flow_days`). A shield due this long
#: after a day of printing is on time.
SHIELD_FLOW_DAYS = 7.0 / 480.0
PLENTY = {"petg": 100.0, "pla": 100.0, "resin": 100.0, "pet_sheet_0_5": 1000.0, "elastic": 1000.0}

# A few places around Barcelona (lat, lon).
CENTRE = (41.3874, 2.1686)
NEAR = (41.40, 2.17)  # about 1.5 km from the centre
MIDDLE = (41.55, 2.10)  # about 19 km
FAR = (41.98, 2.82)  # about 85 km (Girona)


def machine(id: str, *processes: str, speed: float = 1.0, hours: float = 8.0, **tags: object) -> Machine:
    """A machine offering `processes`, with tags given as keywords (bed_mm=250, medical_grade=True)."""
    return Machine(id=id, processes=list(processes), speed=speed, hours_per_day=hours, tags=tags)


def printer(id: str = "printer", bed_mm: int = 250, **kw: object) -> Machine:
    """An FDM printer with a bed of `bed_mm`."""
    return machine(id, "fdm", bed_mm=bed_mm, **kw)


def design(id: str, *steps: tuple[str, float]) -> Design:
    """A design of `steps` (process, nominal minutes per unit), without materials."""
    return Design(
        id=id,
        name=id.title(),
        licence="CC0-1.0",
        source=f"https://example.org/{id}",
        steps=[Step(process=process, minutes=minutes) for process, minutes in steps],
    )


def full_machines() -> list[Machine]:
    """One machine per process the catalogue needs: FDM (250 mm bed), laser, SLA (medical), bench."""
    return [
        printer(),
        machine("laser", "laser"),
        machine("sla", "sla", medical_grade=True),
        machine("bench", "assembly"),
    ]


def lab(
    id: str,
    at: tuple[float, float],
    machines: list[Machine] | None = None,
    *,
    stock: dict[str, float] | None = None,
    backlog: dict[str, float] | None = None,
    live: bool = True,
) -> LabState:
    """A lab at `at` (lat, lon); by default fully equipped and well stocked."""
    return LabState(
        lab=Lab(
            id=id,
            name=id.title(),
            location=Location(lat=at[0], lon=at[1]),
            machines=machines if machines is not None else full_machines(),
        ),
        backlog_minutes=dict(backlog or {}),
        stock=dict(PLENTY if stock is None else stock),
        live=live,
    )


def order(
    id: str,
    design: str,
    quantity: int,
    at: tuple[float, float] = CENTRE,
    *,
    days: float = 10.0,
    priority: str = "routine",
) -> Order:
    """An order delivered at `at`, due `days` after NOW."""
    return Order(
        id=id,
        design=design,
        quantity=quantity,
        due_at=NOW + timedelta(days=days),
        delivery=Location(lat=at[0], lon=at[1]),
        priority=priority,
        created_at=NOW,
    )


def problem(labs: list[LabState], orders: list[Order]) -> Problem:
    """A problem at NOW with the whole catalogue and one demand per order for its full quantity."""
    return Problem(
        now=NOW,
        designs=dict(catalogue()),
        labs=labs,
        demands=[Demand(order=o, quantity=o.quantity) for o in orders],
    )


def units_by_lab(plan: Plan, order_id: str) -> dict[str, int]:
    """Lab id -> units of `order_id` in the plan."""
    return {a.lab_id: a.quantity for a in plan.allocations if a.order_id == order_id}
