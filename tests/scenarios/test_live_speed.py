"""The live replay's default speed, chosen from the scenario's size (`scenarios.live.default_speed`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cosmolocal.cli import app
from scenarios.live import (
    DEFAULT_SPEED,
    LIGHT_UNITS_PER_DAY,
    MIN_DEFAULT_SPEED,
    default_speed,
    units_per_day,
)
from scenarios.spec import builtin_scenarios, load_scenario
from scenarios.world import World, build_world
from tests.scenarios.conftest import TINY


def _world_with(world: World, per_day: float) -> World:
    """`world` with its orders' quantities scaled so that it demands `per_day` units a day."""
    factor = per_day / units_per_day(world)
    orders = [o.model_copy(update={"quantity": max(1, round(o.quantity * factor))}) for o in world.orders]
    return replace(world, orders=orders)


@pytest.fixture(scope="module")
def valve() -> World:
    return build_world(load_scenario(builtin_scenarios()["valve-lombardy"]))


def test_units_per_day_counts_the_days_orders_come_in(valve: World) -> None:
    days = valve.loaded.scenario.days
    assert valve.orders_end - valve.start == timedelta(days=days)
    assert units_per_day(valve) == pytest.approx(sum(o.quantity for o in valve.orders) / days)


@pytest.mark.parametrize(
    ("share", "speed"),
    [
        (0.1, DEFAULT_SPEED),
        (1.0, DEFAULT_SPEED),  # the light limit itself keeps the fastest default
        (1.3, DEFAULT_SPEED / 2),
        (1.9, DEFAULT_SPEED / 2),
        (2.1, DEFAULT_SPEED / 4),
        (7.9, DEFAULT_SPEED / 8),
        (100.0, MIN_DEFAULT_SPEED),  # never slower than the floor
    ],
)
def test_default_speed_halves_for_each_doubling_of_the_units_a_day(
    valve: World, share: float, speed: float
) -> None:
    world = _world_with(valve, share * LIGHT_UNITS_PER_DAY)
    assert units_per_day(world) == pytest.approx(share * LIGHT_UNITS_PER_DAY, rel=0.02)
    assert default_speed(world) == speed


def test_builtin_scenarios_get_their_default_speed() -> None:
    speeds = {
        name: default_speed(build_world(load_scenario(path)))
        for name, path in builtin_scenarios().items()
        if name in {"valve-lombardy", "churn", "visor-surge-fr"}
    }
    # the light scenario keeps 2,000x; churn (about 1,100 units a day) and the face-shield surge
    # (about 3,500) are slowed so that the planner's largest solve stays small against their day
    assert speeds == {"valve-lombardy": 2_000.0, "churn": 1_000.0, "visor-surge-fr": 250.0}


@pytest.mark.parametrize("option", [["--speed", "500"], ["--keep", "logs"]])
def test_live_options_without_live_are_named(tmp_path: Path, option: list[str]) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    result = CliRunner().invoke(app, ["scenario", "run", str(path), *option])
    assert result.exit_code == 2
    assert f"{option[0]}: applies only with --live" in result.output
