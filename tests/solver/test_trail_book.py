"""Trails grow by work and fade by days, whatever the cadence of the planner that records them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from protocol.model import Lab, Location, Machine
from protocol.okh import catalogue
from solver.model.trail_strength import design_references, trail_strengths
from solver.model.trails import TrailBook, TrailRules

T0 = datetime(2030, 1, 1, tzinfo=UTC)
KEY = ("face-shield", "lab-a")


def test_a_trail_fades_half_way_to_neutral_every_half_life_read_at_any_moment() -> None:
    book = TrailBook(TrailRules(half_life_days=7.0, reinforce_per_hour=0.1))
    book.delivered_on_time(KEY, 20.0, T0)  # 1 + 2
    assert book.tau(KEY, T0) == pytest.approx(3.0)
    assert book.tau(KEY, T0 + timedelta(days=7)) == pytest.approx(2.0)
    assert book.tau(KEY, T0 + timedelta(days=14)) == pytest.approx(1.5)
    assert book.tau(KEY, T0 - timedelta(days=1)) == pytest.approx(3.0)  # a clock set back fades nothing
    assert book.tau(("face-shield", "never"), T0) == book.rules.neutral
    assert book.at(T0 + timedelta(days=7)) == {KEY: pytest.approx(2.0)}


def test_the_same_work_on_the_same_days_gives_the_same_trail_in_one_report_or_in_many() -> None:
    rules = TrailRules(half_life_days=5.0, reinforce_per_hour=0.02)
    seldom, often = TrailBook(rules), TrailBook(rules)
    seldom.delivered_on_time(KEY, 24.0, T0 + timedelta(days=1))
    for hour in range(24):  # the same day's work told hour by hour, as a busy planner hears it
        often.delivered_on_time(KEY, 1.0, T0 + timedelta(days=1) - timedelta(hours=23 - hour))
    later = T0 + timedelta(days=3)
    assert often.tau(KEY, later) == pytest.approx(seldom.tau(KEY, later), rel=0.02)
    assert often.tau(KEY, later) < seldom.tau(KEY, later)  # the earlier hours have faded a little more


def test_a_let_down_halves_and_blame_fades_back_toward_neutral_too() -> None:
    book = TrailBook(TrailRules(half_life_days=2.0, weaken=0.5))
    before, after = book.let_down(KEY, T0)
    assert (before, after) == (1.0, 0.5)
    assert book.tau(KEY, T0 + timedelta(days=2)) == pytest.approx(0.75)
    assert book.held(KEY, T0 + timedelta(days=2)) == (pytest.approx(0.75), pytest.approx(0.75))


def test_trails_stay_within_their_bounds_and_bad_rules_are_refused() -> None:
    book = TrailBook(TrailRules(maximum=5.0, minimum=0.2))
    book.delivered_on_time(KEY, 10_000.0, T0)
    assert book.tau(KEY, T0) == 5.0
    for _ in range(10):
        book.let_down(KEY, T0)
    assert book.tau(KEY, T0) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="half_life_days"):
        TrailRules(half_life_days=0.0)
    with pytest.raises(ValueError, match="reinforce_per_hour"):
        TrailRules(reinforce_per_hour=-1.0)


def _lab(lab_id: str, processes: list[str]) -> Lab:
    return Lab(
        id=lab_id,
        name=lab_id,
        location=Location(lat=45.0, lon=5.0),
        machines=[Machine(id=f"m-{p}", processes=[p]) for p in processes],
    )


def test_a_trail_earns_strength_only_above_the_mean_trail_of_the_labs_able_to_make_its_design() -> None:
    designs = catalogue()
    splint = "finger-splint"  # printed, then assembled
    able = [_lab(f"lab-{i}", ["fdm", "assembly"]) for i in range(4)]
    unable = _lab("laser-only", ["laser"])
    rules = TrailRules()
    everyone = {(splint, lab.id): rules.maximum for lab in able}
    reference = design_references(everyone, able, designs, rules)
    assert set(trail_strengths(everyone, reference, rules).values()) == {0.0}  # nobody better known

    one = {(splint, "lab-0"): 4.0}
    reference = design_references(one, [*able, unable], designs, rules)
    assert reference[splint] == pytest.approx((4.0 + 3 * rules.neutral) / 4)  # the laser lab not counted
    [strength] = trail_strengths(one, reference, rules).values()
    assert strength == pytest.approx(rules.strength(4.0, reference[splint])) and 0 < strength < 1

    below = {(splint, "lab-0"): 0.5, (splint, "lab-1"): 3.0}
    strengths = trail_strengths(below, design_references(below, able, designs, rules), rules)
    assert strengths[(splint, "lab-0")] == 0.0 < strengths[(splint, "lab-1")]
