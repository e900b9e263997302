"""Faults at one real planner process, with its peer played by the test (`fake_peer`) to script them:
a lease that never comes, retries, a peer that falls silent mid-round, strangers and bad frames."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import zmq

from planner.peers import add_peer, peer_keys
from protocol import security
from protocol.model import Location
from scenarios.demo import Mesh, start_mesh
from scenarios.federation_demo import distinct_ports
from solver.federation.cells import cell_of
from tests.federation.fake_peer import Behaviour, FakePeer
from tests.federation.test_peer_transport import wait_until

pytestmark = pytest.mark.e2e
HEARTBEAT_MS = 300
MILAN = Location(lat=45.4642, lon=9.1900)


def _start(tmp_path: Path, behaviour: Behaviour) -> tuple[Mesh, FakePeer]:
    """Planner `alpha` (no labs of its own: all its orders are short) and the fake peer `beta`."""
    mesh_port, _, http_port, alpha_port, beta_port, _ = distinct_ports(6)
    keys = tmp_path / "keys"
    peer_keys(keys, "alpha")
    peer_keys(tmp_path / "beta", "beta")
    add_peer(keys, tmp_path / "beta" / "peer.key", f"tcp://127.0.0.1:{beta_port}")
    args = ["--peer-region", "alpha", "--peer-endpoint", f"tcp://127.0.0.1:{alpha_port}"]
    mesh = start_mesh([], tmp_path, 1.0, HEARTBEAT_MS, planner_args=args, planner_port=mesh_port,
                      http_port=http_port)  # fmt: skip
    add_peer(tmp_path / "beta", keys / "peer.key", f"tcp://127.0.0.1:{alpha_port}")
    fake = FakePeer(
        "beta",
        tmp_path / "beta",
        f"tcp://127.0.0.1:{beta_port}",
        "alpha",
        f"tcp://127.0.0.1:{alpha_port}",
        security.load_public(keys / "peer.key"),
        behaviour,
    )
    fake.start()
    return mesh, fake


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Callable[[Behaviour], tuple[Mesh, FakePeer]]]:
    started: list[tuple[Mesh, FakePeer]] = []

    def start(behaviour: Behaviour) -> tuple[Mesh, FakePeer]:
        started.append(_start(tmp_path, behaviour))
        return started[-1]

    yield start
    for mesh, fake in started:
        fake.stop()
        mesh.stop()


def _orders(mesh: Mesh) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    placed = []
    with httpx.Client(base_url=mesh.api, headers=mesh.headers, timeout=30) as client:
        for hours, quantity in ((60, 12), (64, 7)):
            response = client.post(
                "/orders",
                json={
                    "design": "face-shield",
                    "quantity": quantity,
                    "due_at": (now + timedelta(hours=hours)).isoformat(),
                    "delivery": MILAN.model_dump(),
                },
            )
            assert response.status_code == 201, response.text
            placed.append(response.json())
    return placed


def _status(mesh: Mesh) -> dict[str, Any]:
    return httpx.get(f"{mesh.api}/federation", timeout=10).json()


def _negotiate(mesh: Mesh) -> dict[str, Any]:
    response = httpx.post(f"{mesh.api}/federation/negotiate", headers=mesh.headers, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def _live(mesh: Mesh) -> bool:
    return _status(mesh)["live"] == ["beta"]


def test_a_lease_that_never_comes_expires_its_units_return_and_a_late_lease_is_refused_every_time(
    federation,
) -> None:
    mesh, fake = federation(Behaviour(designs=("face-shield",), cell=cell_of(MILAN)))
    placed = _orders(mesh)
    wait_until(lambda: _live(mesh), "alpha to hear beta")
    session = _negotiate(mesh)
    assert any(r["committed"] for r in session["rounds"]), session
    assert "COMMIT" in fake.kinds()
    # The trades were committed, the host never sent LEASE: they expire and the units come back.
    status = wait_until(
        lambda: (s := _status(mesh))["trades"] and all(t["state"] == "void" for t in s["trades"]) and s,
        "every trade void",
    )
    assert status["stats"]["leases_expired"] == len(status["trades"])
    for order in placed:
        view = httpx.get(f"{mesh.api}/orders/{order['id']}", timeout=10).json()
        assert view["units_covered_abroad"] == 0 and view["units_made_abroad"] == 0
    # A lease sent late, and its retry, get the same answer: none of it is taken.
    trade_id = status["trades"][0]["trade_id"]
    expires = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    for _ in range(2):
        fake.send("LEASE", {"trade_id": trade_id, "units": 3, "expires_at": expires})
    confirms = wait_until(
        lambda: (
            [m for m in list(fake.received) if m.kind == "CONFIRM" and m.body.trade_id == trade_id][1:]
            and [m for m in list(fake.received) if m.kind == "CONFIRM" and m.body.trade_id == trade_id]
        ),
        "two answers to the late lease",
    )
    assert [m.body.units for m in confirms] == [0, 0]
    assert all(t["state"] == "void" for t in _status(mesh)["trades"])
    # The origin bids again, elsewhere if it can: its demand is back.
    before = _status(mesh)["stats"]["bids_sent"]
    _negotiate(mesh)
    assert _status(mesh)["stats"]["bids_sent"] > before


def test_a_lease_confirmed_counts_for_the_origins_orders_once_however_often_it_is_sent(federation) -> None:
    mesh, fake = federation(Behaviour(designs=("face-shield",), cell=cell_of(MILAN), lease=True))
    placed = _orders(mesh)
    wait_until(lambda: _live(mesh), "alpha to hear beta")
    _negotiate(mesh)
    status = wait_until(
        lambda: (s := _status(mesh))["trades"] and all(t["state"] == "leased" for t in s["trades"]) and s,
        "every trade leased",
    )
    leased = sum(t["units"] for t in status["trades"])
    assert 0 < leased <= sum(o["quantity"] for o in placed)
    # The same LEASE again (a retry) changes nothing and gets the same answer.
    trade = status["trades"][0]
    expires = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    fake.send("LEASE", {"trade_id": trade["trade_id"], "units": trade["units"], "expires_at": expires})
    fake.send("PROGRESS", {"trade_id": trade["trade_id"], "units_done": trade["units"]})
    fake.send("PROGRESS", {"trade_id": trade["trade_id"], "units_done": trade["units"]})
    wait_until(
        lambda: (
            sum(
                httpx.get(f"{mesh.api}/orders/{o['id']}", timeout=10).json()["units_made_abroad"]
                for o in placed
            )
            == trade["units"]
        ),
        "the units made abroad on the origin's orders",
    )
    after = _status(mesh)
    assert sum(t["units"] for t in after["trades"]) == leased
    # The network page's map: the peer where it offered from, the flow from it to this region.
    assert after["places"]["beta"] == {"lat": 45.25, "lon": 9.25}  # the centre of Milan's cell
    assert after["flows"] == [
        {"host": "beta", "origin": "alpha", "units": leased, "units_done": trade["units"]}
    ]
    answers = [
        m.body.units
        for m in list(fake.received)
        if m.kind == "CONFIRM" and m.body.trade_id == trade["trade_id"]
    ]
    assert len(answers) >= 2 and set(answers) == {trade["units"]}


def test_a_peer_silent_mid_round_voids_the_round_and_strangers_and_bad_frames_are_counted(
    federation, tmp_path: Path
) -> None:
    mesh, fake = federation(
        Behaviour(designs=("face-shield",), cell=cell_of(MILAN), silent_after_offers=True)
    )
    _orders(mesh)
    wait_until(lambda: _live(mesh), "alpha to hear beta")
    # Bad frames from an admitted peer are counted and dropped.
    fake.send("RAW", b"\xc1 not msgpack")
    fake.send("RAW", b"\x81\xa1v\x01")
    wait_until(lambda: _status(mesh)["stats"]["peer_frames_malformed"] >= 2, "two malformed frames counted")
    # A stranger's key fails the handshake; nothing of it reaches the planner.
    stranger = security.create_keypair(tmp_path / "stranger", "peer", {"region": "gamma"})
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        own = security.load_keypair(stranger.with_suffix(".key_secret"))
        security.make_client(
            sock, security.ClientKeys(own, security.load_public(tmp_path / "keys" / "peer.key"))
        )
        sock.connect(fake.planner_endpoint)
        wait_until(lambda: _status(mesh)["stats"]["peer_keys_refused"] >= 1, "the stranger refused")
    finally:
        ctx.destroy(linger=0)
    # Beta answers the session's opening round, then falls silent: the round it was in is dropped.
    session = _negotiate(mesh)
    assert fake.silent
    assert session["rounds"] and not any(r["committed"] for r in session["rounds"])
    assert session["rounds"][0]["total_after"] is None  # dropped, not outvoted
    status = _status(mesh)
    assert status["trades"] == []
    assert status["lost"] == ["beta"]
    assert status["stats"]["vetoes_sent"] >= 1
