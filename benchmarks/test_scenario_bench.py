"""The `visor-surge-fr` scenario end to end: four policies over 28 simulated days, 50 labs, ~840 orders.

Run: make bench   (or .venv/bin/pytest benchmarks -k scenario --benchmark-enable)
The metrics of every policy are stored in the benchmark's extra_info, so a saved run keeps the
comparison (fill rate, lead time, km, CO2) next to the time it took.
"""

from __future__ import annotations

import pytest

from scenarios.metrics import WALL_TIME_KEYS
from scenarios.run import run_scenario
from scenarios.spec import find_scenario, load_scenario


def test_visor_surge_fr_end_to_end(benchmark) -> None:
    if benchmark.disabled:
        pytest.skip("a 30-second end-to-end run: enable with --benchmark-enable (make bench)")
    loaded = load_scenario(find_scenario("visor-surge-fr"))
    benchmark.group = "scenario visor-surge-fr"
    result = benchmark.pedantic(run_scenario, args=(loaded,), rounds=1, iterations=1)
    by = result.by_policy()
    assert set(by) == {"cosmolocal", "central-factory", "nearest-greedy", "board"}
    for policy, metrics in by.items():
        skip = WALL_TIME_KEYS | {"co2_source"}
        benchmark.extra_info[policy] = {k: v for k, v in metrics.items() if k not in skip}
        assert metrics["units_delivered"] > 0
    # the network's plans minimise distance: fewer km per unit than the job board or one factory
    assert by["cosmolocal"]["km_per_unit"] < by["board"]["km_per_unit"]
    assert by["cosmolocal"]["km_per_unit"] < by["central-factory"]["km_per_unit"]
