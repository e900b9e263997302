"""The invariant checks fail on histories that break them (and pass on ones that keep them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from scenarios.demo import demo_labs
from scenarios.faults.invariants import (
    HistoryEvent,
    health_responsive,
    labs_agree,
    no_double_execution,
    no_order_lost,
    replan_seconds_after_loss,
    within_capacity_and_stock,
)

NOW = datetime(2026, 5, 1, 8, tzinfo=UTC)
LAB = demo_labs(1, seed=1)[0]


def _view(order_id: str, quantity: int, state: str, allocations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": order_id,
        "design": "finger-splint",
        "quantity": quantity,
        "due_at": (NOW + timedelta(days=3)).isoformat(),
        "delivery": {"lat": 45.0, "lon": 5.0, "place": None},
        "priority": "routine",
        "accepts_licences": [],
        "created_at": NOW.isoformat(),
        "state": state,
        "units_made": sum(a["units_done"] for a in allocations),
        "allocations": allocations,
    }


def _allocation(aid: str, quantity: int, done: int, state: str, lab: str = LAB.id) -> dict[str, Any]:
    return {
        "id": aid,
        "order_id": aid.split("-a")[0],
        "lab_id": lab,
        "quantity": quantity,
        "units_done": done,
        "state": state,
    }


def _journal(*jobs: tuple[str, int, int, str]) -> dict[str, Any]:
    return {
        "stock": {},
        "jobs": [
            {
                "assign": {"assignment_id": aid, "order_id": aid.split("-a")[0], "quantity": q},
                "units_done": u,
                "state": s,
            }
            for aid, q, u, s in jobs
        ],
    }


def test_a_lost_order_and_an_uncovered_one_are_found() -> None:
    views = {"o1": _view("o1", 10, "in_progress", [_allocation("o1-a1", 10, 4, "failed")])}
    verdict = no_order_lost({"o1", "o2"}, views)
    assert not verdict.ok and "o2" in verdict.detail and "4 made + 0 planned < 10" in verdict.detail
    covered = {"o1": _view("o1", 10, "in_progress", [_allocation("o1-a1", 10, 4, "running")])}
    assert no_order_lost({"o1"}, covered).ok


def test_units_made_twice_are_found_in_the_journals_and_the_ledger() -> None:
    views = {"o1": _view("o1", 10, "done", [])}
    journals = {LAB.id: _journal(("o1-a1", 10, 10, "done")), "other": _journal(("o1-a2", 4, 3, "done"))}
    verdict = no_double_execution([], journals, views)
    assert not verdict.ok and "order o1 got 13 units for 10 ordered" in verdict.detail
    event = HistoryEvent(
        1, NOW, "job.running", {"id": "o1-a1", "order_id": "o1", "quantity": 5, "units_done": 6}
    )
    assert "made 6 of 5 allowed" in no_double_execution([event], {}, views).detail


def test_labs_that_disagree_with_the_planner_are_found() -> None:
    views = {"o1": _view("o1", 10, "done", [_allocation("o1-a1", 10, 10, "done")])}
    assert labs_agree({LAB.id: _journal(("o1-a1", 10, 10, "done"))}, views).ok
    assert not labs_agree({LAB.id: _journal(("o1-a1", 10, 9, "done"))}, views).ok
    assert not labs_agree({LAB.id: _journal(("o1-a1", 10, 10, "done"), ("o9-a1", 1, 0, "running"))}, views).ok


def test_more_than_a_labs_stock_is_found() -> None:
    views = {"o1": _view("o1", 100_000, "done", [])}
    journals = {LAB.id: _journal(("o1-a1", 100_000, 100_000, "done"))}
    assert not within_capacity_and_stock([LAB], views, journals, NOW).ok
    small = {LAB.id: _journal(("o1-a1", 100_000, 2, "done"))}
    assert within_capacity_and_stock([LAB], views, small, NOW).ok


def test_health_and_replan_times() -> None:
    assert health_responsive([(0.0, 0.01, True), (0.2, None, False)]).ok
    assert not health_responsive([(0.0, 0.01, True), (0.2, None, True)]).ok
    assert not health_responsive([(0.0, 1.5, True)]).ok
    events = [
        HistoryEvent(1, NOW, "lab.lost", {"lab_id": "a"}),
        HistoryEvent(2, NOW, "job.failed", {"lab_id": "a"}),
        HistoryEvent(3, NOW + timedelta(seconds=0.5), "plan.committed", {}),
    ]
    assert replan_seconds_after_loss(events) == [0.5]


def test_more_made_than_ordered_is_judged_not_a_crash() -> None:
    # 12 units made for an order of 10: double execution's verdict; capacity is still checked.
    views = {"o1": _view("o1", 10, "done", [_allocation("o1-a1", 10, 8, "failed")])}
    journals = {LAB.id: _journal(("o1-a1", 10, 10, "done"), ("o1-a2", 2, 2, "done"))}
    assert within_capacity_and_stock([LAB], views, journals, NOW).ok


def test_units_a_plan_placed_late_are_held_to_the_horizon_like_the_validator_does() -> None:
    fdm_per_day = sum(m.minutes_per_day() for m in LAB.machines if "fdm" in m.processes)
    due_in_days = 0.25
    units = int(fdm_per_day * due_in_days / 25) + 10  # 25 fdm minutes a splint: more than fit by then
    assert units * 0.006 < LAB.stock["pla"]  # the stock is not what binds
    allocation = _allocation("o1-a1", units, units, "done") | {"plan_version": 3}
    views = {"o1": _view("o1", units, "done", [allocation])}
    views["o1"]["due_at"] = (NOW + timedelta(days=due_in_days)).isoformat()
    journals = {LAB.id: _journal(("o1-a1", units, units, "done"))}
    on_time = within_capacity_and_stock([LAB], views, journals, NOW)
    assert not on_time.ok and "machine capacity exceeded" in on_time.detail
    late = {(3, "o1", LAB.id): 10}  # the plan said 10 of them would be late
    assert within_capacity_and_stock([LAB], views, journals, NOW, late).ok
    assert not within_capacity_and_stock([LAB], views, journals, NOW, {(2, "o1", LAB.id): 10}).ok


def _parcel(arrive_in: timedelta, arrived: bool = True) -> dict[str, Any]:
    incoming = {
        "transfer_id": "t1-1",
        "material": "pla",
        "quantity": 0.1,
        "from_lab": "another-lab",
        "arrive_at": (NOW + arrive_in).isoformat(),
    }
    return {"incoming": incoming, "arrived": arrived}


def test_material_received_counts_from_its_arrival_and_material_shipped_away_does_not() -> None:
    units = int(LAB.stock["pla"] / 0.006) + 10  # ten splints beyond the lab's own PLA
    views = {"o1": _view("o1", units, "done", [])}
    made = _journal(("o1-a1", units, units, "done"))
    assert not within_capacity_and_stock([LAB], views, {LAB.id: made}, NOW).ok
    received = made | {"parcels": {"sent": [], "coming": [_parcel(timedelta(hours=6))]}}
    assert within_capacity_and_stock([LAB], views, {LAB.id: received}, NOW).ok
    # A parcel that came after the due date cannot have made units due before it; one still on its
    # way made nothing.
    too_late = made | {"parcels": {"sent": [], "coming": [_parcel(timedelta(days=5))]}}
    assert not within_capacity_and_stock([LAB], views, {LAB.id: too_late}, NOW).ok
    on_its_way = made | {"parcels": {"sent": [], "coming": [_parcel(timedelta(hours=6), arrived=False)]}}
    assert not within_capacity_and_stock([LAB], views, {LAB.id: on_its_way}, NOW).ok

    few = {"o1": _view("o1", 20, "done", [])}
    twenty = _journal(("o1-a1", 20, 20, "done"))
    assert within_capacity_and_stock([LAB], few, {LAB.id: twenty}, NOW).ok
    ship = {
        "transfer_id": "t1-2",
        "material": "pla",
        "quantity": LAB.stock["pla"],
        "to_lab": "x",
        "arrive_at": NOW.isoformat(),
    }
    shipped_all = twenty | {"parcels": {"sent": [{"ship": ship, "shipped": True}], "coming": []}}
    assert not within_capacity_and_stock([LAB], few, {LAB.id: shipped_all}, NOW).ok
    refused = twenty | {"parcels": {"sent": [{"ship": ship, "shipped": False}], "coming": []}}
    assert within_capacity_and_stock([LAB], few, {LAB.id: refused}, NOW).ok
