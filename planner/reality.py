"""Plan against reality in the planner: what each job was planned to deliver, and what it did.

Each assignment keeps its plan line's promise (`arrive_by`, the latest planned arrival of its units,
and `on_time_units`, how many of them the plan counted on time) and, once its lab reports it done,
when it finished and when its units arrive (done, then handling and the road at the solver's
`transport_kmh`: the planner has no courier to ask). Units the plan counted on time that arrive after
their order's due date are *planned on time, arrived late*; each such job names a cause when the
planner knows one:

- **re-planned**: the job replaced work of the same order that had ended before it was made (a lab
  failed or refused it, or was lost, or its lease lapsed): the units started over;
- **machine down**: the lab came back with fewer working machines while the job was under way;
- **stock-out**: the lab reported none left of a material the design needs while the job was under way;
- **lab fell behind**: none of those, and the lab finished after the plan's own arrival date;
- **unknown**: none of those either (the plan's date held, yet the units were late).

Pure functions over assignment rows and orders: `planner.core` records the facts, the API and the
pages show what is computed here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from planner.store import AssignmentRow
from protocol.model import Order

CAUSES: tuple[str, ...] = ("re-planned", "machine down", "stock-out", "lab fell behind", "unknown")
#: Assignment states in which work ended without all of its units made.
ENDED = frozenset({"failed", "refused"})


@dataclass(frozen=True)
class Trouble:
    """Something that went wrong at a lab, as the planner heard of it."""

    at: datetime
    cause: str  # "machine down" or "stock-out"
    detail: str


def late_units(row: AssignmentRow, order: Order) -> int:
    """Units of a job the plan counted on time that arrived after the order's due date."""
    if row.arrived_at is None or row.on_time_units <= 0:
        return 0
    if datetime.fromisoformat(row.arrived_at) <= order.due_at:
        return 0
    return min(row.on_time_units, row.units_done)


def cause_of(
    row: AssignmentRow,
    order_rows: Iterable[AssignmentRow],
    troubles: Iterable[Trouble],
    started: datetime | None,
) -> str:
    """Why a job's units planned on time arrived late: a cause of `CAUSES`, then what is known."""
    replaced = [
        r for r in order_rows if r.id != row.id and r.state in ENDED and r.plan_version < row.plan_version
    ]
    if replaced:
        last = replaced[-1]
        why = last.reason or "no reason given"
        return f"re-planned: job {last.id} at lab {last.lab_id} {last.state} ({why})"
    finished = datetime.fromisoformat(row.finished_at) if row.finished_at else None
    during = [
        t for t in troubles if (started is None or t.at >= started) and (finished is None or t.at <= finished)
    ]
    if during:
        return f"{during[-1].cause}: {during[-1].detail}"
    if (
        row.arrive_by is not None
        and row.arrived_at is not None
        and datetime.fromisoformat(row.arrived_at) > datetime.fromisoformat(row.arrive_by)
    ):
        return f"lab fell behind: planned to arrive by {row.arrive_by}, arrived {row.arrived_at}"
    return "unknown: the plan's arrival date held, yet the units arrived after the due date"


def summary(rows: Iterable[AssignmentRow], orders: dict[str, Order]) -> dict[str, Any]:
    """Units the plan counted on time, those of them arrived so far, and those arrived late by cause."""
    planned = arrived = late = 0
    by_cause: Counter[str] = Counter()
    for row in rows:
        order = orders.get(row.order_id)
        if order is None or row.state == "refused":
            continue
        planned += row.on_time_units
        if row.arrived_at is not None:
            arrived += min(row.on_time_units, row.units_done)
        units = late_units(row, order)
        if units:
            late += units
            by_cause[(row.late_cause or "unknown").split(":", 1)[0]] += units
    return {
        "units_planned_on_time": planned,
        "units_planned_on_time_arrived": arrived,
        "units_planned_on_time_arrived_late": late,
        "late_by_cause": {cause: by_cause[cause] for cause in CAUSES if by_cause[cause]},
    }
