"""An order's explanation names the transfer its units wait for, through the real HTTP API.

A real planner app (TestClient: its lifespan binds the mesh and runs the re-planner) and two labs
speaking the protocol on real DEALER sockets: printers by the hospital with no PLA, and a store 85
km away with PLA and no printer. The planner plans the PLA to the printers; the explanation of the
order says which lab ships what, how much, how far and when it arrives, first while SHIP is
unanswered (`sent`), then once the store has shipped (`shipped`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import zmq
from fastapi.testclient import TestClient

from planner.app import PlannerSettings
from protocol import transport
from protocol.codec import decode, encode
from protocol.messages import Body, Envelope, Heartbeat, Hello, Ship, Shipped, Stock, Welcome
from protocol.model import Lab, Location, Machine
from solver.model.geo import haversine_km
from solver.model.objective import TRANSFER_HANDLING_HOURS, TRANSPORT_KMH

HOSPITAL = Location(lat=41.39, lon=2.17, place="Barcelona")
SPLINT_PLA = 0.006
PRINTERS = Lab(
    id="printers-bcn",
    name="Printers by the hospital",
    location=Location(lat=41.40, lon=2.17),
    machines=[
        Machine(id="printer-1", processes=["fdm"], hours_per_day=12, tags={"bed_mm": 250}),
        Machine(id="bench-1", processes=["assembly"], hours_per_day=10),
    ],
    stock={"pla": 0.0},
)
STORE = Lab(
    id="store-girona",
    name="Store Girona",
    location=Location(lat=41.98, lon=2.82, place="Girona"),
    machines=[Machine(id="laser-1", processes=["laser"], hours_per_day=8)],
    stock={"pla": 1.0},
)


class FakeLab(threading.Thread):
    """A lab on the mesh: HELLO, heartbeats, and the SHIP messages it is sent, which it answers
    (STOCK, then SHIPPED, as an agent does) once `ship` is set."""

    def __init__(self, lab: Lab, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.lab = lab
        self.endpoint = endpoint
        self.ships: list[Ship] = []
        self.ship = threading.Event()
        self.stop = threading.Event()
        self._answered: set[str] = set()
        self._seq = 0
        self._stock = dict(lab.stock)

    def _send(self, sock: zmq.Socket, body: Body, epoch: int) -> None:
        self._seq += 1
        sock.send(encode(Envelope(sender=self.lab.id, seq=self._seq, epoch=epoch, body=body)))

    def run(self) -> None:
        ctx = zmq.Context()
        sock = transport.connect_dealer(ctx, self.endpoint, self.lab.id)
        epoch, beat = 0, 0.0
        self._send(sock, Hello(lab=self.lab), epoch)
        try:
            while not self.stop.is_set():
                if sock.poll(50):
                    message = decode(sock.recv())
                    if isinstance(message.body, Welcome):
                        epoch = message.body.epoch
                    elif isinstance(message.body, Ship):
                        self.ships.append(message.body)
                if self.ship.is_set():
                    for request in self.ships:
                        if request.transfer_id not in self._answered:
                            self._answered.add(request.transfer_id)
                            self._stock[request.material] -= request.quantity
                            self._send(sock, Stock(stock=dict(self._stock)), epoch)
                            self._send(sock, Shipped(transfer_id=request.transfer_id), epoch)
                if epoch and time.monotonic() - beat > 0.05:
                    self._send(sock, Heartbeat(), epoch)
                    beat = time.monotonic()
        finally:
            sock.close(linger=0)
            ctx.term()


def _until(condition: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def labs(settings: PlannerSettings) -> Iterator[dict[str, FakeLab]]:
    started = {lab.id: FakeLab(lab, settings.mesh_endpoint) for lab in (PRINTERS, STORE)}
    yield started
    for lab in started.values():
        lab.stop.set()
        lab.join(5)


def _chosen(client: TestClient, order_id: str) -> dict[str, Any]:
    answer = client.get(f"/orders/{order_id}/explanation")
    assert answer.status_code == 200, answer.text
    [chosen] = [v for v in answer.json() if v["chosen"]]
    return dict(chosen)


def test_the_explanation_names_the_transfer_a_line_waits_for(
    client: TestClient, labs: dict[str, FakeLab]
) -> None:
    for lab in labs.values():
        lab.start()
    _until(lambda: client.get("/health").json()["labs_live"] == 2, "both labs to join")
    body = {
        "design": "finger-splint",
        "quantity": 6,
        "due_at": (datetime.now(UTC) + timedelta(hours=72)).isoformat(),
        "delivery": HOSPITAL.model_dump(),
    }
    order = client.post("/orders", json=body)
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]
    [ship] = _until(lambda: labs["store-girona"].ships, "the store to be told to ship")
    assert (ship.material, ship.to_lab, ship.quantity) == (
        "pla",
        "printers-bcn",
        pytest.approx(6 * SPLINT_PLA),
    )

    assert client.get("/plan").json()["transfers_considered"] is True  # the one-model path planned it
    chosen = _chosen(client, order_id)
    km = haversine_km(STORE.location, PRINTERS.location)
    arrive_at = datetime.fromisoformat(chosen["transfers"][0]["arrive_at"])
    assert chosen["lab_id"] == "printers-bcn" and chosen["units"] == 6
    assert [(t["id"], t["state"], t["material"], t["from_lab"]) for t in chosen["transfers"]] == [
        (ship.transfer_id, "sent", "pla", "store-girona")
    ]
    [transfer] = chosen["transfers"]
    assert transfer["km"] == pytest.approx(km, abs=0.1)
    assert transfer["parcel_quantity"] == pytest.approx(6 * SPLINT_PLA)
    assert transfer["line_uses"] == pytest.approx(6 * SPLINT_PLA)
    assert arrive_at == ship.arrive_at
    lead = timedelta(hours=TRANSFER_HANDLING_HOURS + km / TRANSPORT_KMH)
    assert arrive_at - datetime.fromisoformat(transfer["ship_at"]) == pytest.approx(
        lead, abs=timedelta(seconds=1)
    )
    why = chosen["why"]
    assert why.startswith("chosen for 6 units (6 of them made from material shipped to the lab)")
    assert f"material pla from lab store-girona (Store Girona), {km:.0f} km, arrives day" in why
    assert arrive_at.strftime("%a %d %b %H:%M UTC") in why
    assert "0.036 kg for these units, of a 0.036 kg parcel" in why
    assert f"(transfer {ship.transfer_id}, sent)" in why

    labs["store-girona"].ship.set()
    _until(
        lambda: _chosen(client, order_id)["transfers"][0]["state"] == "shipped", "the transfer to be shipped"
    )
    assert f"(transfer {ship.transfer_id}, shipped)" in _chosen(client, order_id)["why"]
    # The lab pages list it too, on both sides.
    store = client.get("/labs/store-girona").json()["transfers"]
    printers = client.get("/labs/printers-bcn").json()["transfers"]
    assert (
        [t["id"] for t in store["outgoing"]] == [ship.transfer_id] == [t["id"] for t in printers["incoming"]]
    )
