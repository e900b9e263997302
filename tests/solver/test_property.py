"""Properties over random small problems: every plan solve() returns passes the independent check()."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.model import PRIORITIES, Allocation, CostTerms, Machine, Plan
from solver.allocation.allocate import solve
from solver.check import check
from solver.model.objective import overdue_weight
from solver.model.problem import Problem, SolveParams
from tests.solver.factory import lab, machine, order, problem

PROCESSES = ("fdm", "laser", "sla", "assembly")
DESIGNS = ("face-shield", "charlotte-valve", "finger-splint")
MATERIALS = ("petg", "pla", "resin", "pet_sheet_0_5", "elastic")
PARAMS = SolveParams(time_limit_s=2.0, workers=1)
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

places = st.tuples(st.floats(41.0, 42.0), st.floats(1.5, 3.0))


@st.composite
def machines(draw: st.DrawFn) -> list[Machine]:
    count = draw(st.integers(1, 4))
    result = []
    for i in range(count):
        processes = draw(st.lists(st.sampled_from(PROCESSES), min_size=1, max_size=3, unique=True))
        tags: dict[str, object] = {}
        if draw(st.booleans()):
            tags["bed_mm"] = draw(st.sampled_from([150, 180, 200, 250, 300]))
        if draw(st.booleans()):
            tags["medical_grade"] = draw(st.booleans())
        speed = draw(st.sampled_from([0.5, 1.0, 1.5, 2.0]))
        hours = draw(st.integers(1, 16))
        result.append(machine(f"m{i}", *processes, speed=speed, hours=hours, **tags))
    return result


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    labs = []
    for j in range(draw(st.integers(2, 6))):
        ms = draw(machines())
        backlog = {m.id: float(draw(st.integers(0, 3000))) for m in ms if draw(st.booleans())}
        stock = {m: draw(st.floats(0.0, 3.0)) for m in MATERIALS if draw(st.booleans())}
        labs.append(
            lab(f"lab{j}", draw(places), ms, stock=stock, backlog=backlog, live=draw(st.integers(0, 5)) > 0)
        )
    orders = [
        order(
            f"o{i}",
            draw(st.sampled_from(DESIGNS)),
            draw(st.integers(1, 40)),
            draw(places),
            days=draw(st.floats(0.2, 12.0)),
            priority=draw(st.sampled_from(PRIORITIES)),
        )
        for i in range(draw(st.integers(1, 8)))
    ]
    return problem(labs, orders)


@SETTINGS
@given(p=problems(), k=st.integers(1, 6))
def test_every_plan_passes_check(p: Problem, k: int) -> None:
    params = SolveParams(time_limit_s=2.0, workers=1, k_nearest=k)
    plan = solve(p, params)
    assert check(p, plan, params) == []
    assert plan.status in ("OPTIMAL", "FEASIBLE")
    assert plan.bound <= plan.objective
    penalties = sum(params.shortage_penalty[_priority(p, s.order_id)] * s.quantity for s in plan.shortages)
    costs = sum(a.cost.total for a in plan.allocations) + sum(t.cost for t in plan.transfers)
    assert abs(plan.objective - (costs + penalties)) <= 1e-6 * max(1.0, plan.objective)
    for a in plan.allocations:
        assert a.cost.transport <= params.km_weight * a.cost.km * a.quantity + 1e-9
        priority = _priority(p, a.order_id)
        assert a.cost.lateness == pytest.approx(params.lateness_penalty[priority] * a.late_units)
        assert a.arrive_by is not None and a.arrive_by > p.now and 0 <= a.early_units <= a.quantity
        days = (a.arrive_by - p.now).total_seconds() / 86_400
        # each late unit's days past its due date weigh more (solver.model.objective.LATE_DAY_FACTOR)
        due_at = next(d.order.due_at for d in p.demands if d.order.id == a.order_id)
        past_due = max(0.0, (a.arrive_by - due_at).total_seconds() / 86_400)
        most = params.time_weight[priority] * a.quantity * days
        most += overdue_weight(params.time_weight, priority) * a.late_units * past_due
        assert 0 < a.cost.time <= most * (1 + 1e-9)


@SETTINGS
@given(ms=machines(), design=st.sampled_from(DESIGNS), quantity=st.integers(1, 30), days=st.integers(1, 3))
def test_one_lab_makes_as_many_units_as_fit(ms: list[Machine], design: str, quantity: int, days: int) -> None:
    # With whole minutes everywhere, one more unit than planned must break the independent check:
    # the allocator leaves nothing short that the lab could really make.
    p = problem([lab("only", (41.4, 2.2), ms)], [order("o1", design, quantity, days=days)])
    plan = solve(p, PARAMS)
    assert check(p, plan, PARAMS) == []
    made = sum(a.quantity for a in plan.allocations)
    if made < quantity:
        assert check(p, _single(made + 1, quantity), PARAMS) != []


def _priority(p: Problem, order_id: str) -> str:
    return next(d.order.priority for d in p.demands if d.order.id == order_id)


def _single(units: int, quantity: int) -> Plan:
    from protocol.model import Shortage

    return Plan(
        version=0,
        allocations=[
            Allocation(order_id="o1", lab_id="only", quantity=units, cost=CostTerms(km=0.0, transport=0.0))
        ],
        shortages=[Shortage(order_id="o1", quantity=quantity - units, reason="x")]
        if units < quantity
        else [],
        objective=0.0,
        bound=0.0,
        status="FEASIBLE",
        solve_seconds=0.0,
    )
