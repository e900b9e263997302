"""The planner's rules without sockets: demand, assignments, refusals, lost labs, order states."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from planner.core import OrderRejected, PlannerCore, UnknownAssignment
from planner.replan import (
    KEEP_PLANNING_MIN_S,
    KEEP_PLANNING_S,
    MOST_LIMIT_FACTOR,
    Replanner,
    keep_planning_after,
)
from planner.store import AssignmentRow, Ledger
from protocol.model import Location, Machine, OrderRequest, Plan, Shortage
from protocol.okh import catalogue
from solver.check import check
from solver.large.path import TIME_REASON, TIMED_OUT
from solver.model.geo import haversine_km
from solver.model.objective import transit_days
from solver.model.problem import SolveParams
from tests.planner.plans import NOW, ONE_MACHINE_LAB, one_lab_plan, replan_after

LAB = ONE_MACHINE_LAB


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
    [row] = core.commit_plan(one_lab_plan(order.id, 10))
    assert core.orders[order.id].state == "planned" and core.problem().demands == []
    core.job_update("lab-a", row.id, "accepted")
    assert core.orders[order.id].state == "in_progress"
    core.job_update("lab-a", row.id, "running", units_done=4)
    assert core.units_made(order.id) == 4
    core.job_update("lab-a", row.id, "done", units_done=10)
    assert core.orders[order.id].state == "done"
    kinds = [e.kind for e in core.ledger.events_after(0)]
    assert kinds[-2:] == ["order.state", "trail.changed"]
    assert "job.done" in kinds and "plan.committed" in kinds


def test_refusal_and_failure_return_units_to_demand(core: PlannerCore) -> None:
    order = core.submit_order(_request(10))
    [first] = core.commit_plan(one_lab_plan(order.id, 10))
    core.job_update("lab-a", first.id, "refused", reason="not enough stock")
    assert [d.quantity for d in core.problem().demands] == [10]
    [second] = core.commit_plan(one_lab_plan(order.id, 10))
    assert second.id != first.id
    core.job_update("lab-a", second.id, "accepted")
    core.job_update("lab-a", second.id, "failed", units_done=3, reason="nozzle clogged")
    assert [d.quantity for d in core.problem().demands] == [7]  # the 3 made stay made
    core.job_update("lab-a", second.id, "done", units_done=10)  # nothing moves after a final state
    assert core.units_made(order.id) == 3


def test_lost_lab_returns_unfinished_units_and_gets_nothing_new(core: PlannerCore) -> None:
    order = core.submit_order(_request(10))
    [row] = core.commit_plan(one_lab_plan(order.id, 10))
    core.job_update("lab-a", row.id, "running", units_done=6)
    core.lab_lost("lab-a", "silent for 3.1 s")
    assert row.state == "failed" and "lab lost" in (row.reason or "")
    assert [d.quantity for d in core.problem().demands] == [4]
    assert core.problem().labs[0].live is False
    assert core.commit_plan(one_lab_plan(order.id, 4)) == []  # a plan for a lost lab is not sent


def test_a_lost_lab_with_work_undone_loses_trail_once_per_design(core: PlannerCore) -> None:
    # Two jobs of one design, as a planner that plans often hands out: one let-down, as the replay
    # counts it (scenarios.sim), not one per job.
    first, second = core.submit_order(_request(4)), core.submit_order(_request(3))
    core.commit_plan(one_lab_plan(first.id, 4))
    core.commit_plan(one_lab_plan(second.id, 3))
    rules, key = core.trails.rules, ("finger-splint", "lab-a")
    core.lab_lost("lab-a", "left: lab agent stopped", said_bye=True)
    assert core.trails.tau(key, NOW) == pytest.approx(rules.let_down(rules.neutral))
    [change] = core.trails_view("lab-a")["history"]
    assert "lab lost" in change["cause"]
    core.lab_hello(LAB, {})  # back, with nothing left to fail: no further let-down
    core.lab_lost("lab-a", "silent for 3.1 s")
    assert core.trails.tau(key, NOW) == pytest.approx(rules.let_down(rules.neutral))


def test_a_lab_cannot_speak_for_another_labs_job(core: PlannerCore) -> None:
    order = core.submit_order(_request(5))
    [row] = core.commit_plan(one_lab_plan(order.id, 5))
    with pytest.raises(UnknownAssignment):
        core.job_update("lab-b", row.id, "done", units_done=5)
    with pytest.raises(UnknownAssignment):
        core.job_update("lab-a", row.id, "running", units_done=6)


def test_assigned_but_unanswered_work_is_not_counted_as_free(core: PlannerCore) -> None:
    order = core.submit_order(_request(10))
    core.commit_plan(one_lab_plan(order.id, 10))
    [state] = core.problem().labs
    assert state.stock["pla"] == pytest.approx(1.0 - 10 * 0.006)
    assert sum(state.backlog_minutes.values()) == pytest.approx(10 * 28)


def test_accepted_work_counts_until_the_labs_next_report_holds_it(tmp_path: Path) -> None:
    """A lab sends its new backlog just before ACCEPT, but the mesh applies backlog reports in
    batches and ACCEPT at once: in between, accepted work must still count, or the next placement
    hands its hours out again (valve-lombardy live: fablab-trieste got 5, 3 and 2 valves due the same
    day from three plans 0.12 s apart, and took the last after its due date). The hours account does
    not cover it once the lab has worked for days."""
    now = [NOW]
    core = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: now[0])
    core.lab_hello(LAB, {})
    first = core.submit_order(_request(5))
    [row] = core.commit_plan(one_lab_plan(first.id, 5))
    core.job_update("lab-a", row.id, "accepted")
    core.job_update("lab-a", row.id, "done", units_done=5)
    core.lab_capacity("lab-a", {"p1": 0.0})
    now[0] = NOW + timedelta(days=3)  # days of hours since its first work: that account says nothing
    second = core.submit_order(_request(10, due_at=now[0] + timedelta(days=2)))
    [row] = core.commit_plan(one_lab_plan(second.id, 10))
    assert core.problem().labs[0].backlog_minutes["p1"] == pytest.approx(10 * 28)  # assigned
    core.job_update("lab-a", row.id, "accepted")  # its CAPACITY is still waiting at the mesh
    assert core.problem().labs[0].backlog_minutes["p1"] == pytest.approx(10 * 28)
    core.job_update("lab-a", row.id, "running", units_done=4)
    assert core.problem().labs[0].backlog_minutes["p1"] == pytest.approx(6 * 28)
    core.lab_capacity("lab-a", {"p1": 6 * 28.0})  # a report sent after the ACCEPT: it holds the work
    assert core.problem().labs[0].backlog_minutes["p1"] == pytest.approx(6 * 28)
    core.lab_capacity("lab-a", {"p1": 5 * 28.0})  # and the next one alone counts
    assert core.problem().labs[0].backlog_minutes["p1"] == pytest.approx(5 * 28)


def test_hours_a_lab_spent_fast_are_not_handed_out_again(tmp_path: Path) -> None:
    """A lab that finishes its work sooner than its hours allow (a simulated lab whose clock runs ahead
    of the planner's) leaves an empty backlog, but the hours that work took are spent: until they
    have passed on the planner's clock, another order must not get them too (issue 16, item 6)."""
    now = [NOW]
    core = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: now[0])
    core.lab_hello(LAB, {})  # one machine, 8 h a day: 960 minutes by the due date in 2 days
    first = core.submit_order(_request(10))  # 10 finger splints: 280 minutes
    [row] = core.commit_plan(one_lab_plan(first.id, 10))
    core.job_update("lab-a", row.id, "accepted")
    core.job_update("lab-a", row.id, "done", units_done=10)
    core.lab_capacity("lab-a", {"p1": 0.0})  # done, and nothing queued, a moment later
    [state] = core.problem().labs
    assert state.backlog_minutes["p1"] == pytest.approx(280)
    second = core.submit_order(_request(25))  # 700 minutes: 280 + 700 > 960
    too_much = check(core.problem(), one_lab_plan(second.id, 25))
    assert any("machine capacity exceeded" in v for v in too_much), too_much
    fits = check(core.problem(), one_lab_plan(second.id, 24))  # 280 + 672 fits (the 25th unit is short)
    assert not any("capacity" in v for v in fits), fits
    # The same account after a planner restart, from the ledger.
    again = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: now[0])
    again.load()
    again.lab_hello(LAB, {})
    assert again.problem().labs[0].backlog_minutes["p1"] == pytest.approx(280)
    # Once the hours have passed on the planner's clock, the lab's own report counts alone.
    now[0] = NOW + timedelta(hours=12)  # half a day: 240 of the 280 minutes' hours have passed
    assert core.problem().labs[0].backlog_minutes["p1"] == pytest.approx(40)
    now[0] = NOW + timedelta(days=1)
    assert core.problem().labs[0].backlog_minutes["p1"] == pytest.approx(0.0)


