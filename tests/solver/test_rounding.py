"""The large path's rounding (solver.large.rounding): whole units that fit, orders split only if it pays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from scenarios.scale import synthetic_problem
from solver.large import rounding
from solver.large.network import build_network
from solver.large.path import WIDE
from solver.large.relaxation import relax
from solver.large.rounding import Rows, _trim, polished, round_units, round_units_by
from solver.model.candidates import find_candidates
from solver.model.problem import SolveParams, horizon_days
from tests.solver.factory import FAR, KM_ONLY, MIDDLE, NEAR, PLENTY, lab, order, problem

#: Three labs near the centre, each with elastic for six face shields and no more.
SIX_SHIELDS = {**PLENTY, "elastic": 6 * 0.35}


def test_a_split_order_is_gathered_on_the_labs_that_have_room() -> None:
    # Ten shields split 4/3/3 over three labs that hold six each: no lab takes all ten, so moving the
    # order whole is impossible, but the smallest part fits the other two labs' room, and a setup
    # (50) is worth more than the few km it adds.
    p = problem(
        [lab(name, at, stock=SIX_SHIELDS) for name, at in (("a", NEAR), ("b", MIDDLE), ("c", (41.45, 2.15)))],
        [order("o1", "face-shield", 10)],
    )
    params = KM_ONLY
    days = horizon_days(p, params)
    network = build_network(p, params, find_candidates(p, 3, days), days)
    fractional = np.zeros(network.options)
    for lab_index, share in ((0, 4.0), (1, 3.0), (2, 3.0)):
        fractional[np.flatnonzero(network.lab == lab_index)[0]] = share
    units = round_units(network, fractional, network.shortage)
    assert units.sum() == 10
    labs = {int(network.lab[o]): int(units[o]) for o in np.flatnonzero(units > 0)}
    assert len(labs) == 2 and max(labs.values()) == 6


def test_a_split_order_is_gathered_by_moving_another_order_out_of_the_way() -> None:
    # o1 (6 shields) split 4/2 over a and b, each full (o2's 2 at a, o3's 4 at b); no lab but the far
    # c has room for o1 whole, and neither part fits the other lab. Moving o2 from a to b (where o1's
    # part leaves room) lets o1 gather at a: two setups saved for one paid, and a few km more.
    p = problem(
        [lab(name, at, stock=SIX_SHIELDS) for name, at in (("a", NEAR), ("b", MIDDLE), ("c", FAR))],
        [order("o1", "face-shield", 6), order("o2", "face-shield", 2), order("o3", "face-shield", 4)],
    )
    params = KM_ONLY
    days = horizon_days(p, params)
    network = build_network(p, params, find_candidates(p, 3, days), days)
    fractional = np.zeros(network.options)
    for d, lab_index, share in ((0, 0, 4.0), (0, 1, 2.0), (1, 0, 2.0), (2, 1, 4.0)):
        fractional[np.flatnonzero((network.demand == d) & (network.lab == lab_index))[0]] = share
    units = round_units(network, fractional, network.shortage)
    placed = {(int(network.demand[o]), int(network.lab[o])): int(units[o]) for o in np.flatnonzero(units > 0)}
    assert placed == {(0, 0): 6, (1, 1): 2, (2, 1): 4}


def test_room_is_the_most_units_that_keep_every_row() -> None:
    # Rows.room answers from the slack it keeps up to date (Rows.add); here it is held to the rows
    # recomputed from scratch: `room` more units of the option fit every row, one more does not.
    p = synthetic_problem(80, 12, 5)
    params = KM_ONLY
    days = horizon_days(p, params)
    network = build_network(p, params, find_candidates(p, 4, days), days)
    rng = np.random.default_rng(5)
    units = np.zeros(network.options, dtype=np.int64)
    rows = Rows(network)
    for o in rng.permutation(network.options)[: network.options // 3].tolist():
        take = min(int(rng.integers(1, 6)), rows.room(o))
        rows.add(o, take)
        units[o] += take

    def fits(extra: np.ndarray) -> bool:
        fresh = Rows(network)
        fresh.load(units + extra)
        return not len(fresh.excess_points()) and not len(fresh.excess_stock())

    assert fits(np.zeros_like(units))
    checked = 0
    for o in rng.permutation(network.options)[:60].tolist():
        room = rows.room(o)
        if room > 500:  # an option that counts in no row
            continue
        extra = np.zeros_like(units)
        extra[o] = room
        assert fits(extra)
        extra[o] = room + 1
        assert not fits(extra)
        checked += 1
    assert checked >= 30


def test_the_rooms_of_many_options_at_once_are_each_options_room() -> None:
    # Rows.rooms lets the rounding pass over options with no room without asking each: it must give
    # each option's room as Rows.room does, however far the rows have been used (some chains freshly
    # changed by `add`, some not), or the rounding would skip an option that fits or try one that does
    # not.
    p = synthetic_problem(200, 20, 7)
    days = horizon_days(p, KM_ONLY)
    network = build_network(p, KM_ONLY, find_candidates(p, 6, days), days)
    rng = np.random.default_rng(7)
    rows = Rows(network)
    units = np.zeros(network.options, dtype=np.int64)
    every = np.arange(network.options)

    def one_by_one(options: np.ndarray) -> list[int]:  # each option's room on rows read afresh
        fresh = Rows(network)
        fresh.load(units)
        return [fresh.room(int(o)) for o in options.tolist()]

    for o in rng.permutation(network.options).tolist():
        take = min(int(rng.integers(1, 8)), rows.room(o))
        rows.add(o, take)
        units[o] += take
        if rng.uniform() < 0.02:
            some = rng.choice(every, size=int(rng.integers(1, 40)))
            assert rows.rooms(some).tolist() == one_by_one(some)
    rooms = rows.rooms(every)
    assert rooms.tolist() == one_by_one(every)
    assert (rooms == 0).any() and (rooms > 0).any()  # some options full and some not: a real test
    assert len(rows.rooms(every[:0])) == 0


def test_the_trim_cut_by_its_deadline_still_leaves_every_row_kept() -> None:
    # LP units far over capacity (an LP cut after a round or two), and no time left: the trim empties
    # what counts in a row still in excess instead of running on; the units left fit every row.
    p = synthetic_problem(300, 40, 2)
    days = horizon_days(p, KM_ONLY)
    network = build_network(p, KM_ONLY, find_candidates(p, 8, days), days)
    rng = np.random.default_rng(2)
    units = rng.integers(0, 4, network.options) * (rng.uniform(size=network.options) < 0.3)
    rows = Rows(network)
    rows.load(units)
    assert len(rows.excess_points()) > 0
    _trim(rows, units, deadline=0.0)
    fresh = Rows(network)
    fresh.load(units)
    assert not len(fresh.excess_points()) and not len(fresh.excess_stock())
    assert units.sum() > 0


def _trim_one_unit_rule_at_a_time(rows: Rows, units: np.ndarray) -> None:
    """The trim's rule read plainly: for each checkpoint in excess, in order, take units off the
    dearest option counted in its row (the first in the entries' order among equals) until it holds;
    then the same for stock rows."""
    n = rows.network

    def take_off(
        counted: np.ndarray, option_of: np.ndarray, amount_of: np.ndarray, slack: Callable[[], float]
    ):
        while slack() < 0:
            live = counted[units[option_of[counted]] > 0]
            entry = int(live[np.argmax(n.cost[option_of[live]])])
            o = int(option_of[entry])
            take = max(1, min(int(units[o]), int(np.ceil(-slack() / amount_of[entry]))))
            rows.add(o, -take)
            units[o] -= take

    for p in rows.excess_points().tolist():
        counted = np.flatnonzero((n.work_point >= rows.chain_first[p]) & (n.work_point <= p))
        take_off(counted, n.work_option, n.work_amount, lambda p=p: float(rows.slack[p]))
    for s in rows.excess_stock().tolist():
        counted = np.flatnonzero(n.stock_row == s)
        take_off(counted, n.stock_option, n.stock_amount, lambda s=s: rows.stock_slack[s])


def test_the_trim_takes_off_the_dearest_units_of_each_row_in_excess() -> None:
    # The trim walks each chain of checkpoints once, its entries in a heap: it must take off exactly
    # the units the plain rule does (dearest first, row by row), and leave every row kept.
    for seed in (2, 3, 4):
        p = synthetic_problem(300, 40, seed)
        days = horizon_days(p, KM_ONLY)
        network = build_network(p, KM_ONLY, find_candidates(p, 8, days), days)
        rng = np.random.default_rng(seed)
        start = rng.integers(0, 6, network.options) * (rng.uniform(size=network.options) < 0.4)
        rows, units = Rows(network), start.copy()
        rows.load(units)
        assert len(rows.excess_points()) > 10  # many rows in excess: a real test
        _trim(rows, units)
        plain_rows, plain = Rows(network), start.copy()
        plain_rows.load(plain)
        _trim_one_unit_rule_at_a_time(plain_rows, plain)
        assert units.tolist() == plain.tolist()
        fresh = Rows(network)
        fresh.load(units)
        assert not len(fresh.excess_points()) and not len(fresh.excess_stock())
        assert 0 < units.sum() < start.sum()


def test_the_ejection_passes_over_only_moves_that_cannot_pay(monkeypatch: pytest.MonkeyPatch) -> None:
    # `_eject` skips a pair of moves whose least possible cost is no lower than the cost before; the
    # moves it then tries and keeps are those it would have kept trying every pair.
    skipped = 0
    real = rounding._cannot_pay

    def counted(floor: float, before: float) -> bool:
        nonlocal skipped
        skip = real(floor, before)
        skipped += skip
        return skip

    for seed in (1, 2, 3):
        p = synthetic_problem(600, 60, seed)
        params = SolveParams(time_limit_s=60.0, workers=1, decompose_above=0)
        days = horizon_days(p, params)
        network = build_network(p, params, find_candidates(p, params.k_nearest * WIDE, days), days)
        lp = relax(network, np.ones(network.options, dtype=bool), np.inf, max_rounds=200)
        monkeypatch.setattr(rounding, "_cannot_pay", counted)
        pruned = round_units(network, lp.units, network.shortage)
        monkeypatch.setattr(rounding, "_cannot_pay", lambda floor, before: False)
        every = round_units(network, lp.units, network.shortage)
        assert np.array_equal(pruned, every), seed
    assert skipped > 0


def test_a_plan_polished_later_is_the_plan_polished_at_once() -> None:
    # The large path rounds the plan in hand without polishing it, and polishes it only when it
    # could beat the LP's plan: polishing later must give what the one-step rounding gives.
    p = synthetic_problem(600, 60, 2)
    params = SolveParams(time_limit_s=60.0, workers=1, decompose_above=0)
    days = horizon_days(p, params)
    network = build_network(p, params, find_candidates(p, params.k_nearest * WIDE, days), days)
    lp = relax(network, np.ones(network.options, dtype=bool), np.inf, max_rounds=200)
    at_once, merged, _ = round_units_by(network, lp.units, network.shortage)
    rough, filled, rows = round_units_by(network, lp.units, network.shortage, polish=False)
    assert merged and filled and rows is not None
    assert not np.array_equal(rough, at_once), "polishing changed nothing: the test would prove nothing"
    assert polished(rows, rough)
    assert np.array_equal(rough, at_once)
