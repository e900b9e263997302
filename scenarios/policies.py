"""Allocation policies compared in a scenario: Cosmolocal's solver and three baselines.

All four see the same labs, the same open demand and the same capacity and stock rules (machine
minutes per day less the work already queued, free stock) and the same execution; only the choice
of where units go differs. The solver plans within its own horizon (due-date buckets and a late
window, `solver.model.problem.horizon_days`); a baseline counts a lab's room until the order's due date
(at least one day), so it places work where it can still be made in time.

- `cosmolocal`: builds a `solver.model.problem.Problem` from the replay's state, calls
  `solver.allocation.allocate.solve`
  and checks the plan with `solver.check.check` (a violation stops the replay: it is a bug); then
  queues what the planner would send now (`solver.model.lines.to_dispatch`) and leaves the rest of the
  plan to the next round. The plan's material transfers into a lab that is sent work using them are
  shipped now; the others are planned again next round.
- `nearest-greedy`: orders first come first served; each goes to the nearest capable lab with room,
  then the next nearest, until placed or no lab has room.
- `board`: a first-come job board, as on commercial platforms: labs, in a random (seeded) order each
  round, take the oldest posted job they can make, as much of it as they have room for; distance
  plays no part.
- `central-factory`: one site with every lab's machines (see `scenarios.world.central_world`),
  orders first come first served.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime

from protocol.model import Design, Order, Transfer
from scenarios.sim import LabSim, Line, PlanStats, SimulationError, fit_units
from solver.allocation.allocate import solve
from solver.check import check
from solver.model.geo import haversine_km
from solver.model.lines import to_dispatch
from solver.model.problem import Demand, FutureDemand, Problem, SolveParams
from solver.model.trails import TrailBook

POLICIES: tuple[str, ...] = ("cosmolocal", "central-factory", "nearest-greedy", "board")


def _days_to_due(now: datetime, order: Order) -> float:
    """Days of machine time a baseline may count on for an order: until its due date, at least one day."""
    return max(1.0, (order.due_at - now).total_seconds() / 86_400.0)


class _Room:
    """Free machine minutes and stock of each live lab, consumed as a baseline places units.

    A lab has room for an order when the units fit in its free machine minutes until the order's
    due date (at least one day, as the solver's horizon) less the work already queued there, and in
    its free stock: baselines place work where it can be made in time, or within a day when late.

    A lab's room only shrinks as units are placed, and a shorter time holds fewer minutes: so once
    not one unit of a design fits within some days, none fits within as many days or fewer for the
    rest of the round. Those answers are kept (`_none_within`), which spares the board and greedy
    re-trying every full lab for every order: the same placements, in a fraction of the time.
    """

    def __init__(self, labs: list[LabSim], designs: dict[str, Design]) -> None:
        self.labs: dict[str, tuple[LabSim, dict[str, float], dict[str, float], dict[str, float]]] = {}
        self._none_within: dict[tuple[str, str], float] = {}
        for lab in labs:
            state = lab.state(designs)
            if state.live:
                per_day = {m.id: m.minutes_per_day() for m in state.lab.machines}
                used = {m: state.backlog_minutes.get(m, 0.0) for m in per_day}
                self.labs[lab.lab.id] = (lab, per_day, used, dict(state.stock))

    def take(self, lab_id: str, design: Design, most: int, days: float) -> int:
        """Place up to `most` units at a lab within `days`; returns how many fitted (and takes their room)."""
        if most <= 0 or days <= self._none_within.get((lab_id, design.id), -1.0):
            return 0
        lab, per_day, used, stock = self.labs[lab_id]
        free = {m: max(0.0, per_day[m] * days - used[m]) for m in per_day}
        units, left = fit_units(free, lab.groups(design), design, stock, most)
        if not units:
            self._none_within[lab_id, design.id] = days
            return 0
        for m in per_day:
            used[m] += free[m] - left[m]
        for material, amount in design.materials_per_unit().items():
            stock[material] = stock.get(material, 0.0) - amount * units
        return units


#: The orders known rates are expected to bring after a time (`scenarios.forecast`), each with its time.
Forecast = Callable[[datetime], list[tuple[Order, datetime]]]
#: What known rates will bring in a lead time after what `Forecast` gives, per point, in all.
Coming = Callable[[datetime], list[FutureDemand]]


class Cosmolocal:
    """The planner's solver: CP-SAT allocation on the candidate graph, checked before use.

    With a `forecast`, the orders known rates will bring are demand too, released at their time
    (`solver.model.problem.Demand.release_at`): the plan leaves room for them, and none of their units is
    queued at a lab (they are not ordered yet).

    It keeps trails as the planner does (`scenarios.sim.Learner`, `solver.model.trails`): the labs that
    made a design on time earn their bounded discount in later rounds, and a lab lost with work queued
    loses some.
    """

    name = "cosmolocal"

    def __init__(
        self,
        params: SolveParams,
        stats: PlanStats,
        forecast: Forecast | None = None,
        coming: Coming | None = None,
    ) -> None:
        self.params = params
        self.stats = stats
        self.forecast = forecast
        self.coming = coming
        self._to_send: list[Transfer] = []
        self.trails = TrailBook()

    def delivered_on_time(self, design: str, lab_id: str, machine_hours: float, at: datetime) -> None:
        """Reinforce the lab's trail for the design, as the planner does (`scenarios.sim.Learner`)."""
        self.trails.delivered_on_time((design, lab_id), machine_hours, at)

    def let_down(self, design: str, lab_id: str, at: datetime) -> None:
        """Weaken the lab's trail for the design, as the planner does on an expired lease."""
        self.trails.let_down((design, lab_id), at)

    def transfers_to_send(self) -> list[Transfer]:
        """Every transfer of the last plan, as the planner ships every transfer of a plan it commits
        (`planner.shipments`; see `scenarios.sim.Shipper`)."""
        sent, self._to_send = self._to_send, []
        return sent

    def allocate(
        self, now: datetime, labs: list[LabSim], demand: list[tuple[Order, int]], designs: dict[str, Design]
    ) -> list[Line]:
        """Solve the round's problem and return what the planner would send now
        (`solver.model.lines.to_dispatch`); the rest of the plan is planned again next round."""
        ahead = self.forecast(now) if self.forecast is not None else []
        problem = Problem(
            now=now,
            designs=designs,
            labs=[lab.state(designs, now, self.params.transport_kmh) for lab in labs if lab.present],
            demands=[Demand(order, units) for order, units in demand]
            + [Demand(order, order.quantity, release_at=release) for order, release in ahead],
            future=tuple(self.coming(now)) if self.coming is not None else (),
            trails=self.trails.at(now),
        )
        forecast_ids = {order.id for order, _ in ahead}
        started = time.perf_counter()
        plan = solve(problem, self.params, self.stats.plans + 1)
        self.stats.solve_seconds += time.perf_counter() - started
        violations = check(problem, plan, self.params)
        if violations:
            raise SimulationError(
                f"plan {plan.version} at {now.isoformat()} breaks its problem: " + "; ".join(violations[:5])
            )
        self.stats.plans += 1
        self.stats.objective += plan.objective
        self.stats.bound += plan.bound
        self.stats.optimal += plan.status == "OPTIMAL"
        self.stats.shortages += sum(s.quantity for s in plan.shortages if s.order_id not in forecast_ids)
        under_way = {job.order.id for lab in labs for job in lab.queue}
        ordered = [a for a in plan.allocations if a.order_id not in forecast_ids]
        sent = to_dispatch(ordered, under_way)
        # Material leaves now, even for units that start after this round: it takes hours of packing
        # and the road, so units made from it seldom fall in the work sent now, and shipping only what
        # that work used left labs waiting for material that never left (docs/transfers.md).
        self._to_send = list(plan.transfers)
        self.stats.transfers += len(self._to_send)
        return [Line(a.order_id, a.lab_id, a.quantity, a.late_units, a.arrive_by) for a in sent]


class NearestGreedy:
    """Each order, first come first served, to the nearest capable labs with room."""

    name = "nearest-greedy"

    def __init__(self, params: SolveParams, stats: PlanStats, name: str = "nearest-greedy") -> None:
        self.params = params
        self.stats = stats
        self.name = name

    def allocate(
        self, now: datetime, labs: list[LabSim], demand: list[tuple[Order, int]], designs: dict[str, Design]
    ) -> list[tuple[str, str, int]]:
        """Place each order in turn at the nearest labs that still have room."""
        started = time.perf_counter()
        room = _Room(labs, designs)
        where = {lab.lab.id: lab.lab.location for lab in labs}
        capable = {
            design_id: [i for i in room.labs if all(room.labs[i][0].groups(design))]
            for design_id, design in designs.items()
        }
        lines = []
        for order, units in sorted(demand, key=lambda d: (d[0].created_at, d[0].id)):
            design = designs[order.design]
            for lab_id in sorted(
                capable[order.design], key=lambda i: (haversine_km(where[i], order.delivery), i)
            ):
                if units <= 0:
                    break
                placed = room.take(lab_id, design, units, _days_to_due(now, order))
                if placed:
                    lines.append((order.id, lab_id, placed))
                    units -= placed
        self.stats.solve_seconds += time.perf_counter() - started
        return lines


class Board:
    """A first-come job board: labs in random order take the oldest job they can make."""

    name = "board"

    def __init__(self, params: SolveParams, stats: PlanStats, seed: int) -> None:
        self.params = params
        self.stats = stats
        self.rng = random.Random(seed)

    def allocate(
        self, now: datetime, labs: list[LabSim], demand: list[tuple[Order, int]], designs: dict[str, Design]
    ) -> list[tuple[str, str, int]]:
        """Labs take turns picking the oldest open job they can make until nobody can take more."""
        started = time.perf_counter()
        room = _Room(labs, designs)
        posted = [[order, units] for order, units in sorted(demand, key=lambda d: (d[0].created_at, d[0].id))]
        order_of_labs = sorted(room.labs)
        self.rng.shuffle(order_of_labs)
        lines = []
        full: set[str] = set()
        while True:
            took = False
            for lab_id in order_of_labs:
                if lab_id in full:
                    continue
                for job in posted:
                    order, units = job
                    if units <= 0:
                        continue
                    placed = room.take(lab_id, designs[order.design], units, _days_to_due(now, order))
                    if placed:
                        lines.append((order.id, lab_id, placed))
                        job[1] = units - placed
                        took = True
                        break
                else:
                    full.add(lab_id)
            if not took:
                break
        self.stats.solve_seconds += time.perf_counter() - started
        return lines


def make_policy(
    name: str,
    params: SolveParams,
    seed: int,
    forecast: Forecast | None = None,
    coming: Coming | None = None,
) -> tuple[object, PlanStats]:
    """A fresh policy by name, with its statistics record; only Cosmolocal knows the rates (`forecast`,
    `coming`)."""
    stats = PlanStats()
    if name == "cosmolocal":
        return Cosmolocal(params, stats, forecast, coming), stats
    if name == "nearest-greedy":
        return NearestGreedy(params, stats), stats
    if name == "central-factory":
        return NearestGreedy(params, stats, name="central-factory"), stats
    if name == "board":
        return Board(params, stats, seed), stats
    raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