def test_a_machine_down_does_not_book_the_others_with_the_work_it_made(tmp_path: Path) -> None:
    """The hours account shares a lab's past work over every machine it has had. Charged to the
    machines still up, one printer down left the other booked for days: on valve-lombardy in France
    (seed 133) live, the one lab able to make valves made none for the two days its first SLA printer
    was down, though the second worked (docs/live-vs-sim.md)."""
    now = [NOW]
    two = LAB.model_copy(
        update={"machines": [LAB.machines[0], LAB.machines[0].model_copy(update={"id": "p2"})]}
    )
    core = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: now[0])
    core.lab_hello(two, {})  # two machines of 8 hours a day
    order = core.submit_order(_request(30))  # 30 finger splints: 840 minutes, 420 on each
    [row] = core.commit_plan(one_lab_plan(order.id, 30))
    core.job_update("lab-a", row.id, "accepted")
    core.job_update("lab-a", row.id, "done", units_done=30)
    now[0] = NOW + timedelta(hours=18)  # 360 minutes of each machine's hours have passed
    core.lab_capacity("lab-a", {"p1": 0.0, "p2": 0.0})
    assert core.problem().labs[0].backlog_minutes == pytest.approx({"p1": 60.0, "p2": 60.0})
    one_up = two.model_copy(update={"machines": [two.machines[1]]})
    core.lab_hello(one_up, {"p2": 0.0})  # p1 went down: p2 owes its own share, not p1's too
    assert core.problem().labs[0].backlog_minutes == pytest.approx({"p2": 60.0})
    core.lab_hello(two, {"p1": 0.0, "p2": 0.0})  # and p1 is back
    assert core.problem().labs[0].backlog_minutes == pytest.approx({"p1": 60.0, "p2": 60.0})


