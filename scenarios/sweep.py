"""A scenario swept over seeds: every policy replayed for every seed, and the spread of each metric.

One seed is one draw of the world (labs, stock, orders, disruptions); a policy that looks good on one
draw may not on the next. The sweep replays each (seed, policy) pair as an independent task through
the fan-out seam (`scenarios.fanout`) and reports, per policy and metric, the minimum, the median, the
maximum and the worst seed (by `scenarios.metrics.BETTER`), so the bad draw can be replayed alone
with `scenario run --seed`. Tasks are plain data (`scenarios.run.Replay`) and come back as the flat
metrics of `policy_metrics`, so a seed's metrics do not depend on where it ran.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from scenarios.fanout import fan_out
from scenarios.metrics import BETTER, policy_metrics
from scenarios.policies import POLICIES
from scenarios.run import Replay, replay
from scenarios.spec import LoadedScenario, ScenarioError

#: The most seeds one sweep takes: beyond this a typo (1-20000) is likelier than intent.
MAX_SEEDS = 10_000


def parse_seeds(text: str, limit: int = MAX_SEEDS) -> list[int]:
    """Seeds from `1-20`, `7` or `1-5,9,12-14`: sorted, each once. `ValueError` saying what is wrong.

    Seeds are whole numbers from 0; a range includes both ends and must not run backwards.
    """
    seeds: set[int] = set()
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise ValueError("no seeds given; write a range such as 1-20, or a list such as 1,4,9")
    for part in parts:
        first, dash, last = part.partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise ValueError(
                f"{part!r} is not a seed or a range of seeds (whole numbers from 0, such as 7 or 1-20)"
            ) from None
        if low < 0 or high < 0:
            raise ValueError(f"{part!r}: seeds are whole numbers from 0")
        if high < low:
            raise ValueError(f"{part!r} runs backwards; write the smaller seed first ({high}-{low})")
        if high - low + 1 + len(seeds) > limit:
            raise ValueError(f"more than {limit:,} seeds; sweep fewer at a time")
        seeds.update(range(low, high + 1))
    return sorted(seeds)


@dataclass
class SweepResult:
    """Every (seed, policy) replay's metrics, and how long the sweep took."""

    scenario: str
    seeds: list[int]
    policies: list[str]
    #: One `policy_metrics` row per (seed, policy), seeds in order, policies in order within a seed.
    rows: list[dict[str, Any]]
    wall_seconds: float

    def spread(self) -> list[dict[str, Any]]:
        """Per policy: the scenario, the seeds, and per metric its min, median, max and worst seed."""
        summaries = []
        for policy in self.policies:
            rows = [row for row in self.rows if row["policy"] == policy]
            metrics = {
                key: metric_spread({row["seed"]: row.get(key) for row in rows}, better)
                for key, better in BETTER.items()
            }
            summaries.append(
                {"scenario": self.scenario, "policy": policy, "seeds": self.seeds, "metrics": metrics}
            )
        return summaries


def metric_spread(values: dict[int, float | None], better: str | None) -> dict[str, Any]:
    """Min, median, max and worst seed of one metric over seeds (seeds without a value left out).

    The worst seed is the one with the lowest value when higher is better, the highest when lower is
    better (the smallest seed on a tie); None for a metric with no better direction, or when every
    seed gave the same value (no seed is worse than another). `missing` counts the seeds for which
    the metric has no value (a lead time when nothing was delivered).
    """
    present = {seed: v for seed, v in values.items() if v is not None}
    summary: dict[str, Any] = {"better": better, "missing": len(values) - len(present)}
    if not present:
        return {**summary, "min": None, "median": None, "max": None, "worst_seed": None}
    ordered = sorted(present.values())
    worst_seed = None
    if ordered[0] != ordered[-1] and better == "higher":
        worst_seed = min(present, key=lambda seed: (present[seed], seed))
    elif ordered[0] != ordered[-1] and better == "lower":
        worst_seed = min(present, key=lambda seed: (-present[seed], seed))
    return {
        **summary,
        "min": ordered[0],
        "median": statistics.median(ordered),
        "max": ordered[-1],
        "worst_seed": worst_seed,
    }


def sweep_policies(loaded: LoadedScenario, policies: list[str] | None) -> list[str]:
    """The policies a sweep replays: those asked for, each once, else the scenario's own list.

    Raises `ScenarioError` naming any unknown one, so a typo stops before a cluster starts.
    """
    names = list(dict.fromkeys(policies or loaded.scenario.policies))
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ScenarioError(f"unknown policies {', '.join(unknown)}; known: {', '.join(POLICIES)}")
    return names


def sweep_point(task: Replay) -> dict[str, Any]:
    """One seed under one policy, as the flat metrics `scenario run --json` prints."""
    return policy_metrics(replay(task))


def sweep(
    loaded: LoadedScenario,
    seeds: list[int],
    executor: Executor,
    policies: list[str] | None = None,
    on_done: Callable[[Replay, dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Replay `loaded` for every seed under every policy (default: the scenario's) on `executor`.

    `on_done(task, metrics)` hears of each replay as it finishes. Raises `ScenarioError` for an unknown
    policy or an empty list of seeds, before anything is sent.
    """
    started = time.perf_counter()
    names = sweep_policies(loaded, policies)
    if not seeds:
        raise ScenarioError("a sweep needs at least one seed")
    tasks = [Replay(loaded.variant(seed=seed), name) for seed in seeds for name in names]
    rows = fan_out(executor, sweep_point, tasks, on_done)
    return SweepResult(loaded.scenario.name, list(seeds), names, rows, time.perf_counter() - started)
