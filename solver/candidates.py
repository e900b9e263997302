"""Candidate labs per demand: the k nearest live labs able to make at least one unit.

Each demand is linked only to a few labs, so the allocation model stays a sparse bipartite graph
(demands x labs) instead of a dense one. Distances are great-circle, computed as one numpy matrix.
A lab qualifies for a design when it is capable (every step has an eligible machine) and could make
one unit on its own: each step's group has the step's minutes free within the horizon and the stock
holds one unit's materials. Both are necessary for any allocation there, so the filter loses nothing
and keeps the k places for labs that can actually help.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from protocol.model import Design
from solver.capability import can_make, step_groups
from solver.geo import distances_km
from solver.problem import LabState, Problem, free_minutes


@dataclass(frozen=True)
class Candidate:
    """One edge of the candidate graph: a lab (index into problem.labs) and its distance to delivery."""

    lab: int
    km: float


@dataclass(frozen=True)
class Candidates:
    """Per demand (same order as problem.demands): its candidate labs, nearest first, and why none."""

    edges: tuple[tuple[Candidate, ...], ...]
    capable_labs: tuple[int, ...]  # per demand: live labs that can run every step, before capacity/stock
    #: per demand: the licence gate's verdict, None when the requester accepts the design's licence.
    licence_gate: tuple[str | None, ...] = ()


def can_make_one_unit(state: LabState, design: Design, free: dict[str, float]) -> bool:
    """Necessary condition for any allocation: each step fits its group's free minutes, stock for one unit."""
    for step, group in zip(design.steps, step_groups(state.lab, design), strict=True):
        if sum(free[m] for m in group) < step.minutes:
            return False
    return all(
        state.stock.get(material, 0.0) >= amount for material, amount in design.materials_per_unit().items()
    )


def licence_gate(problem: Problem, demand_index: int) -> str | None:
    """Why the requester's licence policy rules the design out, or None when it does not."""
    order = problem.demands[demand_index].order
    design = problem.designs.get(order.design)
    if design is None or not order.accepts_licences or design.licence in order.accepts_licences:
        return None
    return (
        f"licence gate: design {design.id!r} is under {design.licence!r}, which the requester does not "
        f"accept (accepts: {', '.join(order.accepts_licences)})"
    )


def units_alone(state: LabState, design: Design, free: dict[str, float]) -> int:
    """Units of `design` the lab could make with these free minutes if it made nothing else."""
    need: dict[frozenset[str], float] = {}
    for step, group in zip(design.steps, step_groups(state.lab, design), strict=True):
        need[group] = need.get(group, 0.0) + step.minutes
    units = math.inf
    for group, minutes in need.items():
        if minutes > 0:
            units = min(units, math.floor(sum(free[m] for m in group) / minutes + 1e-9))
    for material, per_unit in design.materials_per_unit().items():
        if per_unit > 0:
            units = min(units, math.floor(state.stock.get(material, 0.0) / per_unit + 1e-9))
    return int(units) if math.isfinite(units) else 0


def find_candidates(
    problem: Problem, k: int, days: float, by_trail: int = 0, by_room: int = 0, reach: int = 4
) -> Candidates:
    """The k nearest qualifying labs for every demand, plus the `by_trail` strongest-trail ones and
    the `by_room` labs with the most room for the design among the `reach` × k nearest.

    The labs with room let a concentrated surge reach capacity beyond its nearest labs while the
    model stays small. Ties are broken by lab order, so the result is deterministic. A demand whose
    requester does not accept the design's licence gets no candidate.
    """
    if not problem.demands:
        return Candidates(edges=(), capable_labs=())
    design_ids = sorted({d.order.design for d in problem.demands})
    capable = np.zeros((len(design_ids), len(problem.labs)), dtype=bool)
    useful = np.zeros_like(capable)
    room = np.zeros(capable.shape, dtype=np.int64)
    free = [free_minutes(state, days) for state in problem.labs]
    for i, design_id in enumerate(design_ids):
        design = problem.designs.get(design_id)
        if design is None:
            continue
        for j, state in enumerate(problem.labs):
            capable[i, j] = can_make(state, design)
            useful[i, j] = capable[i, j] and can_make_one_unit(state, design, free[j])
            if by_room and useful[i, j]:
                room[i, j] = units_alone(state, design, free[j])

    row = np.array([design_ids.index(d.order.design) for d in problem.demands])
    if problem.labs:
        km = distances_km(
            [d.order.delivery.lat for d in problem.demands],
            [d.order.delivery.lon for d in problem.demands],
            [s.lab.location.lat for s in problem.labs],
            [s.lab.location.lon for s in problem.labs],
        )
    else:
        km = np.zeros((len(problem.demands), 0))
    gates = tuple(licence_gate(problem, i) for i in range(len(problem.demands)))
    masked = np.where(useful[row], km, np.inf)
    masked[[i for i, gate in enumerate(gates) if gate is not None], :] = np.inf
    if problem.excluded:
        lab_index = {s.lab.id: j for j, s in enumerate(problem.labs)}
        demand_index = {d.order.id: i for i, d in enumerate(problem.demands)}
        for order_id, lab_id in problem.excluded:
            if order_id in demand_index and lab_id in lab_index:
                masked[demand_index[order_id], lab_index[lab_id]] = np.inf
    nearest = _nearest(masked, k)
    wide = _nearest(masked, k * reach) if by_room else nearest
    edges = []
    strong = _strong_trails(problem) if by_trail else {}
    for i, demand in enumerate(problem.demands):
        chosen = [int(j) for j in nearest[i] if np.isfinite(masked[i, j])]
        extra = [
            j for j in strong.get(demand.order.design, []) if np.isfinite(masked[i, j]) and j not in chosen
        ]
        chosen += extra[:by_trail]
        if by_room:
            design_row = row[i]
            spacious = sorted(
                (int(j) for j in wide[i] if np.isfinite(masked[i, j]) and int(j) not in chosen),
                key=lambda j: (-room[design_row, j], masked[i, j]),
            )
            chosen += spacious[:by_room]
        edges.append(tuple(Candidate(lab=j, km=float(km[i, j])) for j in chosen))
    return Candidates(
        edges=tuple(edges),
        capable_labs=tuple(int(n) for n in capable[row].sum(axis=1)),
        licence_gate=gates,
    )


def _strong_trails(problem: Problem) -> dict[str, list[int]]:
    """Per design: indices of labs whose trail is above neutral, strongest first."""
    index = {s.lab.id: j for j, s in enumerate(problem.labs)}
    strong: dict[str, list[tuple[float, int]]] = {}
    for (design_id, lab_id), tau in problem.trails.items():
        if tau > 1.0 and lab_id in index:
            strong.setdefault(design_id, []).append((-tau, index[lab_id]))
    return {design_id: [j for _, j in sorted(pairs)] for design_id, pairs in strong.items()}


def _nearest(masked: np.ndarray, k: int) -> np.ndarray:
    """Per row, the column indices of the k smallest values, nearest first (ties by index)."""
    if k < masked.shape[1]:
        part = np.argpartition(masked, k, axis=1)[:, :k]
        order = np.take_along_axis(masked, part, axis=1)
        return np.take_along_axis(part, np.lexsort((part, order), axis=1), axis=1)
    return np.argsort(masked, axis=1, kind="stable")