def test_state_comes_back_from_the_ledger(core: PlannerCore, tmp_path: Path) -> None:
    order = core.submit_order(_request(10))
    [row] = core.commit_plan(one_lab_plan(order.id, 10))
    core.job_update("lab-a", row.id, "running", units_done=2)
    again = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: NOW)
    again.load()
    assert again.orders[order.id].state == "in_progress"
    assert again.assignments[row.id].units_done == 2 and again.plan is not None
    assert again.labs["lab-a"].live is False  # until it says HELLO again


def test_failed_replan_is_retried(core: PlannerCore) -> None:
    calls: list[int] = []
    original = core.problem

    def flaky_problem(**kwargs: object):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient")
        return original(**kwargs)  # type: ignore[arg-type]

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


def test_demand_waiting_for_a_lab_is_planned_again_when_nothing_else_happens(core: PlannerCore) -> None:
    """Work a plan holds back (late work waits for the next re-plan) must not wait on a change that
    never comes: after a quiet spell the re-planner plans again while demand waits unassigned."""

    def order_without_a_word() -> None:  # demand that no change notification announces
        core.on_change = lambda reason: None
        core.submit_order(_request(3))

    quiet = dict(debounce_s=0.01, min_interval_s=0.01, keep_planning_s=0.3)
    params = SolveParams(time_limit_s=1, workers=1)
    replanner, sent = replan_after(core, params, order_without_a_word, lambda r, s: bool(s), 200, **quiet)
    assert sum(row.quantity for row in sent) == 3 and replanner.solves == 1


