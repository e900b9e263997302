"""The generalised assignment problem: read the standard files, solve with the core, and as a textbook model.

GAP: m agents, n jobs; job j given to agent i costs (or earns) c[i][j] and uses a[i][j] of agent i's
capacity b[i]; every job goes to exactly one agent. It is the allocation core with quantity 1, one
resource per agent and no shortage, and `solve_with_core` maps it exactly so, which is how the
core is measured against published optima. `solve_textbook` is plain CP-SAT on the textbook model
(one Boolean per pair), the baseline the core must not lose to with the same time and workers.

Two file formats (see ../shared/benchmarks/README.md): OR-Library's multi-instance files (gap1..12,
maximisation) and Yagiura's single-instance files (types A–E, minimisation). Both are read as
whitespace-separated integers, so CRLF line endings do not matter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ortools.sat.python import cp_model

from solver.core import CoreParams, CoreProblem, Item, Option, solve_core

Sense = Literal["min", "max"]


@dataclass(frozen=True)
class GapInstance:
    """One GAP instance: costs c[i][j], uses a[i][j], capacities b[i], and whether to min or max."""

    name: str
    cost: list[list[int]]
    use: list[list[int]]
    capacity: list[int]
    sense: Sense

    @property
    def agents(self) -> int:
        """Number of agents (m)."""
        return len(self.capacity)

    @property
    def jobs(self) -> int:
        """Number of jobs (n)."""
        return len(self.cost[0]) if self.cost else 0


@dataclass(frozen=True)
class GapSolution:
    """Agent per job (None when the solver found no assignment), objective, bound, status, seconds."""

    agent_of: list[int] | None
    objective: float | None
    bound: float | None
    status: str
    seconds: float


class GapFormatError(ValueError):
    """A GAP file that cannot be read: the message names the file, the position and the reason."""


def read_gap_file(path: Path, sense: Sense | None = None) -> list[GapInstance]:
    """Every instance in an OR-Library or Yagiura file; the format is recognised from the numbers.

    OR-Library files start with the number of instances and hold maximisation problems; Yagiura files
    hold one minimisation instance. `sense` overrides the format's sense.
    """
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise GapFormatError(f"{path}: cannot read the file ({error})") from None
    return parse_gap(text, path.stem, sense)


def parse_gap(text: str, name: str, sense: Sense | None = None) -> list[GapInstance]:
    """Parse GAP text (see `read_gap_file`); instances are named `name`, or `name#k` when several."""
    tokens = text.split()
    try:
        numbers = [int(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("-").isdigit())
        raise GapFormatError(f"{name}: token {bad!r} is not an integer") from None
    if len(numbers) < 2:
        raise GapFormatError(f"{name}: too short to hold a GAP instance ({len(numbers)} numbers)")

    def instance_size(at: int) -> int:
        m, n = numbers[at], numbers[at + 1]
        return 2 + 2 * m * n + m

    single = len(numbers) == instance_size(0) if numbers[0] > 0 and numbers[1] > 0 else False
    if single:
        return [_instance(numbers, 0, name, sense or "min")]
    count, at, instances = numbers[0], 1, []
    if count <= 0:
        raise GapFormatError(f"{name}: the first number must be the count of instances, got {count}")
    for k in range(count):
        if at + 2 > len(numbers):
            raise GapFormatError(f"{name}: instance {k + 1} of {count} is missing (file ends early)")
        label = f"{name}#{k + 1}" if count > 1 else name
        instances.append(_instance(numbers, at, label, sense or "max"))
        at += instance_size(at)
    if at != len(numbers):
        raise GapFormatError(f"{name}: {len(numbers) - at} numbers left over after {count} instances")
    return instances


def _instance(numbers: list[int], at: int, name: str, sense: Sense) -> GapInstance:
    m, n = numbers[at], numbers[at + 1]
    if m <= 0 or n <= 0:
        raise GapFormatError(f"{name}: agents and jobs must be positive, got m={m}, n={n}")
    need = 2 + 2 * m * n + m
    if at + need > len(numbers):
        raise GapFormatError(
            f"{name}: an instance of {m} agents x {n} jobs needs {need} numbers, "
            f"the file holds {len(numbers) - at}"
        )
    p = at + 2
    cost = [numbers[p + i * n : p + (i + 1) * n] for i in range(m)]
    p += m * n
    use = [numbers[p + i * n : p + (i + 1) * n] for i in range(m)]
    p += m * n
    capacity = numbers[p : p + m]
    if any(v < 0 for row in use for v in row) or any(b < 0 for b in capacity):
        raise GapFormatError(f"{name}: resource uses and capacities must not be negative")
    return GapInstance(name, cost, use, capacity, sense)


def to_core(instance: GapInstance) -> CoreProblem:
    """The GAP as a core problem: one item per job (quantity 1, must place), one resource per agent."""
    flip = -1 if instance.sense == "max" else 1
    options = [
        Option(item=j, unit_cost=flip * instance.cost[i][j], uses={f"agent{i}": instance.use[i][j]})
        for j in range(instance.jobs)
        for i in range(instance.agents)
        if instance.use[i][j] <= instance.capacity[i]
    ]
    return CoreProblem(
        items=[Item(quantity=1) for _ in range(instance.jobs)],
        options=options,
        capacity={f"agent{i}": b for i, b in enumerate(instance.capacity)},
    )


def solve_with_core(
    instance: GapInstance, time_limit_s: float = 10.0, workers: int = 2, seed: int = 0
) -> GapSolution:
    """Solve with the allocation core; objective and bound in the instance's own sense."""
    problem = to_core(instance)
    result = solve_core(problem, CoreParams(time_limit_s=time_limit_s, workers=workers, seed=seed))
    if result.status == "INFEASIBLE":
        return GapSolution(None, None, None, "INFEASIBLE", result.seconds)
    agent_of = [0] * instance.jobs
    for option, units in zip(problem.options, result.units, strict=True):
        if units:
            agent_of[option.item] = int(next(iter(option.uses))[len("agent") :])
    flip = -1 if instance.sense == "max" else 1
    return GapSolution(agent_of, flip * result.objective, flip * result.bound, result.status, result.seconds)


