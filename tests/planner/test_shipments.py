"""The planner's material transfers without sockets (SPEC.md section 11): dispatch, the sender's
answer, arrival, a sender lost, a restart; what each means for the next solve; nothing lost."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from planner.core import PlannerCore
from planner.shipping import TransferRow, UnknownTransfer
from planner.store import Ledger
from protocol.model import Allocation, CostTerms, Lab, Location, Machine, OrderRequest, Plan, Transfer
from protocol.okh import catalogue
from solver.allocation.allocate import solve
from solver.check import check
from solver.model.problem import InTransit, SolveParams
from tests.planner.plans import replan_after

NOW = datetime(2026, 5, 1, 8, tzinfo=UTC)
ARRIVE = NOW + timedelta(hours=6)
SPLINT_PLA = 0.006
SENDER = Lab(
    id="lab-a",
    name="Lab A",
    location=Location(lat=45.0, lon=5.0),
    machines=[Machine(id="laser", processes=["laser"])],
    stock={"pla": 1.0},
)
RECEIVER = Lab(
    id="lab-b",
    name="Lab B",
    location=Location(lat=45.2, lon=5.7),
    machines=[Machine(id="p1", processes=["fdm", "assembly"], tags={"bed_mm": 250})],
    stock={},
)


class Calls:
    """What the core asked the mesh and the re-planner to do."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.shipped: list[str] = []
        self.changes: list[str] = []


def _core(path: Path, calls: Calls) -> PlannerCore:
    core = PlannerCore(ledger=Ledger(path), designs=catalogue(), clock=lambda: NOW)
    core.on_change = calls.changes.append
    core.shipments.on_sent = lambda rows: calls.sent.extend(r.id for r in rows)
    core.shipments.on_shipped = lambda row: calls.shipped.append(row.id)
    return core


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def core(tmp_path: Path, calls: Calls) -> PlannerCore:
    planner = _core(tmp_path / "ledger.db", calls)
    planner.lab_hello(SENDER, {})
    planner.lab_hello(RECEIVER, {})
    return planner


def _order(core: PlannerCore, quantity: int = 10) -> str:
    request = OrderRequest(
        design="finger-splint",
        quantity=quantity,
        due_at=NOW + timedelta(days=2),
        delivery=Location(lat=45.2, lon=5.7),
    )
    return core.submit_order(request).id


def _plan(order_id: str, quantity: int = 10, shipped_units: int = 10) -> Plan:
    amount = shipped_units * SPLINT_PLA
    transfer = Transfer(
        material="pla",
        from_lab="lab-a",
        to_lab="lab-b",
        quantity=amount,
        km=60.0,
        ship_at=NOW,
        arrive_at=ARRIVE,
        cost=160.0,
    )
    line = Allocation(
        order_id=order_id,
        lab_id="lab-b",
        quantity=quantity,
        cost=CostTerms(km=0.5, transport=5.0),
        early_units=quantity,
        received={"pla": amount},
    )
    return Plan(
        version=0,
        allocations=[line],
        transfers=[transfer],
        objective=1,
        bound=1,
        status="FEASIBLE",
        solve_seconds=0,
    )


def _state(core: PlannerCore, lab_id: str) -> tuple[float, tuple[InTransit, ...]]:
    [state] = [s for s in core.problem().labs if s.lab.id == lab_id]
    return state.stock.get("pla", 0.0), state.incoming


def _units_open(core: PlannerCore) -> int:
    return sum(d.quantity for d in core.problem().demands)


