"""Rates: demand known as units per day until a date, released day by day and forecast ahead.

A hospital that needs 200 face shields a day for three weeks says so once (`POST /rates`). The
planner releases the stream as orders, one a day (each due `due_days` after its release), and plans
the releases still to come within `forecast_days` as demand too: released at their own time
(`solver.model.problem.Demand.release_at`), so today's plan leaves room for them, and none of their units
is sent to a lab before the release is an order. A release's order id is the rate's id and the day
(`r-…-d3`), the same in the forecast as once ordered, so a plan for it carries over.

This module holds the records and the schedule, with no state: `planner.core` keeps the rates.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from protocol.model import Identifier, Location, Order, Priority, Record, UtcDatetime

#: Longest stream a rate may ask for: a year of daily releases.
MAX_RATE_DAYS = 366
#: One release a day.
RELEASE_EVERY = timedelta(days=1)
#: Days ahead in which a rate's releases still to come are planned as demand, by default: the next
#: release. The scenario replays measured one day ahead (docs/rates.md); longer was not measured with
#: the release rules the solver has now.
FORECAST_DAYS = 1.0
RateState = Literal["active", "ended"]


class RateRequest(Record):
    """What a requester asks for: `units_per_day` of a design, delivered to a place, until a date."""

    design: Identifier
    units_per_day: float = Field(gt=0.0, le=100_000.0, description="units needed per day")
    until: UtcDatetime = Field(description="the stream ends here: no units are released from then on")
    starts_at: UtcDatetime | None = Field(
        default=None, description="the first release (default: at once); one release a day from then"
    )
    due_days: float = Field(
        default=2.0, gt=0.0, le=60.0, description="each day's units are due this many days after release"
    )
    delivery: Location
    priority: Priority = "routine"
    accepts_licences: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="licences the requester accepts (as for an order); empty accepts any",
    )
    release: bool = Field(
        default=True,
        description="false: the requester places the stream's orders itself; the planner plans for "
        "the rate (its forecast, and the labs' minutes priced against it) but releases no order",
    )


class Rate(Record):
    """An accepted rate, as the planner keeps it."""

    id: Identifier
    design: Identifier
    units_per_day: float = Field(gt=0.0)
    starts_at: UtcDatetime
    until: UtcDatetime
    due_days: float = Field(gt=0.0)
    delivery: Location
    priority: Priority = "routine"
    accepts_licences: list[str] = Field(default_factory=list, max_length=50)
    created_at: UtcDatetime
    release: bool = True  # false: planned for, never released (`RateRequest.release`)


def check_span(starts_at: datetime, until: datetime) -> str | None:
    """Why a stream from `starts_at` to `until` cannot be accepted, or None."""
    if until <= starts_at:
        return f"{until.isoformat()} is not after the stream's start {starts_at.isoformat()}"
    if until - starts_at > timedelta(days=MAX_RATE_DAYS):
        return f"a rate may run at most {MAX_RATE_DAYS} days"
    return None


def releases(rate: Rate, through: datetime | None = None) -> Iterator[tuple[int, datetime, int]]:
    """The releases of the stream, first to last (up to `through` when given): (day index, when,
    units), whole units whose running total follows the rate (a fractional rate alternates), the last
    day in proportion to the part of it left."""
    span = (rate.until - rate.starts_at) / timedelta(days=1)
    for k in range(math.ceil(span - 1e-9)):
        at = rate.starts_at + k * RELEASE_EVERY
        if through is not None and at > through:
            return
        units = round(rate.units_per_day * min(k + 1.0, span)) - round(rate.units_per_day * k)
        if units > 0:
            yield k, at, units


def last_release(rate: Rate) -> datetime | None:
    """When the stream's last release is, or None when it releases no whole unit."""
    found = None
    for _, at, _ in releases(rate):
        found = at
    return found


def release_id(rate: Rate, day: int) -> str:
    """The id of the order a release becomes (and of its forecast before then)."""
    return f"{rate.id}-d{day}"


def release_order(rate: Rate, day: int, at: datetime, units: int) -> Order:
    """The order of one release, placed at `at`."""
    return Order(
        id=release_id(rate, day),
        design=rate.design,
        quantity=units,
        due_at=at + timedelta(days=rate.due_days),
        delivery=rate.delivery,
        priority=rate.priority,
        accepts_licences=list(rate.accepts_licences),
        created_at=at,
        state="open",
    )


def rate_state(rate: Rate, now: datetime) -> RateState:
    """Active until its last release is out."""
    last = last_release(rate)
    return "ended" if last is None or last <= now else "active"


def window_end(rate: Rate, now: datetime, forecast_days: float) -> datetime:
    """The end of what the planner plans for a rate: the due date of its last release forecast."""
    ahead = [at for _, at, _ in releases(rate, now + timedelta(days=forecast_days))]
    last = max(ahead, default=rate.starts_at)
    return max(now, last + timedelta(days=rate.due_days))