def test_the_quiet_spell_before_planning_waiting_demand_again_is_counted_on_the_planners_clock() -> None:
    """60 s of the planner's own time: a minute on the wall clock; on a replay's clock compressed
    2,000 times, a floor of a few wall seconds (a minute of wall there is 33 hours of lab time)."""
    assert keep_planning_after(1.0) == KEEP_PLANNING_S
    assert keep_planning_after(2_000.0) == KEEP_PLANNING_MIN_S
    assert KEEP_PLANNING_MIN_S < keep_planning_after(10.0) < KEEP_PLANNING_S


def test_trails_grow_by_hours_on_time_weaken_on_refusal_fade_by_days_and_come_back_from_the_ledger(
    tmp_path: Path,
) -> None:
    now = [NOW]
    core = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: now[0])
    core.lab_hello(LAB, {})
    rules = core.trails.rules
    key = ("finger-splint", "lab-a")
    order = core.submit_order(_request(10))
    [row] = core.commit_plan(one_lab_plan(order.id, 10))
    core.job_update("lab-a", row.id, "accepted")
    core.job_update("lab-a", row.id, "done", units_done=10)
    hours = 10 * catalogue()["finger-splint"].minutes_per_unit() / 60.0
    grown = rules.neutral + rules.reinforce_per_hour * hours
    assert core.trails.tau(key, NOW) == pytest.approx(grown)
    assert core.problem().trails[key] == pytest.approx(grown)

    # Plans committed change no trail (their cadence is the planner's, not the labs'); days do.
    second = core.submit_order(_request(5, due_at=NOW + timedelta(days=9)))
    empty = one_lab_plan(second.id, 5).model_copy(update={"allocations": []})
    for _ in range(3):
        assert core.commit_plan(empty) == []
    assert core.trails.tau(key, NOW) == pytest.approx(grown)
    now[0] = NOW + timedelta(days=rules.half_life_days)
    half_way = rules.neutral + (grown - rules.neutral) / 2
    assert core.problem().trails[key] == pytest.approx(half_way)
    [refused] = core.commit_plan(one_lab_plan(second.id, 5))
    core.job_update("lab-a", refused.id, "refused", reason="printer broken")
    assert core.trails.tau(key, now[0]) == pytest.approx(rules.let_down(half_way))

    view = core.trails_view("lab-a")
    assert view["rules"]["half_life_days"] == rules.half_life_days
    [shown] = view["trails"]
    assert shown["design"] == "finger-splint" and shown["tau"] == pytest.approx(
        rules.let_down(half_way), abs=1e-4
    )
    params = SolveParams()
    assert shown["discount_km_per_unit"] == pytest.approx(
        params.trail_discount_km * shown["strength"], abs=1e-3
    )
    assert shown["discount_share_of_trip"] == pytest.approx(
        params.trail_trip_share * shown["strength"], abs=1e-4
    )
    causes = [h["cause"] for h in view["history"]]
    assert causes == [f"delivered on time: 10 units, {hours:.1f} machine hours", "refused: printer broken"]
    assert view["history"][1]["before"] == pytest.approx(half_way)

    later = NOW + timedelta(days=3 * rules.half_life_days)
    again = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: later)
    again.load()
    assert again.trails.tau(key, later) == pytest.approx(core.trails.tau(key, later))
    neutral = rules.neutral  # praise and blame alike fade toward neutral
    assert abs(core.trails.tau(key, later) - neutral) < abs(core.trails.tau(key, now[0]) - neutral)


