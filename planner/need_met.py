"""When a stream of demand is met: the day its deliveries catch up with what falls due, for good.

A rate (units per day until a date) is behind whenever fewer units have arrived than have fallen due.
It is *met* from the moment the arrivals catch up with the units due and stay caught up until the end
of the window looked at. The answer is that moment and the days until it, or, when the arrivals are
still short at the end of the window, no moment and the shortfall then. Pure: the planner (planned
arrivals against a rate's forecast) and the scenario replay (real arrivals against a stream's orders)
both call it, so "days until this need is met" means the same in the API and in the report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class NeedMet:
    """When a stream's arrivals catch up with its due units for good, or its shortfall at the end."""

    met_at: datetime | None  # None: still short at the end of the window
    days: float | None  # days from the start of the window to `met_at` (0: never behind)
    shortfall: int  # units due by the end of the window that have not arrived by then (0 when met)
    units_due: int  # units due within the window
    units_arrived: int  # units arrived within the window

    def to_json(self) -> dict[str, object]:
        """The answer as the API and the scenario JSON show it."""
        return {
            "days_until_met": None if self.days is None else round(self.days, 2),
            "met_at": None if self.met_at is None else self.met_at.isoformat(),
            "shortfall": self.shortfall,
            "units_due": self.units_due,
            "units_arrived": self.units_arrived,
        }


def need_met(
    dues: Iterable[tuple[datetime, int]],
    arrivals: Iterable[tuple[datetime, int]],
    since: datetime,
    until: datetime,
) -> NeedMet:
    """When arrivals (when, units) catch up with dues (when, units) for good, looking from `since` to
    `until`; what arrived or fell due before `since` counts at `since`. Arrivals count before dues
    at the same instant (a unit arriving exactly when due is on time)."""
    if until < since:
        raise ValueError(f"until ({until.isoformat()}) must not come before since ({since.isoformat()})")
    events = sorted(
        [(max(at, since), 0, units) for at, units in arrivals if at <= until and units > 0]
        + [(max(at, since), 1, -units) for at, units in dues if at <= until and units > 0]
    )
    balance = 0
    caught_up_at: datetime | None = since
    due = arrived = 0
    for at, _, change in events:
        was_behind = balance < 0
        balance += change
        if change > 0:
            arrived += change
        else:
            due -= change
        if balance < 0:
            caught_up_at = None
        elif was_behind:
            caught_up_at = at
    if caught_up_at is None:
        return NeedMet(None, None, -balance, due, arrived)
    return NeedMet(caught_up_at, (caught_up_at - since) / timedelta(days=1), 0, due, arrived)
