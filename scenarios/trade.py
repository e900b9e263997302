"""The trade between kilometres and days: Cosmolocal replayed under several weightings of time.

Each weighting scales the balanced time weights (`solver.model.objective.time_weights`): 0.01 is the `km`
objective (distance first, sooner only breaks ties), 1 is `balanced`, 4 is `on-time`, and 16 goes
beyond. A planner sees what each km saved costs in late units, beside the baselines of the same run.
The replays are independent, so they go through the fan-out seam (`scenarios.fanout`, a process pool
by default); each task is plain data (the validated scenario and the scale) and the worker builds
everything itself.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import replace
from functools import partial
from typing import Any

from scenarios.fanout import default_workers, fan_out, open_executor
from scenarios.run import run_scenario, solve_params
from scenarios.spec import LoadedScenario
from solver.model.objective import time_weights

#: The weightings replayed, as scales of the balanced time weights.
TRADE_SCALES: tuple[float, ...] = (0.01, 0.25, 1.0, 4.0, 16.0)
#: The metrics kept per weighting.
TRADE_KEYS = ("fill_rate", "on_time_rate", "km_per_unit", "lead_time_mean_h", "co2_kg", "plan_slip_rate")


def trade_point(loaded: LoadedScenario, scale: float) -> dict[str, Any]:
    """Cosmolocal's metrics on one validated scenario with the time weights scaled by `scale`."""
    params = replace(solve_params(loaded), time_weight=time_weights(scale))
    metrics = run_scenario(loaded, ["cosmolocal"], params=params).metrics[0]
    return {"time_weight_scale": scale, **{key: metrics[key] for key in TRADE_KEYS}}


def trade_off(
    loaded: LoadedScenario, scales: tuple[float, ...] = TRADE_SCALES, executor: Executor | None = None
) -> list[dict[str, Any]]:
    """One row per weighting, in the order of `scales` (see the module docstring).

    Without an `executor`, a process pool with one worker per weighting (at most one per core).
    """
    if executor is None:
        with open_executor("process", min(len(scales), default_workers())) as pool:
            return trade_off(loaded, scales, pool)
    return fan_out(executor, partial(trade_point, loaded), list(scales))
