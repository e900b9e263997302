"""Material transfers: which labs may ship material to which, when it arrives, and what it costs.

A network pools stock the way a central factory does, by moving material to idle machines. The
allocation model (`solver.allocation.allocate`) offers, beside each way to make units at a lab from its own
stock, the same units made from material shipped by one of the few nearest labs that hold it; the
sender's stock is one resource shared by its own work and what it ships, so a lab never ships more
than it has beyond its own planned use, and the machines of the receiving lab bound what it uses.
Material that arrives is usable only from its arrival: such units finish no earlier than that.

This module holds the parts that need no model: the sender graph, lead time, cost, and the
`Transfer` records of a plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np

from protocol.model import Design, Transfer
from solver.model.geo import distances_km
from solver.model.objective import transit_days
from solver.model.problem import LabState, Problem, SolveParams


@dataclass(frozen=True, slots=True)
class Sender:
    """A lab that may ship material to a receiver: its index in `problem.labs`, km and lead time."""

    lab: int
    km: float
    arrival: float  # days from now until a parcel sent now arrives


def lead_days(params: SolveParams, km: float) -> float:
    """Days between sending material now and its arrival: handling, then the road."""
    return transit_days(km, params.transport_kmh, params.transfer_handling_hours)


def neighbours(problem: Problem, params: SolveParams) -> dict[int, list[Sender]]:
    """Per live lab: the other live labs within `params.transfer_radius_km`, nearest first.

    Empty when transfers are off (radius 0) or there is a single live lab.
    """
    live = [j for j, s in enumerate(problem.labs) if s.live]
    if params.transfer_radius_km <= 0 or len(live) < 2:
        return {}
    lat = np.array([problem.labs[j].lab.location.lat for j in live])
    lon = np.array([problem.labs[j].lab.location.lon for j in live])
    km = distances_km(lat, lon, lat, lon)
    near: dict[int, list[Sender]] = {}
    for a, receiver in enumerate(live):
        order = np.argsort(km[a], kind="stable")
        near[receiver] = [
            Sender(live[b], float(km[a, b]), lead_days(params, float(km[a, b])))
            for b in order
            if b != a and km[a, b] <= params.transfer_radius_km
        ]
    return near


def idle_for(
    state: LabState,
    design: Design,
    groups: tuple[frozenset[str], ...],
    free: dict[str, float],
    quantity: int,
) -> list[str]:
    """Materials of `design` that would leave the lab's machines idle: the lab holds too little of
    them for the units of `quantity` its free machine minutes (`free`, within the horizon) could
    make. Sorted; empty when its stock is not what limits it."""
    need: dict[frozenset[str], float] = {}
    for step, group in zip(design.steps, groups, strict=True):
        need[group] = need.get(group, 0.0) + step.minutes
    room = quantity
    for group, minutes in need.items():
        room = min(room, math.floor(sum(free.get(m, 0.0) for m in group) / minutes + 1e-9))
    if room <= 0:
        return []
    return sorted(
        m
        for m, per_unit in design.materials_per_unit().items()
        if per_unit > 0 and state.stock.get(m, 0.0) + 1e-9 < per_unit * room
    )


def senders_for(
    problem: Problem, near: list[Sender], materials: list[str], design: Design, count: int
) -> list[Sender]:
    """The `count` nearest of `near` that hold at least one unit's worth of every material listed."""
    per_unit = design.materials_per_unit()
    chosen = []
    for sender in near:
        stock = problem.labs[sender.lab].stock
        if all(stock.get(m, 0.0) + 1e-9 >= per_unit[m] for m in materials):
            chosen.append(sender)
            if len(chosen) == count:
                break
    return chosen


def within_reach(problem: Problem, near: dict[int, list[Sender]]) -> Problem:
    """The problem as candidate search should see it: each lab's stock raised by the most any lab
    within reach holds, so a lab whose machines could use shipped material is not left out."""
    if not near:
        return problem
    labs = []
    for j, state in enumerate(problem.labs):
        stock = dict(state.stock)
        for sender in near.get(j, []):
            for material, amount in problem.labs[sender.lab].stock.items():
                stock[material] = max(stock.get(material, 0.0), amount)
        labs.append(replace(state, stock=stock))
    return replace(problem, labs=labs)


def with_incoming(problem: Problem) -> Problem:
    """The problem as candidate search should see it: each lab's stock raised by the material on
    its way to it (`LabState.incoming`), so a lab waiting for material is not left out."""
    if not any(state.incoming for state in problem.labs):
        return problem
    labs = []
    for state in problem.labs:
        stock = dict(state.stock)
        for parcel in state.incoming:
            stock[parcel.material] = stock.get(parcel.material, 0.0) + parcel.quantity
        labs.append(replace(state, stock=stock))
    return replace(problem, labs=labs)


def transfer_cost(params: SolveParams, km: float, quantity: float) -> float:
    """What shipping `quantity` of a material `km` costs: the distance term plus the handling term."""
    return km * quantity * params.transfer_km_weight + params.transfer_handling_cost


def transfer_records(
    problem: Problem, params: SolveParams, shipped: dict[tuple[int, int, str], tuple[float, float]]
) -> list[Transfer]:
    """The plan's transfers from (sender, receiver, material) -> (amount, km), sent now."""
    records = []
    for (sender, receiver, material), (amount, km) in sorted(shipped.items()):
        if amount <= 1e-12:
            continue
        records.append(
            Transfer(
                material=material,
                from_lab=problem.labs[sender].lab.id,
                to_lab=problem.labs[receiver].lab.id,
                quantity=amount,
                km=km,
                ship_at=problem.now,
                arrive_at=problem.now + timedelta(days=lead_days(params, km)),
                cost=transfer_cost(params, km, amount),
            )
        )
    return records
