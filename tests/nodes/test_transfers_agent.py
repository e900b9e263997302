"""A lab agent ships and receives material (SPEC.md section 11), against a real ZeroMQ fake planner:
it ships when it has the stock and refuses naming the reason otherwise, ships once however often it
is asked, grows its stock only when a parcel arrives on its clock, and remembers it all across a
restart (its journal)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import zmq.asyncio

from nodes.journal import Journal
from protocol.messages import Arrived, Envelope, Incoming, Ship, Shipped, ShipRefused
from tests.nodes.fake_planner import FakePlanner
from tests.nodes.samples import lab
from tests.nodes.test_agent import agent_running, run, until

pytestmark = pytest.mark.timeout(30)


def of(transfer_id: str) -> Callable[[Envelope], bool]:
    """Messages about one transfer."""
    return lambda m: getattr(m.body, "transfer_id", None) == transfer_id


def test_a_lab_ships_once_from_its_free_stock_and_says_so_after_its_stock(tmp_path: Path) -> None:
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        journal = Journal(tmp_path / "lab.journal.json", the_lab.id)
        async with FakePlanner(ctx, heartbeat_ms=200) as planner:
            async with agent_running(the_lab, planner.endpoint, journal=journal) as agent:
                await until(lambda: agent.welcomed, "WELCOME")
                ship = Ship(
                    transfer_id="t1-1",
                    material="petg",
                    quantity=2.0,
                    to_lab="lab-b",
                    arrive_at=agent.clock.now() + timedelta(hours=5),
                )
                await planner.send(the_lab.id, ship)
                await planner.send(the_lab.id, ship)  # a retry: answered, never shipped twice
                second = await planner.wait_for("SHIPPED", of("t1-1"), count=2)
                assert second.body == Shipped(transfer_id="t1-1")
                assert agent.stock["petg"] == pytest.approx(3.0)
                first = planner.messages("SHIPPED")[0]
                stock = planner.messages("STOCK", lambda m: m.seq < first.seq)[-1]
                assert stock.body.stock["petg"] == pytest.approx(3.0)  # the STOCK went first

                too_much = ship.model_copy(update={"transfer_id": "t1-2", "quantity": 4.0})
                await planner.send(the_lab.id, too_much)
                refused = await planner.wait_for("SHIP_REFUSED", of("t1-2"))
                assert refused.body == ShipRefused(
                    transfer_id="t1-2", reason="not enough stock: petg needs 4.000 kg, 3.000 kg free"
                )
                assert agent.stock["petg"] == pytest.approx(3.0)
            # Restarted from its journal: the stock is as it was, and the same SHIP is not shipped again.
            async with agent_running(the_lab, planner.endpoint, journal=journal) as again:
                await until(lambda: again.welcomed, "WELCOME after the restart")
                await planner.send(the_lab.id, ship)
                await planner.wait_for("SHIPPED", of("t1-1"), count=4)  # after WELCOME, and to the SHIP
                assert again.stock["petg"] == pytest.approx(3.0)
                assert planner.messages("SHIP_REFUSED", of("t1-2"))[-1].body == refused.body

    run(scenario)


def test_material_on_its_way_joins_the_stock_on_arrival_and_not_before(tmp_path: Path) -> None:
    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({})
        journal = Journal(tmp_path / "lab.journal.json", the_lab.id)
        async with FakePlanner(ctx, heartbeat_ms=200) as planner:
            # 3000x: an arrival 2 simulated hours ahead comes 2.4 s later.
            async with agent_running(the_lab, planner.endpoint, journal=journal) as agent:
                await until(lambda: agent.welcomed, "WELCOME")
                parcel = Incoming(
                    transfer_id="t4-1",
                    material="pla",
                    quantity=0.5,
                    from_lab="lab-a",
                    arrive_at=agent.clock.now() + timedelta(hours=2),
                )
                await planner.send(the_lab.id, parcel)
                await until(lambda: "t4-1" in agent.parcels.coming, "the parcel to be expected")
                assert agent.stock.get("pla", 0.0) == 0.0  # on its way, not usable
                assert journal.load()["parcels"]["coming"][0]["arrived"] is False
            # A restart while it is on its way: the journal remembers it.
            async with agent_running(the_lab, planner.endpoint, journal=journal) as again:
                arrived = await planner.wait_for("ARRIVED", of("t4-1"), timeout=10)
                assert again.clock.now() >= parcel.arrive_at
                assert again.stock["pla"] == pytest.approx(0.5)
                # ARRIVED goes first, then the STOCK that holds the parcel.
                await until(lambda: bool(planner.messages("STOCK", lambda m: m.seq > arrived.seq)), "STOCK")
                stock = planner.messages("STOCK", lambda m: m.seq > arrived.seq)[0]
                assert stock.body.stock["pla"] == pytest.approx(0.5)
                await planner.send(the_lab.id, parcel)  # a duplicate: ARRIVED again, stock unchanged
                await planner.wait_for("ARRIVED", of("t4-1"), count=2)
                assert again.stock["pla"] == pytest.approx(0.5)
                assert planner.messages("ARRIVED")[0].body == Arrived(transfer_id="t4-1")

    run(scenario)
