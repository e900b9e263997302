"""Trails: how strongly a lab is known to deliver a design, reinforced by work and fading with time.

A trail τ(design, lab) starts neutral (τ0 = 1). It is reinforced when the lab delivers that design
on time, weakened when the lab refuses or fails an assignment (or lets its lease expire), and each
round it evaporates toward neutral by the factor ρ, so both praise and blame fade: old history
weighs less and less. It is clamped to [τmin, τmax], as in the MAX-MIN ant system, so no lab is ever
locked in or locked out by its trail.

What a trail does, and nothing more: it adds its lab to a demand's candidates (the strongest trails
beyond the k nearest labs) and gives a bounded discount per unit, at most `trail_discount_km`
km-equivalents at τmax and at most `trail_trip_share` of the trip it shortens (a city's trips are a
few km: `solver.model.objective.TRAIL_TRIP_SHARE`), zero at or below neutral. Trails are data about
labs and designs, shown to everyone through the planner's API with their history: not a hidden
rating of people.

Pure functions on floats; the planner keeps the values and their history in its ledger.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TrailRules:
    """Neutral value, bounds, evaporation per round, and the size of a reinforcement or weakening."""

    neutral: float = 1.0
    minimum: float = 0.2
    maximum: float = 5.0
    evaporation: float = 0.05  # ρ: share of the distance to neutral lost each round
    reinforce: float = 0.5  # added per on-time delivery
    weaken: float = 0.5  # factor applied on refusal, failure or an expired lease

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.neutral <= self.maximum:
            raise ValueError("trail bounds must satisfy 0 < minimum <= neutral <= maximum")
        if not 0 <= self.evaporation <= 1:
            raise ValueError(f"evaporation must lie in [0, 1], got {self.evaporation}")
        if self.reinforce < 0 or not 0 < self.weaken <= 1:
            raise ValueError("reinforce must be >= 0 and weaken in (0, 1]")

    def clamp(self, tau: float) -> float:
        """τ kept within [minimum, maximum]."""
        return min(self.maximum, max(self.minimum, tau))

    def evaporate(self, tau: float, rounds: int = 1) -> float:
        """τ after `rounds` rounds of evaporation toward neutral."""
        return self.clamp(self.neutral + (tau - self.neutral) * (1.0 - self.evaporation) ** max(0, rounds))

    def delivered_on_time(self, tau: float) -> float:
        """τ after an on-time delivery."""
        return self.clamp(tau + self.reinforce)

    def let_down(self, tau: float) -> float:
        """τ after a refusal, a failure or an expired lease."""
        return self.clamp(tau * self.weaken if tau > self.minimum else tau)

    def strength(self, tau: float) -> float:
        """How much of the largest discount a trail earns: 0 at or below neutral, 1 at the maximum."""
        if self.maximum <= self.neutral:
            return 0.0
        return min(1.0, max(0.0, (tau - self.neutral) / (self.maximum - self.neutral)))


DEFAULT_RULES = TrailRules()