def test_explanation_names_the_chosen_lab_and_why_another_was_not(core: PlannerCore) -> None:
    far_lab = LAB.model_copy(
        update={
            "id": "lab-b",
            "name": "Lab B",
            "location": Location(lat=46.0, lon=5.0),
            "machines": [Machine(id="laser", processes=["laser"])],
        }
    )
    core.lab_hello(far_lab, {})
    order = core.submit_order(_request(4))
    core.commit_plan(one_lab_plan(order.id, 4))
    verdicts = {v["lab_id"]: v for v in core.explanation(order.id)}
    assert verdicts["lab-a"]["chosen"] and verdicts["lab-a"]["units"] == 4
    assert not verdicts["lab-b"]["chosen"]
    assert verdicts["lab-b"]["why"].startswith("no capability")


def test_an_emergency_order_takes_the_fast_path_before_the_full_re_plan(core: PlannerCore) -> None:
    replanner, sent = replan_after(
        core,
        SolveParams(time_limit_s=1, workers=1),
        lambda: core.submit_order(_request(2, priority="emergency")),
        lambda _, sent: bool(sent),
        polls=100,  # far less than the 5 s debounce a routine order would wait
        debounce_s=5.0,
    )
    assert replanner.emergency_inserts == 1
    [row] = sent
    assert row.quantity == 2 and row.lab_id == "lab-a"


def test_an_unrenewed_lease_returns_its_units_and_weakens_the_trail(tmp_path: Path) -> None:
    now = [NOW]
    core = PlannerCore(ledger=Ledger(tmp_path / "l.db"), designs=catalogue(), clock=lambda: now[0])
    core.lab_hello(LAB, {})
    order = core.submit_order(_request(10))
    [row] = core.commit_plan(one_lab_plan(order.id, 10))
    assert core.expire_leases() == []
    eta = NOW + timedelta(hours=2)
    core.job_update("lab-a", row.id, "running", units_done=4, eta=eta)  # renewed until the ETA + slack
    now[0] = NOW + timedelta(hours=2, minutes=5)
    assert core.expire_leases() == []
    now[0] = NOW + timedelta(hours=3)
    assert core.expire_leases() == [row.id]
    assert core.assignments[row.id].state == "failed"
    assert "lease expired" in core.assignments[row.id].reason
    assert [d.quantity for d in core.problem().demands] == [6]  # the 4 made stay made
    assert core.trails.tau(("finger-splint", "lab-a"), now[0]) < core.trails.rules.neutral
    reloaded = Ledger(tmp_path / "l.db").load_assignments()
    assert reloaded[0].lease_until == core.assignments[row.id].lease_until


def test_units_a_lost_lab_made_count_and_excess_work_is_withdrawn(core: PlannerCore) -> None:
    lab_b = LAB.model_copy(update={"id": "lab-b", "name": "Lab B"})
    core.lab_hello(lab_b, {})
    withdrawn_from: list[str] = []
    core.on_withdrawn = withdrawn_from.append
    order = core.submit_order(_request(10))
    [first] = core.commit_plan(one_lab_plan(order.id, 10))
    core.job_update("lab-a", first.id, "running", units_done=6)
    core.lab_lost("lab-a", "silent for 3.1 s")
    [replacement] = core.commit_plan(one_lab_plan(order.id, 4, lab_id="lab-b"))
    assert core.active_assignments("lab-b") == [replacement.id] and core.active_assignments("lab-a") == []
    core.lab_hello(LAB, {})  # lab-a comes back: it had made 8, not 6
    core.job_update("lab-a", first.id, "failed", units_done=8, reason="withdrawn by the planner")
    assert core.units_made(order.id) == 8 and core.units_reported_late == 2
    assert replacement.state == "failed" and replacement.reason.startswith("withdrawn: ")
    assert withdrawn_from == ["lab-b"] and core.assignments_withdrawn == 1
    assert [d.quantity for d in core.problem().demands] == [2]  # only what is still missing
    assert core.units_surplus() == 0
    kinds = [e.kind for e in core.ledger.events_after(0)]
    assert "job.late_units" in kinds


