"""Scenario files: the built-in ones load; bad ones fail naming the file, the field and the reason."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from scenarios.run import solve_params
from scenarios.spec import ScenarioError, builtin_scenarios, find_scenario, load_scenario
from scenarios.world import build_world
from solver.model.problem import SolveParams
from tests.scenarios.conftest import TINY, write_scenario

BUILTIN = (
    "visor-surge-fr",
    "valve-lombardy",
    "fab-city-barcelona",
    "churn",
    "shields-and-splints-be",
    "prosthetics-uk",
)


@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
def test_builtin_scenarios_load_and_cite_sources(name: str) -> None:
    loaded = load_scenario(find_scenario(name))
    assert loaded.scenario.name == name
    assert loaded.scenario.sources, "every built-in scenario names its sources"
    world = build_world(loaded)
    assert world.labs and world.orders
    for design in {o.design for o in world.orders}:
        made = loaded.designs[design]
        assert made.source and made.licence and made.references, f"{design} cites where it comes from"
    for index, disruption in enumerate(loaded.scenario.disruptions):  # none of them vanishes
        hit = [
            e
            for e in world.events
            if e.kind == disruption.kind and e.start == world.start + timedelta(days=disruption.day)
        ]
        assert len(hit) == (len(disruption.labs) or disruption.count), f"disruptions.{index}"
    for event in world.events:  # every disruption hits a lab that has what it takes away
        lab = next(lab for lab in world.labs if lab.id == event.lab_id)
        assert set(event.machine_ids) <= {m.id for m in lab.machines}


def test_builtin_list_is_complete() -> None:
    assert set(BUILTIN) <= set(builtin_scenarios())


def test_competing_designs_share_the_printers_near_their_limit() -> None:
    world = build_world(load_scenario(find_scenario("shields-and-splints-be")))
    designs = world.loaded.designs
    assert {o.design for o in world.orders} == {"face-shield", "finger-splint"}
    printer_minutes_a_day = sum(
        m.minutes_per_day() for lab in world.labs for m in lab.machines if "fdm" in m.processes
    )
    full_rate = [o for o in world.orders if o.created_at >= world.start + timedelta(days=2)]
    asked_a_day = sum(o.quantity * designs[o.design].steps[0].minutes for o in full_rate) / 8
    assert 0.75 <= asked_a_day / printer_minutes_a_day <= 1.0


def test_the_low_volume_network_has_many_designs_in_small_orders() -> None:
    world = build_world(load_scenario(find_scenario("prosthetics-uk")))
    assert len({o.design for o in world.orders}) >= 3
    quantities = sorted(o.quantity for o in world.orders)
    assert quantities[len(quantities) // 2] <= 2  # most orders are for one or two units
    hand = world.loaded.designs["raptor-reloaded-hand"]
    assert hand.minutes_per_unit() >= 600 and hand.materials_per_unit()["pla"] == pytest.approx(0.1)


def test_visor_surge_is_calibrated_on_the_public_figures() -> None:
    world = build_world(load_scenario(find_scenario("visor-surge-fr")))
    ordered = sum(o.quantity for o in world.orders)
    assert 80_000 <= ordered <= 120_000  # about 100,000 visors in about four weeks
    printers = sum(1 for lab in world.labs for m in lab.machines if "fdm" in m.processes)
    headband = world.loaded.designs["face-shield"].steps[0]
    per_printer_day = 10 * 60 / headband.minutes
    assert 4 <= per_printer_day <= 6  # 300 a day from 60 printers
    assert headband.materials["petg"] == pytest.approx(0.033)
    assert 28 * printers * per_printer_day >= 80_000


def test_unknown_field_names_file_and_field(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, "\nbogus = 3\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(path) in str(caught.value)
    assert "bogus" in str(caught.value)


def test_wrong_type_names_nested_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("hours_per_day = 10", 'hours_per_day = "lots"'), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"labs\.machines\.0\.hours_per_day"):
        load_scenario(path)


def test_unknown_design_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace('design = "finger-splint"', 'design = "teapot"'), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"demand\.0\.design: unknown design 'teapot'"):
        load_scenario(path)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("name = [", encoding="utf-8")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="neither a built-in scenario"):
        find_scenario(str(tmp_path / "missing.toml"))


def test_rate_without_units_per_day_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("units_per_day = 40\n", ""), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"demand\.0.*units_per_day"):
        load_scenario(path)


def test_disruption_of_unknown_lab_is_named(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, '\n[[disruptions]]\nkind = "lab_lost"\nday = 1\nlabs = ["nowhere"]\n')
    with pytest.raises(ScenarioError, match=r"disruptions\.0\.labs: unknown lab ids nowhere"):
        build_world(load_scenario(path))


def test_a_scenario_moved_to_a_smaller_country_keeps_its_labs_closer_together_and_says_so() -> None:
    loaded = load_scenario(find_scenario("visor-surge-fr"))
    world = build_world(loaded.variant(country="BE"))
    assert len(world.labs) == loaded.scenario.labs.count  # 30 km apart, Belgium has 18 cities
    assert any(note.startswith("labs: 50 cities of BE are at least") for note in world.notes)
    same = build_world(loaded.variant(country="DE"))  # room enough: the file's separation holds
    assert not any("apart" in note for note in same.notes)
    with pytest.raises(ScenarioError, match=r"labs\.count: only \d+ cities in LU"):
        build_world(loaded.variant(country="LU"))  # not 50 cities at any separation


def test_more_labs_lost_than_the_scenario_has_is_refused(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, '\n[[disruptions]]\nkind = "lab_lost"\nday = 1\ncount = 500\n')
    with pytest.raises(ScenarioError, match=r"disruptions\.0\.count: 500 labs asked for, the scenario has"):
        build_world(load_scenario(path))


def test_a_seed_that_draws_fewer_labs_with_the_process_still_runs_on_all_it_has() -> None:
    # Which labs have a resin printer is drawn: seed 72 of valve-lombardy draws one, where the file
    # takes two down. The variant runs, with that one down, and says so.
    loaded = load_scenario(find_scenario("valve-lombardy"), 72)
    world = build_world(loaded)
    resin = [lab.id for lab in world.labs if any("sla" in m.processes for m in lab.machines)]
    down = [e for e in world.events if e.kind == "machine_down"]
    assert len(resin) == 1 < loaded.scenario.disruptions[0].count
    assert [e.lab_id for e in down] == resin
    assert any("2 labs asked for with a sla machine down" in note for note in world.notes)


def test_seed_changes_the_world_and_same_seed_repeats_it(tiny: Path) -> None:
    first = build_world(load_scenario(tiny, seed=1))
    again = build_world(load_scenario(tiny, seed=1))
    other = build_world(load_scenario(tiny, seed=2))
    assert [o.model_dump() for o in first.orders] == [o.model_dump() for o in again.orders]
    assert first.labs == again.labs
    assert [o.quantity for o in first.orders] != [o.quantity for o in other.orders]


def test_extra_design_from_an_okh_manifest(tmp_path: Path) -> None:
    (tmp_path / "hook.toml").write_text(
        """
