"""The generalised assignment problem: read the standard files, solve with the core, and as a textbook model.

GAP: m agents, n jobs; job j given to agent i costs (or earns) c[i][j] and uses a[i][j] of agent i's
capacity b[i]; every job goes to exactly one agent. It is the allocation core with quantity 1, one
resource per agent and no shortage, and `solve_with_core` maps it exactly so, which is how the
core is measured against published optima. `solve_textbook` is plain CP-SAT on the textbook model
(one Boolean per pair), the baseline the core must not lose to with the same time and workers.
`solve_gap` is the dedicated solver: the textbook model for a start and a bound, the LP for a
second bound and capacity prices, an exact exchange descent over every pair and triple of agents (a
compiled branch and bound), then a large neighbourhood search that re-solves a few related agents'
jobs exactly, again and again (see there).

Two file formats (see ../shared/benchmarks/README.md): OR-Library's multi-instance files (gap1..12,
maximisation) and Yagiura's single-instance files (types A–E, minimisation). Both are read as
whitespace-separated integers, so CRLF line endings do not matter.
"""

from __future__ import annotations

import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
from ortools.sat.python import cp_model

from solver.gap.exchange import cheapest_placement, exchange_descent
from solver.gap.relaxation import relax
from solver.sparse.core import CoreParams, CoreProblem, Item, Option, solve_core

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


def generate(kind: Literal["d", "e"], agents: int, jobs: int, seed: int) -> GapInstance:
    """A minimisation instance of Yagiura's type D or E, drawn as their generators draw them.

    Type D: a[i][j] uniform in 1..100, c[i][j] = 111 - a[i][j] + a uniform integer in -10..10.
    Type E: a[i][j] = 1 - 10 ln(u), c[i][j] = 1000 / a[i][j] - 10 u' (u, u' uniform in (0, 1]),
    both rounded down. Both: b[i] = 0.8 × Σ_j a[i][j] / m. Costs and uses are inversely related and
    capacities tight, which is what makes these types hard; instances nobody tuned for.
    """
    rng = random.Random(f"gap-{kind}-{agents}-{jobs}-{seed}")
    if kind == "d":
        use = [[rng.randint(1, 100) for _ in range(jobs)] for _ in range(agents)]
        cost = [[111 - use[i][j] + rng.randint(-10, 10) for j in range(jobs)] for i in range(agents)]
    elif kind == "e":
        use = [[int(1 - 10 * math.log(1.0 - rng.random())) for _ in range(jobs)] for _ in range(agents)]
        cost = [
            [int(1000 / use[i][j] - 10 * (1.0 - rng.random())) for j in range(jobs)] for i in range(agents)
        ]
    else:
        raise ValueError(f"kind must be 'd' or 'e', got {kind!r}")
    capacity = [int(0.8 * sum(row) / agents) for row in use]
    return GapInstance(f"{kind}{agents:02d}{jobs}-s{seed}", cost, use, capacity, "min")


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
    instance: GapInstance,
    time_limit_s: float = 10.0,
    workers: int = 2,
    seed: int = 0,
    deterministic: bool = False,
    work: float | None = None,
) -> GapSolution:
    """Plain CP-SAT on the textbook model: x[i][j] Boolean, one agent per job, capacity per agent.

    `deterministic` counts the budget in CP-SAT's deterministic time (and interleaves the workers'
    search), so the same instance and seed give the same answer on any machine: `work` of it, by
    default time_limit_s × WORK_PER_SECOND.
    """
    started = time.perf_counter()
    model, x = _textbook_model(instance, range(instance.agents), range(instance.jobs))
    solver = _cp_solver(time_limit_s, workers, seed, deterministic, work)
    status = solver.solve(model)
    seconds = time.perf_counter() - started
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return GapSolution(None, None, None, solver.status_name(status), seconds)
    agent_of = [
        next(i for i in range(instance.agents) if (i, j) in x and solver.value(x[i, j]))
        for j in range(instance.jobs)
    ]
    return GapSolution(
        agent_of,
        solver.objective_value,
        solver.best_objective_bound,
        "OPTIMAL" if status == cp_model.OPTIMAL else "FEASIBLE",
        seconds,
    )


