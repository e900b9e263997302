"""The emergency fast path's two decisions, pure (SPEC.md section 10.8).

- `host_answer`: a host's firm answer to an emergency request, from the capacity its own plan leaves
  *spare* (so its own orders lose nothing), in its cells nearest the request's cell, cheapest first,
  at its shadow price plus the carriage to the request's cell.
- `choose`: the origin's choice among the answers: the cheapest first, at or below its `max_price`,
  until its need is met.

Why no summed-cost vote: a host gives only spare capacity, so its cost rises by at most the answer's
price times its units, and the origin takes an answer only at or below the emergency's lateness
penalty, at most what each unit saves it. Every taken answer lowers the summed cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from solver.federation.cells import cell_centre
from solver.federation.region import RegionModel, Solution
from solver.model.problem import SolveParams

#: The priority every trade of the fast path carries.
EMERGENCY = "emergency"


def capacity_window(window: int) -> int:
    """The day window a host answers from: the request's, and day 1 at least (window 0 has no whole
    day of work before it: its units come a little late, which still beats short)."""
    return max(1, window)


def max_price(params: SolveParams) -> float:
    """The most an origin pays a unit of an emergency made in time elsewhere: its lateness penalty,
    the least such a unit saves it (a unit short saves the far larger shortage penalty)."""
    return float(params.lateness_penalty[EMERGENCY])


@dataclass(frozen=True)
class Firm:
    """A host's firm answer: `units` (0: none) at `price` a unit delivered, made in `cells`."""

    units: int
    price: float
    cells: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """One host's answer as the origin holds it."""

    host: str
    units: int
    price: float


def host_answer(
    model: RegionModel,
    solution: Solution,
    design: str,
    cell: str,
    window: int,
    units: int,
    ceiling: float,
    params: SolveParams,
) -> Firm:
    """The host's answer to a request for `units` of `design` for `cell` by `window`, at most
    `ceiling` a unit: the spare units of its nearest cells, cheapest delivered first.

    `solution` must be the host's own LP solved with `stock_left=True` and with the capacity window
    `capacity_window(window)` among its windows; a cell's spare units are capped by the stock its plan
    leaves (a material the cell holds none of allows none).
    """
    if units < 1:
        raise ValueError(f"units: must be at least 1, got {units}")
    found = model.designs.get(design)
    if found is None:
        return Firm(0, 0.0)
    w = capacity_window(window)
    per_unit = found.materials_per_unit()
    options: list[tuple[float, str, int]] = []
    for near, km in model.near_cells(design, cell_centre(cell, model.cell_deg)):
        key = (near, design, w)
        if key not in solution.spare:
            continue
        free = solution.spare[key]
        for material, amount in per_unit.items():
            if amount > 0:
                free = min(free, solution.stock_left.get((near, material), 0.0) / amount)
        whole = math.floor(free + 1e-9)
        price = solution.prices[key] + params.km_weight * km
        if whole >= 1 and price <= ceiling:
            options.append((price, near, whole))
    left = units
    taken: dict[str, int] = {}
    paid = 0.0
    for price, near, whole in sorted(options):
        if left <= 0:
            break
        take = min(whole, left)
        taken[near] = take
        paid += take * price
        left -= take
    got = units - left
    return Firm(got, round(paid / got, 6) if got else 0.0, taken)


def choose(answers: list[Answer], units: int, ceiling: float) -> dict[str, int]:
    """Units to take from each host: the cheapest answers first (then by region id), at or below
    `ceiling` a unit, until `units` are met."""
    taken: dict[str, int] = {}
    left = units
    for answer in sorted(answers, key=lambda a: (a.price, a.host)):
        if left <= 0:
            break
        if answer.units < 1 or answer.price > ceiling:
            continue
        take = min(answer.units, left)
        taken[answer.host] = take
        left -= take
    return taken