def solve_textbook(
    instance: GapInstance, time_limit_s: float = 10.0, workers: int = 2, seed: int = 0
) -> GapSolution:
    """Plain CP-SAT on the textbook model: x[i][j] Boolean, one agent per job, capacity per agent."""
    started = time.perf_counter()
    model = cp_model.CpModel()
    x = [[model.new_bool_var(f"x[{i},{j}]") for j in range(instance.jobs)] for i in range(instance.agents)]
    for j in range(instance.jobs):
        model.add_exactly_one(x[i][j] for i in range(instance.agents))
    for i in range(instance.agents):
        model.add(sum(instance.use[i][j] * x[i][j] for j in range(instance.jobs)) <= instance.capacity[i])
    total = sum(instance.cost[i][j] * x[i][j] for i in range(instance.agents) for j in range(instance.jobs))
    if instance.sense == "max":
        model.maximize(total)
    else:
        model.minimize(total)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    status = solver.solve(model)
    seconds = time.perf_counter() - started
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return GapSolution(None, None, None, solver.status_name(status), seconds)
    agent_of = [
        next(i for i in range(instance.agents) if solver.value(x[i][j])) for j in range(instance.jobs)
    ]
    return GapSolution(
        agent_of,
        solver.objective_value,
        solver.best_objective_bound,
        "OPTIMAL" if status == cp_model.OPTIMAL else "FEASIBLE",
        seconds,
    )


def evaluate(instance: GapInstance, agent_of: list[int]) -> tuple[float, list[str]]:
    """Objective of an assignment and what it violates, recomputed from the instance alone."""
    problems = []
    if len(agent_of) != instance.jobs:
        return float("nan"), [f"{len(agent_of)} jobs assigned, the instance has {instance.jobs}"]
    load = [0] * instance.agents
    total = 0
    for j, i in enumerate(agent_of):
        if not 0 <= i < instance.agents:
            problems.append(f"job {j}: agent {i} does not exist")
            continue
        load[i] += instance.use[i][j]
        total += instance.cost[i][j]
    for i, (used, cap) in enumerate(zip(load, instance.capacity, strict=True)):
        if used > cap:
            problems.append(f"agent {i}: load {used} exceeds capacity {cap}")
    return float(total), problems
