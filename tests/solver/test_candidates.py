"""Candidates: the k nearest live labs that could make at least one unit, nearest first."""

from __future__ import annotations

import math

import numpy as np
import pytest

from solver.model.candidates import find_candidates, merge_candidates
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


def test_labs_within_reach_join_and_the_next_one_is_beyond() -> None:
    p = problem([lab("far", FAR), lab("near", NEAR), lab("middle", MIDDLE)], [order("o1", "face-shield", 5)])
    found = find_candidates(p, 1, 10.0)
    assert [p.labs[c.lab].lab.id for c in found.edges[0]] == ["near"]
    assert found.beyond[0] == pytest.approx(found.edges[0][0].km + 18.0, abs=3.0)  # middle: about 19 km
    wider = find_candidates(p, 1, 10.0, within_km=30.0, most=5)
    assert [p.labs[c.lab].lab.id for c in wider.edges[0]] == ["near", "middle"]
    assert wider.beyond[0] > 80.0  # far, about 85 km
    everything = find_candidates(p, 3, 10.0)
    assert everything.beyond == (math.inf,)


def test_merged_candidates_extend_only_the_listed_demands() -> None:
    labs = [lab("far", FAR), lab("near", NEAR), lab("middle", MIDDLE)]
    p = problem(labs, [order("o1", "face-shield", 5), order("o2", "face-shield", 5)])
    base = find_candidates(p, 1, 10.0)
    more = find_candidates(problem(labs, [order("o2", "face-shield", 5)]), 3, 10.0)
    merged = merge_candidates(base, more, np.array([1]))
    assert [len(e) for e in merged.edges] == [1, 3]
    assert merged.edges[1][0] == base.edges[1][0]
    assert merged.beyond == (base.beyond[0], math.inf)


def test_a_lab_no_demand_reaches_is_linked_to_demand_its_neighbours_cannot_make() -> None:
    # A surge at the centre: 120 units where the nearest lab can make 40 within the horizon.
    labs = [lab("far", FAR), lab("near", NEAR), lab("middle", MIDDLE)]
    p = problem(labs, [order(f"o{i}", "face-shield", 30) for i in range(4)])
    plain = find_candidates(p, 1, 10.0)
    assert [[p.labs[c.lab].lab.id for c in e] for e in plain.edges] == [["near"]] * 4
    fed = find_candidates(p, 1, 10.0, feed_labs=True)
    # Each idle lab takes wanting demands until they would fill its room (40 units: two orders).
    assert [[p.labs[c.lab].lab.id for c in e] for e in fed.edges] == [
        ["near", "far", "middle"],
        ["near", "far", "middle"],
        ["near"],
        ["near"],
    ]
    # Edges are only added: each demand's `beyond` still bounds every lab left off.
    assert fed.beyond == plain.beyond


def test_no_lab_is_fed_when_the_nearest_labs_have_room_for_everything() -> None:
    labs = [lab("far", FAR), lab("near", NEAR), lab("middle", MIDDLE)]
    p = problem(labs, [order("o1", "face-shield", 5), order("o2", "face-shield", 5)])
    fed = find_candidates(p, 1, 10.0, feed_labs=True)
    assert [[p.labs[c.lab].lab.id for c in e] for e in fed.edges] == [["near"], ["near"]]