#: Share of the time the textbook model gets first, for a start and a bound (solve_gap).
START_SHARE = 0.15
#: Agents re-solved together in one neighbourhood, at first and at most (it grows when the
#: neighbourhoods of the current size are solved to optimality without gain).
NEIGHBOURHOOD = 4
NEIGHBOURHOOD_MOST = 8
#: Budget of one neighbourhood's solve, in CP-SAT's deterministic time.
NEIGHBOURHOOD_WORK = 0.25
#: Nodes of the branch and bound tried on a neighbourhood before CP-SAT (about 10 ms), and how many
#: nodes count as one unit of CP-SAT's deterministic time (both take one thread 1-2 s on this machine).
QUICK_NODES = 300_000
NODES_PER_WORK = 50_000_000
#: CP-SAT's deterministic time per second of the caller's time limit: a budget a machine of about
#: this speed spends in that time; it is the same on any machine, and the time limit stays a cap.
WORK_PER_SECOND = 0.8
#: Passes of the exchange descent after a round of neighbourhoods that gained something.
EXCHANGE_PASSES = 2


def solve_gap(
    instance: GapInstance,
    time_limit_s: float = 10.0,
    workers: int = 2,
    seed: int = 0,
    deterministic: bool = True,
    work: float | None = None,
) -> GapSolution:
    """The textbook model for START_SHARE of the time, then an exchange descent and a neighbourhood search.

    1. Plain CP-SAT on the textbook model gives a start and a bound.
    2. The LP relaxation (solver.gap.relaxation) gives a second bound, an affinity between agents
       (how many jobs both find nearly best), and each agent's capacity price, which the branch and
       bound of steps 3 and 4 uses for its bound.
    3. An exchange descent (solver.gap.exchange) places, exactly and by branch and bound, the jobs of
       every pair and every triple of agents (triples sampled beyond MOST_TRIPLES): milliseconds for
       what would cost CP-SAT seconds.
    4. A large neighbourhood search then re-solves the jobs of a few agents at a time exactly: by the
       same branch and bound when it completes within QUICK_NODES, else with CP-SAT, the best
       placement found as a hint, keeping a cheaper assignment. The agents of one neighbourhood are
       drawn by affinity (the first at random, each next one in proportion to its
       affinity with those drawn), so each solve works on agents that can trade jobs. With several
       workers, as many neighbourhoods of disjoint agents are solved at once, one thread each, and
       their gains add up; after a round that gained, the exchange descent runs again.

    The bound is the best of CP-SAT's and the LP's. `deterministic` (the default) counts every
    CP-SAT budget in deterministic time, the branch and bound in nodes (NODES_PER_WORK to a unit of
    it), the descent in passes, and takes the neighbourhoods'
    answers in a fixed order, so the same instance and seed give the same assignment on any machine;
    the time limit still caps the whole. Without it the budgets are wall-clock. `work` sets the
    deterministic budget of the whole solve (by default time_limit_s × WORK_PER_SECOND), START_SHARE
    of it for the start.
    """
    started = time.perf_counter()
    limit = started + time_limit_s
    sense = -1 if instance.sense == "max" else 1
    budget = time_limit_s * WORK_PER_SECOND if work is None else work
    start = solve_textbook(
        instance, START_SHARE * time_limit_s, workers, seed, deterministic, START_SHARE * budget
    )
    if start.agent_of is None and start.status == "UNKNOWN" and time.perf_counter() < limit:
        # No assignment yet, none proven impossible: the rest of the time goes to the same model.
        left_s = limit - time.perf_counter()
        start = solve_textbook(instance, left_s, workers, seed, deterministic, (1 - START_SHARE) * budget)
    if start.agent_of is None or start.status == "OPTIMAL":
        seconds = time.perf_counter() - started
        return GapSolution(start.agent_of, start.objective, start.bound, start.status, seconds)
    cost = sense * np.array(instance.cost, dtype=np.int64)  # minimised from here on
    use = np.array(instance.use, dtype=np.int64)
    capacity = np.array(instance.capacity, dtype=np.int64)
    relaxation = relax(cost, use, capacity)
    bound = start.bound
    if relaxation is not None:
        lp_bound = math.ceil(relaxation.bound - 1e-6)
        bound = sense * max(lp_bound, sense * start.bound) if start.bound is not None else sense * lp_bound
    affinity = relaxation.affinity if relaxation is not None else np.ones((instance.agents, instance.agents))
    lp_price = relaxation.price if relaxation is not None else np.zeros(instance.agents)
    agent_of, _ = exchange_descent(cost, use, capacity, start.agent_of, seed, deadline=limit, price=lp_price)
    rng = random.Random(seed)
    size = min(NEIGHBOURHOOD, instance.agents)
    left = (1 - START_SHARE) * budget if deterministic else None
    spent, fruitless = 0.0, 0
    lanes = max(1, min(workers, instance.agents // max(1, size)))
    with ThreadPoolExecutor(lanes) as pool:
        while time.perf_counter() < limit and (left is None or spent < left):
            groups = _related_groups(affinity, size, lanes, rng)
            solve_one = partial(
                _resolve,
                instance,
                (cost, use, capacity, lp_price),
                list(agent_of),
                seed=seed,
                limit=limit,
                deterministic=deterministic,
            )
            answers = list(pool.map(solve_one, groups))
            gained = False
            for moves, cost_change, proven, used in answers:
                spent += used
                if moves is not None and cost_change * sense < 0:
                    for j, i in moves.items():
                        agent_of[j] = i
                    fruitless, gained = 0, True
                elif proven:
                    fruitless += 1
            if gained:
                agent_of, _ = exchange_descent(
                    cost, use, capacity, agent_of, rng.randrange(1 << 30), EXCHANGE_PASSES, limit, lp_price
                )
            if fruitless >= 4 * instance.agents and size < min(NEIGHBOURHOOD_MOST, instance.agents):
                size, fruitless = size + 1, 0
                lanes = max(1, min(workers, instance.agents // size))
    objective, problems = evaluate(instance, agent_of)
    assert not problems, problems  # every step keeps capacities: a violation is a defect here
    better = start.objective is None or objective * sense <= start.objective * sense
    final = agent_of if better else start.agent_of
    value = objective if better else start.objective
    optimal = bound is not None and abs(value - bound) < 1e-9
    status = "OPTIMAL" if optimal else "FEASIBLE"
    return GapSolution(final, value, bound, status, time.perf_counter() - started)


def _related_groups(affinity: np.ndarray, size: int, lanes: int, rng: random.Random) -> list[list[int]]:
    """`lanes` disjoint groups of `size` agents: each starts at random, then grows by affinity."""
    m = affinity.shape[0]
    free = set(range(m))
    groups = []
    for _ in range(lanes):
        if len(free) < size:
            break
        group = [rng.choice(sorted(free))]
        free.discard(group[0])
        while len(group) < size:
            candidates = sorted(free)
            weights = [float(affinity[group, c].sum()) + 0.1 for c in candidates]
            pick = rng.choices(candidates, weights=weights)[0]
            group.append(pick)
            free.discard(pick)
        groups.append(sorted(group))
    return groups


def _resolve(
    instance: GapInstance,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    agent_of: list[int],
    agents: list[int],
    seed: int,
    limit: float,
    deterministic: bool,
) -> tuple[dict[int, int] | None, float, bool, float]:
    """Re-solve the jobs of `agents` among them: (new agent per moved job, cost change, proven, work).

    A branch and bound first (`arrays`: the minimised costs, uses, capacities and the LP's capacity
    prices), which settles most neighbourhoods of 20 jobs or so in about a millisecond; CP-SAT, from
    the best placement found, only when it stops unproven at QUICK_NODES.
    """
    cost, use, capacity, price = arrays
    group = np.asarray(agents, dtype=np.int64)
    held = np.asarray(agent_of, dtype=np.int64)
    jobs = [int(j) for j in np.flatnonzero(np.isin(held, group))]
    if not jobs:
        return None, 0.0, True, 0.0
    placement = np.empty(len(jobs), dtype=np.int64)
    current = int(cost[held[jobs], jobs].sum())
    value, nodes = cheapest_placement(
        np.ascontiguousarray(cost[np.ix_(group, jobs)]),
        np.ascontiguousarray(use[np.ix_(group, jobs)]),
        capacity[group].copy(),
        price[group].copy(),
        current,
        QUICK_NODES,
        placement,
    )
    quick = nodes / NODES_PER_WORK
    sense = -1 if instance.sense == "max" else 1
    hint = {j: agent_of[j] for j in jobs}
    if value < current:
        hint = {j: int(group[k]) for j, k in zip(jobs, placement, strict=True)}
    if nodes < QUICK_NODES:  # the search was complete: its answer is the optimum
        moves = {j: i for j, i in hint.items() if i != agent_of[j]}
        return (moves or None), sense * float(value - current) if moves else 0.0, True, quick
    model, x = _textbook_model(instance, agents, jobs)
    for j in jobs:
        for i in agents:
            if (i, j) in x:
                model.add_hint(x[i, j], hint[j] == i)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    left = limit - time.perf_counter()
    if left <= 0:
        return None, 0.0, False, quick
    solver.parameters.max_time_in_seconds = left if deterministic else min(left, NEIGHBOURHOOD_WORK)
    if deterministic:
        solver.parameters.max_deterministic_time = NEIGHBOURHOOD_WORK
    status = solver.solve(model)
    used = quick + (solver.deterministic_time if deterministic else solver.wall_time)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, 0.0, False, used
    moves = {}
    change = 0.0
    for j in jobs:
        i = next(i for i in agents if (i, j) in x and solver.value(x[i, j]))
        if i != agent_of[j]:
            moves[j] = i
            change += instance.cost[i][j] - instance.cost[agent_of[j]][j]
    return moves, change, status == cp_model.OPTIMAL, used


def _textbook_model(
    instance: GapInstance, agents: range | list[int], jobs: range | list[int]
) -> tuple[cp_model.CpModel, dict[tuple[int, int], cp_model.IntVar]]:
    """The textbook model of these jobs on these agents (all of each agent's capacity)."""
    model = cp_model.CpModel()
    x = {
        (i, j): model.new_bool_var(f"x[{i},{j}]")
        for i in agents
        for j in jobs
        if instance.use[i][j] <= instance.capacity[i]
    }
    for j in jobs:
        model.add_exactly_one(x[i, j] for i in agents if (i, j) in x)
    for i in agents:
        model.add(sum(instance.use[i][j] * x[i, j] for j in jobs if (i, j) in x) <= instance.capacity[i])
    total = sum(instance.cost[i][j] * v for (i, j), v in x.items())
    if instance.sense == "max":
        model.maximize(total)
    else:
        model.minimize(total)
    return model, x


def _cp_solver(
    time_limit_s: float, workers: int, seed: int, deterministic: bool, work: float | None = None
) -> cp_model.CpSolver:
    """A CP-SAT solver with this budget: wall-clock, or deterministic time (see WORK_PER_SECOND)."""
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    solver.parameters.max_time_in_seconds = time_limit_s
    if deterministic:
        solver.parameters.max_deterministic_time = time_limit_s * WORK_PER_SECOND if work is None else work
        solver.parameters.interleave_search = workers > 1
    return solver


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
