"""Run a scenario under every policy it names, side by side, and gather metrics.

Each policy replays the same world (same labs, orders, disruptions, drawn once from the seed) in
simulated time (`scenarios.sim`). The solver runs with one worker and the seed as its random seed,
so a scenario whose solves finish within their time limit gives identical metrics for the same file
and seed (the measured solve seconds aside). The policies' replays are independent: given an
executor (`scenarios.fanout`), each runs as its own task, from plain data (`Replay`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from protocol.model import Order
from scenarios.fanout import fan_out
from scenarios.forecast import forecast, still_to_come
from scenarios.metrics import policy_metrics
from scenarios.policies import POLICIES, make_policy
from scenarios.sim import PolicyRun, Simulation, replay_rounds
from scenarios.spec import LoadedScenario, ScenarioError
from scenarios.world import World, build_world, central_world
from solver.model.objective import objective_weights
from solver.model.problem import FutureDemand, SolveParams, commit_checkpoints

Progress = Callable[[str, int, int], None]


@dataclass
class ScenarioResult:
    """A scenario's world, each policy's replay and metrics, and how long it all took."""

    world: World
    runs: dict[str, PolicyRun]
    metrics: list[dict[str, Any]]
    wall_seconds: float
    #: Cosmolocal's metrics under other weightings of time against km (`scenarios.trade`), if asked.
    trade: list[dict[str, Any]] = field(default_factory=list)

    def by_policy(self) -> dict[str, dict[str, Any]]:
        """Metrics keyed by policy name."""
        return {m["policy"]: m for m in self.metrics}


#: A replay's rounds spend a budget of work (`SolveParams.work_limit`, CP-SAT's deterministic time)
#: per second of the scenario's `solve_seconds`, and the wall clock stops them only at
#: `REPLAY_TIME_CAP` times `solve_seconds`: so the same scenario and seed give the same plans, and the
#: same figures, on a quiet host and on a busy one (before, a host at load 15 to 37 cut rounds short
#: and changed the outcome). HiGHS, whose root only the clock bounds, stays out (`SolveParams.mip`).
#: On a 2-core host CP-SAT does about 0.4 of work a second; 0.2 keeps visor-surge-fr's replay under a
#: minute there. visor-surge-fr in Spain (seed 12) and churn in Spain (seed 13) gave the same fill and
#: on-time share (to 0.1 point) at 0.2, 0.25 and 0.64, and with HiGHS beside CP-SAT.
REPLAY_WORK_PER_SECOND = 0.2
REPLAY_TIME_CAP = 3.0


def solve_params(loaded: LoadedScenario) -> SolveParams:
    """Solver settings of a replay: the scenario's budget of work (`REPLAY_WORK_PER_SECOND`), breadth, late
    window, objective, road speed (the replay's own, so the plan's arrivals are the replay's), time
    checkpoints (its rounds, `solver.model.problem.commit_checkpoints`) and transfer radius, one
    worker, seeded.

    No flow time (`SolveParams.flow_time`): the replay's labs work a round's minutes as one pool
    per machine group (`scenarios.sim`), so a unit's steps take no time in turn there, and a plan
    that kept that time free would score units late or farther than its labs make them (three of
    fab-city-barcelona's replays went above nearest-greedy's km with it). Live labs make a unit's
    steps in turn (`nodes.simulated`, printers), and the live planner counts it."""
    scenario = loaded.scenario
    return SolveParams(
        time_limit_s=scenario.solve_seconds * REPLAY_TIME_CAP,
        work_limit=scenario.solve_seconds * REPLAY_WORK_PER_SECOND,
        mip=False,
        workers=1,
        k_nearest=scenario.k_nearest,
        late_window_days=scenario.late_window_days,
        time_weight=objective_weights(scenario.objective),
        transport_kmh=scenario.transport_kmh,
        transfer_radius_km=scenario.transfer_radius_km,
        seed=scenario.seed,
        time_checkpoints_days=commit_checkpoints(scenario.round_hours),
        flow_time=False,
    )


@dataclass(frozen=True)
class Replay:
    """One policy's replay of one validated scenario, as plain data a worker process can receive."""

    loaded: LoadedScenario
    policy: str
    #: Solver settings replacing the scenario's own (`solve_params`); None keeps them.
    params: SolveParams | None = None


def replay(task: Replay) -> PolicyRun:
    """Run one `Replay` where it lands: builds the world and the policy from the task's data."""
    return run_scenario(task.loaded, [task.policy], params=task.params).runs[task.policy]


def run_scenario(
    loaded: LoadedScenario,
    policies: list[str] | None = None,
    progress: Progress | None = None,
    params: SolveParams | None = None,
    executor: Executor | None = None,
) -> ScenarioResult:
    """Replay the scenario under each policy; `progress(policy, round, rounds)` follows it.

    `params` replaces the solver settings the scenario file gives (`solve_params`), for sweeps. With
    an `executor`, the policies replay side by side as independent tasks; `progress` then hears of
    each policy at 0 rounds when it is sent and at all of them when it is back.
    """
    started = time.perf_counter()
    names = policies or list(loaded.scenario.policies)
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ScenarioError(f"unknown policies {', '.join(unknown)}; known: {', '.join(POLICIES)}")
    if executor is not None:
        return _fanned_out(loaded, names, progress, params, executor, started)
    world = build_world(loaded)
    factory = central_world(world) if "central-factory" in names else None
    params = params or solve_params(loaded)
    runs: dict[str, PolicyRun] = {}
    days = loaded.scenario.forecast_days

    def ahead(now: datetime) -> list[tuple[Order, datetime]]:
        return [found for stream in world.streams for found in forecast(stream, now, days)]

    def coming(now: datetime) -> list[FutureDemand]:
        after = now + timedelta(days=days)
        return [found for stream in world.streams for found in still_to_come(stream, after)]

    for name in names:
        policy, stats = make_policy(
            name,
            params,
            loaded.scenario.seed,
            ahead if days > 0 else None,
            coming if loaded.scenario.bid_prices else None,
        )
        replayed = factory if name == "central-factory" and factory is not None else world
        simulation = Simulation(replayed, policy, stats)  # type: ignore[arg-type]
        runs[name] = simulation.run(None if progress is None else lambda r, n, p=name: progress(p, r, n))
    metrics = [policy_metrics(run) for run in runs.values()]
    return ScenarioResult(world, runs, metrics, time.perf_counter() - started)


def _fanned_out(
    loaded: LoadedScenario,
    names: list[str],
    progress: Progress | None,
    params: SolveParams | None,
    executor: Executor,
    started: float,
) -> ScenarioResult:
    world = build_world(loaded)
    rounds = replay_rounds(world)
    if progress is not None:
        for name in names:
            progress(name, 0, rounds)
    done = None if progress is None else lambda task, _run: progress(task.policy, rounds, rounds)
    tasks = [Replay(loaded, name, params) for name in names]
    replayed = fan_out(executor, replay, tasks, done)
    runs = dict(zip(names, replayed, strict=True))
    metrics = [policy_metrics(run) for run in replayed]
    return ScenarioResult(world, runs, metrics, time.perf_counter() - started)
