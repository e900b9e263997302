"""How much late work a lab is sent at once: what its machines reach within the window, after its
queue and the work planned on time (`solver.model.late_window`)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from protocol.model import Allocation, CostTerms
from solver.model.late_window import late_work_within
from tests.solver.factory import CENTRE, NOW, design, lab, machine

#: One FDM step of 30 minutes: a printer working 8 hours a day offers 120 minutes in 6 wall hours.
CLIP = design("clip", ("fdm", 30))
#: Two steps on different machines: 30 minutes of printing, then 20 at the bench.
KIT = design("kit", ("fdm", 30), ("assembly", 20))


def line(order_id: str, quantity: int, late: int, lab_id: str = "a", arrive_in_h: float = 30) -> Allocation:
    cost = CostTerms(
        km=10.0, transport=10.0 * quantity, setup=50.0, lateness=100.0 * late, time=2.0 * quantity
    )
    return Allocation(
        order_id=order_id,
        lab_id=lab_id,
        quantity=quantity,
        cost=cost,
        late_units=late,
        early_units=quantity,
        arrive_by=NOW + timedelta(hours=arrive_in_h),
    )


def sent(allocations: list[Allocation]) -> dict[str, tuple[int, int]]:
    return {a.order_id: (a.quantity, a.late_units) for a in allocations}


def test_late_units_fill_what_the_queue_and_the_on_time_work_leave_of_the_window() -> None:
    state = lab("a", CENTRE, [machine("p1", "fdm")], backlog={"p1": 10.0})
    plan = [line("fresh", 1, late=0), line("old", 5, late=5)]
    # 120 minutes in 6 hours, less 10 queued and 30 planned on time: 2 late clips of 30 minutes.
    out = late_work_within(plan, {"a": state}, {"fresh": CLIP, "old": CLIP}, hours=6.0)
    assert sent(out) == {"fresh": (1, 0), "old": (2, 2)}
    [old] = [a for a in out if a.order_id == "old"]
    assert old.cost.lateness == pytest.approx(200.0) and old.cost.transport == pytest.approx(20.0)
    assert old.cost.setup == 50.0  # one setup however many units


def test_work_planned_on_time_is_sent_whole_even_past_the_window() -> None:
    state = lab("a", CENTRE, [machine("p1", "fdm")])
    plan = [line("due", 10, late=0), line("old", 3, late=3)]
    out = late_work_within(plan, {"a": state}, {"due": CLIP, "old": CLIP}, hours=6.0)
    assert sent(out) == {"due": (10, 0)}  # the late units wait for the next plan


def test_late_units_go_in_the_order_the_plan_meant_them_to_arrive() -> None:
    state = lab("a", CENTRE, [machine("p1", "fdm")])
    plan = [line("later", 4, late=4, arrive_in_h=40), line("sooner", 3, late=3, arrive_in_h=20)]
    out = late_work_within(plan, {"a": state}, {"later": CLIP, "sooner": CLIP}, hours=6.0)
    assert sent(out) == {"sooner": (3, 3), "later": (1, 1)}


def test_a_lines_on_time_units_stay_when_its_late_ones_are_cut() -> None:
    state = lab("a", CENTRE, [machine("p1", "fdm")])
    out = late_work_within([line("o", 6, late=4)], {"a": state}, {"o": CLIP}, hours=6.0)
    assert sent(out) == {"o": (4, 2)}  # 2 on time, then 2 of the 4 late in the 120 minutes


def test_pooled_machines_and_every_step_count() -> None:
    # Two printers (240 minutes in 6 hours), one bench (120): the bench holds it to 6 kits.
    machines = [machine("p1", "fdm"), machine("p2", "fdm"), machine("bench", "assembly")]
    state = lab("a", CENTRE, machines)
    out = late_work_within([line("o", 10, late=10)], {"a": state}, {"o": KIT}, hours=6.0)
    assert sent(out) == {"o": (6, 6)}


def test_each_lab_has_its_own_window_and_an_unknown_lab_is_left_as_sent() -> None:
    states = {lab_id: lab(lab_id, CENTRE, [machine("p1", "fdm")]) for lab_id in ("a", "b")}
    plan = [
        line("o1", 5, late=5, lab_id="a"),
        line("o2", 5, late=5, lab_id="b"),
        line("o3", 5, late=5, lab_id="c"),
    ]
    out = late_work_within(plan, states, {"o1": CLIP, "o2": CLIP, "o3": CLIP}, hours=6.0)
    assert sent(out) == {"o1": (4, 4), "o2": (4, 4), "o3": (5, 5)}


def test_a_window_of_no_time_is_refused() -> None:
    with pytest.raises(ValueError, match="late-work window"):
        late_work_within([], {}, {}, hours=0.0)


def test_a_lab_is_topped_up_with_late_work_only_once_its_queue_runs_low() -> None:
    # The printer works 20 minutes an hour. By default a lab is topped up under an hour of queue
    # (a sixth of the 6-hour window): 20 minutes queued is that hour, so no late work goes yet.
    plan = [line("fresh", 1, late=0), line("old", 5, late=5)]
    designs = {"fresh": CLIP, "old": CLIP}
    full = lab("a", CENTRE, [machine("p1", "fdm")], backlog={"p1": 20.0})
    assert sent(late_work_within(plan, {"a": full}, designs, hours=6.0)) == {"fresh": (1, 0)}
    # Under it: topped up to the window (120 minutes less 15 queued and 30 planned on time).
    low = lab("a", CENTRE, [machine("p1", "fdm")], backlog={"p1": 15.0})
    assert sent(late_work_within(plan, {"a": low}, designs, hours=6.0)) == {"fresh": (1, 0), "old": (2, 2)}
    # The caller may top up sooner: under 3 hours of queue.
    assert sent(late_work_within(plan, {"a": full}, designs, hours=6.0, refill_hours=3.0))["old"] == (2, 2)


@pytest.mark.parametrize("refill", [0.0, -1.0, 6.5])
def test_a_top_up_point_outside_the_window_is_refused(refill: float) -> None:
    state = lab("a", CENTRE, [machine("p1", "fdm")])
    with pytest.raises(ValueError, match=r"topped up under 0 to 6\.0 hours"):
        late_work_within(
            [line("old", 5, late=5)], {"a": state}, {"old": CLIP}, hours=6.0, refill_hours=refill
        )


def test_only_the_machines_of_the_late_design_count_for_its_queue() -> None:
    # The bench is full of work, the printer is free: late clips (printer only) still go.
    machines = [machine("p1", "fdm"), machine("bench", "assembly")]
    state = lab("a", CENTRE, machines, backlog={"bench": 100.0})
    out = late_work_within([line("old", 5, late=5)], {"a": state}, {"old": CLIP}, hours=6.0)
    assert sent(out) == {"old": (4, 4)}
