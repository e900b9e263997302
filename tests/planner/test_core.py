"""The planner's rules without sockets: demand, assignments, refusals, lost labs, order states."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from planner.core import OrderRejected, PlannerCore, UnknownAssignment
from planner.replan import Replanner
from planner.store import Ledger
from protocol.model import Allocation, CostTerms, Lab, Location, Machine, OrderRequest, Plan
from protocol.okh import catalogue
from solver.problem import SolveParams

NOW = datetime(2026, 5, 1, 8, tzinfo=UTC)
LAB = Lab(
    id="lab-a",
    name="Lab A",
    location=Location(lat=45.0, lon=5.0),
    machines=[Machine(id="p1", processes=["fdm", "assembly"], tags={"bed_mm": 250})],
    stock={"pla": 1.0},
)


@pytest.fixture
def core(tmp_path: Path) -> PlannerCore:
    planner = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: NOW)
    planner.lab_hello(LAB, {})
    return planner


def _request(quantity: int = 10, **changes: object) -> OrderRequest:
    fields: dict[str, object] = {
        "design": "finger-splint",
        "quantity": quantity,
        "due_at": NOW + timedelta(days=2),
        "delivery": Location(lat=45.2, lon=5.7),
        "priority": "urgent",
    }
    fields.update(changes)
    return OrderRequest.model_validate(fields)


def _plan(order_id: str, quantity: int, lab_id: str = "lab-a") -> Plan:
    return Plan(
        version=0,
        objective=1,
        bound=1,
        status="OPTIMAL",
        solve_seconds=0.01,
        allocations=[
            Allocation(
                order_id=order_id,
                lab_id=lab_id,
                quantity=quantity,
                cost=CostTerms(km=60, transport=600 * quantity),
            )
        ],
    )


def test_order_rules(core: PlannerCore) -> None:
    with pytest.raises(OrderRejected) as unknown:
        core.submit_order(_request(design="warp-drive"))
    assert unknown.value.field == "design"
    with pytest.raises(OrderRejected) as past:
        core.submit_order(_request(due_at=NOW - timedelta(minutes=1)))
    assert past.value.field == "due_at"
    assert core.orders == {}


def test_order_goes_from_open_to_done(core: PlannerCore) -> None:
    order = core.submit_order(_request(10))
    assert [d.quantity for d in core.problem().demands] == [10]
    [row] = core.commit_plan(_plan(order.id, 10))
    assert core.orders[order.id].state == "planned" and core.problem().demands == []
    core.job_update("lab-a", row.id, "accepted")
    assert core.orders[order.id].state == "in_progress"
    core.job_update("lab-a", row.id, "running", units_done=4)
    assert core.units_made(order.id) == 4
    core.job_update("lab-a", row.id, "done", units_done=10)
    assert core.orders[order.id].state == "done"
    kinds = [e.kind for e in core.ledger.events_after(0)]
    assert kinds[-1] == "order.state" and "job.done" in kinds and "plan.committed" in kinds


def test_refusal_and_failure_return_units_to_demand(core: PlannerCore) -> None:
    order = core.submit_order(_request(10))
    [first] = core.commit_plan(_plan(order.id, 10))
    core.job_update("lab-a", first.id, "refused", reason="not enough stock")
    assert [d.quantity for d in core.problem().demands] == [10]
    [second] = core.commit_plan(_plan(order.id, 10))
    assert second.id != first.id
    core.job_update("lab-a", second.id, "accepted")
    core.job_update("lab-a", second.id, "failed", units_done=3, reason="nozzle clogged")
    assert [d.quantity for d in core.problem().demands] == [7]  # the 3 made stay made
    core.job_update("lab-a", second.id, "done", units_done=10)  # nothing moves after a final state
    assert core.units_made(order.id) == 3


def test_lost_lab_returns_unfinished_units_and_gets_nothing_new(core: PlannerCore) -> None:
    order = core.submit_order(_request(10))
    [row] = core.commit_plan(_plan(order.id, 10))
    core.job_update("lab-a", row.id, "running", units_done=6)
    core.lab_lost("lab-a", "silent for 3.1 s")
    assert row.state == "failed" and "lab lost" in (row.reason or "")
    assert [d.quantity for d in core.problem().demands] == [4]
    assert core.problem().labs[0].live is False
    assert core.commit_plan(_plan(order.id, 4)) == []  # a plan for a lost lab is not sent


def test_a_lab_cannot_speak_for_another_labs_job(core: PlannerCore) -> None:
    order = core.submit_order(_request(5))
    [row] = core.commit_plan(_plan(order.id, 5))
    with pytest.raises(UnknownAssignment):
        core.job_update("lab-b", row.id, "done", units_done=5)
    with pytest.raises(UnknownAssignment):
        core.job_update("lab-a", row.id, "running", units_done=6)


def test_assigned_but_unanswered_work_is_not_counted_as_free(core: PlannerCore) -> None:
    order = core.submit_order(_request(10))
    core.commit_plan(_plan(order.id, 10))
    [state] = core.problem().labs
    assert state.stock["pla"] == pytest.approx(1.0 - 10 * 0.006)
    assert sum(state.backlog_minutes.values()) == pytest.approx(10 * 28)


def test_state_comes_back_from_the_ledger(core: PlannerCore, tmp_path: Path) -> None:
    order = core.submit_order(_request(10))
    [row] = core.commit_plan(_plan(order.id, 10))
    core.job_update("lab-a", row.id, "running", units_done=2)
    again = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: NOW)
    again.load()
    assert again.orders[order.id].state == "in_progress"
    assert again.assignments[row.id].units_done == 2 and again.plan is not None
    assert again.labs["lab-a"].live is False  # until it says HELLO again


def test_failed_replan_is_retried(core: PlannerCore) -> None:
    calls: list[int] = []
    original = core.problem

    def flaky_problem():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient")
        return original()

    core.problem = flaky_problem  # type: ignore[method-assign]
    sent: list[object] = []

    async def scenario() -> None:
        replanner = Replanner(
            core,
            sent.extend,
            SolveParams(time_limit_s=1, workers=1),
            debounce_s=0.01,
            min_interval_s=0.01,
            retry_after_s=0.05,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(replanner.run(stop))
        core.submit_order(_request(3))
        replanner.request("order")
        for _ in range(200):
            if sent:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await task
        assert replanner.failures == 1

    asyncio.run(scenario())
    assert len(calls) >= 2 and len(sent) == 1


def test_a_standing_shortage_is_reported_once_not_re_planned_forever(core: PlannerCore) -> None:
    async def scenario() -> None:
        replanner = Replanner(
            core,
            lambda rows: None,
            SolveParams(time_limit_s=1, workers=1),
            debounce_s=0.01,
            min_interval_s=0.01,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(replanner.run(stop))
        order = core.submit_order(_request(3, design="charlotte-valve"))  # lab-a has no SLA printer
        replanner.request("order")
        for _ in range(200):
            if core.plan is not None:
                break
            await asyncio.sleep(0.02)
        for _ in range(5):
            replanner.request("capacity")
            await asyncio.sleep(0.05)
        stop.set()
        await task
        assert replanner.solves >= 2
        assert core.plan is not None and core.plan.version == 1
        view = core.order_view(order.id)
        assert view is not None and view["shortage"]["quantity"] == 3
        assert view["shortage"]["reason"].startswith("no capable lab")

    asyncio.run(scenario())
