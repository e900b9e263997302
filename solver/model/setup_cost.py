"""The setup cost of a plan line, scaled to the network's trips.

Every (order, lab) pair a plan uses costs `SolveParams.setup_cost` (50 km-equivalents by default), so
that orders are not shattered across labs. What splitting an order really adds is a second delivery
run: out to the order's next capable lab and back. Across a country that run is 50-150 km, more than
the setup charges. Across a city it is a few km, and a fixed 50 is the price of carrying 20-30 units
across town. In fab-city-barcelona the plan therefore sent whole orders to one lab farther off
rather than split them between two near ones, and shipped more km per unit than nearest-greedy on
six seeds of eight (docs/benchmarks.md, "Eighteen variants never run").

So a solve charges a pair at most `SETUP_TRIPS` times the network's split trip: the median, over the
demands, of the km to their second-nearest capable live lab, and never less than `SETUP_FLOOR`. The
configured cost stays the ceiling, so networks of long trips plan as before.
"""

from __future__ import annotations

import numpy as np

from solver.model.capability import step_groups
from solver.model.geo import distances_km
from solver.model.problem import Problem

#: A split adds a run to the second lab and back.
SETUP_TRIPS = 2.0
#: A split is never free: where capable labs share the delivery point's place (a city's labs given at
#: the city's centre), an order is still not shared between them for nothing. One km-equivalent breaks
#: ties toward fewer lines and sends no work farther.
SETUP_FLOOR = 1.0
#: Demands measured for the median, spread evenly over the problem (all of them when fewer).
SPLIT_TRIP_SAMPLE = 256


def split_trip_km(problem: Problem) -> float | None:
    """The median km from a demand's delivery point to its second-nearest capable live lab.

    None when no measured demand has two capable labs (nothing to split between).
    """
    demands = problem.demands
    if not demands:
        return None
    step = max(1, -(-len(demands) // SPLIT_TRIP_SAMPLE))
    sample = demands[::step]
    live = [state for state in problem.labs if state.live]
    lab_lat = np.array([state.lab.location.lat for state in live])
    lab_lon = np.array([state.lab.location.lon for state in live])
    capable: dict[str, np.ndarray] = {}
    trips = []
    for demand in sample:
        design_id = demand.order.design
        if design_id not in capable:
            design = problem.designs.get(design_id)
            capable[design_id] = np.array(
                [design is not None and all(step_groups(state.lab, design)) for state in live], dtype=bool
            )
        able = capable[design_id]
        if able.sum() < 2:
            continue
        delivery = demand.order.delivery
        km = distances_km([delivery.lat], [delivery.lon], lab_lat[able], lab_lon[able])[0]
        trips.append(float(np.partition(km, 1)[1]))
    return float(np.median(trips)) if trips else None


def network_setup_cost(problem: Problem, setup_cost: float) -> float:
    """The setup cost a solve of `problem` charges per (order, lab) pair: `setup_cost` at most, and at
    least `SETUP_FLOOR` (or `setup_cost`, if lower)."""
    trip = split_trip_km(problem)
    if trip is None:
        return setup_cost
    return min(setup_cost, max(SETUP_FLOOR, SETUP_TRIPS * trip))
