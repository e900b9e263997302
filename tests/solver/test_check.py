"""check(): hand-made plans, each breaking one rule, are caught; a valid one passes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.model import Allocation, CostTerms, Plan, Shortage
from protocol.okh import catalogue
from solver.check import _max_flow, _placeable, check
from solver.model.problem import LabState
from tests.solver.factory import FAR, FAST, NEAR, lab, machine, order, printer, problem
from tests.solver.test_property import DESIGNS, SETTINGS, machines


def plan(*allocations: tuple[str, str, int], shortages: tuple[tuple[str, int], ...] = ()) -> Plan:
    """A plan of (order, lab, units) lines and (order, units) shortages; costs are irrelevant here."""
    return Plan(
        version=1,
        allocations=[
            Allocation(order_id=o, lab_id=lab_id, quantity=q, cost=CostTerms(km=0.0, transport=0.0))
            for o, lab_id, q in allocations
        ],
        shortages=[Shortage(order_id=o, quantity=q, reason="test") for o, q in shortages],
        objective=0.0,
        bound=0.0,
        status="FEASIBLE",
        solve_seconds=0.0,
    )


def shield_lab(id: str, at: tuple[float, float], **kw: object) -> object:
    """One 8 h printer: 4 face shields a day."""
    return lab(id, at, [printer(), machine("laser", "laser"), machine("bench", "assembly")], **kw)


ONE_DAY = problem([shield_lab("near", NEAR), shield_lab("far", FAR)], [order("o1", "face-shield", 8, days=1)])


def test_valid_plan_passes() -> None:
    assert check(ONE_DAY, plan(("o1", "near", 4), ("o1", "far", 3), shortages=(("o1", 1),)), FAST) == []


def test_over_capacity_is_caught() -> None:
    found = check(ONE_DAY, plan(("o1", "near", 5), ("o1", "far", 3)), FAST)
    assert len(found) == 1
    assert "'near'" in found[0] and "machine capacity exceeded" in found[0]
    assert "fdm: 600.0 min needed, 480.0 free" in found[0]


def test_over_capacity_on_a_machine_shared_between_processes_is_caught() -> None:
    # fdm needs 480 of 480 and laser 12 of 480 on the same machine: each fits alone, together they do not.
    machines = [machine("combo", "fdm", "laser", bed_mm=250), machine("bench", "assembly")]
    p = problem([lab("near", NEAR, machines)], [order("o1", "face-shield", 4, days=1)])
    found = check(p, plan(("o1", "near", 4)), FAST)
    assert len(found) == 1 and "machine capacity exceeded" in found[0]
    assert check(p, plan(("o1", "near", 3), shortages=(("o1", 1),)), FAST) == []


def test_backlog_is_counted() -> None:
    p = problem([shield_lab("near", NEAR, backlog={"printer": 300})], [order("o1", "face-shield", 2, days=1)])
    assert check(p, plan(("o1", "near", 1), shortages=(("o1", 1),)), FAST) == []
    assert "machine capacity exceeded" in check(p, plan(("o1", "near", 2)), FAST)[0]


def test_over_stock_is_caught() -> None:
    stock = {"petg": 0.1, "pet_sheet_0_5": 10.0, "elastic": 10.0}
    p = problem([lab("near", NEAR, stock=stock)], [order("o1", "face-shield", 4)])
    assert check(p, plan(("o1", "near", 3), shortages=(("o1", 1),)), FAST) == []
    found = check(p, plan(("o1", "near", 4)), FAST)
    assert len(found) == 1
    assert "'near'" in found[0] and "'petg'" in found[0] and "0.132" in found[0] and "0.1 free" in found[0]


def test_missing_material_is_over_stock() -> None:
    p = problem([lab("near", NEAR, stock={"pla": 1.0})], [order("o1", "face-shield", 1)])
    found = check(p, plan(("o1", "near", 1)), FAST)
    assert sorted(f.split("material ")[1].split(" ")[0] for f in found) == [
        "'elastic'",
        "'pet_sheet_0_5'",
        "'petg'",
    ]


def test_incapable_lab_is_caught() -> None:
    no_laser = lab("no-laser", NEAR, [printer(), machine("bench", "assembly")])
    p = problem([no_laser], [order("o1", "face-shield", 2)])
    found = check(p, plan(("o1", "no-laser", 2)), FAST)
    assert len(found) == 1
    assert "cannot make design 'face-shield'" in found[0] and "laser" in found[0]


def test_small_bed_is_incapable() -> None:
    small = lab("small", NEAR, [printer(bed_mm=180), machine("laser", "laser"), machine("bench", "assembly")])
    found = check(problem([small], [order("o1", "face-shield", 2)]), plan(("o1", "small", 2)), FAST)
    assert len(found) == 1 and "bed_mm" in found[0]


def test_too_many_units_is_caught() -> None:
    found = check(ONE_DAY, plan(("o1", "near", 4), ("o1", "far", 4), ("o1", "far", 1)), FAST)
    assert any("9 units allocated but only 8 demanded" in f for f in found)


def test_allocated_plus_short_must_equal_demand() -> None:
    found = check(ONE_DAY, plan(("o1", "near", 4), ("o1", "far", 2)), FAST)
    assert found == ["order 'o1': 6 allocated + 0 short = 6, but 8 demanded"]


def test_unknown_order_is_caught() -> None:
    found = check(ONE_DAY, plan(("o1", "near", 4), ("o1", "far", 4), ("ghost", "near", 1)), FAST)
    assert found == [
        "allocation of 1 units of order 'ghost' at lab 'near': order 'ghost' is not among the demands"
    ]


def test_unknown_or_lost_lab_is_caught() -> None:
    p = problem([shield_lab("near", NEAR, live=False)], [order("o1", "face-shield", 2)])
    assert "is lost" in check(p, plan(("o1", "near", 2)), FAST)[0]
    assert "'nowhere' is not known" in check(p, plan(("o1", "nowhere", 2)), FAST)[0]


def test_bound_above_objective_is_caught() -> None:
    bad = plan(("o1", "near", 4), ("o1", "far", 4)).model_copy(update={"objective": 10.0, "bound": 11.0})
    assert check(ONE_DAY, bad, FAST) == ["plan bound 11.0 exceeds its objective 10.0"]


def test_non_positive_quantity_is_caught() -> None:
    # Records refuse a zero quantity; a plan assembled without validation must still be caught.
    zero = Allocation.model_construct(
        order_id="o1", lab_id="near", quantity=0, cost=CostTerms(km=0, transport=0)
    )
    bad = plan(("o1", "near", 4), ("o1", "far", 4)).model_copy(
        update={"allocations": [*plan(("o1", "near", 4), ("o1", "far", 4)).allocations, zero]}
    )
    assert check(ONE_DAY, bad, FAST) == [
        "allocation of 0 units of order 'o1' at lab 'near': quantity must be a positive whole number"
    ]


def test_shortage_of_unknown_order_is_caught() -> None:
    found = check(ONE_DAY, plan(("o1", "near", 4), ("o1", "far", 4), shortages=(("ghost", 2),)), FAST)
    assert found == ["shortage of 2 units of order 'ghost': order is not among the demands"]


@SETTINGS
@given(
    ms=machines(),
    work=st.lists(st.tuples(st.sampled_from(DESIGNS), st.integers(1, 40)), min_size=1, max_size=6),
    days=st.floats(0.1, 20.0),
    backlog=st.integers(0, 3000),
)
def test_hall_condition_gives_the_max_flow(ms: list, work: list, days: float, backlog: int) -> None:
    # The validator's capacity figure (Hall's condition over every set of machines) is the max-flow
    # of work -> eligible machines -> free minutes, machines sharing processes or not.
    _hall_is_max_flow(lab("l", NEAR, ms, backlog={ms[0].id: float(backlog)}), work, days)


def _hall_is_max_flow(state: LabState, work: list, days: float) -> None:
    """The validator's figure for this work at this lab is the max-flow of work -> machines."""
    designs = dict(catalogue())
    orders = {f"o{i}": designs[design] for i, (design, _) in enumerate(work)}
    cases = [(days, [(f"o{i}", units) for i, (_, units) in enumerate(work)])]
    [hall] = _placeable(orders, state, cases)
    flow = _max_flow(orders, state, cases[0][1], days)
    assert hall == pytest.approx(flow, rel=1e-9, abs=1e-6)


@st.composite
def lab_of_identical_machines(draw: st.DrawFn) -> list:
    """A lab of 13-30 machines copied from 1-4 kinds (a print farm): more machines than Hall's
    condition enumerates one by one, few kinds."""
    kinds = draw(machines())
    copies = draw(st.lists(st.sampled_from(range(len(kinds))), min_size=13, max_size=30))
    return [kinds[k].model_copy(update={"id": f"m{i}"}) for i, k in enumerate(copies)]


@SETTINGS
@given(
    ms=lab_of_identical_machines(),
    work=st.lists(st.tuples(st.sampled_from(DESIGNS), st.integers(1, 400)), min_size=1, max_size=6),
    days=st.floats(0.1, 20.0),
    backlogs=st.lists(st.integers(0, 3000), min_size=30, max_size=30),
)
def test_identical_machines_counted_as_one_give_the_max_flow(
    ms: list, work: list, days: float, backlogs: list[int]
) -> None:
    # Machines every step can run on alike are one node with their minutes added up; the figure must
    # still be the max-flow over the machines one by one, whatever each has queued.
    backlog = {m.id: float(b) for m, b in zip(ms, backlogs, strict=False)}
    _hall_is_max_flow(lab("l", NEAR, ms, backlog=backlog), work, days)