def test_a_transfer_goes_from_sent_to_shipped_to_arrived(core: PlannerCore, calls: Calls) -> None:
    order_id = _order(core)
    rows = core.commit_plan(_plan(order_id))
    assert rows == []  # every unit waits for the material: nothing sent to lab-b yet
    [row] = core.shipments.rows.values()
    assert (row.id, row.state, calls.sent) == ("t1-1", "sent", ["t1-1"])
    # Sent: the sender's stock is spoken for; the receiver has it in transit, from its arrival.
    assert _state(core, "lab-a")[0] == pytest.approx(1.0 - 10 * SPLINT_PLA)
    assert _state(core, "lab-b") == (0.0, (InTransit("pla", 10 * SPLINT_PLA, ARRIVE),))
    assert _units_open(core) == 10  # still demand: the next plan places it

    core.lab_stock("lab-a", {"pla": 1.0 - 10 * SPLINT_PLA})  # the lab's STOCK goes before SHIPPED
    core.shipments.answer("lab-a", "t1-1", shipped=True)
    core.shipments.answer("lab-a", "t1-1", shipped=True)  # a duplicate changes nothing
    assert row.state == "shipped" and calls.shipped == ["t1-1"]
    assert _state(core, "lab-a")[0] == pytest.approx(1.0 - 10 * SPLINT_PLA)  # not taken off twice
    assert _state(core, "lab-b")[1] != ()

    core.shipments.arrived("lab-b", "t1-1")
    core.lab_stock("lab-b", {"pla": 10 * SPLINT_PLA})  # the STOCK that follows ARRIVED
    assert row.state == "arrived" and "transfer arrived" in calls.changes
    assert _state(core, "lab-b") == (pytest.approx(10 * SPLINT_PLA), ())
    kinds = [e.kind for e in core.ledger.events_of("transfer-t1-1")]
    assert kinds == ["transfer.sent", "transfer.shipped", "transfer.arrived"]


def test_a_refused_transfer_is_void_and_its_work_is_still_demand(core: PlannerCore, calls: Calls) -> None:
    order_id = _order(core)
    core.commit_plan(_plan(order_id))
    core.shipments.answer("lab-a", "t1-1", shipped=False, reason="not enough stock: pla needs 0.060 kg")
    row = core.shipments.rows["t1-1"]
    assert (row.state, row.reason) == ("refused", "not enough stock: pla needs 0.060 kg")
    assert "transfer refused" in calls.changes
    assert _state(core, "lab-a")[0] == pytest.approx(1.0)  # the sender keeps its stock
    assert _state(core, "lab-b") == (0.0, ())  # the receiver expects nothing
    assert _units_open(core) == 10  # nothing lost
    assert core.shipments.refused == 1
    core.shipments.answer("lab-a", "t1-1", shipped=True)  # too late to change its mind
    assert row.state == "refused"


def test_a_sender_lost_before_shipping_voids_it_and_a_late_shipped_revives_it(
    core: PlannerCore, calls: Calls
) -> None:
    order_id = _order(core)
    core.commit_plan(_plan(order_id))
    core.lab_lost("lab-a", "silent for 3.0 s")
    row = core.shipments.rows["t1-1"]
    assert (row.state, row.reason) == ("void", "sender lost before it shipped")
    assert _state(core, "lab-b") == (0.0, ()) and _units_open(core) == 10
    # The answer was late, not absent: the material is on the road, and counted so.
    core.shipments.answer("lab-a", "t1-1", shipped=True)
    assert row.state == "shipped" and calls.shipped == ["t1-1"]
    assert _state(core, "lab-b")[1] != ()


def test_a_line_partly_from_shipped_material_sends_the_rest_now(core: PlannerCore) -> None:
    order_id = _order(core)
    core.lab_stock("lab-b", {"pla": 6 * SPLINT_PLA})
    [row] = core.commit_plan(_plan(order_id, quantity=10, shipped_units=4))
    assert (row.lab_id, row.quantity) == ("lab-b", 6)  # its own stock's six go now; four wait
    assert _units_open(core) == 4
    assert [(a.order_id, a.quantity) for a in core.unsent] == [(order_id, 4)]


