"""Candidates: the k nearest live labs that could make at least one unit, nearest first."""

from __future__ import annotations

from solver.candidates import find_candidates
from tests.solver.factory import FAR, MIDDLE, NEAR, lab, machine, order, printer, problem


def lab_ids(p, k: int = 8) -> list[list[str]]:
    found = find_candidates(p, k, 10.0)
    return [[p.labs[c.lab].lab.id for c in edges] for edges in found.edges]


def test_nearest_first_and_only_k() -> None:
    p = problem([lab("far", FAR), lab("near", NEAR), lab("middle", MIDDLE)], [order("o1", "face-shield", 5)])
    assert lab_ids(p) == [["near", "middle", "far"]]
    assert lab_ids(p, k=2) == [["near", "middle"]]


def test_incapable_and_lost_labs_are_not_candidates() -> None:
    no_laser = lab("no-laser", NEAR, [printer(), machine("bench", "assembly")])
    lost = lab("lost", NEAR, live=False)
    p = problem([no_laser, lost, lab("far", FAR)], [order("o1", "face-shield", 5)])
    assert lab_ids(p) == [["far"]]
    assert find_candidates(p, 8, 10.0).capable_labs == (1,)


def test_labs_without_time_or_stock_for_one_unit_are_skipped_but_counted_capable() -> None:
    booked = lab("booked", NEAR, backlog={"printer": 10 * 480.0})
    empty = lab("empty", MIDDLE, stock={})
    p = problem([booked, empty, lab("far", FAR)], [order("o1", "face-shield", 5)])
    assert lab_ids(p) == [["far"]]
    assert find_candidates(p, 8, 10.0).capable_labs == (3,)


def test_unknown_design_has_no_candidates() -> None:
    p = problem([lab("near", NEAR)], [order("o1", "no-such-design", 5)])
    assert lab_ids(p) == [[]]
    assert find_candidates(p, 8, 10.0).capable_labs == (0,)
