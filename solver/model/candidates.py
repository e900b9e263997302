"""Candidate labs per demand: the k nearest live labs able to make at least one unit.

Each demand is linked only to a few labs, so the allocation model stays a sparse bipartite graph
(demands x labs) instead of a dense one. Distances are great-circle, computed as one numpy matrix.
A lab qualifies for a design when it is capable (every step has an eligible machine) and could make
one unit on its own: each step's group has the step's minutes free within the horizon and the stock
holds one unit's materials. Both are necessary for any allocation there, so the filter loses nothing
and keeps the k places for labs that can actually help.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from protocol.model import Design
from solver.model.capability import step_groups
from solver.model.geo import EARTH_RADIUS_KM, distances_km
from solver.model.problem import LabState, Problem, free_minutes
from solver.model.trail_strength import problem_trail_strengths
from solver.model.trails import DEFAULT_RULES, TrailRules


class Candidate(NamedTuple):
    """One edge of the candidate graph: a lab (index into problem.labs) and its distance to delivery.

    A named tuple rather than a dataclass: a large problem has a hundred thousand of them.
    """

    lab: int
    km: float


@dataclass(frozen=True)
class Candidates:
    """Per demand (same order as problem.demands): its candidate labs, nearest first, and why none.

    Edges are held as flat arrays, demand after demand (a large problem has a few hundred thousand);
    `edges` gives them as tuples of `Candidate`, built on first use.
    """

    edge_lab: np.ndarray  # lab index of every edge
    edge_km: np.ndarray  # its great-circle km
    edge_start: np.ndarray  # per demand, the index of its first edge; one more entry at the end
    capable_labs: tuple[int, ...]  # per demand: live labs that can run every step, before capacity/stock
    #: per demand: the licence gate's verdict, None when the requester accepts the design's licence.
    licence_gate: tuple[str | None, ...] = ()
    #: per demand: km to the nearest qualifying lab that is not a candidate (inf when none is left);
    #: every lab off the candidates is at least this far, which lets a bound cover them all.
    beyond: tuple[float, ...] = ()
    #: per demand: row of its design in `useful`; per (design, lab): the lab qualifies (see above).
    design_row: np.ndarray | None = field(default=None, repr=False, compare=False)
    useful: np.ndarray | None = field(default=None, repr=False, compare=False)

    @cached_property
    def edges(self) -> tuple[tuple[Candidate, ...], ...]:
        """Per demand, its candidates as (lab, km) tuples, nearest first (then trails, room, near)."""
        labs, kms = self.edge_lab.tolist(), self.edge_km.tolist()
        bounds = self.edge_start.tolist()
        return tuple(
            tuple(Candidate(lab=j, km=d) for j, d in zip(labs[a:b], kms[a:b], strict=True))
            for a, b in itertools.pairwise(bounds)
        )


NO_CAPABLE_LAB = "no capable lab"


def shortage_reason(problem: Problem, candidates: Candidates, d: int) -> str:
    """Why units of demand `d` are short, in a line a requester can read."""
    design = problem.demands[d].order.design
    if design not in problem.designs:
        return f"{NO_CAPABLE_LAB}: design {design!r} is unknown to the solver"
    if candidates.licence_gate and candidates.licence_gate[d]:
        return str(candidates.licence_gate[d])
    if candidates.capable_labs[d] == 0:
        return NO_CAPABLE_LAB
    n = int(candidates.edge_start[d + 1] - candidates.edge_start[d])
    where = "any capable lab" if n == 0 else f"the {n} nearest capable lab{'s' if n != 1 else ''}"
    return f"not enough capacity or stock before the due date (or within the late window) at {where}"


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
    problem: Problem,
    k: int,
    days: float,
    by_trail: int = 0,
    by_room: int = 0,
    reach: int = 4,
    within_km: float = 0.0,
    most: int = 0,
    feed_labs: bool = False,
    rules: TrailRules = DEFAULT_RULES,
) -> Candidates:
    """The k nearest qualifying labs for every demand, plus the `by_trail` strongest-trail ones and
    the `by_room` labs with the most room for the design among the `reach` × k nearest, and then
    every other qualifying lab within `within_km`, up to `most` candidates in all. With `feed_labs`,
    a lab that these edges leave short of work gets its nearest demands too (`_feed_starved_labs`):
    pass it only when `problem` holds every open demand, or every lab would look short. A trail's
    strength is read under the solve's trail `rules`, as its discount is.

    The labs with room let a concentrated surge reach capacity beyond its nearest labs while the
    model stays small. Ties are broken by lab order, so the result is deterministic. A demand whose
    requester does not accept the design's licence gets no candidate. Demands are ranked in blocks
    of `_BLOCK` rows of the distance matrix, so memory stays flat at 10,000 orders x 2,000 labs.
    """
    if not problem.demands:
        empty = np.zeros(0, dtype=np.int64)
        return Candidates(
            edge_lab=empty, edge_km=np.zeros(0), edge_start=np.zeros(1, dtype=np.int64), capable_labs=()
        )
    design_ids = sorted({d.order.design for d in problem.demands})
    capable, useful, room = _lab_table(problem, design_ids, days, by_room > 0)
    row = np.array([design_ids.index(d.order.design) for d in problem.demands], dtype=np.int64)
    gates = tuple(licence_gate(problem, i) for i in range(len(problem.demands)))
    blocked = np.array([gate is not None for gate in gates], dtype=bool)
    excluded: dict[int, list[int]] = {}
    if problem.excluded:
        lab_index = {s.lab.id: j for j, s in enumerate(problem.labs)}
        demand_index = {d.order.id: i for i, d in enumerate(problem.demands)}
        for order_id, lab_id in problem.excluded:
            if order_id in demand_index and lab_id in lab_index:
                excluded.setdefault(demand_index[order_id], []).append(lab_index[lab_id])
    strong = _strong_trails(problem, rules) if by_trail else {}
    width = min(len(problem.labs), max(k * reach if by_room else k, k + by_room + by_trail, most) + 1)
    # Within `within_km` means a haversine term of at most sin²(within_km / 2R).
    near_term = math.sin(min(math.pi / 2, within_km / (2 * EARTH_RADIUS_KM))) ** 2
    edges: list[list[int]] = []
    beyond: list[float] = []
    lat = np.array([d.order.delivery.lat for d in problem.demands])
    lon = np.array([d.order.delivery.lon for d in problem.demands])
    lab_lat = np.array([s.lab.location.lat for s in problem.labs])
    lab_lon = np.array([s.lab.location.lon for s in problem.labs])
    for start in range(0, len(problem.demands), _BLOCK):
        rows = slice(start, min(start + _BLOCK, len(problem.demands)))
        masked = _haversine_terms(lat[rows], lon[rows], lab_lat, lab_lon)
        masked[~useful[row[rows]]] = np.inf
        masked[blocked[rows]] = np.inf
        for i, labs in excluded.items():
            if rows.start <= i < rows.stop:
                masked[i - rows.start, labs] = np.inf
        wide = _nearest(masked, width) if width else np.zeros((masked.shape[0], 0), dtype=np.int64)
        finite = np.isfinite(np.take_along_axis(masked, wide, axis=1))
        for r in range(masked.shape[0]):
            i = rows.start + r
            ranked = wide[r][finite[r]].tolist()
            chosen = ranked[:k]
            taken = set(chosen)
            if strong:
                extra = [
                    j
                    for j in strong.get(problem.demands[i].order.design, [])
                    if np.isfinite(masked[r, j]) and j not in taken
                ]
                chosen += extra[:by_trail]
                taken.update(extra[:by_trail])
            if by_room:
                pool = [j for j in ranked[: k * reach] if j not in taken]
                pool.sort(key=lambda j, d=row[i]: -room[d, j])  # stable: nearest first among equals
                chosen += pool[:by_room]
                taken.update(pool[:by_room])
            rest = [j for j in ranked if j not in taken]
            if within_km > 0 and len(chosen) < most:
                close = [j for j in rest if masked[r, j] <= near_term][: most - len(chosen)]
                chosen += close
                taken.update(close)
                rest = (
                    rest[len(close) :] if close == rest[: len(close)] else [j for j in rest if j not in taken]
                )
            edges.append(chosen)
            beyond.append(rest[0] if rest else -1)
    if feed_labs:
        if not by_room:
            room = _lab_table(problem, design_ids, days, True)[2]
        _feed_starved_labs(problem, edges, row, useful, room, blocked, excluded, FEED_EDGES)
    edge_km, far = _edge_km(problem, edges, beyond)
    return Candidates(
        edge_lab=np.array([j for e in edges for j in e], dtype=np.int64),
        edge_km=edge_km,
        edge_start=np.r_[0, np.cumsum([len(e) for e in edges])].astype(np.int64),
        capable_labs=tuple(int(n) for n in capable[row].sum(axis=1)),
        licence_gate=gates,
        beyond=tuple(far),
        design_row=row,
        useful=useful,
    )


#: Most edges a lab short of work gains per design (`_feed_starved_labs`): enough to fill a lab's
#: horizon with a surge's orders of a day's size, few enough to keep the model small.
FEED_EDGES = 12


def _feed_starved_labs(
    problem: Problem,
    edges: list[list[int]],
    row: np.ndarray,
    useful: np.ndarray,
    room: np.ndarray,
    blocked: np.ndarray,
    excluded: dict[int, list[int]],
    most: int,
) -> None:
    """Link each lab that the demands' own nearest labs leave short of work to its nearest demands.

    Candidates are chosen from each demand's side, so a lab that is no demand's near neighbour (an
    island, a city at the edge of the network) is reached by few or none, and its machines idle
    while far more work waits at labs already full: in a surge, capacity lost for good. A lab is
    short when the units of the demands that reach it are fewer than it could make alone within the
    horizon (`units_alone`); a demand is wanting when its labs' room, shared in proportion among the
    demands that reach each, is less than it asks. Each short lab gains edges to its nearest wanting
    demands of each design, nearest first, until it is short no more, at most `most` more. When
    nothing is wanting (no surge) nothing is added, so the model stays as small as before. Whether
    to use them stays the model's choice: they are priced like any edge (km, days, setup). Edges
    are only added, so each demand's `beyond` (the km to its nearest non-candidate) still bounds
    every lab left off.
    """
    reach = np.zeros(room.shape, dtype=np.int64)
    quantity = np.array([d.quantity for d in problem.demands], dtype=np.int64)
    for i, labs in enumerate(edges):
        reach[row[i], labs] += quantity[i]
    # A demand is wanting when its labs' room, shared among all the demands that reach each of
    # them in proportion to size, falls short of it: only such demands are worth a longer trip.
    share = np.where(reach > 0, room / np.maximum(reach, 1), 0.0)
    wanting = np.array([share[row[i], labs].sum() < 1.0 for i, labs in enumerate(edges)], dtype=bool)
    short = np.argwhere(useful & (reach < room))
    if not len(short) or not wanting.any():
        return
    lat = np.array([d.order.delivery.lat for d in problem.demands])
    lon = np.array([d.order.delivery.lon for d in problem.demands])
    refused = {(i, j) for i, labs in excluded.items() for j in labs}
    for design_row, j in short.tolist():
        mine = np.flatnonzero((row == design_row) & ~blocked & wanting)
        if not len(mine):
            continue
        at = problem.labs[j].lab.location
        km = _pairwise_km(lat[mine], lon[mine], np.full(len(mine), at.lat), np.full(len(mine), at.lon))
        added = 0
        for i in mine[np.lexsort((mine, km))].tolist():
            if reach[design_row, j] >= room[design_row, j] or added >= most:
                break
            if j in edges[i] or (i, j) in refused:
                continue
            edges[i].append(j)
            reach[design_row, j] += quantity[i]
            added += 1


def merge_candidates(base: Candidates, more: Candidates, demands: np.ndarray) -> Candidates:
    """`base` with the listed demands' candidates extended by `more` (found for those demands alone).

    A widened demand keeps its edges first, in their order, then gains those of `more` it lacked;
    its `beyond` becomes that of `more`, whose candidates reach further.
    """
    extra = {int(d): i for i, d in enumerate(demands.tolist())}
    labs: list[np.ndarray] = []
    kms: list[np.ndarray] = []
    sizes: list[int] = []
    beyond = list(base.beyond)
    for d in range(len(base.edge_start) - 1):
        own = slice(base.edge_start[d], base.edge_start[d + 1])
        lab, km = base.edge_lab[own], base.edge_km[own]
        if d in extra:
            i = extra[d]
            theirs = slice(more.edge_start[i], more.edge_start[i + 1])
            new = ~np.isin(more.edge_lab[theirs], lab)
            lab = np.concatenate([lab, more.edge_lab[theirs][new]])
            km = np.concatenate([km, more.edge_km[theirs][new]])
            beyond[d] = more.beyond[i]
        labs.append(lab)
        kms.append(km)
        sizes.append(len(lab))
    return replace(
        base,
        edge_lab=np.concatenate(labs).astype(np.int64) if labs else base.edge_lab,
        edge_km=np.concatenate(kms) if kms else base.edge_km,
        edge_start=np.r_[0, np.cumsum(sizes)].astype(np.int64),
        beyond=tuple(beyond),
    )


def with_pairs(problem: Problem, base: Candidates, pairs: list[tuple[int, int]]) -> Candidates:
    """`base` with these (demand, lab) edges added where they are missing and the lab qualifies.

    A warm start's plan may use labs that only a widened network held; without their edges its lines
    there would be dropped. A lab qualifies as for `find_candidates` (it can make one unit of the
    design, the requester accepts the licence, the lab did not refuse the order). `beyond` is kept:
    more candidates leave every other lab at least as far as it says, so it stays a valid bound.
    """
    if base.useful is None or base.design_row is None:
        return base
    index = {s.lab.id: j for j, s in enumerate(problem.labs)}
    refused = {(o, index[lab]) for o, lab in problem.excluded if lab in index}
    wanted: dict[int, list[int]] = {}
    for d, lab in sorted(set(pairs)):
        own = base.edge_lab[base.edge_start[d] : base.edge_start[d + 1]]
        gated = bool(base.licence_gate and base.licence_gate[d])
        if lab in own or gated or not base.useful[base.design_row[d], lab]:
            continue
        if (problem.demands[d].order.id, lab) in refused:
            continue
        wanted.setdefault(d, []).append(lab)
    if not wanted:
        return base
    demands = np.array(sorted(wanted), dtype=np.int64)
    labs = [wanted[int(d)] for d in demands.tolist()]
    lab = np.array([j for ls in labs for j in ls], dtype=np.int64)
    demand = np.repeat(demands, [len(ls) for ls in labs])
    lat = np.array([problem.demands[d].order.delivery.lat for d in demand.tolist()])
    lon = np.array([problem.demands[d].order.delivery.lon for d in demand.tolist()])
    lab_lat = np.array([problem.labs[j].lab.location.lat for j in lab.tolist()])
    lab_lon = np.array([problem.labs[j].lab.location.lon for j in lab.tolist()])
    km = _pairwise_km(lat, lon, lab_lat, lab_lon)
    sizes = [len(ls) for ls in labs]
    more = replace(
        base,
        edge_lab=lab,
        edge_km=km,
        edge_start=np.r_[0, np.cumsum(sizes)].astype(np.int64),
        beyond=tuple(base.beyond[int(d)] for d in demands.tolist()),
    )
    return merge_candidates(base, more, demands)


def km_beyond(problem: Problem, candidates: Candidates, demands: np.ndarray) -> np.ndarray:
    """Per listed demand (rows) and lab (columns): the km to each lab that qualifies for the demand
    but is not its candidate, inf elsewhere (a lab that does not qualify, a candidate, a lab the
    order excludes, or every lab when the licence gate closes the demand)."""
    if candidates.useful is None or candidates.design_row is None or not len(demands):
        return np.full((len(demands), len(problem.labs)), np.inf)
    rows = candidates.design_row[demands]
    lat = [problem.demands[d].order.delivery.lat for d in demands.tolist()]
    lon = [problem.demands[d].order.delivery.lon for d in demands.tolist()]
    km = distances_km(
        lat, lon, [s.lab.location.lat for s in problem.labs], [s.lab.location.lon for s in problem.labs]
    )
    km[~candidates.useful[rows]] = np.inf
    index = {s.lab.id: j for j, s in enumerate(problem.labs)}
    excluded: dict[str, list[int]] = {}
    for o, lab_id in problem.excluded:
        if lab_id in index:
            excluded.setdefault(o, []).append(index[lab_id])
    for r, d in enumerate(demands.tolist()):
        km[r, candidates.edge_lab[candidates.edge_start[d] : candidates.edge_start[d + 1]]] = np.inf
        if candidates.licence_gate and candidates.licence_gate[d]:
            km[r, :] = np.inf
        km[r, excluded.get(problem.demands[d].order.id, [])] = np.inf
    return km


#: Demands per block of the distance matrix (2,048 x 2,000 floats: 32 MB).
_BLOCK = 2048


def _lab_table(
    problem: Problem, design_ids: list[str], days: float, with_room: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (design, lab): capable, useful (could make one unit alone), units it could make alone."""
    capable = np.zeros((len(design_ids), len(problem.labs)), dtype=bool)
    useful = np.zeros_like(capable)
    room = np.zeros(capable.shape, dtype=np.int64)
    for j, state in enumerate(problem.labs):
        if not state.live:
            continue
        free = free_minutes(state, days)
        for i, design_id in enumerate(design_ids):
            design = problem.designs.get(design_id)
            if design is None:
                continue
            groups = step_groups(state.lab, design)
            if not all(groups):
                continue
            capable[i, j] = True
            useful[i, j] = _one_unit(state, design, groups, free)
            if with_room and useful[i, j]:
                room[i, j] = units_alone(state, design, free)
    return capable, useful, room


