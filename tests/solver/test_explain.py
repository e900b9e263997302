"""Explanations name the reason a near lab was not chosen, and what would change it."""

from __future__ import annotations

from solver.allocation.allocate import solve
from solver.allocation.explain import explain_order
from solver.model.problem import SolveParams
from tests.solver.factory import FAR, MIDDLE, NEAR, lab, machine, order, printer, problem

PARAMS = SolveParams(time_limit_s=2.0, workers=1, late_window_days=0.0)


def verdicts(labs: list, orders: list, order_id: str = "o1") -> dict:
    p = problem(labs, orders)
    plan = solve(p, PARAMS)
    return {v.lab_id: v for v in explain_order(p, plan, order_id, PARAMS)}


def test_chosen_lab_shows_its_cost_terms() -> None:
    v = verdicts([lab("near", NEAR)], [order("o1", "finger-splint", 3)])
    assert v["near"].chosen and v["near"].units == 3
    assert v["near"].why.startswith("chosen for 3 units") and "transport" in v["near"].why


def test_lab_without_the_process_says_which_step() -> None:
    no_sla = lab("near", NEAR, [printer(), machine("bench", "assembly")])
    v = verdicts([no_sla, lab("far", FAR)], [order("o1", "charlotte-valve", 1)])
    assert not v["near"].chosen
    assert v["near"].why.startswith("no capability") and "sla" in v["near"].why


def test_lab_without_stock_says_how_much_more_would_do() -> None:
    dry = lab("near", NEAR, stock={"pla": 0.0})
    v = verdicts([dry, lab("far", FAR)], [order("o1", "finger-splint", 4)])
    assert v["near"].why.startswith("no stock: pla")
    assert v["near"].what_would_change == "with 0.024 more pla, it could take 4 units"


def test_full_lab_says_how_many_hours_before_the_due_date_would_do() -> None:
    busy = lab("near", NEAR, backlog={"printer": 480.0})
    v = verdicts([busy, lab("middle", MIDDLE)], [order("o1", "face-shield", 2, days=1)])
    assert v["near"].why.startswith("no capacity before the due date: fdm needs 120 min per unit, 0 free")
    # NOW is Monday 4 May 2026 08:00 UTC; due in one day.
    assert (
        v["near"].what_would_change
        == "with 4.0 more fdm-hours before Tue 05 May 08:00 UTC, it could take 2 units"
    )


def test_lost_lab_is_named_as_lost() -> None:
    v = verdicts([lab("near", NEAR, live=False), lab("far", FAR)], [order("o1", "finger-splint", 1)])
    assert v["near"].why.startswith("lost")
