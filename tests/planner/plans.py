"""Hand-made worlds for the planner's tests: one lab with one machine, and plans that give it work."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from planner.core import PlannerCore
from planner.replan import Replanner
from protocol.model import Allocation, CostTerms, Lab, Location, Machine, Plan
from solver.model.problem import SolveParams

NOW = datetime(2026, 5, 1, 8, tzinfo=UTC)
#: One machine, so the solver's backlog for it is the whole account; a finger splint is 28 minutes.
ONE_MACHINE_LAB = Lab(
    id="lab-a",
    name="Lab A",
    location=Location(lat=45.0, lon=5.0),
    machines=[Machine(id="p1", processes=["fdm", "assembly"], tags={"bed_mm": 250})],
    stock={"pla": 1.0},
)


def one_lab_plan(order_id: str, quantity: int, lab_id: str = "lab-a", early_units: int | None = None) -> Plan:
    """A plan that gives all `quantity` units of `order_id` to `lab_id`, 60 km away; `early_units` of
    them (all, by default) to start now."""
    return Plan(
        version=0,
        objective=1,
        bound=1,
        status="OPTIMAL",
        solve_seconds=0.01,
        allocations=[
            Allocation(
                order_id=order_id,
                lab_id=lab_id,
                quantity=quantity,
                cost=CostTerms(km=60, transport=600 * quantity),
                early_units=quantity if early_units is None else early_units,
            )
        ],
    )


def replan_after(
    core: PlannerCore,
    params: SolveParams,
    change: Callable[[], object],
    done: Callable[[Replanner, list[Any]], bool],
    polls: int,
    **options: Any,
) -> tuple[Replanner, list[Any]]:
    """Run a re-planner on `core`, make `change`, and look every 20 ms, at most `polls` times, until
    `done`: the re-planner and the assignment rows it sent, for the test to judge."""
    sent: list[Any] = []

    async def scenario() -> Replanner:
        replanner = Replanner(core, sent.extend, params, **options)
        core.on_change = replanner.request
        stop = asyncio.Event()
        task = asyncio.create_task(replanner.run(stop))
        change()
        for _ in range(polls):
            if done(replanner, sent):
                break
            await asyncio.sleep(0.02)
        stop.set()
        await task
        return replanner

    return asyncio.run(scenario()), sent
