"""The emergency fast path (SPEC.md section 10.8): one request, firm answers, a take, a lease.

First the pure decisions (a host's firm answer from its spare capacity, the origin's choice), then
real planner processes over real CurveZMQ sockets: `alpha` has no lab at all, `beta` has one, and
`gamma`, played by the test, is a live peer of both that never answers a request (towards alpha)
or is an origin whose every message the test scripts (towards beta).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from planner.fed_emergency import Emergencies
from planner.peer_serve import read_capture
from planner.peers import add_peer, peer_keys
from planner.trade_book import TradeBook
from protocol import security
from protocol.model import Allocation, CostTerms, Location, Order, Plan, Shortage
from protocol.okh import catalogue
from protocol.peers import decode_peer
from scenarios.demo import Mesh, demo_labs, start_mesh
from scenarios.federation_demo import distinct_ports
from solver.federation.cells import cell_of
from solver.federation.emergency import Answer, capacity_window, choose, host_answer, max_price
from solver.federation.region import RegionModel
from solver.model.problem import Demand, LabState, Problem, SolveParams
from tests.federation.fake_peer import Behaviour, FakePeer
from tests.federation.leaks import leaks
from tests.federation.test_peer_transport import wait_until

MILAN = Location(lat=45.4642, lon=9.1900)
HEARTBEAT_MS = 500
#: The most a request may take from the order's arrival to its lease on a loaded 2-core machine: the
#: origin's first plan, one round trip to its peers with the host's LP, the silent peer's answer
#: wait (2 s), the take and the lease. A session of rounds waits up to 60 s for a silent peer.
LEASE_WITHIN_S = 30.0


# --- the pure decisions -------------------------------------------------------------------------


def _host(orders: list[tuple[int, int]]) -> tuple[RegionModel, Problem]:
    """A host region of one demo lab (Paris), with its own face-shield orders (units, due in days)."""
    lab = demo_labs(1, 7)[0]
    now = datetime(2026, 5, 1, tzinfo=UTC)
    demands = [
        Demand(
            Order(
                id=f"o-{n:04x}",
                design="face-shield",
                quantity=units,
                due_at=now + timedelta(days=days, hours=12),
                delivery=lab.location,
                created_at=now,
            ),
            units,
        )
        for n, (units, days) in enumerate(orders)
    ]
    problem = Problem(
        now=now, designs=catalogue(), labs=[LabState(lab, {}, dict(lab.stock))], demands=demands
    )
    return RegionModel("beta", problem, SolveParams(), windows=(capacity_window(2),)), problem


def test_a_host_answers_from_its_spare_capacity_only_and_its_own_orders_keep_theirs() -> None:
    params = SolveParams()
    ceiling = max_price(params)
    idle, _ = _host([])
    solved = idle.solve(stock_left=True)
    firm = host_answer(idle, solved, "face-shield", cell_of(MILAN), 2, 12, ceiling, params)
    assert firm.units == 12
    assert 600 < firm.price <= ceiling  # at least the carriage from Paris to Milan's cell, ~640 km
    whole = host_answer(idle, solved, "face-shield", cell_of(MILAN), 2, 5000, ceiling, params).units
    # The same host with 30 units of its own due by day 2 answers only what its plan leaves.
    busy, _ = _host([(30, 2)])
    spare = host_answer(
        busy, busy.solve(stock_left=True), "face-shield", cell_of(MILAN), 2, 5000, ceiling, params
    )
    assert 0 < spare.units <= whole - 30, (spare, whole)
    # Nothing at or below the ceiling: no units.
    assert host_answer(idle, solved, "face-shield", cell_of(MILAN), 2, 5, 1.0, params).units == 0


def test_a_host_answers_no_more_than_its_stock_allows() -> None:
    model, problem = _host([])
    dry = replace(problem, labs=[replace(problem.labs[0], stock={**problem.labs[0].stock, "elastic": 1.0})])
    model = RegionModel("beta", dry, SolveParams(), windows=(2,))
    firm = host_answer(
        model, model.solve(stock_left=True), "face-shield", cell_of(MILAN), 2, 50, 1e9, SolveParams()
    )
    assert firm.units == 2  # 1 m of elastic, 0.35 m a shield


def test_the_origin_takes_the_cheapest_answers_within_its_ceiling_until_its_need_is_met() -> None:
    answers = [Answer("zurich", 10, 30.0), Answer("lyon", 6, 20.0), Answer("turin", 50, 90.0)]
    assert choose(answers, 12, 50.0) == {"lyon": 6, "zurich": 6}
    assert choose(answers, 100, 50.0) == {"lyon": 6, "zurich": 10}
    assert choose(answers, 3, 10.0) == {}


def test_the_origin_needs_the_units_its_plan_leaves_short_or_late_that_nothing_else_makes(
    tmp_path: Path,
) -> None:
    now = datetime(2026, 5, 1, 9, tzinfo=UTC)

    def order(order_id: str, hours: float, priority: str = "emergency", quantity: int = 10) -> Order:
        return Order(id=order_id, design="face-shield", quantity=quantity, priority=priority,
                     due_at=now + timedelta(hours=hours), delivery=MILAN, created_at=now)  # fmt: skip

    orders = {
        o.id: o
        for o in (
            order("o-0001", 60),  # 4 short, 3 late, 2 made here: needs 7 (at most 10 - 2)
            order("o-0002", 62),  # same group, 5 short, but a trade covers 8 of 10: needs 2
            order("o-0003", 8),  # due today: 3 short count, its 4 late do not (no host makes them in time)
            order("o-0004", 60, "urgent"),  # not an emergency: the rounds take it
            order("lease-t0.beta.e1", 60),  # made here for a peer: never asked for again
        )
    }
    committed = {"o-0001": 2, "o-0002": 8}
    plan = Plan(
        version=1,
        allocations=[
            Allocation(
                order_id="o-0001",
                lab_id="lab-a",
                quantity=5,
                late_units=3,
                cost=CostTerms(km=0.0, transport=0.0),
            ),
            Allocation(
                order_id="o-0003",
                lab_id="lab-a",
                quantity=4,
                late_units=4,
                cost=CostTerms(km=0.0, transport=0.0),
            ),
        ],
        shortages=[
            Shortage(order_id=o, quantity=q, reason="no capacity")
            for o, q in (("o-0001", 4), ("o-0002", 5), ("o-0003", 3), ("o-0004", 6), ("lease-t0.beta.e1", 9))
        ],
        objective=0.0,
        bound=0.0,
        status="FEASIBLE",
        solve_seconds=0.0,
    )
    core = SimpleNamespace(
        plan=plan,
        orders=orders,
        clock=lambda: now,
        units_committed=lambda order_id: committed.get(order_id, 0),
    )
    book = TradeBook(tmp_path / "ledger.db")
    try:
        found = Emergencies("alpha", core, book, None, None, list, SolveParams(), 0.5, set()).needs(now)  # type: ignore[arg-type]
    finally:
        book.close()
    cell = cell_of(MILAN)
    assert found == {
        ("face-shield", cell, 2): (9, {"o-0001", "o-0002"}),
        ("face-shield", cell, 0): (3, {"o-0003"}),
    }


# --- real planners --------------------------------------------------------------------------------

REQUEST = {
    "request_id": "alpha.e17",
    "design": "face-shield",
    "units": 12,
    "window": 2,
    "cell": "90:18",
    "max_price": 50_000.0,
    "expires_at": "2026-05-01T12:00:02Z",
}


@dataclass
class Trio:
    """alpha (no lab), beta (one lab), and gamma as the test plays it towards each of them."""

    alpha: Mesh
    beta: Mesh
    gamma_to_alpha: FakePeer
    gamma_to_beta: FakePeer
    lab_ids: list[str]
    lab_points: set[float]
    base: Path


def _status(mesh: Mesh) -> dict[str, Any]:
    return httpx.get(f"{mesh.api}/federation", timeout=10).json()


#: Starts of the two planners on fresh ports when a port drawn free was taken before a planner bound
#: it (seen once in CI: "Address already in use" on beta's peer port, the test never ran).
PORT_TRIES = 3


def _start_pair(base: Path, ports: list[int], lab: Any) -> tuple[dict[str, Mesh], list[BaseException]]:
    """Alpha (no lab) and beta (`lab`) started side by side on `ports`, each a peer of the other and
    of gamma; what started, and what failed."""
    alpha_mesh, alpha_http, alpha_peer = ports[0], ports[2], ports[3]
    beta_mesh, beta_http, beta_peer = ports[4], ports[6], ports[7]
    gamma_for_alpha, gamma_for_beta = ports[8], ports[9]
    keys = {name: base / name / "keys" for name in ("alpha", "beta")}
    for name, folder in keys.items():
        peer_keys(folder, name)
    peer_keys(base / "gamma", "gamma")
    add_peer(keys["alpha"], keys["beta"] / "peer.key", f"tcp://127.0.0.1:{beta_peer}")
    add_peer(keys["beta"], keys["alpha"] / "peer.key", f"tcp://127.0.0.1:{alpha_peer}")
    add_peer(keys["alpha"], base / "gamma" / "peer.key", f"tcp://127.0.0.1:{gamma_for_alpha}")
    add_peer(keys["beta"], base / "gamma" / "peer.key", f"tcp://127.0.0.1:{gamma_for_beta}")
    started: dict[str, Mesh] = {}
    errors: list[BaseException] = []

    def start(name: str, labs: list[Any], mesh_port: int, http_port: int, peer_port: int) -> None:
        args = [
            "--peer-region", name, "--peer-endpoint", f"tcp://127.0.0.1:{peer_port}",
            "--peer-capture", str(base / name / "peer.frames"),
        ]  # fmt: skip
        try:
            started[name] = start_mesh(labs, base / name, 10_000.0, HEARTBEAT_MS, planner_args=args,
                                       planner_port=mesh_port, http_port=http_port)  # fmt: skip
        except BaseException as error:  # raised by the caller, once both have started or failed
            errors.append(error)

    threads = [
        threading.Thread(target=start, args=("alpha", [], alpha_mesh, alpha_http, alpha_peer)),
        threading.Thread(target=start, args=("beta", [lab], beta_mesh, beta_http, beta_peer)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return started, errors


def _port_taken(base: Path) -> bool:
    """Whether a planner under `base` stopped because a port it was given was taken."""
    return any(
        "Address already in use" in log.read_text(errors="replace") for log in base.glob("*/planner.log")
    )


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trio]:
    lab = demo_labs(1, 7)[0]
    for attempt in range(PORT_TRIES):
        base = tmp_path_factory.mktemp("emergency")
        ports = distinct_ports(10)
        started, errors = _start_pair(base, ports, lab)
        if not errors or not _port_taken(base) or attempt == PORT_TRIES - 1:
            break
        for mesh in started.values():
            mesh.stop()
    keys = {name: base / name / "keys" for name in ("alpha", "beta")}
    alpha_peer, beta_peer = ports[3], ports[7]
    gamma_for_alpha, gamma_for_beta = ports[8], ports[9]
    fakes: list[FakePeer] = []
    try:
        if errors:
            raise errors[0]
        for name, port, peer_port in (
            ("alpha", gamma_for_alpha, alpha_peer),
            ("beta", gamma_for_beta, beta_peer),
        ):
            fakes.append(
                FakePeer(
                    "gamma",
                    base / "gamma",
                    f"tcp://127.0.0.1:{port}",
                    name,
                    f"tcp://127.0.0.1:{peer_port}",
                    security.load_public(keys[name] / "peer.key"),
                    Behaviour(designs=(), cell=cell_of(MILAN)),  # never answers a request
                )
            )
            fakes[-1].start()
        for mesh in started.values():
            wait_until(lambda m=mesh: len(_status(m)["live"]) == 2, "both peers live", 60)
        yield Trio(started["alpha"], started["beta"], fakes[0], fakes[1], [lab.id],
                   {lab.location.lat, lab.location.lon}, base)  # fmt: skip
    finally:
        for fake in fakes:
            fake.stop()
        for mesh in started.values():
            mesh.stop()


def _order(mesh: Mesh, quantity: int, hours: float) -> dict[str, Any]:
    response = httpx.post(
        f"{mesh.api}/orders",
        headers=mesh.headers,
        timeout=30,
        json={
            "design": "face-shield",
            "quantity": quantity,
            "priority": "emergency",
            "due_at": (datetime.now(UTC) + timedelta(hours=hours)).isoformat(),
            "delivery": MILAN.model_dump(),
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def _frames(path: Path) -> list[Any]:
    return [decode_peer(frame) for frame in read_capture(path)]


@pytest.mark.e2e
@pytest.mark.timeout(400)
def test_an_emergency_in_a_region_with_no_lab_is_made_by_a_peer_in_one_round_trip(trio: Trio) -> None:
    alpha, beta = trio.alpha, trio.beta
    started = time.monotonic()
    order = _order(alpha, 12, 60)
    trades = wait_until(
        lambda: [t for t in _status(alpha)["trades"] if t["state"] == "leased"],
        "the emergency's trade leased",
        LEASE_WITHIN_S,
    )
    to_lease = time.monotonic() - started
    assert len(trades) == 1 and trades[0]["host"] == "beta" and trades[0]["units"] == 12, trades
    assert trades[0]["round"] == 0 and trades[0]["priority"] == "emergency"
    status = _status(alpha)
    request = status["emergency"]["requests"][-1]
    # gamma is live but never answers: the origin decided without it, at the request's expiry at most.
    assert request["asked"] == ["beta", "gamma"] and request["answered"] == ["beta"], request
    assert request["taken"] == {"beta": 12}
    assert request["seconds_to_decide"] < 10.0, request
    assert "EMERGENCY" in trio.gamma_to_alpha.kinds()
    assert "EMERGENCY_TAKE" not in trio.gamma_to_alpha.kinds()
    # The host holds the trade alike, and its lab makes the units; the origin's order counts them.
    wait_until(
        lambda: any(t["trade_id"] == trades[0]["trade_id"] and t["state"] == "leased"
                    for t in _status(beta)["trades"]),
        "beta to hold the trade leased",
    )  # fmt: skip
    view = wait_until(
        lambda: (
            (v := httpx.get(f"{alpha.api}/orders/{order['id']}", timeout=10).json())["units_made_abroad"]
            == 12
            and v
        ),
        "the 12 units made by beta's lab",
        240,
    )
    assert view["units_covered_abroad"] == 12
    # One round trip: one request to beta, one answer, one take; no session of rounds at all.
    sent_by_alpha = _frames(trio.base / "alpha" / "peer.frames")
    sent_by_beta = _frames(trio.base / "beta" / "peer.frames")
    assert [f.kind for f in sent_by_beta].count("EMERGENCY_OFFER") == 1
    assert [f.kind for f in sent_by_alpha].count("EMERGENCY_TAKE") == 1
    assert not {"ROUND", "BIDS", "VOTE"} & {f.kind for f in sent_by_alpha + sent_by_beta}
    # Nothing that left either region names an order, a lab or an exact point.
    ids = {order["id"], *trio.lab_ids}
    points = {MILAN.lat, MILAN.lon, *trio.lab_points}
    for frame in sent_by_alpha + sent_by_beta:
        assert not leaks(frame.body.model_dump(mode="json"), ids, points), frame
    assert _status(alpha)["orders_exposed_share"] == 1.0  # its one order's quantity left, merged
    print(
        f"emergency time to lease, one peer silent: {to_lease:.2f} s wall from the order, "
        f"request decided in {request['seconds_to_decide']} s"
    )


@pytest.mark.e2e
@pytest.mark.timeout(200)
def test_a_repeated_request_and_take_at_a_host_make_one_trade_and_a_take_beyond_its_hold_none(
    trio: Trio,
) -> None:
    beta, gamma = trio.beta, trio.gamma_to_beta
    request = REQUEST | {
        "request_id": "gamma.e5",
        "units": 4,
        "cell": cell_of(MILAN),
        "expires_at": (datetime.now(UTC) + timedelta(seconds=30)).isoformat(),
    }
    gamma.send("EMERGENCY", request)
    gamma.send("EMERGENCY", request)  # a retry
    answers = wait_until(
        lambda: (a := [m.body for m in list(gamma.received) if m.kind == "EMERGENCY_OFFER"])[1:] and a,
        "two answers",
    )
    assert answers[0] == answers[1] and answers[0].units == 4, answers
    before = _status(beta)["emergency"]["stats"]
    assert before["requests_repeated"] >= 1
    take = {"request_id": "gamma.e5", "trade_id": "t0.gamma.e5", "units": 4}
    gamma.send("EMERGENCY_TAKE", take)
    gamma.send("EMERGENCY_TAKE", take)  # a retry
    gamma.send("EMERGENCY_TAKE", take | {"units": 5, "trade_id": "t1.gamma.e5"})  # beyond the hold
    lease = wait_until(
        lambda: [
            m.body for m in list(gamma.received) if m.kind == "LEASE" and m.body.trade_id == "t0.gamma.e5"
        ],
        "beta's lease",
    )[0]
    assert lease.units == 4
    gamma.send("CONFIRM", {"trade_id": "t0.gamma.e5", "units": 4})
    status = wait_until(
        lambda: (
            (s := _status(beta))["emergency"]["stats"]["takes_refused"] >= 1
            and any(t["trade_id"] == "t0.gamma.e5" and t["state"] == "leased" for t in s["trades"])
            and s
        ),
        "the trade leased and the take beyond the hold refused",
    )
    with_gamma = [t for t in status["trades"] if t["origin"] == "gamma"]
    assert [(t["trade_id"], t["units"]) for t in with_gamma] == [("t0.gamma.e5", 4)]
    assert status["emergency"]["stats"]["trades_hosted"] == before["trades_hosted"] + 1


@pytest.mark.e2e
@pytest.mark.timeout(200)
def test_a_lost_peer_is_not_asked_and_a_real_host_leases_within_a_second_or_so(trio: Trio) -> None:
    alpha = trio.alpha
    trio.gamma_to_alpha.stop()  # gamma falls silent for good: alpha loses it
    wait_until(lambda: _status(alpha)["lost"] == ["gamma"], "alpha to lose gamma", 60)
    leased_before = {t["trade_id"] for t in _status(alpha)["trades"] if t["state"] == "leased"}
    started = time.monotonic()
    _order(alpha, 5, 60)
    trades = wait_until(
        lambda: [
            t
            for t in _status(alpha)["trades"]
            if t["state"] == "leased" and t["trade_id"] not in leased_before
        ],
        "the second emergency's trade leased",
        LEASE_WITHIN_S,
    )
    to_lease = time.monotonic() - started
    assert [(t["host"], t["units"]) for t in trades] == [("beta", 5)]
    request = _status(alpha)["emergency"]["requests"][-1]
    assert request["asked"] == ["beta"] and request["taken"] == {"beta": 5}, request
    print(
        f"emergency time to lease, the host a real planner and no silent peer: {to_lease:.2f} s wall "
        f"from the order, {request['seconds_to_lease']} s from the request"
    )


@pytest.fixture
def lone(tmp_path: Path) -> Iterator[tuple[Mesh, FakePeer]]:
    """Planner `alpha` (no lab) and one fake peer `beta` that answers and leases everything twice."""
    mesh_port, _, http_port, alpha_port, beta_port, _ = distinct_ports(6)
    keys = tmp_path / "keys"
    peer_keys(keys, "alpha")
    peer_keys(tmp_path / "beta", "beta")
    add_peer(keys, tmp_path / "beta" / "peer.key", f"tcp://127.0.0.1:{beta_port}")
    args = ["--peer-region", "alpha", "--peer-endpoint", f"tcp://127.0.0.1:{alpha_port}"]
    mesh = start_mesh([], tmp_path, 1.0, HEARTBEAT_MS, planner_args=args, planner_port=mesh_port,
                      http_port=http_port)  # fmt: skip
    fake = FakePeer(
        "beta",
        tmp_path / "beta",
        f"tcp://127.0.0.1:{beta_port}",
        "alpha",
        f"tcp://127.0.0.1:{alpha_port}",
        security.load_public(keys / "peer.key"),
        Behaviour(designs=(), cell=cell_of(MILAN), lease=True, emergency_units=100, emergency_repeat=2),
    )
    fake.start()
    try:
        yield mesh, fake
    finally:
        fake.stop()
        mesh.stop()


@pytest.mark.e2e
@pytest.mark.timeout(200)
def test_at_the_origin_a_repeated_answer_and_lease_make_one_trade(lone: tuple[Mesh, FakePeer]) -> None:
    mesh, fake = lone
    wait_until(lambda: _status(mesh)["live"] == ["beta"], "alpha to hear beta", 60)
    order = _order(mesh, 7, 60)
    wait_until(
        lambda: (t := _status(mesh)["trades"]) and t[0]["state"] == "leased",
        "the trade leased",
        LEASE_WITHIN_S,
    )
    wait_until(lambda: [m.kind for m in list(fake.received)].count("CONFIRM") >= 2, "both leases answered")
    status = _status(mesh)
    assert [(t["host"], t["units"]) for t in status["trades"]] == [("beta", 7)]
    assert [m.body.units for m in list(fake.received) if m.kind == "CONFIRM"][:2] == [7, 7]
    assert [m.kind for m in list(fake.received)].count("EMERGENCY_TAKE") >= 1
    assert status["emergency"]["stats"]["answers_late"] >= 1  # the repeated answer, after the take
    assert status["emergency"]["stats"]["requests_sent"] == 1
    view = httpx.get(f"{mesh.api}/orders/{order['id']}", timeout=10).json()
    assert view["units_covered_abroad"] == 7


def test_a_cell_lacking_a_process_still_has_prices_whichever_class_comes_first() -> None:
    # Which capacity class comes first in a cell's table follows string hashing; one that no machine
    # of the cell is in (the demo lab has no SLA printer) once emptied the cell's prices.
    model, _ = _host([])
    cell = next(iter(model.supply))
    minutes = model.supply[cell].minutes
    empty = [cls for cls, by in minutes.items() if not by]
    assert empty, "the demo lab was expected to lack a process"
    model.supply[cell].minutes = {
        cls: minutes[cls] for cls in [*empty, *(c for c in minutes if c not in empty)]
    }
    solution = model.solve()
    assert any(key[1] == "face-shield" for key in solution.prices)
    assert solution.spare[cell, "face-shield", 2] > 0