def test_transfers_survive_a_planner_restart(tmp_path: Path, calls: Calls) -> None:
    core = _core(tmp_path / "ledger.db", calls)
    core.lab_hello(SENDER, {})
    core.lab_hello(RECEIVER, {})
    order_id = _order(core)
    core.commit_plan(_plan(order_id))
    core.shipments.answer("lab-a", "t1-1", shipped=True)
    core.ledger.close()

    again = _core(tmp_path / "ledger.db", Calls())
    again.load()
    [row] = again.shipments.rows.values()
    assert isinstance(row, TransferRow) and (row.id, row.state) == ("t1-1", "shipped")
    assert again.shipments.awaiting_arrival("lab-b") == [row]  # INCOMING goes again on its HELLO
    again.lab_hello(RECEIVER, {})
    assert _state(again, "lab-b")[1] == (InTransit("pla", 10 * SPLINT_PLA, ARRIVE),)
    lab_page = again.lab_json(again.labs["lab-b"])
    assert [t["id"] for t in lab_page["transfers"]["incoming"]] == ["t1-1"]
    assert lab_page["transfers"]["outgoing"] == []


def test_only_a_party_to_a_transfer_may_answer_for_it(core: PlannerCore) -> None:
    order_id = _order(core)
    core.commit_plan(_plan(order_id))
    with pytest.raises(UnknownTransfer):
        core.shipments.answer("lab-b", "t1-1", shipped=True)  # the receiver is not the sender
    with pytest.raises(UnknownTransfer):
        core.shipments.arrived("lab-a", "t1-1")
    with pytest.raises(UnknownTransfer):
        core.shipments.arrived("lab-b", "t9-9")


def _lock(path: Path) -> sqlite3.Connection:
    """Another connection holding the file's write lock: every commit of the ledger waits for it."""
    blocker = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


def test_ship_and_incoming_wait_for_the_ledgers_commit(tmp_path: Path) -> None:
    """With the ledger written by its thread and its file locked by another connection, the plan's
    SHIP is not sent, nor offered to the mesh's re-sends, until the transfer is in the file; at the
    moment it is sent, the file holds it. The same for INCOMING after SHIPPED."""
    path = tmp_path / "ledger.db"
    seen_in_file: dict[str, list[tuple[str, str]]] = {}

    def in_file() -> list[tuple[str, str]]:
        reader = Ledger(path)  # what a planner restarted on this file would load
        try:
            return [(row.id, row.state) for row in reader.load_transfers()]
        finally:
            reader.close()

    async def scenario() -> dict[str, Any]:
        calls = Calls()
        core = _core(path, calls)
        core.lab_hello(SENDER, {})
        core.lab_hello(RECEIVER, {})
        order_id = _order(core)
        core.shipments.on_sent = lambda rows: (
            seen_in_file.setdefault("ship", in_file()),
            calls.sent.extend(r.id for r in rows),
        )
        core.shipments.on_shipped = lambda row: (
            seen_in_file.setdefault("incoming", in_file()),
            calls.shipped.append(row.id),
        )
        core.ledger.start_writer(asyncio.get_running_loop())
        out: dict[str, Any] = {}

        blocker = _lock(path)
        core.commit_plan(_plan(order_id))
        await asyncio.sleep(0.2)  # the writer is waiting for the lock meanwhile
        out["ship_before"] = list(calls.sent)
        out["awaiting_before"] = [r.id for r in core.shipments.awaiting_ship("lab-a")]
        out["withheld_before"] = core.shipments.withheld("lab-a")  # the plan counts on it already
        out["file_before"] = in_file()
        blocker.execute("COMMIT")
        blocker.close()
        await core.ledger.committed()
        out["ship_after"] = list(calls.sent)
        out["awaiting_after"] = [r.id for r in core.shipments.awaiting_ship("lab-a")]

        blocker = _lock(path)
        core.shipments.answer("lab-a", "t1-1", shipped=True)
        await asyncio.sleep(0.2)
        out["incoming_before"] = list(calls.shipped)
        out["arriving_before"] = [r.id for r in core.shipments.awaiting_arrival("lab-b")]
        blocker.execute("COMMIT")
        blocker.close()
        await core.ledger.committed()
        out["incoming_after"] = list(calls.shipped)
        out["arriving_after"] = [r.id for r in core.shipments.awaiting_arrival("lab-b")]
        await asyncio.to_thread(core.ledger.close)
        return out

    out = asyncio.run(scenario())
    assert out["ship_before"] == [] and out["awaiting_before"] == []
    assert out["withheld_before"] == {"pla": pytest.approx(10 * SPLINT_PLA)}
    assert out["file_before"] == []  # a planner killed now would not know t1-1: no lab was told of it
    assert out["ship_after"] == ["t1-1"] and out["awaiting_after"] == ["t1-1"]
    assert seen_in_file["ship"] == [("t1-1", "sent")]
    assert out["incoming_before"] == [] and out["arriving_before"] == []
    assert out["incoming_after"] == ["t1-1"] and out["arriving_after"] == ["t1-1"]
    assert seen_in_file["incoming"] == [("t1-1", "shipped")]


