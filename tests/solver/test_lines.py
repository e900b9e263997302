"""What a plan sends to labs now: the work to start within the first day, and nothing left waiting."""

from __future__ import annotations

import pytest

from protocol.model import Allocation, CostTerms
from solver.model.lines import part_of, split_units, to_dispatch, work_to_start


def line(order_id: str, lab_id: str, quantity: int, early: int, late: int = 0) -> Allocation:
    cost = CostTerms(
        km=10.0,
        transport=10.0 * quantity,
        setup=50.0,
        time=2.0 * quantity,
        capacity=3.0 * quantity,
        lateness=100.0 * late,
    )
    return Allocation(
        order_id=order_id, lab_id=lab_id, quantity=quantity, cost=cost, late_units=late, early_units=early
    )


def test_only_the_early_units_start_now_with_their_share_of_the_terms() -> None:
    sent = work_to_start(line("o1", "a", 10, early=4))
    assert sent is not None and sent.quantity == 4 and sent.late_units == 0
    assert sent.cost.transport == 40.0 and sent.cost.time == 8.0 and sent.cost.setup == 50.0
    assert work_to_start(line("o1", "a", 10, early=0)) is None


def test_late_units_are_early_only_when_every_on_time_unit_is() -> None:
    # Due before the first checkpoint: 3 on time, then 2 late, all made within the day.
    allocation = line("o1", "a", 5, early=5, late=2)
    assert split_units(allocation) == [(False, 3, 0), (True, 2, 0)]
    sent = work_to_start(allocation)
    assert sent is not None and (sent.quantity, sent.late_units) == (5, 2)


def test_an_order_with_nothing_under_way_and_nothing_to_start_is_sent_whole_unless_late() -> None:
    plan = [
        line("waiting", "a", 6, early=0),  # nothing to start today, nothing under way: sent whole
        line("busy", "a", 6, early=0),  # under way elsewhere: waits for the next re-plan
        line("mixed", "a", 3, early=0),  # part of it starts today at another lab ...
        line("mixed", "b", 4, early=2),  # ... so only that part goes now
        line("late", "a", 5, early=0, late=5),  # planned late: waits, so it can still move
    ]
    sent = {(a.order_id, a.lab_id): a.quantity for a in to_dispatch(plan, orders_under_way={"busy"})}
    assert sent == {("waiting", "a"): 6, ("mixed", "b"): 2}


def test_a_part_of_a_line_carries_the_terms_of_its_own_units() -> None:
    # 10 units, 4 of them late; keep 6 with 1 late: per-unit terms by 6/10, lateness by 1/4.
    part = part_of(line("o1", "a", 10, early=8, late=4), 6, 1)
    assert (part.quantity, part.late_units, part.early_units) == (6, 1, 6)
    assert part.cost.transport == 60.0 and part.cost.time == 12.0 and part.cost.capacity == 18.0
    assert part.cost.lateness == 100.0 and part.cost.setup == 50.0 and part.cost.km == 10.0
    on_time = part_of(line("o1", "a", 10, early=0, late=4), 6, 0)
    assert on_time.cost.lateness == 0.0 and on_time.early_units == 0


@pytest.mark.parametrize(("quantity", "late"), [(0, 0), (11, 0), (5, 5), (6, -1)])
def test_a_part_cannot_hold_more_than_its_line(quantity: int, late: int) -> None:
    with pytest.raises(ValueError, match="cannot cut a line of 10 units"):
        part_of(line("o1", "a", 10, early=10, late=4), quantity, late)
