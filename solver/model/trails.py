"""Trails: how strongly a lab is known to deliver a design, reinforced by work and fading with time.

A trail τ(design, lab) starts neutral (τ0 = 1). It is reinforced by the machine hours of work the lab
delivers on time for that design, weakened when the lab refuses or fails an assignment (or lets its
lease expire), and it fades toward neutral with elapsed time, halving its distance to neutral every
`half_life_days`, so both praise and blame fade: old history weighs less and less. It is clamped to
[τmin, τmax], as in the MAX-MIN ant system, so no lab is ever locked in or locked out by its trail.

Both the growth and the fading are counted in the world's time and work, not in plans: a planner that
re-plans every few seconds and a replay that plans once a simulated hour give the same labs the same
trails for the same deliveries. (Reinforcing per delivered assignment and fading per committed plan,
as before, made a trail's strength a matter of how often its planner happened to plan.)

What a trail does, and nothing more: measured against the design's other labs (its strength is how
far it stands above the mean trail of the labs able to make the design,
`solver.model.trail_strength`, so trails as strong as everyone's earn nothing), it adds its lab to
a demand's candidates (the strongest trails beyond the k nearest labs) and gives a bounded discount
per unit, at most `trail_discount_km` km-equivalents at full strength and at most
`trail_trip_share` of the trip it shortens (a city's trips are a few km:
`solver.model.objective.TRAIL_TRIP_SHARE`), zero at or below that mean. Trails are data about
labs and designs, shown to everyone through the planner's API with their history: not a hidden
rating of people.

Pure functions on floats and a book of (τ, when) per trail; the planner keeps the book in its ledger,
the scenario replay in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

TrailKey = tuple[str, str]  # (design id, lab id)


@dataclass(frozen=True, slots=True)
class TrailRules:
    """Neutral value, bounds, fading with time, and the size of a reinforcement or weakening."""

    neutral: float = 1.0
    minimum: float = 0.2
    maximum: float = 5.0
    #: Days for a trail to fade half way back to neutral (a working week and a weekend).
    half_life_days: float = 7.0
    #: Added per machine hour of work delivered on time: a day's work on time takes a trail to τmax,
    #: so a trail tells labs known to deliver from labs not (yet) known to, not busy labs from quiet
    #: ones (measured in docs/live-vs-sim.md, "Trails by the clock").
    reinforce_per_hour: float = 0.5
    weaken: float = 0.5  # factor applied on refusal, failure or an expired lease

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.neutral <= self.maximum:
            raise ValueError("trail bounds must satisfy 0 < minimum <= neutral <= maximum")
        if not self.half_life_days > 0:
            raise ValueError(f"half_life_days must be above 0, got {self.half_life_days}")
        if self.reinforce_per_hour < 0 or not 0 < self.weaken <= 1:
            raise ValueError("reinforce_per_hour must be >= 0 and weaken in (0, 1]")

    def clamp(self, tau: float) -> float:
        """τ kept within [minimum, maximum]."""
        return min(self.maximum, max(self.minimum, tau))

    def evaporate(self, tau: float, days: float) -> float:
        """τ after `days` of fading toward neutral (none for a negative span: a clock set back)."""
        kept = math.exp(-math.log(2.0) * max(0.0, days) / self.half_life_days)
        return self.clamp(self.neutral + (tau - self.neutral) * kept)

    def delivered_on_time(self, tau: float, hours: float) -> float:
        """τ after `hours` of machine work delivered on time."""
        return self.clamp(tau + self.reinforce_per_hour * max(0.0, hours))

    def let_down(self, tau: float) -> float:
        """τ after a refusal, a failure or an expired lease."""
        return self.clamp(tau * self.weaken if tau > self.minimum else tau)

    def strength(self, tau: float, reference: float | None = None) -> float:
        """How much of the largest discount a trail earns: its lead over `reference` (neutral unless
        given; `solver.model.trail_strength` gives the design's mean trail) as a share of the span from
        neutral to the maximum; 0 at or below the reference."""
        floor = self.neutral if reference is None else max(self.neutral, reference)
        if self.maximum <= self.neutral:
            return 0.0
        return min(1.0, max(0.0, (tau - floor) / (self.maximum - self.neutral)))


DAY_S = 86_400.0


@dataclass
class TrailBook:
    """Every trail as last set, and when: read at any moment, a trail has faded by the time since.

    Nothing is written as time passes: a trail changes only when work is delivered or let down, and
    its value at any moment follows from (τ, when) and the rules.
    """

    rules: TrailRules = field(default_factory=TrailRules)
    recorded: dict[TrailKey, tuple[float, datetime]] = field(default_factory=dict)

    def tau(self, key: TrailKey, now: datetime) -> float:
        """The trail's value at `now` (neutral if never set)."""
        if (entry := self.recorded.get(key)) is None:
            return self.rules.neutral
        return self._faded(entry, now)

    def at(self, now: datetime) -> dict[TrailKey, float]:
        """Every recorded trail's value at `now`, for a problem (`solver.model.problem.Problem.trails`).

        The book is copied in one step first, so a reader in another thread may call this while the
        planner's loop records a delivery."""
        recorded = dict(self.recorded)
        return {key: self._faded(entry, now) for key, entry in recorded.items()}

    def delivered_on_time(self, key: TrailKey, hours: float, now: datetime) -> tuple[float, float]:
        """Reinforce the trail by `hours` of machine work delivered on time; (before, after)."""
        before = self.tau(key, now)
        return before, self._set(key, self.rules.delivered_on_time(before, hours), now)

    def let_down(self, key: TrailKey, now: datetime) -> tuple[float, float]:
        """Weaken the trail after a refusal, a failure or an expired lease; (before, after)."""
        before = self.tau(key, now)
        return before, self._set(key, self.rules.let_down(before), now)

    def held(self, key: TrailKey, now: datetime) -> tuple[float, float]:
        """The trail left as it is (work delivered late): (before, after), both its value at `now`."""
        before = self.tau(key, now)
        return before, self._set(key, before, now)

    def _faded(self, entry: tuple[float, datetime], now: datetime) -> float:
        tau, at = entry
        return self.rules.evaporate(tau, (now - at).total_seconds() / DAY_S)

    def _set(self, key: TrailKey, tau: float, now: datetime) -> float:
        self.recorded[key] = (tau, now)
        return tau


DEFAULT_RULES = TrailRules()
