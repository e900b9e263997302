"""The objective's weights, in one place: what a kilometre, a day and a late or missing unit cost.

Every allocation's cost is a sum of terms in one currency, the *cost unit* (one unit carried one
kilometre costs `km_weight`, 1 by default):

- **transport**: km × `km_weight` per unit (great-circle distance lab -> delivery);
- **time**: `time_weight[priority]` per unit per day from now until the unit is planned to arrive
  (the checkpoint by which it is made, plus handling and the road at `transport_kmh`). This is what
  makes a lab that is free today worth more than a nearer one that is booked for four days: capacity
  that idles today is lost for good, and a hospital counts what arrives and when;
- **lateness**: `lateness_penalty[priority]` per unit planned to arrive after its due date; and each
  of its days past that date adds `overdue_weight` to its time term (see `LATE_DAY_FACTOR`);
- **setup**: `setup_cost` per (order, lab) pair used, so orders are not shattered; at most two of
  the network's split trips (a run to an order's second-nearest capable lab and back, the median
  over the demands; `solver.model.setup_cost`), so that across a city a split is not priced as
  carrying a few dozen units across town;
- **shortage**: `shortage_penalty[priority]` per unit no lab can make within the horizon;
- **trail**: a discount of at most `trail_discount_km` km-equivalents per unit, and at most
  `trail_trip_share` of the trip it shortens (see `TRAIL_TRIP_SHARE` and `solver.model.trails`);
- **capacity**: where the units known rates will release within a lead time want more minutes than
  the labs near them have, what the minutes a unit takes at its lab are worth to that demand, beyond
  the capable lab where they are worth least (at most the longest trip the aggregate plan considers;
  `solver.large.bid_prices`). Zero otherwise;
- **transfer**: material shipped from a lab with stock beyond its own planned work to a lab whose
  machines would otherwise idle (`protocol.model.Transfer`): `TRANSFER_KM_WEIGHT` per unit of
  material (kg, m², m) per km, plus `TRANSFER_HANDLING_COST` once per transfer (one material, one
  sender, one receiver). A kilogram of PETG carried a kilometre costs as much as one finished unit
  carried a kilometre: a parcel of material is cheap next to the units it makes (a kilogram makes
  about fifty face-shield frames), and the fixed term keeps transfers few. It arrives
  `TRANSFER_HANDLING_HOURS` plus the road at `TRANSPORT_KMH` after it is sent, and only senders
  within `TRANSFER_RADIUS_KM` of the receiver are considered (the `TRANSFER_SENDERS` nearest that
  hold the material).

Three named weightings trade kilometres against days (`--objective` on the command line, `objective`
in scenario files and in the planner's settings):

| name | a day sooner is worth (routine / urgent / emergency) | use |
|---|---|---|
| `on-time` | 100 / 300 / 1,000 km | everything as if it were urgent: what arrives and when comes first |
| `balanced` (default) | 25 / 300 / 1,000 km | routine trips stay short; urgent work comes soonest |
| `km` | 0.25 / 0.75 / 2.5 km | the shortest trips; sooner only breaks ties, due dates still count |

Why `balanced` weighs an urgent day as `on-time` does: an order is urgent or an emergency because
whoever sent it cannot wait. In the surges replayed (`cosmolocal scenario run visor-surge-fr | churn |
valve-lombardy`), urgent work at 75 km a day queued for days at the nearest labs while farther labs
stood idle; capacity that idles in a surge is lost for good, so fewer units arrived, and later
(visor-surge-fr 89.3 % filled and 63.7 % on time at 75 km a day; 90.4 % and 68.0 % at 300, still at
100 km per unit against nearest-greedy's 156). Routine city work (fab-city-barcelona) gains nothing
from arriving days before its date and keeps 25 km a day, which keeps its trips the shortest.

**The second stage** (`solver.allocation.allocate.polish`, lexicographic: hospitals first, then km).
A day of routine work at 25 km is right across a country and wrong across a city: with trips of 1-5
km (fab-city-barcelona), the time term alone sends work to any farther lab that is free today, even
when a nearer lab makes it in time, and no weighting of a day in km suits both scales (10 km a day
did no better in Barcelona and cost visor-surge-fr on-time share; more solve time did not shorten
the trips either). So, once the weighted plan has fixed what each order gets and how much of it on
time, a second solve of the same model keeps that (every order placed as fully, no unit late, no
unit made from shipped material moved) and minimises km, with the `km` weighting's time terms as
tie-breaks. It moves only the priorities whose day is worth at most `POLISH_MAX_TIME_WEIGHT` (routine
work under `balanced`; every priority under `km`; none under `on-time`), and runs only in rounds whose
plan has no late or short unit: when capacity is short, a lab idle today is capacity lost, and the
first stage's timing stands. The one-model path runs it (below `decompose_above` demands, not the
emergency fast path). A polished plan's objective is still counted in the first stage's terms, so
it is seldom proven optimal there.

The `km` weighting keeps a hundredth of the former balanced time weight: among equally near labs, the
one that can start sooner wins, and work planned for later is not left waiting (a plan sends labs only
the work to start now, `solver.model.lines.work_to_start`). `time_weights(scale)` scales the balanced
weights, for a sweep of the trade.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import numpy as np

#: A number or an array of numbers (`unit_cost` works element-wise on either).
Number = TypeVar("Number", float, np.ndarray)

Objective = Literal["on-time", "balanced", "km"]

#: The named weightings: what one day sooner is worth per unit, in km-equivalents, by priority.
OBJECTIVES: dict[str, dict[str, float]] = {
    "on-time": {"routine": 100.0, "urgent": 300.0, "emergency": 1_000.0},
    "balanced": {"routine": 25.0, "urgent": 300.0, "emergency": 1_000.0},
    "km": {"routine": 0.25, "urgent": 0.75, "emergency": 2.5},
}
DEFAULT_OBJECTIVE: Objective = "balanced"
BALANCED_TIME_WEIGHT: dict[str, float] = OBJECTIVES["balanced"]
#: Per unit planned to arrive after its due date (well below the shortage penalty: late beats never).
LATENESS_PENALTY: dict[str, float] = {"routine": 500.0, "urgent": 5_000.0, "emergency": 50_000.0}
#: Per unit no lab can make within the horizon.
SHORTAGE_PENALTY: dict[str, float] = {"routine": 100_000.0, "urgent": 1_000_000.0, "emergency": 10_000_000.0}
#: How many times a day of a unit already past its due date weighs against a day of one still on time.
#: An emergency unit that will be late has a hospital waiting for it: every further day then counts
#: three times, so the plan sends late emergency work to whichever capable lab delivers it soonest
#: instead of queueing it behind on-time work at the nearest. At 1 (a day is a day, late or not),
#: late valves queued at the one busiest lab: in valve-lombardy moved to Spain (seed 11) 8 of 718
#: were not made by the replay's end, where nearest-greedy made all of them; at 3 every one is,
#: more of them on time. Routine and urgent work keep 1: at 3 for urgent work, churn's trips grew
#: 6.6 % for 0.1 point more fill and 0.2 less on time (docs/benchmarks.md).
LATE_DAY_FACTOR: dict[str, float] = {"routine": 1.0, "urgent": 1.0, "emergency": 3.0}
#: Road speed (door to door) and handling before a made unit leaves its lab: together they turn a
#: distance into the days a unit spends between its lab and its delivery point.
TRANSPORT_KMH = 60.0
HANDLING_HOURS = 1.0
#: Material transfers between labs: cost per unit of material per km, fixed cost per transfer, hours
#: of packing before it leaves, farthest sender considered, and how many senders per receiver.
TRANSFER_KM_WEIGHT = 1.0
TRANSFER_HANDLING_COST = 100.0
TRANSFER_HANDLING_HOURS = 4.0
TRANSFER_RADIUS_KM = 250.0
TRANSFER_SENDERS = 2


#: A trail's discount is at most this share of the trip it shortens (`trail_reach`), besides its cap
#: in km (`SolveParams.trail_discount_km`, 25): a lab known to deliver may be chosen over one up to
#: about a third nearer, never over one at half its distance. A cap in km alone suits a country and
#: not a city. In fab-city-barcelona replayed live (2,000x, trips of 1-5 km), the one lab whose splint
#: trail grew first took 1,341 of the 1,685 splints, every delivery on time strengthening its trail
#: again, at 3.05 km per unit where the nearest lab was 1.33 km away: 2.62 km per unit in all, against
#: 1.53 in the simulation (which keeps no trails) and nearest-greedy's 1.74 (docs/live-vs-sim.md).
TRAIL_TRIP_SHARE = 0.3


#: The second stage (`solver.allocation.allocate.polish`) shortens the trips of the priorities whose
#: day sooner is worth at most this many km (the balanced routine weight): work that gains nothing
#: from arriving days before its date. Urgent and emergency work keeps the first stage's plan.
POLISH_MAX_TIME_WEIGHT = BALANCED_TIME_WEIGHT["routine"]


def polished_priorities(time_weight: dict[str, float]) -> frozenset[str]:
    """The priorities whose units the second stage may move to nearer labs (see `POLISH_MAX_TIME_WEIGHT`)."""
    return frozenset(p for p, weight in time_weight.items() if weight <= POLISH_MAX_TIME_WEIGHT)


def time_weights(scale: float) -> dict[str, float]:
    """The balanced time weights times `scale` (0: distance only; 1: balanced)."""
    if scale < 0:
        raise ValueError(f"the time weight scale cannot be negative, got {scale}")
    return {priority: weight * scale for priority, weight in BALANCED_TIME_WEIGHT.items()}


def objective_weights(name: str) -> dict[str, float]:
    """The time weights of a named weighting; a clear error naming the known ones otherwise."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")
    return dict(OBJECTIVES[name])


