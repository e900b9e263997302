"""Bid prices: what a lab's machine minutes are worth to the demand the network knows is coming.

A round plans the orders open now. Where the known rates (`Problem.future`) will bring more than the
labs can make before the last of it falls due, a lab's minutes spent today are minutes some later
unit will not get, and which lab spends them on which design decides how far the units that are
made travel. A network of small labs near the city centre and one big print farm at its edge shows
it: a face shield takes five times the printer minutes of a finger splint, so the km-least way to
make as many units as the labs can is to print the shields at the farm and the splints in the
centre. A round that sees only today's orders cannot know it; it sends whatever is open to whichever
lab is free, and the farm's splints cross the city.

`bid_prices` solves the rest of the period in aggregate (an LP: the open demand and the rates' units
still to come, against each lab's process minutes until the last due date, most units first, then
the fewest km) and reads the value of a minute of each (lab, process) from its duals. A unit of a
design at a lab is then charged what its minutes are worth there, less what they are worth at the
capable lab where they are worth least (zero there), and at most the longest trip in the LP, so the
charge trades km against km and never outweighs a unit made. (Where two labs' last units are of
different designs, their minutes' worth differs by a share of a unit's worth rather than by km; the
cap keeps that charge to the longest trip.) The allocation adds it to each unit's cost
(`CostTerms.capacity`), so the plan and its explanation both say why a shield went to the farm.

Prices are set only where the known demand exceeds what the labs can make (the LP leaves some of it
unmet). Where everything fits, every minute's worth is a tie between labs that the day-to-day
jitter of real orders breaks at random: in the Fab City replays, prices set whatever the demand
(tried, computed once for the whole replay) made trips longer where every unit was made anyway
(seed 9: 1.74 -> 1.88 km per unit). This is bid-price control, as airlines
and hotels price their seats and rooms against the demand still to come (Talluri and van Ryzin, *The
Theory and Practice of Revenue Management*, 2004, ch. 3).

Material is left out: the solver does not know the labs' supply, and their stock alone, over weeks,
would price every material as scarce.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from ortools.linear_solver import pywraplp

from protocol.model import Location
from solver.model.capability import can_make
from solver.model.geo import distances_km
from solver.model.problem import Problem

#: What the LP counts one unit made as worth, against its km: far above any trip, so it makes as many
#: units as it can first and only then shortens their trips.
UNIT_VALUE = 100_000.0
#: Capable labs per demand in the LP, nearest first: the rest would only carry units farther.
LP_LABS = 30
#: Below this many units, an LP's unmet demand is rounding, not a shortage.
SHORT_UNITS = 0.5


def bid_prices(problem: Problem, km_weight: float = 1.0) -> dict[tuple[str, str], float]:
    """Per (design id, lab id): the km-equivalents a unit's minutes are worth at that lab beyond the
    capable lab where they are worth least, or {} when the known demand fits the labs (see above)."""
    wanted: list[tuple[str, Location, float]] = [
        (d.order.design, d.order.delivery, float(d.quantity)) for d in problem.demands
    ]
    wanted += [(f.design, f.delivery, f.units) for f in problem.future if f.units > 0]
    if not problem.future or not wanted:
        return {}
    ends = [f.last_due_at for f in problem.future] + [d.order.due_at for d in problem.demands]
    days = max(0.0, (max(ends) - problem.now).total_seconds() / 86_400.0)
    if days <= 0.0:
        return {}
    labs = problem.labs
    able = {
        design_id: np.array([can_make(state, design) for state in labs], dtype=bool)
        for design_id, design in problem.designs.items()
    }
    km = distances_km(
        [w[1].lat for w in wanted],
        [w[1].lon for w in wanted],
        [s.lab.location.lat for s in labs],
        [s.lab.location.lon for s in labs],
    )
    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:
        return {}
    use: dict[tuple[int, str], list[tuple[pywraplp.Variable, float]]] = defaultdict(list)
    objective = solver.Objective()
    total = 0.0
    longest = 0.0
    for w, (design_id, _, units) in enumerate(wanted):
        design = problem.designs.get(design_id)
        mask = able.get(design_id)
        if design is None or mask is None or not mask.any() or units <= 0:
            continue
        total += units
        capable = np.flatnonzero(mask)
        nearest = capable[np.argsort(km[w, capable], kind="stable")[:LP_LABS]]
        row = solver.Constraint(0.0, units)
        for lab in nearest:
            y = solver.NumVar(0.0, units, "")
            row.SetCoefficient(y, 1.0)
            objective.SetCoefficient(y, UNIT_VALUE - km_weight * float(km[w, lab]))
            longest = max(longest, km_weight * float(km[w, lab]))
            for step in design.steps:
                use[int(lab), step.process].append((y, step.minutes))
    rows = {}
    for (lab, process), terms in use.items():
        state = labs[lab]
        minutes = sum(
            m.minutes_per_day() * days - state.backlog_minutes.get(m.id, 0.0)
            for m in state.lab.machines
            if process in m.processes
        )
        row = solver.Constraint(-solver.infinity(), max(0.0, minutes))
        for y, per_unit in terms:
            row.SetCoefficient(y, per_unit)
        rows[lab, process] = row
    objective.SetMaximization()
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return {}
    made = sum(v.solution_value() for v in solver.variables())
    if made >= total - SHORT_UNITS:
        return {}
    worth: dict[tuple[str, int], float] = {}
    for design_id in sorted({w[0] for w in wanted}):
        design, mask = problem.designs.get(design_id), able.get(design_id)
        if design is None or mask is None:
            continue
        for lab in np.flatnonzero(mask):
            keys = [(int(lab), step.process) for step in design.steps]
            if all(key in rows for key in keys):  # a lab the LP never considered for it gets no price
                worth[design_id, int(lab)] = sum(
                    rows[key].dual_value() * step.minutes
                    for key, step in zip(keys, design.steps, strict=True)
                )
    prices: dict[tuple[str, str], float] = {}
    for design_id in {d for d, _ in worth}:
        values = {lab: v for (d, lab), v in worth.items() if d == design_id}
        least = min(values.values())
        for lab, value in values.items():
            price = min(longest, max(0.0, value - least))
            if price > 1e-9:
                prices[design_id, labs[lab].lab.id] = price
    return prices


def price_table(problem: Problem, design_ids: list[str]) -> np.ndarray:
    """`problem.bid_prices` as an array [design index, lab index]: zeros where none is set."""
    table = np.zeros((len(design_ids), len(problem.labs)))
    if problem.bid_prices:
        row = {design_id: i for i, design_id in enumerate(design_ids)}
        column = {state.lab.id: j for j, state in enumerate(problem.labs)}
        for (design_id, lab_id), price in problem.bid_prices.items():
            if design_id in row and lab_id in column:
                table[row[design_id], column[lab_id]] = price
    return table