def test_a_labs_own_failure_is_final(core: PlannerCore) -> None:
    order = core.submit_order(_request(10))
    [row] = core.commit_plan(one_lab_plan(order.id, 10))
    core.job_update("lab-a", row.id, "failed", units_done=3, reason="nozzle clogged")
    core.job_update("lab-a", row.id, "running", units_done=5)
    assert core.units_made(order.id) == 3 and core.units_reported_late == 0


def test_units_a_lost_lab_may_have_made_are_held_until_it_says_or_time_is_up(tmp_path: Path) -> None:
    # The lab's last HEARTBEAT read promised at most 8 units by the end of its lease: of the 4 units
    # not reported, 2 may exist. Those stay out of re-plans until the lab reports, or `doubt_s`.
    now = [NOW]
    core = PlannerCore(ledger=Ledger(tmp_path / "d.db"), designs=catalogue(), clock=lambda: now[0])
    core.lab_hello(LAB, {})
    changes: list[str] = []
    core.on_change = changes.append
    order = core.submit_order(_request(10))
    [first] = core.commit_plan(one_lab_plan(order.id, 10))
    core.job_update("lab-a", first.id, "running", units_done=6)
    core.lab_promised("lab-a", {first.id: 7})
    core.lab_promised("lab-a", {first.id: 8, "a-of-another-lab": 3})
    core.lab_lost("lab-a", "silent for 3.1 s")
    assert core.units_in_doubt() == 2 and core.units_held_in_doubt == 2
    assert [d.quantity for d in core.problem().demands] == [2]  # 10 - 6 made - 2 in doubt
    core.lab_hello(LAB, {})  # it comes back: it had made 7
    core.job_update("lab-a", first.id, "failed", units_done=7, reason="withdrawn by the planner")
    assert core.units_in_doubt() == 0 and core.units_made(order.id) == 7
    assert [d.quantity for d in core.problem().demands] == [3] and "units in doubt settled" in changes

    second = core.submit_order(_request(4))
    [row] = core.commit_plan(one_lab_plan(second.id, 4))
    core.lab_promised("lab-a", {row.id: 1})
    core.lab_lost("lab-a", "silent for 3.1 s")
    assert core.units_in_doubt() == 1 and core.release_doubts() == []
    now[0] = NOW + timedelta(seconds=core.doubt_s)  # it never came back
    assert core.release_doubts() == [row.id] and core.units_in_doubt() == 0
    assert "units in doubt released" in changes
    assert sorted(d.quantity for d in core.problem().demands) == [3, 4]

    core.lab_hello(LAB, {})
    third = core.submit_order(_request(5))
    [row] = core.commit_plan(one_lab_plan(third.id, 5))
    core.lab_promised("lab-a", {row.id: 2})
    core.lab_lost("lab-a", "left: lab agent stopped", said_bye=True)  # it reported all before BYE
    assert core.units_in_doubt() == 0