def overdue_weight(time_weight: dict[str, float], priority: str) -> float:
    """What each day past its due date adds to a unit's cost, on top of its time term: the day's
    weight times `LATE_DAY_FACTOR` less the one the time term already counts."""
    return (LATE_DAY_FACTOR[priority] - 1.0) * time_weight[priority]


def transit_days(km: float, kmh: float = TRANSPORT_KMH, handling_hours: float = HANDLING_HOURS) -> float:
    """Days between a unit being made and its arrival: handling, then the road at `kmh`."""
    return (handling_hours + km / kmh) / 24.0


def trail_reach(km: Number, trail_discount_km: float, trip_share: float) -> Number:
    """The share of a trail's full discount (`trail_discount_km` at full strength) that a trip of `km`
    can take: all of it on trips long enough, else `trip_share` of the trip (see `TRAIL_TRIP_SHARE`).
    Element-wise on arrays as on numbers."""
    if trail_discount_km <= 0:
        return np.ones_like(km)  # no discount to share out
    return np.minimum(1.0, trip_share * km / trail_discount_km)


def unit_cost(
    km: Number,
    discount: Number,
    time_weight: Number,
    arrival: Number,
    lateness: Number,
    km_weight: float,
    overdue: Number = 0.0,
) -> Number:
    """What one unit costs at a lab, in the terms above: its km × `km_weight` less the trail
    discount, plus its lateness (0 when on time: the penalty, and `overdue`, the `overdue_weight` ×
    days past the due date), plus the time weight × days until it arrives. The large path's options
    and the units it places off their candidates are priced by this one formula, element-wise on
    arrays as on numbers."""
    return km * km_weight - discount + lateness + overdue + time_weight * arrival
