"""What hospitals get, on every built-in scenario: Cosmolocal against the baselines of the same run.

Run: make bench   (or .venv/bin/pytest benchmarks -k outcomes --benchmark-enable)

One replay per scenario (every policy, the file's seed) is timed; each target is then its own test
on that replay, so a report shows which targets hold where. Besides the built-ins, the same targets
are held on variants no setting was tuned on: other seeds, and the same situation moved to another
country's cities (`scenario run NAME --seed S --country XX`):

- fill and on-time share at least those of the better of nearest-greedy and the job board, within
  half a point;
- km per unit at most nearest-greedy's;
- units planned on time that arrived late at most 2 % of the units delivered;
- on visor-surge-fr and fab-city-barcelona, and on their variants, at least half of the gap to the
  pooled central factory closed on fill and on on-time share (from the better baseline);
- the replay within 60 s.

Targets not met yet are marked xfail with the figure measured, so the suite says what is left
instead of hiding it; one that starts to hold shows as XPASS.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from scenarios.run import ScenarioResult, run_scenario
from scenarios.spec import LoadedScenario, builtin_scenarios, find_scenario, load_scenario

#: (built-in, seed, country or None): situations the built-ins' settings were not tuned on.
VARIANTS = [
    ("visor-surge-fr", 21, "DE"),
    ("churn", 13, "ES"),
    ("valve-lombardy", 4, None),
    ("fab-city-barcelona", 9, None),
    ("shields-and-splints-be", 5, "NL"),
    ("prosthetics-uk", 3, "ES"),
    # found a defect (docs/live-vs-sim.md, 2026-12-04 "Unseen scenarios"): late work queued for a week
    # at some labs while others ran dry; held since late work waits for the next re-plan
    ("visor-surge-fr", 12, "ES"),
    # found a defect: units planned on time arrive late, mostly made at a lab behind its plan
    ("valve-lombardy", 23, None),
    # found a shortfall on km (2026-12-04): units sent farther to be on time (held since at 15)
    ("fab-city-barcelona", 15, None),
    ("valve-lombardy", 12, None),
    # found a shortfall on fill (2026-12-05): late valves queued at the one busiest lab, 8 of 718 not
    # made by the replay's end; held since a late emergency day counts three times
    ("valve-lombardy", 11, "ES"),
    # found a shortfall on fill (2026-12-05, seeds 31-44 never run before): with fewer printers than
    # the city orders for, the second stage moved work from a far lab free today to nearer labs
    # booked for days, and the far lab's idle days were lost; held since by bid prices
    ("fab-city-barcelona", 42, None),
    # found a shortfall on km (same sweep): units sent farther to stay on time, where greedy is late
    ("fab-city-barcelona", 41, None),
    # found shortfalls on the pooled fill and on km (2026-12-06, night, seeds 81-88 never run before)
    ("fab-city-barcelona", 88, None),
    ("valve-lombardy", 85, "DE"),
    # found shortfalls on km (2026-12-07, seeds 61-63 and 71-73 never run before: 25 of 28 met every
    # target), each with on time or fill far above both baselines (docs/live-vs-sim.md)
    ("fab-city-barcelona", 72, None),
    ("valve-lombardy", 72, None),
    ("valve-lombardy", 73, "FR"),
    # found shortfalls on km and, by a hair, the pooled fill (2026-12-07, seeds 101-110 never run
    # before: 7 of 10 met every target), each with on time far above both baselines; fab-city's held
    # since the setup cost is scaled to the network's trips (solver/model/setup_cost.py)
    ("fab-city-barcelona", 104, None),
    ("fab-city-barcelona", 108, None),
    ("valve-lombardy", 107, "ES"),
    # found idle capacity in a shortage (2026-12-07, seeds 121-134 never run before): the one lab able
    # to make valves made 32.6 % where the central factory made 43.0 %, waiting for resin its plans
    # shipped to it and the replay never sent (scenarios/policies.py); 43.0 % since it is sent
    ("valve-lombardy", 133, "FR"),
    # found shortfalls on km and on the pooled fill (2026-12-07, evening, seeds 141-156 never run before:
    # 12 of 16 met every target), each with on time far above both baselines
    ("fab-city-barcelona", 144, None),
    ("fab-city-barcelona", 148, None),
    ("valve-lombardy", 153, "ES"),
    ("valve-lombardy", 155, "IT"),
]
SCENARIOS = sorted(builtin_scenarios()) + [
    f"{name}@{seed}" + (f"-{country}" if country else "") for name, seed, country in VARIANTS
]
TOLERANCE = 0.005
#: The target tests take the benchmark fixture only to learn whether benchmarks are on (a replay is
#: run, and timed, once per scenario by `test_replay_within_a_minute`): its warning that they time
#: nothing is expected.
pytestmark = pytest.mark.filterwarnings("ignore:Benchmark fixture was not used at all in this test")
POOLED = {"visor-surge-fr", "fab-city-barcelona"}
#: (scenario, target) -> what was measured when it last failed, on a 2-core machine.
NOT_YET: dict[tuple[str, str], str] = {
    ("valve-lombardy@12", "km"): (
        "407.7 km per unit against nearest-greedy's 386.8 (on time 100 %, the better baseline 86.0 %), "
        "2026-12-07 (406.5 on 2026-12-05, 404.3 on 2026-12-04): "
        "22 valves made in Sicily (985-1,047 km) to be on time, where greedy queues more at Naples; "
        "398.6-405.3 with an emergency day worth 100 to 1,000 km, or with a km polish of emergencies"
    ),
    ("fab-city-barcelona@42", "km"): (
        "2.87 km per unit against nearest-greedy's 2.38, 2026-12-07 with the setup cost scaled to the "
        "city's trips (2.83 before; 2.69 on 2026-12-06, before the replay kept trails): the trade of bid "
        "prices, which fill 93.27 % (the job board 92.87 %) where the plan before them filled 90.06 % at "
        "2.29 km. Knowing every order in advance, 92.4 % costs at least 2.00 km (docs/benchmarks.md)"
    ),
    ("fab-city-barcelona@15", "km"): (
        "2.12 km per unit against nearest-greedy's 1.75 (on time 99.97 % against 96.35 %), 2026-12-07 "
        "with the setup cost scaled to the city's trips (1.81 before, 1.76 without trails kept)"
    ),
    ("fab-city-barcelona@88", "pooled_fill"): (
        "95.17 % against the half-way mark 96.01 % (board 95.67, central factory 96.34), 2026-12-07 "
        "with the setup cost scaled (95.27 % before it, 95.41 % before the replay kept trails)"
    ),
    ("fab-city-barcelona@88", "km"): (
        "2.07 km per unit against nearest-greedy's 1.98 (on time 94.19 % against 86.59 %), 2026-12-07, "
        "the same with the setup cost scaled (2.02 without trails kept, 2026-12-06)"
    ),
    ("valve-lombardy@85-DE", "km"): (
        "705.6 km per unit against nearest-greedy's 697.0 (on time 86.11 % against 10.42 %, every valve "
        "made where the better baseline made 89.3 %), 2026-12-07 with material shipped as planned "
        "(703.8 before, 704.1 on 2026-12-06)"
    ),
    ("fab-city-barcelona@72", "km"): (
        "1.92 km per unit against nearest-greedy's 1.89 (on time 98.94 % against 93.64 % for the "
        "board), 2026-12-07 with the setup cost scaled (2.04 before it)"
    ),
    ("valve-lombardy@72", "km"): (
        "330.0 km per unit against nearest-greedy's 305.0, 2026-12-07 with material shipped as "
        "planned (312.1 before): a shortage where it fills 39.97 % against 24.66 % for both baselines "
        "(the central factory 40.11 %), the extra valves made farther away"
    ),
    ("valve-lombardy@73-FR", "km"): (
        "403.3 km per unit against nearest-greedy's 396.9 (on time 100 % against 80.67 %, the board "
        "82.48 %), 2026-12-07; 405.4 with the trail discount off"
    ),
    ("valve-lombardy@107-ES", "km"): (
        "1,241.7 km per unit against nearest-greedy's 1,198.3 (on time 41.21 % against 19.65 % for "
        "the board, 34.71 % for the central factory; every valve made by all four), 2026-12-07"
    ),
    ("valve-lombardy@23", "km"): (
        "889.2 km per unit against nearest-greedy's 887.9 (on time 74.90 % against 12.28 %, all made "
        "where the better baseline made 92.6 %), 2026-12-07 with material shipped as planned (888.7 "
        "before; 889.7 on 2026-12-06, 887.6 before the lead-time prices)"
    ),
    ("valve-lombardy@133-FR", "km"): (
        "932.6 km per unit against nearest-greedy's 928.0, 2026-12-07: a shortage where the one lab "
        "able to make valves, fed resin by its neighbours, makes 43.02 % (the central factory 43.02 %, "
        "the better baseline 26.89 %), 26.45 % on time (baselines 1.16 %)"
    ),
    ("fab-city-barcelona@144", "km"): (
        "2.09 km per unit against nearest-greedy's 1.96 (on time 94.56 % against 82.61 % for the board), "
        "2026-12-07"
    ),
    ("fab-city-barcelona@144", "pooled_fill"): (
        "96.25 % against the half-way mark 96.97 % (board 96.25, central factory 97.68), 2026-12-07"
    ),
    ("fab-city-barcelona@148", "km"): (
        "1.93 km per unit against nearest-greedy's 1.89 (on time 99.97 % against 94.88 % for the board), "
        "2026-12-07"
    ),
    ("valve-lombardy@153-ES", "km"): (
        "1,227.3 km per unit against nearest-greedy's 1,164.6 (on time 43.64 % against 21.75 %, every "
        "valve made by all four), 2026-12-07"
    ),
    ("valve-lombardy@155-IT", "km"): (
        "148.30 km per unit against nearest-greedy's 147.87: a shortage where it makes 60.80 % (the "
        "central factory 60.80 %, both baselines 46.16 %), 58.52 % on time (baselines 7.39 %), 2026-12-07"
    ),
}
_results: dict[str, tuple[ScenarioResult, float]] = {}


def _load(name: str) -> LoadedScenario:
    """A built-in by name, or a variant named `builtin@seed` or `builtin@seed-XX` (see VARIANTS)."""
    if "@" not in name:
        return load_scenario(find_scenario(name))
    builtin, _, rest = name.partition("@")
    seed, _, country = rest.partition("-")
    return load_scenario(find_scenario(builtin), int(seed)).variant(country=country or None)


def _replay(name: str) -> tuple[ScenarioResult, float]:
    if name not in _results:
        started = time.perf_counter()
        result = run_scenario(_load(name))
        _results[name] = (result, time.perf_counter() - started)
    return _results[name]


def _check(
    name: str, target: str, benchmark: Any, request: pytest.FixtureRequest
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    if benchmark.disabled:
        pytest.skip("a full replay of a scenario: enable with --benchmark-enable (make bench)")
    if (name, target) in NOT_YET:
        # Not strict: a target met since shows as XPASS, so its entry can go.
        request.node.add_marker(
            pytest.mark.xfail(reason=f"not met yet: {NOT_YET[name, target]}", strict=False)
        )
    result, _ = _replay(name)
    by = result.by_policy()
    best = {key: max(by["nearest-greedy"][key], by["board"][key]) for key in ("fill_rate", "on_time_rate")}
    return by["cosmolocal"], best, by


@pytest.mark.parametrize("name", SCENARIOS)
def test_replay_within_a_minute(benchmark, name: str) -> None:
    if benchmark.disabled:
        pytest.skip("a full replay of a scenario: enable with --benchmark-enable (make bench)")
    benchmark.group = "scenario outcomes"
    result, seconds = benchmark.pedantic(_replay, args=(name,), rounds=1, iterations=1)
    for policy, metrics in result.by_policy().items():
        benchmark.extra_info[policy] = {
            k: metrics[k] for k in ("fill_rate", "on_time_rate", "km_per_unit", "plan_slip_rate")
        }
    assert seconds <= 60.0


@pytest.mark.parametrize("name", SCENARIOS)
def test_fill(benchmark, request: pytest.FixtureRequest, name: str) -> None:
    mine, best, _ = _check(name, "fill", benchmark, request)
    assert mine["fill_rate"] >= best["fill_rate"] - TOLERANCE


@pytest.mark.parametrize("name", SCENARIOS)
def test_on_time(benchmark, request: pytest.FixtureRequest, name: str) -> None:
    mine, best, _ = _check(name, "on_time", benchmark, request)
    assert mine["on_time_rate"] >= best["on_time_rate"] - TOLERANCE


@pytest.mark.parametrize("name", SCENARIOS)
def test_km(benchmark, request: pytest.FixtureRequest, name: str) -> None:
    mine, _, by = _check(name, "km", benchmark, request)
    assert mine["km_per_unit"] <= by["nearest-greedy"]["km_per_unit"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_plan_slip(benchmark, request: pytest.FixtureRequest, name: str) -> None:
    mine, _, _ = _check(name, "plan_slip", benchmark, request)
    assert mine["plan_slip_rate"] <= 0.02


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n.partition("@")[0] in POOLED])
@pytest.mark.parametrize("key", ["fill", "on_time"])
def test_half_the_gap_to_the_pooled_factory(
    benchmark, request: pytest.FixtureRequest, name: str, key: str
) -> None:
    mine, best, by = _check(name, f"pooled_{key}", benchmark, request)
    metric = f"{key}_rate"
    factory = by["central-factory"][metric]
    assert mine[metric] >= best[metric] + 0.5 * max(0.0, factory - best[metric]) - 1e-9