def _one_unit(
    state: LabState, design: Design, groups: tuple[frozenset[str], ...], free: dict[str, float]
) -> bool:
    """`can_make_one_unit` with the step groups already known."""
    for step, group in zip(design.steps, groups, strict=True):
        if sum(free[m] for m in group) < step.minutes:
            return False
    return all(
        state.stock.get(material, 0.0) >= amount for material, amount in design.materials_per_unit().items()
    )


def _edge_km(problem: Problem, edges: list[list[int]], beyond: list[int]) -> tuple[np.ndarray, list[float]]:
    """Great-circle km of every chosen edge (flat), and of each demand's nearest lab beyond (inf if none)."""
    demand = np.repeat(np.arange(len(edges)), [len(e) for e in edges])
    lab = np.array([j for e in edges for j in e], dtype=np.int64)
    has_beyond = np.array([j >= 0 for j in beyond], dtype=bool)
    demand = np.concatenate([demand, np.flatnonzero(has_beyond)]).astype(np.int64)
    lab = np.concatenate([lab, np.array(beyond, dtype=np.int64)[has_beyond]])
    lat = np.array([d.order.delivery.lat for d in problem.demands])[demand]
    lon = np.array([d.order.delivery.lon for d in problem.demands])[demand]
    lab_lat = np.array([s.lab.location.lat for s in problem.labs])[lab] if len(lab) else np.zeros(0)
    lab_lon = np.array([s.lab.location.lon for s in problem.labs])[lab] if len(lab) else np.zeros(0)
    km = _pairwise_km(lat, lon, lab_lat, lab_lon)
    n_edges = len(km) - int(has_beyond.sum())
    far = np.full(len(edges), np.inf)
    far[has_beyond] = km[n_edges:]
    return km[:n_edges], far.tolist()


