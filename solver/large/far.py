"""Units still short after the rounding, placed at labs off their demand's candidates.

Where labs cannot make everything asked of them (a continent: 50,000 orders over 5,000 labs), a
demand's candidates (its nearest labs) fill up while labs farther off still have machine time for
its design. A unit short costs its penalty (100,000 km-equivalents for routine work), more than any
trip across a continent; the relaxation reaches such labs only by widening the candidates, which
the clock may not allow. Here each demand still short, most urgent first, takes the nearest labs
that qualify for it, are not its candidates and still have room for its design by the horizon.

Room is read on the network's own rows. A unit of a design made at a lab by the horizon uses exactly
what any option of that design at that lab finishing at the horizon uses: the same machine sets at
their horizon checkpoints, the same stock rows. Such an option of another demand stands in for the
unit (its *proxy*) when room is asked and counted, so the rows stay exact and every plan the
rounding made stays valid. Only the labs the network holds for the design, with exact rows, are
reached; units made there arrive after the horizon's work, late when that is past their due date.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from protocol.model import Allocation
from solver.large.network import Network
from solver.large.rounding import Rows
from solver.model.candidates import Candidates, km_beyond
from solver.model.lines import LineUnits, allocation_line
from solver.model.objective import overdue_weight, unit_cost
from solver.model.problem import Problem, SolveParams, days_until, earliest_finish, transit

#: Short demands whose distances to every lab are measured at once (a block of the distance matrix).
BLOCK = 256


@dataclass(frozen=True)
class FarUnits:
    """Units of one demand placed at a lab off its candidates, made by the horizon."""

    demand: int
    lab: int
    units: int
    km: float
    discount: float  # trail discount per unit
    late: bool  # they arrive after the due date
    arrival: float  # days from now by which they arrive

    def allocation(self, problem: Problem, params: SolveParams, horizon: float) -> Allocation:
        """The plan line of these units, with its cost terms."""
        line = LineUnits()
        line.add(self.units, self.late, horizon, self.arrival, params)
        return allocation_line(problem, params, self.demand, self.lab, self.km, self.discount, line)


def place_far(
    problem: Problem,
    params: SolveParams,
    network: Network,
    candidates: Candidates,
    units: np.ndarray,
    deadline: float = math.inf,
    rows: Rows | None = None,
) -> list[FarUnits]:
    """Units short under `units` (whole units per option of `network`) placed off their candidates,
    most urgent demand first, nearest lab first, where a unit there costs less than its shortage.

    `rows`, when given, are the network's rows with `units` counted in (the rounding's own, see
    `solver.large.rounding.round_units_by`); they are counted on. Stops at `deadline` (a
    `time.perf_counter()` instant): what is not placed by then stays short.
    """
    n = network
    design_row = candidates.design_row
    if not n.options or design_row is None or candidates.useful is None:
        return []
    placed = np.bincount(n.demand, weights=units, minlength=len(n.quantity)).astype(np.int64)
    missing = n.quantity - placed
    short = np.flatnonzero(missing > 0)
    if not len(short):
        return []
    labs = len(problem.labs)
    proxy = _proxies(n, design_row, labs)
    reached = proxy >= 0
    if not reached.any():
        return []
    if rows is None:
        rows = Rows(n)
        rows.load(units)
    short = short[np.lexsort((short, -n.shortage[short]))]
    found: list[FarUnits] = []
    for start in range(0, len(short), BLOCK):
        block = short[start : start + BLOCK]
        km = km_beyond(problem, candidates, block)
        for r, d in enumerate(block.tolist()):
            if time.perf_counter() >= deadline:
                return found
            demand = problem.demands[d]
            if earliest_finish(problem, params, demand) > n.days:
                continue
            row = int(design_row[d])
            at = np.flatnonzero(np.isfinite(km[r]) & reached[row])
            if not len(at):
                continue
            at = at[np.argsort(km[r, at], kind="stable")]
            due = days_until(problem, demand.order.due_at)
            priority = demand.order.priority
            left = int(missing[d])
            for j in at.tolist():
                distance = float(km[r, j])
                arrival = n.days + transit(params, distance)
                late = arrival > due + 1e-9
                o = int(proxy[row, j])
                discount = float(n.discount[o])  # a trail's discount is the design's at the lab
                lateness = params.lateness_penalty[priority] if late else 0.0
                overdue = overdue_weight(params.time_weight, priority) * (arrival - due) if late else 0.0
                time_weight = params.time_weight[priority]
                per_unit = unit_cost(
                    distance, discount, time_weight, arrival, lateness, params.km_weight, overdue
                ) + problem.bid_price(demand.order.design, j)
                if per_unit + params.setup_cost / left >= n.shortage[d]:
                    break  # nearest first: no lab farther off is worth it either
                take = min(left, rows.room(o))
                if take <= 0:
                    reached[row, j] = False  # room only shrinks as units are placed
                    continue
                rows.add(o, take)
                found.append(FarUnits(d, j, take, distance, discount, late, arrival))
                left -= take
                if left == 0:
                    break
    return found


def _proxies(network: Network, design_row: np.ndarray, labs: int) -> np.ndarray:
    """Per (design row, lab): an option of that design at that lab finishing at the horizon, on a lab
    with exact rows, or -1 where the network has none."""
    n = network
    designs = int(design_row.max(initial=-1)) + 1
    proxy = np.full((designs, labs), -1, dtype=np.int64)
    at = np.flatnonzero(n.exact & (n.finish >= n.days - 1e-9))
    if not len(at):
        return proxy
    key = design_row[n.demand[at]].astype(np.int64) * labs + n.lab[at]
    keys, first = np.unique(key, return_index=True)
    proxy.reshape(-1)[keys] = at[first]
    return proxy
