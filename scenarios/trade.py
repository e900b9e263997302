"""The trade between kilometres and days: Cosmolocal replayed under several weightings of time.

Each weighting scales the balanced time weights (`solver.model.objective.time_weights`): 0.01 is the `km`
objective (distance first, sooner only breaks ties), 1 is `balanced`, 4 is `on-time`, and 16 goes
beyond. A planner sees what each km saved costs in late units, beside the baselines of the same run.
The replays are independent, so they go through one `concurrent.futures.Executor` (a process pool
by default); each worker gets plain data (the scenario's path, seed, objective and the scale) and
builds everything itself.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from scenarios.run import run_scenario, solve_params
from scenarios.spec import LoadedScenario, load_scenario
from solver.model.objective import time_weights

#: The weightings replayed, as scales of the balanced time weights.
TRADE_SCALES: tuple[float, ...] = (0.01, 0.25, 1.0, 4.0, 16.0)
#: The metrics kept per weighting.
TRADE_KEYS = ("fill_rate", "on_time_rate", "km_per_unit", "lead_time_mean_h", "co2_kg", "plan_slip_rate")


def trade_point(path: str, seed: int, scale: float) -> dict[str, Any]:
    """Cosmolocal's metrics on one scenario file and seed with the time weights scaled by `scale`."""
    loaded = load_scenario(Path(path), seed)
    params = replace(solve_params(loaded), time_weight=time_weights(scale))
    metrics = run_scenario(loaded, ["cosmolocal"], params=params).metrics[0]
    return {"time_weight_scale": scale, **{key: metrics[key] for key in TRADE_KEYS}}


def trade_off(
    loaded: LoadedScenario, scales: tuple[float, ...] = TRADE_SCALES, executor: Executor | None = None
) -> list[dict[str, Any]]:
    """One row per weighting, in the order of `scales` (see the module docstring)."""
    if executor is None:
        with ProcessPoolExecutor(
            max_workers=min(len(scales), multiprocessing.cpu_count()),
            mp_context=multiprocessing.get_context("spawn"),
        ) as pool:
            return trade_off(loaded, scales, pool)
    futures = [
        executor.submit(trade_point, str(loaded.path), loaded.scenario.seed, scale) for scale in scales
    ]
    return [future.result() for future in futures]
