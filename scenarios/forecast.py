"""Known rates of a scenario, and their forecast: the orders a rate will still bring, before they come.

A scenario's `kind = "rate"` demand becomes a stream of orders, one per delivery point every
`every_days` (`scenarios.world`). The stream itself is known from the start: its design, its rate,
its ramp, its points and until when it runs. `forecast` turns it into the orders it is expected to
bring within the next days (without the random jitter, which nobody can know), each with the time it
will be placed. Cosmolocal's policy gives them to the solver as demand released at that time
(`solver.model.problem.Demand.release_at`), so today's plan leaves room for them; they are never queued at
a lab. The baselines do not know rates and never see them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from protocol.model import Location, Order
from solver.model.problem import FutureDemand


@dataclass(frozen=True)
class RateStream:
    """One rate of a scenario as it is known in advance, and the ids of the orders it brought."""

    id: str  # "rate-<index of the demand entry>"
    design: str
    priority: str
    points: tuple[tuple[Location, float], ...]  # delivery point, weight
    units_per_day: float
    start: datetime  # the first order's time
    until: datetime  # no order from then on
    every: timedelta
    ramp_days: float
    due: timedelta
    order_ids: frozenset[str] = field(default_factory=frozenset)

    def ramp(self, release: datetime) -> float:
        """Share of the full rate at a release (a linear ramp over `ramp_days`, as the world draws it)."""
        if self.ramp_days <= 0:
            return 1.0
        elapsed = (release - self.start + self.every) / timedelta(days=1)
        return min(1.0, elapsed / self.ramp_days)

    def expected_units(self, release: datetime) -> float:
        """The units a release is expected to bring over all its points (the rate, ramped, no jitter)."""
        return self.units_per_day * (self.every / timedelta(days=1)) * self.ramp(release)

    def releases(self) -> list[datetime]:
        """Every time the stream places its orders, first to last."""
        count = max(0, math.ceil((self.until - self.start) / self.every - 1e-9))
        return [self.start + k * self.every for k in range(count)]


def forecast(stream: RateStream, now: datetime, days: float) -> list[tuple[Order, datetime]]:
    """The orders the stream is expected to place after `now` and within `days`, each with its time.

    Quantities are the expected ones (the rate's share for each point, ramped, without jitter). Ids
    begin with the stream's id, so they never meet an order's.
    """
    if days <= 0:
        return []
    horizon = now + timedelta(days=days)
    total_weight = sum(w for _, w in stream.points)
    found: list[tuple[Order, datetime]] = []
    for k, release in enumerate(stream.releases()):
        if release <= now:
            continue
        if release > horizon:
            break
        total = stream.expected_units(release)
        for p, (location, weight) in enumerate(stream.points):
            quantity = round(total * weight / total_weight)
            if quantity <= 0:
                continue
            order = Order(
                id=f"{stream.id}-f{k}-{p}",
                design=stream.design,
                quantity=quantity,
                due_at=release + stream.due,
                delivery=location,
                priority=stream.priority,  # type: ignore[arg-type]
                created_at=release,
            )
            found.append((order, release))
    return found


def still_to_come(stream: RateStream, after: datetime) -> list[FutureDemand]:
    """What the stream is expected to bring to each of its points from its releases in the lead time
    after `after` (the expected quantities, as `forecast` counts them), with the due date of its last.

    These are the units that will want the same machine minutes as the work open now: released
    before the open work falls due. The solver prices the labs' minutes against them
    (`solver.large.bid_prices`)."""
    later = [release for release in stream.releases() if after < release <= after + stream.due]
    if not later:
        return []
    total_weight = sum(w for _, w in stream.points)
    units = sum(stream.expected_units(release) for release in later)
    last_due = later[-1] + stream.due
    return [
        FutureDemand(stream.design, location, units * weight / total_weight, last_due)
        for location, weight in stream.points
        if weight > 0
    ]
