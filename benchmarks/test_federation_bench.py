"""The federation of regional planners against one global planner, on several seeds of both cases.

Run: make bench   (or .venv/bin/pytest benchmarks -k federation --benchmark-enable)

Targets (issue 17): surge (one region at twice its capacity, peers at 60 %) within 1 % of the
global plan's cost, tight (every region at 90 % or more) within 5 %; in both, at most 10 rounds, at
most a quarter of the orders exposed, every regional plan valid, and the federation never dearer
than the regions alone. The ratios compare the regional LPs the net negotiates with the global LP
built the same way (`scenarios.federation_bench`). The net alone (LP figures, deterministic and
independent of the machine's load) is also checked on surge seeds 1-12 and tight seeds 1-8
(`test_the_net_alone_meets_the_ratio_targets`): surge seeds 1-8 before the change of 4 December
2026 (offers priced at the plan the commit rule charges) missed on 2 and 4, seeds 9-12 were not run.

The integer plans: every one valid, and the federated ones, summed, no dearer than the isolated ones.
The final check (`solver.federation.plans.integer_check`) voids the trades when they would make the
plans dearer, so that comparison holds by the rule; what can fail, and is asserted for the surge, is
that the trades pass it (`trades_kept`): the federation's plans are then cheaper, not merely no
dearer. Both sides spend the same deterministic work, so a run does not depend on the machine's load
unless the wall-clock cap cut a plan; `plans_cut_by_clock` counts those (recorded, not asserted:
on this shared machine, at load 3-7, 3 of 8 plans of surge seed 1 took their whole 30-s cap).

The scale target (4 regions x 2,500 orders x 400 labs, the whole federated run in 60 s) is run by
`cosmolocal bench federation` in a process of its own (`test_four_regions_of_2500_orders_within_a_minute`)
and reported in docs/federation.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios.federation import federation, merged
from scenarios.federation_bench import GLOBAL_CELLS, BenchParams, bench_federation, solve_params
from solver.federation.net import NetParams, run_net
from solver.federation.region import RegionModel

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (1, 2, 3)
#: The issue's targets for cost_ratio.
TARGET = {"surge": 1.01, "tight": 1.05}


RUNS = [(case, seed) for case in ("surge", "tight") for seed in SEEDS]
#: Surge seeds 22, 25 and 37 were found above 1.01 on 5 December 2026 (1.0147, 1.0102, 1.0168) and
#: are met since a host answers only what it can make at its quoted cost (`within_means`).
NET_RUNS = [("surge", seed) for seed in (*range(1, 13), 22, 25, 37)] + [
    ("tight", seed) for seed in range(1, 9)
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("case", "seed"), NET_RUNS)
def test_the_net_alone_meets_the_ratio_targets(benchmark, case: str, seed: int) -> None:
    """The rounds on the regions' LPs (4 x 120 x 24), against the global LP: the ratio, rounds and
    exposure targets and federated <= isolated, a few CPU seconds a seed."""
    if benchmark.disabled:
        pytest.skip("seconds of LP solves a seed: enable with --benchmark-enable (make bench)")
    benchmark.group = f"federation net {case}"
    regions = federation(4, 120, 24, seed, case)  # type: ignore[arg-type]
    params = solve_params(5.0)

    def net() -> dict[str, float]:
        result = run_net({r.id: r.problem for r in regions}, params, NetParams())
        whole = RegionModel("global", merged(regions), params, own_cells=GLOBAL_CELLS).solve().cost
        exposed = sum(len(v) for v in result.exposed.values()) / sum(len(r.problem.demands) for r in regions)
        return {
            "cost_ratio": result.federated_cost / whole,
            "isolated_ratio": result.isolated_cost / whole,
            "rounds": len(result.rounds),
            "orders_exposed_share": exposed,
        }

    figures = benchmark.pedantic(net, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    assert figures["cost_ratio"] <= TARGET[case], figures
    assert figures["cost_ratio"] <= figures["isolated_ratio"], figures
    assert figures["rounds"] <= 10, figures
    assert figures["orders_exposed_share"] <= 0.25, figures


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("case", "seed"), RUNS)
def test_federation_meets_its_targets(benchmark, case: str, seed: int) -> None:
    if benchmark.disabled:
        pytest.skip("a minute or more of solves: enable with --benchmark-enable (make bench)")
    benchmark.group = f"federation {case}"
    bench = BenchParams(4, 120, 24, seed, case, time_limit_s=5.0, global_plan=False)  # type: ignore[arg-type]
    figures = benchmark.pedantic(bench_federation, args=(bench,), rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    assert figures["cost_ratio"] <= TARGET[case], figures
    assert figures["rounds"] <= 10, figures
    assert figures["orders_exposed_share"] <= 0.25, figures
    assert figures["valid"], figures
    assert figures["lp_federated"] <= figures["lp_isolated"], figures
    assert figures["plan_federated"] <= figures["plan_isolated"], figures
    if case == "surge":
        assert figures["trades_kept"], figures
        assert figures["plan_federated"] < figures["plan_isolated"], figures


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("case", "seed"), [("surge", 1), ("tight", 1), ("surge", 10)])
def test_four_regions_of_2500_orders_within_a_minute(benchmark, case: str, seed: int) -> None:
    # The scale target: 4 regions x 2,500 orders x 400 labs, the federated run (the net, the plans
    # with the trades, the validator and the final check) within 60 s on this 2-core machine, every
    # plan valid. Surge seed 10 stopped bidding at 1.0120 while a group could import only from each
    # host's nearest cells (docs/federation.md). The isolated plans and the global LP come before and
    # after it, untimed; the global integer plan is not made (--no-global-plan), as it would only
    # lengthen the run.
    if benchmark.disabled:
        pytest.skip("two minutes of solves of 10,000 orders: enable with --benchmark-enable (make bench)")
    command = [sys.executable, "-m", "cosmolocal", "bench", "federation", "--regions", "4"]
    command += ["--orders-per-region", "2500", "--labs-per-region", "400", "--seed", str(seed)]
    command += ["--case", case, "--no-global-plan", "--json"]
    run = {"capture_output": True, "text": True, "check": True, "cwd": ROOT}
    done = benchmark.pedantic(subprocess.run, args=(command,), kwargs=run, rounds=1, iterations=1)
    figures = json.loads(done.stdout)
    benchmark.extra_info.update(figures)
    assert figures["valid"], figures
    assert figures["seconds"] <= 60.0, figures
    assert figures["cost_ratio"] <= TARGET[case], figures
    assert figures["rounds"] <= 10, figures
    assert figures["plan_federated"] <= figures["plan_isolated"], figures