def test_a_plan_the_clock_cut_short_raises_the_limit_and_is_not_committed_when_it_placed_nothing(
    core: PlannerCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 2,500 orders and 400 labs on a busy machine, the 2-s default left the rounding no time:
    plans with every unit short for time were committed, and the labs got nothing to start."""
    import planner.replan as replan

    limits: list[float] = []
    real = replan.solve_and_check

    def clock_cut_first(problem, params):  # type: ignore[no-untyped-def]
        limits.append(params.time_limit_s)
        if len(limits) == 1:
            short = [
                Shortage(order_id=d.order.id, quantity=d.quantity, reason=TIME_REASON)
                for d in problem.demands
            ]
            return Plan(
                version=0, objective=1e9, bound=0.0, status=TIMED_OUT, solve_seconds=1.0, shortages=short
            ), []
        return real(problem, params)

    monkeypatch.setattr(replan, "solve_and_check", clock_cut_first)
    params = SolveParams(time_limit_s=1, workers=1)
    replanner, sent = replan_after(
        core, params, lambda: core.submit_order(_request(3)), lambda r, s: bool(s), 300, debounce_s=0.01
    )
    assert limits[:2] == [1, 2]  # the second solve got twice the time
    assert replanner.cut_short == 1 and replanner.cut_short_dropped == 1
    assert core.plan is not None and core.plan.version == 1  # the empty plan was never committed
    assert sum(row.quantity for row in sent) == 3
    # The second plan was made well within the raised limit: the limit comes back down.
    assert replanner.params.time_limit_s == 1


def test_a_plan_cut_short_asks_for_another_until_the_limit_is_at_its_cap(core: PlannerCore) -> None:
    """Solving the same problem again with the same limit would cut it short the same way, forever."""
    replanner = Replanner(core, lambda rows: None, SolveParams(time_limit_s=2, workers=1))
    asked: list[str] = []
    replanner.request = asked.append  # type: ignore[method-assign]
    short = [Shortage(order_id="o-1", quantity=1, reason=TIME_REASON)]
    plan = Plan(version=0, objective=1.0, bound=0.0, status=TIMED_OUT, solve_seconds=32.0, shortages=short)
    for _ in range(10):
        assert replanner._cut_short(plan)
    assert len(asked) == 4  # 2 -> 4 -> 8 -> 16 -> 32 s, then no more
    assert replanner.params.time_limit_s == 2.0 * MOST_LIMIT_FACTOR


def test_a_plans_jobs_go_to_a_lab_in_the_order_it_takes_them_up(core: PlannerCore) -> None:
    """A lab starts the first job it accepts on its idle machines, so the jobs of one plan are sent
    earliest leave-by first: a job due sooner before one due later, and units the plan placed late
    by the plan's arrival for them, whatever the plan's own order."""
    later = core.submit_order(_request(2, due_at=NOW + timedelta(days=3)))
    placed_late = core.submit_order(_request(2, due_at=NOW + timedelta(hours=20)))
    sooner = core.submit_order(_request(2, due_at=NOW + timedelta(days=1)))
    lines = [one_lab_plan(order.id, 2).allocations[0] for order in (later, placed_late, sooner)]
    rows = core.commit_plan(one_lab_plan(later.id, 2).model_copy(update={"allocations": lines}))
    assert [r.order_id for r in rows] == [later.id, placed_late.id, sooner.id]
    assert [r.order_id for r in core.awaiting_answer("lab-a")] == [placed_late.id, sooner.id, later.id]
    late = replace(rows[1], on_time_units=0, arrive_by=(NOW + timedelta(days=4)).isoformat())
    expected = [sooner.id, later.id, placed_late.id]
    assert [r.order_id for r in core.in_dispatch_order([rows[0], late, rows[2]])] == expected


def test_an_emergency_order_is_not_held_back_by_the_spacing_of_the_labs_reports(core: PlannerCore) -> None:
    """Reports (capacity, stock) re-plan at most every `min_interval_s`; an emergency order that comes
    while the planner waits out that spacing is placed at once."""
    sent: list[AssignmentRow] = []

    async def scenario() -> float:
        replanner = Replanner(core, sent.extend, SolveParams(time_limit_s=1, workers=1), min_interval_s=60.0)
        core.on_change = replanner.request
        stop = asyncio.Event()
        task = asyncio.create_task(replanner.run(stop))
        core.submit_order(_request(2))
        while not sent:
            await asyncio.sleep(0.01)
        replanner.request("capacity")  # a report: the next plan waits out the 60 s spacing
        await asyncio.sleep(0.1)
        emergency = core.submit_order(_request(2, priority="emergency"))
        asked = time.monotonic()
        while not any(row.order_id == emergency.id for row in sent):
            await asyncio.sleep(0.01)
            assert time.monotonic() - asked < 30, "the emergency waited out the reports' spacing"
        waited = time.monotonic() - asked
        stop.set()
        await task
        return waited

    assert asyncio.run(scenario()) < 30


def test_late_work_a_lab_holds_waits_in_the_plan_behind_work_that_must_leave_sooner(tmp_path: Path) -> None:
    """The late units of a job the lab holds yield, by the checkpoints before they must leave, to new
    work that must leave sooner, as the lab takes its work (solver.jobshop.ranking); but for the unit
    its machine may be making. Its units planned on time do not."""
    # Late work sent whole (no late-work window), to see it counted.
    core = PlannerCore(
        ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: NOW, late_work_hours=None
    )
    core.lab_hello(LAB, {})
    order = core.submit_order(_request(10))
    arrive_by = NOW + timedelta(days=3)
    (line,) = one_lab_plan(order.id, 10).allocations
    late_line = line.model_copy(update={"late_units": 4, "arrive_by": arrive_by})
    [row] = core.commit_plan(one_lab_plan(order.id, 10).model_copy(update={"allocations": [late_line]}))
    assert row.on_time_units == 6
    [state] = core.problem().labs
    road = core.road_hours(row)
    assert road is not None
    leave_days = 3.0 - road / 24.0
    assert state.backlog_minutes["p1"] == pytest.approx(10 * 28)
    assert state.deferred_minutes == {"p1": ((pytest.approx(leave_days), pytest.approx(4 * 28 - 25)),)}
    core.job_update("lab-a", row.id, "accepted")
    core.job_update("lab-a", row.id, "running", units_done=8)  # on-time units first: 2 late ones left
    [state] = core.problem().labs
    assert state.deferred_minutes == {"p1": ((pytest.approx(leave_days), pytest.approx(2 * 28 - 25)),)}


@pytest.mark.parametrize("clock_speed", [1.0, 2000.0])
def test_a_plan_counts_the_labs_hours_from_when_it_reaches_them(tmp_path: Path, clock_speed: float) -> None:
    """A solve takes wall seconds, and a replay's clock runs thousands of times faster: at 2,000x a
    solve of its whole 1-s budget is 33 minutes of the lab's hours that pass before the plan reaches
    it. The plan counts from then: ten splints that fit with 20 minutes to spare from now are nine
    on time from 33 minutes on."""
    core = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=lambda: NOW)
    core.lab_hello(LAB, {})
    delivery = Location(lat=45.2, lon=5.7)
    road = transit_days(haversine_km(LAB.location, delivery))
    make = 10 * 28 / LAB.machines[0].minutes_per_day()
    due = NOW + timedelta(days=road + make, minutes=20)
    solved_at: list[object] = []
    original = core.problem

    def problem(**kwargs: object) -> object:
        found = original(**kwargs)  # type: ignore[arg-type]
        solved_at.append(found.now)
        return found

    core.problem = problem  # type: ignore[method-assign]
    params = SolveParams(time_limit_s=1.0, workers=1)
    _, sent = replan_after(
        core,
        params,
        lambda: core.submit_order(_request(10, due_at=due, delivery=delivery)),
        lambda _, rows: bool(rows),
        polls=250,
        clock_speed=clock_speed,
    )
    assert solved_at[0] == NOW + timedelta(seconds=clock_speed * params.time_limit_s)
    # At 2,000x the tenth is late, and waits for a later plan (the late-work window).
    assert sum(r.on_time_units for r in sent) == (10 if clock_speed == 1.0 else 9)