def test_a_transfer_whose_sender_is_lost_before_the_commit_is_never_sent(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"

    async def scenario() -> list[str]:
        calls = Calls()
        core = _core(path, calls)
        core.lab_hello(SENDER, {})
        core.lab_hello(RECEIVER, {})
        order_id = _order(core)
        core.ledger.start_writer(asyncio.get_running_loop())
        blocker = _lock(path)
        core.commit_plan(_plan(order_id))
        core.lab_lost("lab-a", "silent for 3.0 s")  # before the plan's commit reached the file
        blocker.execute("COMMIT")
        blocker.close()
        await core.ledger.committed()
        await asyncio.to_thread(core.ledger.close)
        return calls.sent

    assert asyncio.run(scenario()) == []


def test_the_explanation_follows_the_transfer_a_line_waits_for(core: PlannerCore) -> None:
    """Sent, shipped, then arrived but not yet planned again: the waiting line names it each time;
    a line partly from the lab's own stock counts its assigned and waiting units together."""
    order_id = _order(core)
    core.lab_stock("lab-b", {"pla": 6 * SPLINT_PLA})
    core.commit_plan(_plan(order_id, quantity=10, shipped_units=4))

    def chosen() -> dict[str, Any]:
        [verdict] = [v for v in core.explanation(order_id) if v["chosen"]]
        return dict(verdict)

    verdict = chosen()
    assert verdict["units"] == 10 and verdict["lab_id"] == "lab-b"
    assert verdict["why"].startswith("chosen for 10 units (4 of them made from material shipped to the lab)")
    assert "0.024 kg for these units, of a 0.024 kg parcel (transfer t1-1, sent)" in verdict["why"]
    [t] = verdict["transfers"]
    assert (t["from_lab"], t["km"], t["arrive_at"]) == ("lab-a", 60.0, ARRIVE.isoformat())
    core.shipments.answer("lab-a", "t1-1", shipped=True)
    assert [t["state"] for t in chosen()["transfers"]] == ["shipped"]
    core.shipments.arrived("lab-b", "t1-1")
    assert [t["state"] for t in chosen()["transfers"]] == ["arrived"]


def test_work_the_receiving_lab_refuses_is_planned_again_with_the_material_it_received(
    core: PlannerCore,
) -> None:
    """The material arrived, the re-plan sent its units to the receiver, and the receiver refused
    them: the units are demand again, the receiver's stock keeps the material, and the next plan
    places every unit elsewhere, shipping the material to a lab that can use it. Nothing is lost."""
    other = RECEIVER.model_copy(
        update={"id": "lab-c", "name": "Lab C", "location": Location(lat=45.25, lon=5.75)}
    )
    core.lab_hello(other, {})
    order_id = _order(core)
    core.commit_plan(_plan(order_id))
    core.shipments.answer("lab-a", "t1-1", shipped=True)
    core.lab_stock("lab-a", {"pla": 1.0 - 10 * SPLINT_PLA})
    core.shipments.arrived("lab-b", "t1-1")
    core.lab_stock("lab-b", {"pla": 10 * SPLINT_PLA})
    # The re-plan after the arrival sends the units to lab-b from its own stock now.
    again = Plan(
        version=0,
        allocations=[
            Allocation(
                order_id=order_id,
                lab_id="lab-b",
                quantity=10,
                cost=CostTerms(km=0.5, transport=5.0),
                early_units=10,
            )
        ],
        objective=1,
        bound=1,
        status="FEASIBLE",
        solve_seconds=0,
    )
    [row] = core.commit_plan(again)
    assert (row.lab_id, row.quantity) == ("lab-b", 10) and _units_open(core) == 0
    core.job_update("lab-b", row.id, "refused", reason="printer down")

    assert _units_open(core) == 10  # the refused units are demand again
    assert _state(core, "lab-b")[0] == pytest.approx(10 * SPLINT_PLA)  # the material is still there
    problem = core.problem()
    params = SolveParams(time_limit_s=2.0, workers=1)
    plan = solve(problem, params)
    assert check(problem, plan, params) == []
    assert [(a.lab_id, a.quantity) for a in plan.allocations] == [("lab-c", 10)]
    # The material lab-b received goes on to lab-c, 7 km away (nearer than lab-a's own).
    assert [(t.from_lab, t.to_lab, t.material) for t in plan.transfers] == [("lab-b", "lab-c", "pla")]
    assert plan.transfers[0].quantity == pytest.approx(10 * SPLINT_PLA)
    assert core.shipments.rows["t1-1"].state == "arrived"


def test_an_emergency_ships_no_material_the_full_re_plan_would_not(tmp_path: Path) -> None:
    """valve-lombardy's live lateness in miniature (docs/live-vs-sim.md): the lab by the hospital
    holds material for 5 of 20 urgent splints; a store 19 km away holds material and no printer;
    another lab 40 km away can make the rest on time from its own stock. The full re-plan makes 5
    by the hospital and 15 at the other lab, shipping nothing. The emergency fast path, left to
    plan transfers, shipped the store's material to the hospital's lab for 13 units that then
    waited for it (held back) while the full re-plan placed them again, around material already on
    the road. Now every unit goes out at once, and nothing is shipped."""
    core = PlannerCore(ledger=Ledger(tmp_path / "ledger.db"), designs=catalogue(), clock=lambda: NOW)
    fdm = [Machine(id="p1", processes=["fdm", "assembly"], tags={"bed_mm": 250})]
    for lab_id, (lat, lon), machines, pla in [
        ("near", (41.40, 2.17), fdm, 5 * SPLINT_PLA),
        ("store", (41.55, 2.10), [Machine(id="laser", processes=["laser"])], 1.0),
        ("other", (41.70, 2.30), fdm, 1.0),
    ]:
        core.lab_hello(
            Lab(
                id=lab_id,
                name=lab_id,
                location=Location(lat=lat, lon=lon),
                machines=machines,
                stock={"pla": pla},
            ),
            {},
        )
    order = OrderRequest(
        design="finger-splint",
        quantity=20,
        due_at=NOW + timedelta(days=1),
        delivery=Location(lat=41.3874, lon=2.1686),
        priority="emergency",
    )
    replanner, sent = replan_after(
        core,
        SolveParams(time_limit_s=1.0, workers=1),
        lambda: core.submit_order(order),
        lambda replanner, _: bool(replanner.solves) and not replanner.solving,  # fast path, then full
        polls=250,
    )
    assert replanner.emergency_inserts == 1
    assert list(core.shipments.rows) == []
    placed: dict[str, int] = {}
    for row in sent:
        placed[row.lab_id] = placed.get(row.lab_id, 0) + row.quantity
    assert placed == {"near": 5, "other": 15}
    assert _units_open(core) == 0
