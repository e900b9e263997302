"""The setup cost scaled to the network's trips: a split charged as a run to the next lab and back."""

from __future__ import annotations

import pytest

from protocol.model import Location
from solver.allocation.allocate import solve
from solver.check import check
from solver.model.geo import haversine_km
from solver.model.setup_cost import SETUP_FLOOR, SETUP_TRIPS, network_setup_cost, split_trip_km
from tests.solver.factory import (
    CENTRE,
    FAR,
    KM_ONLY,
    MIDDLE,
    NEAR,
    lab,
    order,
    printer,
    problem,
    units_by_lab,
)


def km(a: tuple[float, float], b: tuple[float, float]) -> float:
    return haversine_km(Location(lat=a[0], lon=a[1]), Location(lat=b[0], lon=b[1]))


def test_the_split_trip_is_the_median_km_to_the_second_nearest_capable_lab() -> None:
    labs = [lab("near", NEAR), lab("middle", MIDDLE), lab("far", FAR)]
    points = (CENTRE, NEAR, FAR)
    orders = [order(name, "face-shield", 5, at) for name, at in zip("abc", points, strict=True)]
    seconds = sorted(sorted(km(at, place) for place in (NEAR, MIDDLE, FAR))[1] for at in points)
    assert split_trip_km(problem(labs, orders)) == pytest.approx(seconds[1])


def test_labs_that_cannot_make_the_design_or_are_lost_do_not_count() -> None:
    # A printer-only lab cannot make a face shield (it needs a laser), and a lost lab makes nothing.
    labs = [lab("near", NEAR), lab("printer-only", CENTRE, [printer()]), lab("lost", CENTRE, live=False)]
    labs.append(lab("far", FAR))
    p = problem(labs, [order("a", "face-shield", 5, CENTRE)])
    assert split_trip_km(p) == pytest.approx(km(CENTRE, FAR))


def test_a_design_only_one_lab_makes_keeps_the_configured_cost() -> None:
    p = problem([lab("near", NEAR), lab("printer-only", MIDDLE, [printer()])], [order("a", "face-shield", 5)])
    assert split_trip_km(p) is None
    assert network_setup_cost(p, 50.0) == 50.0


def test_long_trips_keep_the_configured_cost_and_short_ones_lower_it() -> None:
    country = problem([lab("near", NEAR), lab("far", FAR)], [order("a", "face-shield", 5)])
    assert SETUP_TRIPS * split_trip_km(country) > 50.0
    assert network_setup_cost(country, 50.0) == 50.0
    city = problem([lab("near", NEAR), lab("middle", MIDDLE)], [order("a", "face-shield", 5)])
    assert network_setup_cost(city, 50.0) == pytest.approx(SETUP_TRIPS * km(CENTRE, MIDDLE))
    assert network_setup_cost(city, 10.0) == 10.0  # the configured cost stays the ceiling


def test_labs_at_the_delivery_point_still_pay_the_floor_for_a_split() -> None:
    # Two capable labs given at the same point as the hospital: the split trip is 0 km.
    p = problem([lab("one", CENTRE), lab("two", CENTRE)], [order("a", "face-shield", 5, CENTRE)])
    assert split_trip_km(p) == pytest.approx(0.0)
    assert network_setup_cost(p, 50.0) == SETUP_FLOOR
    assert network_setup_cost(p, 0.0) == 0.0  # a configured cost below the floor is kept


def test_a_city_order_splits_between_the_two_nearest_labs_rather_than_go_whole_to_a_farther_one() -> None:
    """Two labs 1.4 and 2.7 km off have PETG for 10 of the 20 shields each; a third, 3.8 km off, for all.

    Charged 50 for a second (order, lab) pair, the whole order went to the third lab (76 km + 50
    against 41 km + 100). Charged a run to the second-nearest lab and back (5.4), it splits, at 2.05 km
    per unit instead of 3.8.
    """
    ten_shields = {"petg": 0.34, "pet_sheet_0_5": 100.0, "elastic": 100.0}  # 0.033 kg of PETG a shield
    labs = [
        lab("near", (41.40, 2.17), stock=ten_shields),
        lab("second", (41.41, 2.18), stock=ten_shields),
        lab("third", (41.4175, 2.19)),
    ]
    p = problem(labs, [order("o", "face-shield", 20)])
    assert network_setup_cost(p, KM_ONLY.setup_cost) == pytest.approx(2 * km(CENTRE, (41.41, 2.18)))
    plan = solve(p, KM_ONLY)
    assert check(p, plan, KM_ONLY) == []
    assert units_by_lab(plan, "o") == {"near": 10, "second": 10}
