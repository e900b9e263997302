"""Rates: released day by day as orders, forecast ahead in the plan, never sent before release,
kept by the ledger, and each with the days until its need is met."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from planner.app import PlannerSettings, create_app
from planner.core import OrderRejected, PlannerCore
from planner.rates import Rate, RateRequest, releases
from planner.store import Ledger
from protocol.model import Lab, Location, Machine
from protocol.okh import catalogue
from solver.allocation.allocate import solve
from solver.check import check
from solver.model.problem import SolveParams
from tests.planner.plans import one_lab_plan

NOW = datetime(2026, 5, 1, 8, tzinfo=UTC)
LAB = Lab(
    id="lab-a",
    name="Lab A",
    location=Location(lat=45.0, lon=5.0),
    machines=[Machine(id="p1", processes=["fdm", "assembly"], hours_per_day=20, tags={"bed_mm": 250})],
    stock={"pla": 10.0},
)
PARAMS = SolveParams(time_limit_s=2.0, workers=1)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _rate(**changes: object) -> RateRequest:
    fields: dict[str, object] = {
        "design": "finger-splint",
        "units_per_day": 10,
        "until": NOW + timedelta(days=5),
        "due_days": 2,
        "delivery": Location(lat=45.2, lon=5.7),
    }
    fields.update(changes)
    return RateRequest.model_validate(fields)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(tmp_path: Path, clock: Clock) -> PlannerCore:
    planner = PlannerCore(ledger=Ledger(tmp_path / "c.db"), designs=catalogue(), clock=clock, forecast_days=3)
    planner.lab_hello(LAB, {})
    return planner


def test_a_fractional_rate_releases_whole_units_that_follow_it() -> None:
    rate = Rate(
        id="r-1",
        design="finger-splint",
        units_per_day=2.5,
        starts_at=NOW,
        until=NOW + timedelta(days=3.5),
        due_days=1,
        delivery=Location(lat=45.2, lon=5.7),
        created_at=NOW,
    )
    found = list(releases(rate))
    # running totals 2.5 -> 2, 5, 7.5 -> 8, then the last half day 8.75 -> 9
    assert [units for _, _, units in found] == [2, 3, 3, 1]
    assert [at for _, at, _ in found] == [NOW + timedelta(days=k) for k in range(4)]


def test_released_day_by_day_forecast_ahead_and_never_sent_before_release(
    core: PlannerCore, clock: Clock
) -> None:
    rate = core.submit_rate(_rate())
    assert sorted(core.orders) == [f"{rate.id}-d0"]  # the first release is an order at once
    problem = core.problem()
    forecast = {d.order.id: d for d in problem.demands if d.release_at is not None}
    assert sorted(forecast) == [f"{rate.id}-d{k}" for k in (1, 2, 3)]  # 3 forecast days ahead
    assert forecast[f"{rate.id}-d2"].release_at == NOW + timedelta(days=2)
    plan = solve(problem, PARAMS)
    assert check(problem, plan, PARAMS) == []
    assert {a.order_id for a in plan.allocations} >= set(forecast)  # room is left for them
    sent = core.commit_plan(plan)
    assert sent and {a.order_id for a in sent} == {f"{rate.id}-d0"}  # only what is ordered is sent
    view = core.rate_view(rate.id)
    assert view is not None and view["units_forecast"] == 30 and view["units_released"] == 10
    # every unit is planned to arrive by its due date: the need is met now
    assert view["need"]["days_until_met"] == 0.0 and view["need"]["shortfall"] == 0
    clock.now = NOW + timedelta(days=1, minutes=1)
    placed = core.release_rates()
    assert [o.id for o in placed] == [f"{rate.id}-d1"] and core.release_rates() == []
    assert placed[0].due_at == NOW + timedelta(days=3)


def test_a_need_the_labs_cannot_meet_says_so_with_its_shortfall(core: PlannerCore) -> None:
    rate = core.submit_rate(_rate(units_per_day=5000))  # the lab makes about 48 splints a day
    problem = core.problem()
    core.commit_plan(solve(problem, PARAMS))
    view = core.rate_view(rate.id)
    assert view is not None
    assert view["need"]["days_until_met"] is None and view["need"]["shortfall"] > 0


def test_bad_rates_are_refused_naming_the_field(core: PlannerCore) -> None:
    with pytest.raises(OrderRejected) as unknown:
        core.submit_rate(_rate(design="warp-drive"))
    assert unknown.value.field == "design"
    with pytest.raises(OrderRejected) as past:
        core.submit_rate(_rate(until=NOW - timedelta(days=1)))
    assert past.value.field == "until"
    with pytest.raises(OrderRejected) as long:
        core.submit_rate(_rate(until=NOW + timedelta(days=400)))
    assert long.value.field == "until" and "366 days" in long.value.reason
    with pytest.raises(OrderRejected) as none:
        core.submit_rate(_rate(units_per_day=0.1, until=NOW + timedelta(days=2)))
    assert none.value.field == "units_per_day"
    assert core.rates == {} and core.orders == {}


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "design": "face-shield",
        "units_per_day": 12,
        "until": (datetime.now(UTC) + timedelta(days=4)).isoformat(),
        "delivery": {"lat": 45.76, "lon": 4.84, "place": "Lyon"},
        "due_days": 2,
        "priority": "urgent",
    }
    body.update(changes)
    return body


def test_the_api_takes_rates_and_the_ledger_keeps_them_across_a_restart(settings: PlannerSettings) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.post("/rates", json=_body())
        assert response.status_code == 201
        rate = response.json()
        assert response.headers["location"] == f"/rates/{rate['id']}"
        assert rate["state"] == "active" and rate["units_released"] == 12
        assert rate["need"]["days_until_met"] is None  # no lab has joined: nothing can arrive
        assert rate["need"]["shortfall"] > 0
        assert [r["id"] for r in client.get("/rates").json()] == [rate["id"]]
        assert client.get(f"/orders/{rate['id']}-d0").json()["quantity"] == 12
        bad = client.post("/rates", json=_body(design="warp-drive"))
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "design"]
        past = client.post("/rates", json=_body(until="2020-01-01T00:00:00Z"))
        assert past.status_code == 409 and "until" in past.json()["detail"]
        start = (datetime.now(UTC) + timedelta(days=5)).isoformat()
        backwards = client.post("/rates", json=_body(starts_at=start))
        assert backwards.status_code == 409 and "not after the stream's start" in backwards.json()["detail"]
        tiny = client.post("/rates", json=_body(units_per_day=1e-9))
        assert tiny.status_code == 409 and "units_per_day" in tiny.json()["detail"]
        assert client.get("/rates/r-nothing").status_code == 404
    with TestClient(create_app(settings)) as client:  # a restart on the same ledger
        again = client.get(f"/rates/{rate['id']}").json()
        assert again["units_per_day"] == 12 and again["units_released"] == 12
        assert len([o for o in client.get("/orders").json() if o["id"].startswith(rate["id"])]) == 1


def test_a_forecast_line_in_a_plan_is_not_sent(core: PlannerCore) -> None:
    rate = core.submit_rate(_rate())
    ahead = f"{rate.id}-d2"
    plan = one_lab_plan(ahead, 10, early_units=0)
    assert core.commit_plan(plan) == []
    assert [a.order_id for a in core.unsent] == [ahead]


def test_what_a_rate_still_brings_beyond_its_forecast_is_the_future_the_labs_are_priced_against(
    core: PlannerCore,
) -> None:
    """5 days at 10 a day: released now (d0), forecast (d1-d3), and d4 still to come, due 2 days on."""
    rate = core.submit_rate(_rate())
    problem = core.problem()
    (coming,) = problem.future
    assert (coming.design, coming.delivery, coming.units) == ("finger-splint", rate.delivery, 10.0)
    assert coming.last_due_at == NOW + timedelta(days=4 + 2)
    plan = solve(problem, PARAMS)  # one lab: nothing to price it against, and a valid plan
    assert check(problem, plan, PARAMS) == []
    assert all(a.cost.capacity == 0.0 for a in plan.allocations)


def test_the_future_priced_against_is_one_lead_time_of_releases_past_the_forecast(core: PlannerCore) -> None:
    """Ten days at 10 a day, due 2 days on: past the 3 days of forecast, days 4 and 5 are released
    before the work open now falls due and want the same minutes; days 6-9 want later ones."""
    core.submit_rate(_rate(until=NOW + timedelta(days=10)))
    (coming,) = core.problem().future
    assert coming.units == 20.0
    assert coming.last_due_at == NOW + timedelta(days=5 + 2)


def test_a_rate_whose_requester_places_the_orders_is_planned_for_but_never_released(
    core: PlannerCore, clock: Clock
) -> None:
    rate = core.submit_rate(_rate(release=False))
    assert not rate.release and core.orders == {}  # day 0's release is not placed
    problem = core.problem()
    assert sorted(d.order.id for d in problem.demands) == [f"{rate.id}-d{k}" for k in (1, 2, 3)]  # forecast
    (coming,) = problem.future  # day 4, beyond the 3 days of forecast
    assert (coming.design, coming.units) == ("finger-splint", 10.0)
    clock.now = NOW + timedelta(days=2, minutes=1)
    assert core.release_rates() == [] and core.orders == {}