okhv = "OKH-LOSHv1.0"
name = "Door hook"
version = "2.1"
license = { spdx = "CC-BY-4.0" }
repo = "https://example.org/door-hook"
function = "A printed door hook"
[[steps]]
process = "fdm"
minutes = 30
materials = { pla = 0.01 }
""",
        encoding="utf-8",
    )
    path = tmp_path / "hooks.toml"
    path.write_text(
        TINY.replace('design = "finger-splint"', 'design = "door-hook"').replace(
            "[labs]", 'designs = ["hook.toml"]\n\n[labs]'
        ),
        encoding="utf-8",
    )
    loaded = load_scenario(path)
    hook = loaded.designs["door-hook"]
    assert hook.licence == "CC-BY-4.0" and hook.source == "https://example.org/door-hook"
    assert hook.minutes_per_unit() == 30


def test_the_late_window_is_the_planners_unless_the_file_sets_it(tmp_path: Path) -> None:
    assert (
        solve_params(load_scenario(write_scenario(tmp_path))).late_window_days
        == SolveParams().late_window_days
    )
    path = tmp_path / "tight.toml"
    path.write_text(
        TINY.replace("solve_seconds = 2.0", "solve_seconds = 2.0\nlate_window_days = 0"), encoding="utf-8"
    )
    assert solve_params(load_scenario(path)).late_window_days == 0.0
    path.write_text(
        TINY.replace("solve_seconds = 2.0", "solve_seconds = 2.0\nlate_window_days = -1"), encoding="utf-8"
    )
    with pytest.raises(ScenarioError, match="late_window_days"):
        load_scenario(path)


def test_negative_transfer_radius_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        TINY.replace("solve_seconds = 2.0", "solve_seconds = 2.0\ntransfer_radius_km = -5"), encoding="utf-8"
    )
    with pytest.raises(ScenarioError, match=r"transfer_radius_km: .*greater than or equal to 0"):
        load_scenario(path)


def test_a_scenario_moves_to_another_country_with_its_labs_and_delivery_points() -> None:
    loaded = load_scenario(find_scenario("churn"))
    moved = loaded.variant(country="ES")
    assert moved.scenario.labs.country == "ES"
    assert all(d.at.country == "ES" for d in moved.scenario.demand if d.at.source == "cities")
    assert loaded.scenario.labs.country == "FR"  # the original is unchanged
    world = build_world(moved)
    # Spain spans about 36-44 N and 9.5 W - 3.5 E (the Canaries further south-west).
    assert all(27.0 < lab.location.lat < 44.5 and -18.5 < lab.location.lon < 4.5 for lab in world.labs)
    assert all(27.0 < o.delivery.lat < 44.5 for o in world.orders)
    with pytest.raises(ScenarioError, match="country: 'germany' is not an ISO 3166 alpha-2 code"):
        loaded.variant(country="germany")


def test_a_scenario_of_listed_places_only_cannot_move(tiny: Path) -> None:
    with pytest.raises(ScenarioError, match="country: the scenario draws neither labs nor delivery points"):
        load_scenario(tiny).variant(country="DE")


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "docs").glob("*.toml")))
def test_the_scenarios_the_docs_give_load_and_draw_their_world(path: Path) -> None:
    # A scenario file the docs point to (to reproduce their figures) must still be a valid file.
    world = build_world(load_scenario(path))
    assert world.labs and world.orders
