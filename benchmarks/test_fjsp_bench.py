"""Flexible job-shop: Brandimarte mk01-mk10 solved by the lab scheduler (solver.jobshop.fjsp), 10 s,
2 workers.

Each schedule is checked by the independent validator and its makespan compared with the best-known
value as published. `make bench` asserts the target, a gap of at most 2 %, for every instance.
mk01-mk05 are read from the shared benchmark folder and also run under `make test`; mk06-mk10 (this
folder's instances/brandimarte) only under `make bench`, as they take the full 10 s each.
On mk02 one makespan unit is 3.8 %, so the target there means the optimum, 26: 40 of 40 measured
runs (seeds 0-39) reached it. `make test` holds mk02 to a 5 % regression guard only, in case a
slower machine gives the search fewer iterations. Every gap is recorded in extra_info.

Run: make bench   (or .venv/bin/pytest benchmarks -k fjsp --benchmark-enable)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from cosmolocal.bench_fjsp import BEST_KNOWN
from solver.jobshop.brandimarte import parse_brandimarte
from solver.jobshop.fjsp import Result, check_schedule, solve
from solver.jobshop.tabu import compile_ahead
from tests.shared import SHARED

FOLDER = SHARED / "benchmarks" / "fjsp"
HERE = Path(__file__).parent / "instances" / "brandimarte"


@pytest.fixture(scope="module", autouse=True)
def compiled() -> None:
    """The tabu search compiled before any clock starts (seconds on a fresh machine)."""
    compile_ahead()


@pytest.mark.parametrize("name", sorted(BEST_KNOWN))
def test_brandimarte(benchmark: BenchmarkFixture, name: str) -> None:
    path = HERE / f"{name}.txt"
    if not path.exists():
        if not FOLDER.is_dir():
            pytest.skip("shared benchmark folder absent")
        path = FOLDER / f"{name}.txt"
    elif benchmark.disabled:
        pytest.skip("the larger instances, 10 s each: enable with --benchmark-enable (make bench)")
    instance = parse_brandimarte(path)

    def run() -> Result:
        return solve(instance, "makespan", time_limit_s=10.0, workers=2)

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    best = BEST_KNOWN[name]
    gap = 100.0 * (result.objective - best) / best
    benchmark.extra_info.update(
        makespan=result.objective,
        bound=result.bound,
        gap_pct=round(gap, 2),
        below_best_known=result.objective < best,
    )
    assert check_schedule(instance, result) == []
    # A valid schedule below the published value is a better schedule, not an error (mk10 reached
    # 195 and 196 where 197 is published); the bound must stay below both.
    assert result.bound <= min(best, result.objective)
    benchmark.extra_info.update(meets_2pct_target=gap <= 2.0)
    # Under `make test` (benchmarks disabled) this runs beside nothing but may run on a slower,
    # shared machine: mk02 there is held to a regression guard (27 is 3.8 %); `make bench` asserts
    # the target itself.
    allowed = 5.0 if benchmark.disabled and name == "mk02" else 2.0
    assert gap <= allowed, f"{name}: makespan {result.objective}, best known {best} ({gap:.1f} % above)"
