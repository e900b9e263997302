"""Candidate labs per demand: the k nearest live labs able to make at least one unit.

Each demand is linked only to a few labs, so the allocation model stays a sparse bipartite graph
(demands x labs) instead of a dense one. Distances are great-circle, computed as one numpy matrix.
A lab qualifies for a design when it is capable (every step has an eligible machine) and could make
one unit on its own: each step's group has the step's minutes free within the horizon and the stock
holds one unit's materials. Both are necessary for any allocation there, so the filter loses nothing
and keeps the k places for labs that can actually help.
"""

from __future__ import annotations

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


def can_make_one_unit(state: LabState, design: Design, free: dict[str, float]) -> bool:
    """Necessary condition for any allocation: each step fits its group's free minutes, stock for one unit."""
    for step, group in zip(design.steps, step_groups(state.lab, design), strict=True):
        if sum(free[m] for m in group) < step.minutes:
            return False
    return all(
        state.stock.get(material, 0.0) >= amount for material, amount in design.materials_per_unit().items()
    )


def find_candidates(problem: Problem, k: int, days: float) -> Candidates:
    """The k nearest qualifying labs for every demand (ties broken by lab order, so deterministic)."""
    if not problem.demands:
        return Candidates(edges=(), capable_labs=())
    design_ids = sorted({d.order.design for d in problem.demands})
    capable = np.zeros((len(design_ids), len(problem.labs)), dtype=bool)
    useful = np.zeros_like(capable)
    free = [free_minutes(state, days) for state in problem.labs]
    for i, design_id in enumerate(design_ids):
        design = problem.designs.get(design_id)
        if design is None:
            continue
        for j, state in enumerate(problem.labs):
            capable[i, j] = can_make(state, design)
            useful[i, j] = capable[i, j] and can_make_one_unit(state, design, free[j])

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
    masked = np.where(useful[row], km, np.inf)
    nearest = np.argsort(masked, axis=1, kind="stable")[:, :k]
    edges = tuple(
        tuple(Candidate(lab=int(j), km=float(km[i, j])) for j in nearest[i] if np.isfinite(masked[i, j]))
        for i in range(len(problem.demands))
    )
    return Candidates(edges=edges, capable_labs=tuple(int(n) for n in capable[row].sum(axis=1)))
