"""Bid prices: what a lab's machine minutes are worth to the demand the network knows is coming.

A round plans the orders open now. The known rates (`Problem.future`) will bring more units before
that work falls due, and they will want the same machine minutes: where the labs near the demand
cannot make all of it, a lab's minutes spent today are minutes some later unit will not get, and
which lab spends them on which design decides how far the units travel. A network of small labs near
the city centre and one big print farm at its edge shows it: a face shield takes five times the
printer minutes of a finger splint, so the km-least way to make the centre's units is to print the
shields at the farm and the splints in the centre. A round that sees only today's orders cannot know
it; it sends whatever is open to whichever lab is free, and the farm's splints cross the city.

`bid_prices` solves the next lead time in aggregate (an LP: the open demand and the units the rates
will release before it falls due, against each lab's process minutes until the last of them is due,
most units first, then the fewest km) and reads the value of a minute of each (lab, process) from
its duals. A unit of a design at a lab is then charged what its minutes are worth there, less what
they are worth at the capable lab where they are worth least (zero there), and at most the longest
trip in the LP, so the charge trades km against km and never outweighs a unit made. (Where two labs'
last units are of different designs, their minutes' worth differs by a share of a unit's worth rather
than by km; the cap keeps that charge to the longest trip.) The allocation adds it to each unit's
cost (`CostTerms.capacity`), so the plan and its explanation both say why a shield went to the farm.
Where the labs near each place have room for all of it, no minute has a worth and no price is set.

Which releases count is measured (fab-city-barcelona, 33 seeds, docs/benchmarks.md). Pricing
against every release until the rates end, and only where the city as a whole could not make them,
left the local shortages of a surge near the centre unpriced: the trips were longer than
nearest-greedy's on 15 seeds. Pricing against one lead time of releases, whatever the city's total,
does so on 12, with fill as good (no seed short of the job board's, where one was); the price halved
left 6 seeds short. This is bid-price control, as airlines and hotels price their seats and rooms
against the demand still to come (Talluri and van Ryzin, *The Theory and Practice of Revenue
Management*, 2004, ch. 3).

Material is left out: the solver does not know the labs' supply, and their stock alone, over weeks,
would price every material as scarce.

Built from arrays into GLOP (`solver.lp.glop`), demand grouped by design and place to about a
kilometre: a planner of 10,000 orders and 2,000 labs short of capacity prices them in a few
seconds, where one Python call per coefficient took 20.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.glop import parameters_pb2 as glop_parameters_pb2

from solver.lp.glop import IncrementalLP
from solver.model.capability import can_make
from solver.model.geo import distances_km
from solver.model.problem import Problem, backlog_by

#: What the LP counts one unit made as worth, against its km: far above any trip, so it makes as many
#: units as it can first and only then shortens their trips.
UNIT_VALUE = 100_000.0
#: Capable labs per place in the LP, nearest first: the rest would only carry units farther.
LP_LABS = 30
#: Demand within this many degrees of latitude and longitude (about a kilometre) is one place.
PLACE_DEG = 0.01
#: Places whose distances to the labs are computed at once (places x labs, 8 bytes each).
CHUNK_PLACES = 2_000
GLOP = glop_parameters_pb2.GlopParameters()


def bid_prices(
    problem: Problem, km_weight: float = 1.0, seconds: float = 10.0
) -> dict[tuple[str, str], float]:
    """Per (design id, lab id): the km-equivalents a unit's minutes are worth at that lab beyond the
    capable lab where they are worth least, or {} when no lab's minutes are short (see above).
    `seconds` bounds the LP; a solve cut short sets no price."""
    if not problem.future or not problem.labs:
        return {}
    ends = [f.last_due_at for f in problem.future] + [d.order.due_at for d in problem.demands]
    days = (max(ends) - problem.now).total_seconds() / 86_400.0
    if days <= 0.0:
        return {}
    places = _places(problem)
    designs = sorted({design_id for design_id, _, _, _ in places})
    columns = _Columns.near(problem, places, designs, km_weight)
    if columns is None:
        return {}
    # Minutes per unit of each design in each process, and each column's (lab, process) rows.
    processes = sorted({step.process for design_id in designs for step in problem.designs[design_id].steps})
    process_index = {process: i for i, process in enumerate(processes)}
    minutes = np.zeros((len(designs), len(processes)))
    for d, design_id in enumerate(designs):
        for step in problem.designs[design_id].steps:
            minutes[d, process_index[step.process]] += step.minutes
    keys, entry_column, entry_minutes = [], [], []
    for p in range(len(processes)):
        per_unit = minutes[columns.design, p]
        used = np.flatnonzero(per_unit > 0)
        keys.append(columns.lab[used] * len(processes) + p)
        entry_column.append(used)
        entry_minutes.append(per_unit[used])
    pairs, pair_of_entry = np.unique(np.concatenate(keys), return_inverse=True)
    free = np.array(
        [
            _free_minutes(problem, int(k) // len(processes), processes[int(k) % len(processes)], days)
            for k in pairs
        ]
    )
    lp = IncrementalLP(GLOP)
    demand_rows = lp.add_rows(np.full(len(columns.units), -np.inf), columns.units)
    capacity_rows = lp.add_rows(np.full(len(pairs), -np.inf), np.maximum(0.0, free))
    ids = lp.add_variables(
        np.zeros(len(columns.place)), columns.units[columns.place], columns.km - UNIT_VALUE
    )
    lp.set_coefficients(demand_rows[columns.place], ids, np.ones(len(ids)))
    lp.set_coefficients(
        capacity_rows[pair_of_entry], ids[np.concatenate(entry_column)], np.concatenate(entry_minutes)
    )
    solution = lp.solve(seconds)
    if not solution.optimal:
        return {}
    # What a minute is worth per (lab, process): minus the dual of its row (a minimisation's binding
    # <= rows have duals <= 0); NaN where the LP has no such row.
    per_minute = np.full((len(problem.labs), len(processes)), np.nan)
    per_minute[pairs // len(processes), pairs % len(processes)] = -solution.dual[capacity_rows]
    return _relative(problem, designs, minutes, per_minute, float(columns.km.max(initial=0.0)))


@dataclass(frozen=True)
class _Columns:
    """The LP's columns: units of a place's demand made at one of its nearest capable labs."""

    units: np.ndarray  # per place: units wanted
    place: np.ndarray  # per column: its place
    lab: np.ndarray  # per column: its lab (index)
    km: np.ndarray  # per column: its trip, times the km weight
    design: np.ndarray  # per column: its design (index in the sorted designs)

    @staticmethod
    def near(
        problem: Problem, places: list[tuple[str, float, float, float]], designs: list[str], km_weight: float
    ) -> _Columns | None:
        """Each place with its `LP_LABS` nearest capable labs; None when no place has one."""
        labs = problem.labs
        lab_lat = np.array([s.lab.location.lat for s in labs])
        lab_lon = np.array([s.lab.location.lon for s in labs])
        units: list[float] = []
        place, lab, km, design = [], [], [], []
        for d, design_id in enumerate(designs):
            capable = np.flatnonzero([can_make(state, problem.designs[design_id]) for state in labs])
            if not len(capable):
                continue
            mine = [(lat, lon, u) for name, lat, lon, u in places if name == design_id]
            take = min(LP_LABS, len(capable))
            for start in range(0, len(mine), CHUNK_PLACES):
                part = mine[start : start + CHUNK_PLACES]
                first = len(units)
                units += [u for _, _, u in part]
                trips = distances_km(
                    [p[0] for p in part], [p[1] for p in part], lab_lat[capable], lab_lon[capable]
                )
                if take < len(capable):
                    nearest = np.argpartition(trips, take - 1, axis=1)[:, :take]
                else:
                    nearest = np.broadcast_to(np.arange(len(capable)), (len(part), take))
                rows = np.repeat(np.arange(len(part)), take)
                place.append(first + rows)
                lab.append(capable[nearest.ravel()])
                km.append(trips[rows, nearest.ravel()] * km_weight)
                design.append(np.full(len(rows), d))
        if not place:
            return None
        return _Columns(
            np.array(units),
            np.concatenate(place),
            np.concatenate(lab),
            np.concatenate(km),
            np.concatenate(design),
        )


def _relative(
    problem: Problem, designs: list[str], minutes: np.ndarray, per_minute: np.ndarray, longest: float
) -> dict[tuple[str, str], float]:
    """Per (design, lab): what a unit's minutes are worth there beyond the lab where they are worth
    least, at most `longest`; labs the LP never offered a design get no price, nor do the cheapest."""
    prices: dict[tuple[str, str], float] = {}
    for d, design_id in enumerate(designs):
        needed = minutes[d] > 0
        worth = (np.nan_to_num(per_minute[:, needed], nan=np.inf) * minutes[d, needed]).sum(axis=1)
        considered = np.isfinite(worth)
        if not considered.any():
            continue
        least = worth[considered].min()
        for j in np.flatnonzero(considered & (worth - least > 1e-9)).tolist():
            prices[design_id, problem.labs[j].lab.id] = min(longest, float(worth[j] - least))
    return prices


def _places(problem: Problem) -> list[tuple[str, float, float, float]]:
    """The open demand and what the rates will still bring, by design and place (to `PLACE_DEG`):
    (design id, units-weighted latitude and longitude, units)."""
    found: dict[tuple[str, int, int], list[float]] = {}
    entries = [(d.order.design, d.order.delivery, float(d.quantity)) for d in problem.demands]
    entries += [(f.design, f.delivery, f.units) for f in problem.future]
    for design_id, at, units in entries:
        if design_id not in problem.designs or units <= 0:
            continue
        key = (design_id, round(at.lat / PLACE_DEG), round(at.lon / PLACE_DEG))
        place = found.setdefault(key, [0.0, 0.0, 0.0])
        place[0] += units * at.lat
        place[1] += units * at.lon
        place[2] += units
    return [(key[0], lat / u, lon / u, u) for key, (lat, lon, u) in sorted(found.items())]


def _free_minutes(problem: Problem, lab: int, process: str, days: float) -> float:
    """A lab's machine minutes for a process from now over `days`, less the work it holds already."""
    state = problem.labs[lab]
    return sum(
        m.minutes_per_day() * days - backlog_by(state, m.id, days)
        for m in state.lab.machines
        if process in m.processes
    )
