"""Material transfers: the solver ships material to idle machines, and the validator holds it to the
rules (nothing spent before it arrives, nothing shipped that the sender's own work needs, quantities
conserve)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from protocol.model import Plan, Transfer
from solver.allocation.allocate import _window, after_arrival, solve
from solver.allocation.emergency import insert_urgent, senders_near
from solver.allocation.explain import NO_TRANSFERS, explain_order
from solver.check import check
from solver.model.geo import haversine_km
from solver.model.objective import TRANSFER_HANDLING_COST, TRANSFER_HANDLING_HOURS, TRANSPORT_KMH
from solver.model.problem import Demand, Problem
from tests.solver.factory import FAR, FAST, MIDDLE, NEAR, NOW, design, lab, machine, order, printer, problem

#: Finger splints: 0.006 kg PLA each, printing and a little bench work.
SPLINT_PLA = 0.006


def idle_lab_and_stocked_lab(pla_at_sender: float = 10.0, sender_can_make: bool = False) -> Problem:
    """A lab near the hospital with free machines and no PLA, and one 85 km away with PLA."""
    near = lab("near", NEAR, [printer(), machine("bench", "assembly")], stock={})
    sender_machines = (
        [printer(), machine("bench", "assembly")] if sender_can_make else [machine("laser", "laser")]
    )
    far = lab("far", FAR, sender_machines, stock={"pla": pla_at_sender})
    return problem([near, far], [order("o1", "finger-splint", 20, days=3)])


def test_material_is_shipped_to_idle_machines_with_its_km_cost_and_lead_time() -> None:
    p = idle_lab_and_stocked_lab()
    plan = solve(p, FAST)
    assert check(p, plan, FAST) == []
    assert [(a.lab_id, a.quantity) for a in plan.allocations] == [("near", 20)]
    [t] = plan.transfers
    km = haversine_km(p.labs[1].lab.location, p.labs[0].lab.location)
    assert (t.material, t.from_lab, t.to_lab) == ("pla", "far", "near")
    assert t.quantity == pytest.approx(20 * SPLINT_PLA)
    assert t.km == pytest.approx(km)
    assert t.cost == pytest.approx(km * t.quantity * FAST.transfer_km_weight + TRANSFER_HANDLING_COST)
    assert t.ship_at == NOW
    lead = timedelta(hours=TRANSFER_HANDLING_HOURS + km / TRANSPORT_KMH)
    assert abs(t.arrive_at - (NOW + lead)) < timedelta(seconds=1)
    assert plan.allocations[0].received == {"pla": pytest.approx(20 * SPLINT_PLA)}
    # The transfer's cost is part of the objective: lines plus transfers.
    lines = sum(a.cost.total for a in plan.allocations)
    assert plan.objective == pytest.approx(lines + t.cost)
    assert plan.bound <= plan.objective


def test_without_transfers_the_same_demand_is_short() -> None:
    p = idle_lab_and_stocked_lab()
    params = replace(FAST, transfer_radius_km=0.0)
    plan = solve(p, params)
    assert plan.transfers == []
    assert sum(s.quantity for s in plan.shortages) == 20


def test_a_sender_beyond_the_radius_ships_nothing() -> None:
    p = idle_lab_and_stocked_lab()
    plan = solve(p, replace(FAST, transfer_radius_km=50.0))  # the labs are 84 km apart
    assert plan.transfers == []
    assert sum(s.quantity for s in plan.shortages) == 20


def test_a_sender_ships_only_what_its_own_work_leaves() -> None:
    # The sender can make splints too; it has PLA for 25. Twenty go to the hospital at its own door
    # and five more to a hospital near the idle lab: at most 5 splints' worth may travel.
    near = lab("near", NEAR, [printer(), machine("bench", "assembly")], stock={})
    far = lab("far", FAR, [printer(), machine("bench", "assembly")], stock={"pla": 25 * SPLINT_PLA})
    orders = [
        order("at-far", "finger-splint", 20, FAR, days=3),
        order("at-near", "finger-splint", 10, days=3),
    ]
    p = problem([near, far], orders)
    plan = solve(p, FAST)
    assert check(p, plan, FAST) == []
    shipped = sum(t.quantity for t in plan.transfers)
    used_at_far = sum(a.quantity for a in plan.allocations if a.lab_id == "far") * SPLINT_PLA
    assert shipped + used_at_far <= 25 * SPLINT_PLA + 1e-9
    assert sum(a.quantity for a in plan.allocations) == 25


def test_units_made_from_shipped_material_finish_no_earlier_than_it_arrives() -> None:
    # Due in six hours: a unit must be made within about five, and material from 85 km away arrives
    # in about five and a half. Nothing can be made on time from it; late, it can.
    p = problem(
        [
            lab("near", NEAR, [printer(), machine("bench", "assembly")], stock={}),
            lab("far", FAR, [machine("laser", "laser")], stock={"pla": 10.0}),
        ],
        [order("o1", "finger-splint", 4, days=0.25)],
    )
    plan = solve(p, FAST)
    assert check(p, plan, FAST) == []
    made_from_shipped = [a for a in plan.allocations if a.received]
    assert made_from_shipped, "the splints can still be made late from shipped PLA"
    for a in made_from_shipped:
        assert a.late_units == a.quantity  # none of them counted on time
        assert a.arrive_by is not None and a.arrive_by >= plan.transfers[0].arrive_at


# -- the validator on hand-made bad plans -------------------------------------------------------------


def _valid_plan() -> tuple[Problem, Plan]:
    p = idle_lab_and_stocked_lab()
    plan = solve(p, FAST)
    assert check(p, plan, FAST) == []
    assert len(plan.transfers) == 1
    return p, plan


def _with_transfer(plan: Plan, **changes: object) -> Plan:
    return plan.model_copy(update={"transfers": [plan.transfers[0].model_copy(update=changes)]})


def test_validator_catches_material_spent_before_it_arrives() -> None:
    p, plan = _valid_plan()
    late = _with_transfer(plan, arrive_at=NOW + timedelta(days=2.9))
    found = check(p, late, FAST)
    assert any("spent before it arrives" in v for v in found), found


def test_validator_catches_a_sender_shipping_beyond_its_surplus() -> None:
    p = idle_lab_and_stocked_lab(pla_at_sender=0.05)  # less than the 0.12 the plan ships
    _, plan = _valid_plan()
    found = check(p, plan, FAST)
    assert any("ships 0.12 of 'pla' but has only 0.05 beyond its own planned use" in v for v in found), found


def test_validator_catches_a_sender_shipping_what_its_own_work_needs() -> None:
    p, plan = _valid_plan()
    # The sender also makes 10 splints of its own with PLA it shipped away.
    p = idle_lab_and_stocked_lab(pla_at_sender=0.1, sender_can_make=True)
    own = plan.allocations[0].model_copy(update={"lab_id": "far", "quantity": 10, "received": {}})
    shared = plan.model_copy(
        update={
            "allocations": [
                plan.allocations[0].model_copy(update={"quantity": 10, "received": {"pla": 0.06}}),
                own,
            ]
        }
    )
    shared = _with_transfer(shared, quantity=0.06)
    found = check(p, shared, FAST)
    assert any("beyond its own planned use" in v for v in found), found


def test_validator_catches_quantities_that_do_not_conserve() -> None:
    p, plan = _valid_plan()
    found = check(p, _with_transfer(plan, quantity=0.5), FAST)
    assert any("quantities must conserve" in v for v in found), found
    lost = plan.model_copy(update={"transfers": []})
    found = check(p, lost, FAST)
    assert any("quantities must conserve" in v for v in found), found
    assert any("over stock" in v for v in found), found


def test_validator_catches_a_line_receiving_more_than_it_uses() -> None:
    p, plan = _valid_plan()
    greedy = plan.allocations[0].model_copy(update={"received": {"pla": 1.0}})
    found = check(p, _with_transfer(plan.model_copy(update={"allocations": [greedy]}), quantity=1.0), FAST)
    assert any("receives 1 of 'pla' but its 20 units use 0.12" in v for v in found), found


def test_validator_catches_unknown_labs_and_false_distances() -> None:
    p, plan = _valid_plan()
    found = check(p, _with_transfer(plan, from_lab="nowhere"), FAST)
    assert any("sender 'nowhere' is not known" in v for v in found), found
    found = check(p, _with_transfer(plan, km=10.0), FAST)
    assert any("10.0 km claimed" in v for v in found), found
    found = check(p, _with_transfer(plan, ship_at=NOW - timedelta(hours=1)), FAST)
    assert any("before now" in v for v in found), found
    found = check(p, _with_transfer(plan, arrive_at=NOW + timedelta(hours=1)), FAST)
    assert any("sooner than handling and the road allow" in v for v in found), found


def test_transfer_record_rejects_a_lab_shipping_to_itself_and_time_running_backwards() -> None:
    fields = dict(
        material="pla", from_lab="a", to_lab="a", quantity=1.0, km=0.0, ship_at=NOW, arrive_at=NOW, cost=0.0
    )
    with pytest.raises(ValueError, match="a transfer joins two labs"):
        Transfer(**fields)
    with pytest.raises(ValueError, match="arrive_at must not be before ship_at"):
        Transfer(**{**fields, "to_lab": "b", "arrive_at": NOW - timedelta(hours=1)})
    with pytest.raises(ValueError, match="quantity"):
        Transfer(**{**fields, "to_lab": "b", "quantity": 0.0})


def test_middle_lab_is_not_a_sender_without_the_material() -> None:
    # A lab within reach that holds no PLA sends none; the one that does, farther away, sends it.
    p = problem(
        [
            lab("near", NEAR, [printer(), machine("bench", "assembly")], stock={}),
            lab("middle", MIDDLE, [machine("laser", "laser")], stock={"petg": 5.0}),
            lab("far", FAR, [machine("laser", "laser")], stock={"pla": 10.0}),
        ],
        [order("o1", "finger-splint", 20, days=3)],
    )
    plan = solve(p, FAST)
    assert check(p, plan, FAST) == []
    assert [(t.from_lab, t.material) for t in plan.transfers] == [("far", "pla")]


def test_explanation_says_where_the_material_comes_from() -> None:
    p, plan = _valid_plan()
    [chosen] = [v for v in explain_order(p, plan, "o1", FAST) if v.chosen]
    assert chosen.lab_id == "near"
    assert "material pla from lab far (Far), 84 km, arrives day 0.2" in chosen.why


def _emergency_at_idle_machines(pla_at_sender: float = 10.0) -> Problem:
    """The idle printers near the hospital, the PLA 85 km away, and an emergency order for splints."""
    p = idle_lab_and_stocked_lab(pla_at_sender)
    urgent = order("e1", "finger-splint", 20, days=3, priority="emergency")
    return replace(p, demands=[Demand(order=urgent, quantity=20)])


def test_the_emergency_fast_path_ships_material_where_the_small_path_would() -> None:
    p = _emergency_at_idle_machines()
    small = solve(p, FAST)
    plan = insert_urgent(p, {"e1"}, FAST, budget_s=1.0)
    assert check(p, plan, FAST) == []
    assert (
        [(a.lab_id, a.quantity) for a in plan.allocations]
        == [("near", 20)]
        == [(a.lab_id, a.quantity) for a in small.allocations]
    )
    assert [(t.from_lab, t.to_lab, t.material) for t in plan.transfers] == [("far", "near", "pla")]
    assert [(t.from_lab, t.quantity) for t in plan.transfers] == [
        (t.from_lab, pytest.approx(t.quantity)) for t in small.transfers
    ]
    assert plan.allocations[0].received == {"pla": pytest.approx(20 * SPLINT_PLA)}


def test_the_emergency_fast_path_ships_nothing_with_transfers_off_or_no_sender() -> None:
    p = _emergency_at_idle_machines()
    off = insert_urgent(p, {"e1"}, replace(FAST, transfer_radius_km=0.0), budget_s=1.0)
    assert off.transfers == [] and sum(s.quantity for s in off.shortages) == 20
    dry = _emergency_at_idle_machines(pla_at_sender=0.0)
    plan = insert_urgent(dry, {"e1"}, FAST, budget_s=1.0)
    assert plan.transfers == [] and sum(s.quantity for s in plan.shortages) == 20


def test_the_emergency_fast_path_asks_only_labs_short_of_material_for_senders() -> None:
    stocked = lab("near", NEAR, [printer(), machine("bench", "assembly")], stock={"pla": 10.0})
    store = lab("far", FAR, [machine("laser", "laser")], stock={"pla": 10.0})
    urgent = order("e1", "finger-splint", 5, days=3, priority="emergency")
    p = problem([stocked, store], [urgent])
    assert senders_near(p, [0], p.demands, FAST) == {}
    dry = replace(p, labs=[replace(stocked, stock={}), store])
    assert senders_near(dry, [0], dry.demands, FAST) == {0: {1}}
    assert senders_near(dry, [0], dry.demands, replace(FAST, transfer_radius_km=50.0)) == {0: set()}
    # With stock, the fast path's neighbourhood is the one it was: the store is not asked.
    plan = insert_urgent(p, {"e1"}, FAST, budget_s=1.0)
    assert plan.transfers == [] and [(a.lab_id, a.quantity) for a in plan.allocations] == [("near", 5)]


def test_the_emergency_fast_path_ships_between_two_labs_of_its_neighbourhood() -> None:
    # Both labs can make splints and are its nearest: the nearer has PLA for 5 of the 20, the other
    # (19 km) has plenty of PLA and little time.
    near = lab("near", NEAR, [printer(), machine("bench", "assembly")], stock={"pla": 5 * SPLINT_PLA})
    middle = lab("middle", MIDDLE, [printer(hours=0.5), machine("bench", "assembly")], stock={"pla": 10.0})
    urgent = order("e1", "finger-splint", 20, days=3, priority="emergency")
    p = problem([near, middle], [urgent])
    plan = insert_urgent(p, {"e1"}, FAST, budget_s=1.0)
    assert check(p, plan, FAST) == []
    assert [(t.from_lab, t.to_lab) for t in plan.transfers] == [("middle", "near")]
    assert sum(a.quantity for a in plan.allocations) == 20


def test_the_large_path_plans_no_transfer_and_its_plan_and_explanation_say_so() -> None:
    p = idle_lab_and_stocked_lab()
    small = solve(p, FAST)
    assert small.transfers and small.transfers_considered
    large = solve(p, replace(FAST, decompose_above=0))  # above it: the large path
    assert check(p, large, FAST) == []
    assert large.transfers == [] and not large.transfers_considered
    assert sum(s.quantity for s in large.shortages) == 20
    verdicts = {v.lab_id: v for v in explain_order(p, large, "o1", FAST)}
    assert verdicts["near"].why.startswith("no stock: pla")
    assert verdicts["near"].what_would_change is not None
    assert verdicts["near"].what_would_change.endswith(NO_TRANSFERS)
    # The one-model path with transfers turned off says so too; with them on, it never adds it.
    off = solve(p, replace(FAST, transfer_radius_km=0.0))
    assert not off.transfers_considered
    dry = idle_lab_and_stocked_lab(pla_at_sender=0.0)
    short = solve(dry, FAST)
    assert short.transfers_considered and sum(s.quantity for s in short.shortages) == 20
    near = next(v for v in explain_order(dry, short, "o1", FAST) if v.lab_id == "near")
    assert near.what_would_change is not None and NO_TRANSFERS not in near.what_would_change
    assert insert_urgent(_emergency_at_idle_machines(), {"e1"}, FAST, budget_s=1.0).transfers_considered


def test_a_parcels_window_opens_after_the_unit_a_pooled_machine_is_making() -> None:
    # Two resin printers of 8 hours a day, each making 60-minute units one at a time, and a lone one.
    # Resin comes at 0.25 days (120 of each machine's minutes from now): a pooled printer finishes the
    # unit it is then making first, so its window by 0.5 days holds 240 - 120 - 60 = 60 minutes, the
    # lone printer's (no whole units counted) 240 - 120 = 120.
    printers = [machine(f"sla-{n}", "sla", hours=8.0) for n in (1, 2)] + [machine("sla-3", "sla", hours=8.0)]
    state = replace(lab("resin-lab", NEAR, printers), unit_minutes={"sla-1": 60.0, "sla-2": 60.0})
    part = design("part", ("sla", 60.0))
    pace = {m.id: m.minutes_per_day() for m in printers}
    capacity: dict[str, float] = {}
    pooled, lone = frozenset({"sla-1", "sla-2"}), frozenset({"sla-3"})
    for group in (pooled, lone):
        after_arrival({}, state, pace, 0, part, (group,), [0.5, 1.0], 0, 0.25, capacity, (0.5, 1.0))
    by_group = {group: capacity[_window(0, group, 0, 0.25)] for group in (pooled, lone)}
    assert by_group[pooled] == pytest.approx(2 * (240.0 - 120.0 - 60.0))
    assert by_group[lone] == pytest.approx(240.0 - 120.0)
    # Material in hand (arrival 0): nothing is waited for, the window is the machine's whole time.
    capacity = {}
    after_arrival({}, state, pace, 0, part, (pooled,), [0.5, 1.0], 0, 0.0, capacity, (0.5, 1.0))
    assert capacity[_window(0, pooled, 0, 0.0)] == pytest.approx(2 * 240.0)
