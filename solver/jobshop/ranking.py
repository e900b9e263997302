"""The one rule by which a lab takes up its work: earliest leave-by first.

A unit is on time when it *arrives* by its order's due date, so what a lab must meet is the instant
the unit has to leave: the due date less handling and the road to the delivery place (`leave_by`).
A far order due later may have to leave before a near one due sooner. Units the plan itself placed
late must leave by the plan's own arrival date for them, less the same: they must not jump ahead of
units planned on time elsewhere in the queue, since the plan placed them after those.

Both the lab agent's schedule (`solver.jobshop.lab_schedule`, run by `nodes`) and the simulated
replay's labs (`scenarios.sim`) rank their work with `dispatch_key`, so the live mesh and the
simulation cannot drift apart on it. Ties go to the earlier due date, then the higher priority, then
the order id, then the order the work came in.

Pure: no clock; it imports only the shared model.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: Rank of each priority among work that must leave at the same instant: lower goes first.
PRIORITY_RANK: dict[str, int] = {"emergency": 0, "urgent": 1, "routine": 2}

#: What `dispatch_key` returns: (leave-by, due date, priority rank, order id, arrival order).
DispatchKey = tuple[datetime, datetime, int, str, int]


def leave_by(
    due_at: datetime, road_hours: float | None, arrive_by: datetime | None = None, late: bool = False
) -> datetime:
    """When units must leave the lab to arrive as the plan meant.

    `road_hours` is handling plus the road from the lab to the delivery place; None (not known, as
    in an ASSIGN from a planner that does not send it) counts as 0, so work is ranked by due date.
    For units the plan placed `late`, the later of the due date and the plan's `arrive_by` is the
    arrival to meet.
    """
    arrival = max(due_at, arrive_by) if late and arrive_by is not None else due_at
    return arrival - timedelta(hours=road_hours or 0.0)


def dispatch_key(leave: datetime, due_at: datetime, priority: str, order_id: str, seq: int) -> DispatchKey:
    """The sort key of a piece of work: earliest `leave` first (see the module docstring for ties)."""
    return (leave, due_at, PRIORITY_RANK.get(priority, len(PRIORITY_RANK)), order_id, seq)
