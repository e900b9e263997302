"""Allocation core benchmarks: published GAP optima, the emergency fast path, a synthetic instance.

Each benchmark checks its answer (validator, published optimum) and records its figures in the
benchmark's extra_info; `make bench` prints the timings. The targets of the solver issue:
gap12 optimal in under 1 s an instance (GAP types D and E: test_gap_bench.py); emergency
insertion into a loaded 1,000-lab problem within 200 ms at the 95th percentile; 10,000 orders over
2,000 labs planned within 30 s, valid, within 2 % of a valid lower bound (>= 0), on seeds 1-20, the
same objective on a second run (deterministic budgets).

Run: make bench   (or .venv/bin/pytest benchmarks/test_allocation_bench.py --benchmark-enable)
The 10,000 x 2,000 instances run only then (up to 30 s a seed; COSMOLOCAL_SCALE_SEEDS=1-3 narrows
them); `cosmolocal bench scale --orders 10000 --labs 2000 --seed S` runs one on its own.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from protocol.model import Plan
from scenarios.scale import synthetic_problem
from solver.allocation.allocate import solve
from solver.allocation.emergency import insert_urgent
from solver.check import check
from solver.gap.assignment import evaluate, read_gap_file, solve_with_core
from solver.large.bid_prices import bid_prices
from solver.model.objective import objective_weights
from solver.model.problem import Demand, FutureDemand, Problem, SolveParams
from tests.shared import SHARED

#: The synthetic instances at scale are measured on the km objective (a day sooner breaks ties
#: only), as their targets were set, and 2,000 x 400 on the balanced weights too, which the planner
#: uses by default (docs/benchmarks.md gives the figures of both).
KM = objective_weights("km")
BALANCED = objective_weights("balanced")

GAP = SHARED / "benchmarks" / "gap"
GAP12 = [1451, 1449, 1433, 1447, 1446]
needs_instances = pytest.mark.skipif(not GAP.exists(), reason="shared benchmark instances not present")


@needs_instances
@pytest.mark.parametrize("index", range(5))
def test_gap12_is_solved_to_the_published_optimum(benchmark, index: int) -> None:
    instance = read_gap_file(GAP / "gap12.txt")[index]
    solution = benchmark.pedantic(solve_with_core, args=(instance, 10.0, 2), rounds=1, iterations=1)
    assert evaluate(instance, solution.agent_of) == (GAP12[index], [])
    assert solution.status == "OPTIMAL"
    benchmark.extra_info.update(objective=solution.objective, seconds=solution.seconds)


def loaded_problem(labs: int = 1000, seed: int = 3) -> Problem:
    """1,000 labs with 3 to 12 days of work already queued on every machine, and open routine demand."""
    problem = synthetic_problem(300, labs, seed)
    rng = random.Random(seed)
    loaded = [
        replace(s, backlog_minutes={m.id: m.minutes_per_day() * rng.uniform(3, 12) for m in s.lab.machines})
        for s in problem.labs
    ]
    return Problem(problem.now, problem.designs, loaded, problem.demands)


def test_emergency_insertion_into_a_loaded_thousand_lab_problem(benchmark) -> None:
    base = loaded_problem()
    params = SolveParams()
    rng = random.Random(1)
    cases = []
    for i, demand in enumerate(base.demands[:40]):
        order = demand.order.model_copy(
            update={
                "id": f"emergency{i}",
                "priority": "emergency",
                "design": rng.choice(["charlotte-valve", "face-shield"]),
                "quantity": rng.randint(2, 12),
                "due_at": base.now + timedelta(days=2),
            }
        )
        cases.append(
            Problem(base.now, base.designs, base.labs, [*base.demands, Demand(order, order.quantity)])
        )
    seconds = []

    def insert_all() -> None:
        for problem in cases:
            started = time.perf_counter()
            plan = insert_urgent(problem, {problem.demands[-1].order.id}, params)
            seconds.append(time.perf_counter() - started)
            focus = Problem(problem.now, problem.designs, problem.labs, problem.demands[-1:])
            assert check(focus, plan, params) == []
            assert plan.allocations, "an emergency order near capable labs gets placed"

    benchmark.pedantic(insert_all, rounds=1, iterations=1)
    seconds.sort()
    p95 = seconds[int(0.95 * len(seconds)) - 1]
    benchmark.extra_info.update(p95_ms=1000 * p95, median_ms=1000 * seconds[len(seconds) // 2])
    # `make bench` asserts the target; `make test` (benchmarks disabled) runs beside the whole suite
    # on a shared machine, where it holds a regression guard only (203.7 ms was seen at load 30).
    assert p95 <= (0.5 if benchmark.disabled else 0.2)


def test_synthetic_thousand_orders_two_hundred_labs(benchmark) -> None:
    problem = synthetic_problem(1000, 200, 1)
    params = SolveParams(time_limit_s=10.0, workers=2, time_weight=KM)
    plan = benchmark.pedantic(solve, args=(problem, params), rounds=1, iterations=1)
    assert check(problem, plan, params) == []
    benchmark.extra_info.update(
        objective=plan.objective,
        bound=plan.bound,
        gap_pct=100 * plan.gap,
        short=sum(s.quantity for s in plan.shortages),
        late=sum(a.late_units for a in plan.allocations),
    )


def test_bid_prices_of_ten_thousand_orders_two_thousand_labs_short_of_capacity(benchmark) -> None:
    """A planner told of rates thirty times its open orders prices its labs' minutes within 5 s
    (`solver.large.bid_prices`), with a price at some labs and none above the longest trip."""
    problem = synthetic_problem(10_000, 2_000, 1)
    future = tuple(
        FutureDemand(d.order.design, d.order.delivery, 30.0 * d.quantity, d.order.due_at + timedelta(days=3))
        for d in problem.demands
    )
    problem = replace(problem, future=future)
    started = time.perf_counter()
    prices = benchmark.pedantic(bid_prices, args=(problem,), rounds=1, iterations=1)
    seconds = time.perf_counter() - started
    benchmark.extra_info.update(
        seconds=seconds, priced=len(prices), highest=max(prices.values(), default=0.0)
    )
    assert prices and all(price > 0 for price in prices.values())
    assert seconds <= 5.0


def test_synthetic_two_thousand_orders_four_hundred_labs(benchmark) -> None:
    # Above decompose_above: the whole problem through its linear relaxation (solver.large.path).
    problem = synthetic_problem(2000, 400, 1)
    params = SolveParams(time_limit_s=30.0, workers=2, time_weight=KM)
    plan = benchmark.pedantic(solve, args=(problem, params), rounds=1, iterations=1)
    assert check(problem, plan, params) == []
    benchmark.extra_info.update(objective=plan.objective, bound=plan.bound, gap_pct=100 * plan.gap)
    assert plan.gap <= 0.02


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_synthetic_two_thousand_orders_on_the_planners_balanced_weights(benchmark, seed: int) -> None:
    # What the planner's users get: a day sooner worth 25 km (routine), 300 (urgent), 1,000
    # (emergency). The bound charges a lab off a demand's candidates its km, arrival and capacity
    # price together, per finish time (solver/large/beyond.py), so it certifies these plans too.
    if benchmark.disabled:
        pytest.skip("up to 30 s a seed: enable with --benchmark-enable (make bench)")
    problem = synthetic_problem(2000, 400, seed)
    params = SolveParams(time_limit_s=30.0, workers=2, seed=seed, time_weight=BALANCED)
    started = time.perf_counter()
    plan = benchmark.pedantic(solve, args=(problem, params), rounds=1, iterations=1)
    seconds = time.perf_counter() - started
    assert check(problem, plan, params) == []
    benchmark.extra_info.update(
        objective=plan.objective,
        bound=plan.bound,
        gap_pct=100 * plan.gap,
        status=plan.status,
        seconds=seconds,
        load_average=os.getloadavg()[0],
    )
    assert plan.bound >= 0
    assert plan.gap <= 0.02
    assert seconds <= 30.0


def _seeds() -> list[int]:
    """Seeds of the 10,000 x 2,000 target: COSMOLOCAL_SCALE_SEEDS ("1-20" by default, or "3,7")."""
    text = os.environ.get("COSMOLOCAL_SCALE_SEEDS", "1-20")
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


#: The repository, where the continent's own process runs.
ROOT = Path(__file__).resolve().parents[1]
#: Seeds solved a second time to hold the deterministic mode to its word (COSMOLOCAL_SCALE_REPEAT).
REPEAT = int(os.environ.get("COSMOLOCAL_SCALE_REPEAT", "3"))

#: Targets measured not met yet, with the figures (docs/benchmarks.md, "Allocation at scale"); a
#: seed or case off this list is asserted.
NOT_YET: dict[tuple[str, int], str] = {}


def _not_yet(case: str, seed: int) -> None:
    if (case, seed) in NOT_YET:
        pytest.xfail(f"not met yet: {NOT_YET[case, seed]}")


def _solve_at_scale(
    benchmark, orders: int, labs: int, seed: int, limit: float
) -> tuple[Problem, Plan, float]:
    """Solve the seeded instance (km objective) under pytest-benchmark; the plan is validated."""
    problem = synthetic_problem(orders, labs, seed)
    params = SolveParams(time_limit_s=limit, workers=2, seed=seed, time_weight=KM)
    assert params.deterministic
    started = time.perf_counter()
    plan = benchmark.pedantic(solve, args=(problem, params), rounds=1, iterations=1)
    seconds = time.perf_counter() - started
    assert check(problem, plan, params) == []
    benchmark.extra_info.update(
        objective=plan.objective,
        bound=plan.bound,
        gap_pct=100 * plan.gap,
        status=plan.status,
        seconds=seconds,
        short=sum(s.quantity for s in plan.shortages),
        max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        child_max_rss_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        load_average=os.getloadavg()[0],
    )
    return problem, plan, seconds


@pytest.mark.parametrize("seed", _seeds())
def test_synthetic_ten_thousand_orders_two_thousand_labs(benchmark, seed: int) -> None:
    # The target on every seed: a valid plan, within 2 % of a bound >= 0 that covers every
    # plan, in 30 s on 2 cores; the first REPEAT seeds are solved twice, for the same objective.
    if benchmark.disabled:
        pytest.skip("a 30-second solve: enable with --benchmark-enable (make bench)")
    _not_yet("10k", seed)
    problem = synthetic_problem(10_000, 2_000, seed)
    params = SolveParams(time_limit_s=30.0, workers=2, seed=seed, time_weight=KM)
    assert params.deterministic
    started = time.perf_counter()
    plan = benchmark.pedantic(solve, args=(problem, params), rounds=1, iterations=1)
    seconds = time.perf_counter() - started
    checked = time.perf_counter()
    assert check(problem, plan, params) == []
    benchmark.extra_info.update(
        objective=plan.objective,
        bound=plan.bound,
        gap_pct=100 * plan.gap,
        status=plan.status,
        seconds=seconds,
        check_seconds=time.perf_counter() - checked,
        short=sum(s.quantity for s in plan.shortages),
        late=sum(a.late_units for a in plan.allocations),
        max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        load_average=os.getloadavg()[0],
    )
    if seed in _seeds()[:REPEAT]:
        again = solve(problem, params)
        benchmark.extra_info.update(second_objective=again.objective)
        assert again.objective == plan.objective
    assert plan.bound >= 0
    assert plan.gap <= 0.02
    assert seconds <= 30.0


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_synthetic_ten_thousand_orders_with_a_cpu_hog_on_one_core(benchmark, seed: int) -> None:
    # The same target while another process holds one of the two cores for the whole solve.
    if benchmark.disabled:
        pytest.skip("a 30-second solve beside a CPU hog: enable with --benchmark-enable (make bench)")
    _not_yet("10k", seed)
    hog = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
    try:
        _, plan, seconds = _solve_at_scale(benchmark, 10_000, 2_000, seed, 30.0)
    finally:
        hog.kill()
        hog.wait()
    assert plan.bound >= 0
    assert plan.gap <= 0.02
    assert seconds <= 30.0


@pytest.mark.timeout(600)
def test_a_continent_fifty_thousand_orders_five_thousand_labs(benchmark) -> None:
    # All of Europe: at most 120 s, 3 % and 4 GB of peak memory. Solved by `cosmolocal bench scale`
    # in a process of its own, which validates the plan and reports its own peak: this process's
    # peak would count what the benchmarks before it left behind, and its children's (a load
    # bench's planner) besides.
    if benchmark.disabled:
        pytest.skip("a two-minute solve of 50,000 orders: enable with --benchmark-enable (make bench)")
    _not_yet("continent", 1)
    command = [sys.executable, "-m", "cosmolocal", "bench", "scale", "--orders", "50000", "--labs", "5000"]
    command += ["--seed", "1", "--time-limit", "120", "--objective", "km", "--json"]
    run = {"capture_output": True, "text": True, "check": True, "cwd": ROOT}
    done = benchmark.pedantic(subprocess.run, args=(command,), kwargs=run, rounds=1, iterations=1)
    result = json.loads(done.stdout)
    benchmark.extra_info.update(result)
    assert result["feasible"]  # the validator found nothing
    assert result["bound"] >= 0
    assert result["gap_pct"] <= 3.0
    assert result["seconds"] <= 120.0
    assert result["max_rss_mb"] <= 4096
