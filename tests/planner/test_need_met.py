"""When a stream's need is met: the day its arrivals catch up with its due units, for good."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from planner.need_met import need_met

T0 = datetime(2026, 5, 4, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def test_never_behind_is_met_at_once() -> None:
    met = need_met([(day(2), 10), (day(3), 10)], [(day(1.5), 10), (day(2.5), 10)], T0, day(5))
    assert (met.days, met.shortfall, met.units_due, met.units_arrived) == (0.0, 0, 20, 20)


def test_met_when_arrivals_catch_up_and_stay_caught_up() -> None:
    dues = [(day(1), 10), (day(2), 10), (day(3), 10)]
    # behind from day 1; caught up on day 2.5; behind again on day 3 until day 4: met on day 4
    arrivals = [(day(0.5), 5), (day(2.5), 15), (day(4), 10)]
    met = need_met(dues, arrivals, T0, day(6))
    assert met.met_at == day(4) and met.days == pytest.approx(4.0) and met.shortfall == 0


def test_short_at_the_end_of_the_window_gives_no_day_and_the_shortfall() -> None:
    met = need_met([(day(1), 10), (day(2), 10)], [(day(1), 12)], T0, day(3))
    assert met.met_at is None and met.days is None and met.shortfall == 8
    assert met.to_json()["days_until_met"] is None


def test_what_fell_due_before_the_window_counts_at_its_start() -> None:
    met = need_met([(day(-2), 10)], [(day(1), 10)], T0, day(3))
    assert met.days == pytest.approx(1.0)


def test_a_unit_arriving_when_due_is_on_time_and_nothing_beyond_the_window_counts() -> None:
    met = need_met([(day(1), 5), (day(9), 100)], [(day(1), 5)], T0, day(3))
    assert (met.days, met.units_due) == (0.0, 5)
    with pytest.raises(ValueError, match="until"):
        need_met([], [], day(1), T0)
