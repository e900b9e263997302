"""A plan line: units of one order at one lab, with the cost terms that explain it.

Both ways of solving (one model, `solver.allocation.allocate`; the whole network's relaxation,
`solver.large.path`)
write their plans through this one function, so a plan's terms mean the same whichever path made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from protocol.model import Allocation, CostTerms
from solver.model.objective import overdue_weight
from solver.model.problem import Problem, SolveParams, days_until


@dataclass
class LineUnits:
    """The units of one (demand, lab) pair as the options that hold them add up."""

    on_time: int = 0
    late: int = 0
    early: int = 0  # made by the first time checkpoint: the work to start now
    unit_days: float = 0.0  # sum over units of the days until each is planned to arrive
    late_unit_days: float = 0.0  # the same sum over the late units only
    arrival: float = 0.0  # the latest of them

    def add(self, units: int, late: bool, finish: float, arrival: float, params: SolveParams) -> None:
        """Count `units` finishing by `finish` and arriving by `arrival` (days from now)."""
        if late:
            self.late += units
            self.late_unit_days += units * arrival
        else:
            self.on_time += units
        first = min(params.time_checkpoints_days, default=0.0)
        if finish <= first + 1e-9:
            self.early += units
        self.unit_days += units * arrival
        self.arrival = max(self.arrival, arrival)


def allocation_line(
    problem: Problem, params: SolveParams, d: int, lab: int, km: float, discount: float, units: LineUnits
) -> Allocation:
    """One plan line: units of demand `d` at lab index `lab`, with its cost terms and planned arrival."""
    order = problem.demands[d].order
    quantity = units.on_time + units.late
    days_past_due = max(0.0, units.late_unit_days - units.late * days_until(problem, order.due_at))
    cost = CostTerms(
        km=km,
        transport=km * params.km_weight * quantity,
        setup=params.setup_cost,
        lateness=params.lateness_penalty[order.priority] * units.late,
        trail=-discount * quantity,
        capacity=problem.bid_price(order.design, lab) * quantity,
        # the days of late units past their due date weigh more (`objective.LATE_DAY_FACTOR`)
        time=params.time_weight[order.priority] * units.unit_days
        + overdue_weight(params.time_weight, order.priority) * days_past_due,
    )
    return Allocation(
        order_id=order.id,
        lab_id=problem.labs[lab].lab.id,
        quantity=quantity,
        cost=cost,
        late_units=units.late,
        early_units=units.early,
        arrive_by=problem.now + timedelta(days=units.arrival),
    )


def split_units(allocation: Allocation) -> list[tuple[bool, int, int]]:
    """(late, early units, other units) of an allocation, on time and late apart.

    Early units are made by the first time checkpoint. Late units are early only when the due date
    falls before it, and then every on-time unit is early too: so early units are on time first.
    """
    on_time = allocation.quantity - allocation.late_units
    early_on_time = min(allocation.early_units, on_time)
    early_late = allocation.early_units - early_on_time
    return [
        (False, early_on_time, on_time - early_on_time),
        (True, early_late, allocation.late_units - early_late),
    ]


def part_of(allocation: Allocation, quantity: int, late_units: int) -> Allocation:
    """`quantity` units of an allocation, `late_units` of them late, with its cost terms cut to match.

    Every way of sending less than a plan line (the work to start now, units held back for material,
    late work past the window) cuts it through here, so a job's terms explain the units it carries:
    the terms paid per unit scale with the units kept, lateness with the late units kept.
    """
    if not 0 < quantity <= allocation.quantity or not 0 <= late_units <= min(quantity, allocation.late_units):
        raise ValueError(
            f"cannot cut a line of {allocation.quantity} units ({allocation.late_units} late) "
            f"to {quantity} ({late_units} late)"
        )
    share = quantity / allocation.quantity
    late_share = late_units / allocation.late_units if allocation.late_units else 0.0
    terms = {
        name: getattr(allocation.cost, name) * share for name in ("transport", "trail", "capacity", "time")
    }
    cost = allocation.cost.model_copy(update={**terms, "lateness": allocation.cost.lateness * late_share})
    update = {
        "quantity": quantity,
        "late_units": late_units,
        "early_units": min(allocation.early_units, quantity),
        "cost": cost,
    }
    return allocation.model_copy(update=update)


def work_to_start(allocation: Allocation) -> Allocation | None:
    """The part of an allocation to send to its lab now: the units planned to be made by the first
    time checkpoint. None when there are none.

    A plan covers the whole horizon, but only the work to start now is committed; the rest stays
    planned and is planned again at the next round, with what the labs have done by then. Work does
    not sit in a lab's queue for days while another lab idles, and late work planned days ahead
    does not tie up the nearest labs (a rolling horizon). The units kept are counted late only as far
    as the plan's on-time units cannot cover them.
    """
    if allocation.early_units <= 0:
        return None
    on_time = allocation.quantity - allocation.late_units
    return part_of(allocation, allocation.early_units, max(0, allocation.early_units - on_time))


def to_dispatch(allocations: list[Allocation], orders_under_way: set[str]) -> list[Allocation]:
    """What of a plan's allocations to send to labs now.

    The work to start now (`work_to_start`) of every allocation; and, for an order none of whose
    units is under way at a lab or planned to start now, its allocations planned on time, whole, so
    that it is not left waiting on a re-plan that nothing would trigger (a lab with no work to
    report, a planner whose clock says the labs are booked).

    Work planned late is never sent ahead: once queued at a lab it could not move, and in a surge
    the queues of late work grew to a week at some labs while others ran dry (visor-surge-fr in
    Spain, seed 12: 9,347 units queued at the end with 20 labs idle). It waits, planned, for the
    next re-plan; the planner plans again after a quiet spell while demand waits
    (`planner.replan.Replanner.keep_planning_s`).
    """
    starting = {a.order_id for a in allocations if a.early_units > 0}
    sent = []
    for allocation in allocations:
        waiting = allocation.order_id not in starting and allocation.order_id not in orders_under_way
        if waiting and allocation.late_units == 0:
            sent.append(allocation)
        elif (now := work_to_start(allocation)) is not None:
            sent.append(now)
    return sent