def _strong_trails(problem: Problem, rules: TrailRules) -> dict[str, list[int]]:
    """Per design: indices of labs whose trail earns a strength (above the design's mean trail,
    `solver.model.trail_strength`), strongest first."""
    index = {s.lab.id: j for j, s in enumerate(problem.labs)}
    strong: dict[str, list[tuple[float, int]]] = {}
    for (design_id, lab_id), strength in problem_trail_strengths(problem, rules).items():
        if strength > 0.0 and lab_id in index:
            strong.setdefault(design_id, []).append((-strength, index[lab_id]))
    return {design_id: [j for _, j in sorted(pairs)] for design_id, pairs in strong.items()}


def _nearest(masked: np.ndarray, k: int) -> np.ndarray:
    """Per row, the column indices of the k smallest values, nearest first (ties by index)."""
    if k < masked.shape[1]:
        part = np.argpartition(masked, k, axis=1)[:, :k]
        order = np.take_along_axis(masked, part, axis=1)
        return np.take_along_axis(part, np.lexsort((part, order), axis=1), axis=1)
    return np.argsort(masked, axis=1, kind="stable")


def _haversine_terms(
    lats1: ArrayLike, lons1: ArrayLike, lats2: ArrayLike, lons2: ArrayLike
) -> NDArray[np.float64]:
    """Matrix of the haversine term h (distance = 2 R asin √h), which ranks pairs as distance does.

    Cheaper than `distances_km` on large matrices: the half-angle differences come from outer
    products of sines and cosines computed once per point, and no arcsine is taken. Rank with it,
    then measure the chosen pairs with `_pairwise_km`.
    """
    lat1 = np.radians(np.asarray(lats1, dtype=np.float64)) / 2
    lon1 = np.radians(np.asarray(lons1, dtype=np.float64)) / 2
    lat2 = np.radians(np.asarray(lats2, dtype=np.float64)) / 2
    lon2 = np.radians(np.asarray(lons2, dtype=np.float64)) / 2
    # sin(b - a) = sin b cos a - cos b sin a, per pair from per-point values.
    d_lat = np.outer(np.cos(lat1), np.sin(lat2)) - np.outer(np.sin(lat1), np.cos(lat2))
    d_lon = np.outer(np.cos(lon1), np.sin(lon2)) - np.outer(np.sin(lon1), np.cos(lon2))
    cos_lat1, cos_lat2 = np.cos(2 * lat1), np.cos(2 * lat2)
    d_lat *= d_lat
    d_lon *= d_lon
    d_lon *= cos_lat1[:, None]
    d_lon *= cos_lat2[None, :]
    d_lat += d_lon
    return d_lat


def _pairwise_km(
    lats1: ArrayLike, lons1: ArrayLike, lats2: ArrayLike, lons2: ArrayLike
) -> NDArray[np.float64]:
    """Great-circle km between point i of the first arrays and point i of the second (same shape)."""
    lat1, lon1 = (
        np.radians(np.asarray(lats1, dtype=np.float64)),
        np.radians(np.asarray(lons1, dtype=np.float64)),
    )
    lat2, lon2 = (
        np.radians(np.asarray(lats2, dtype=np.float64)),
        np.radians(np.asarray(lons2, dtype=np.float64)),
    )
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(1.0, h)))
