"""Exact re-assignment of a few jobs among a few agents, by enumeration: the GAP's cheapest neighbourhood.

Why: a CP-SAT solve of even four agents' jobs costs about a tenth of a second of CPU on types D and
E (tight knapsacks are slow to prove), while every way to place a dozen jobs on two agents, or eight
on three, is tried at once with numpy in about a millisecond. A descent over every pair of agents
(`exchange_descent`) therefore removes every improving shift, swap and multi-job trade between two
agents for a fraction of the cost of one CP-SAT neighbourhood, and sampled triples of agents add
the three-way cycles a pair cannot make; solve_gap's CP-SAT neighbourhoods are left with the
moves that need more agents than that.

Pure and deterministic: the order of pairs is fixed, samples come from a generator seeded by the
caller, ties keep the current assignment.
"""

from __future__ import annotations

import itertools
import random
import time

import numpy as np

#: Most placements tried in one neighbourhood (agents ** jobs): bounds memory and time (~1 ms).
MOST_PLACEMENTS = 1 << 14
#: Triples of agents sampled per descent pass (all pairs are always tried).
TRIPLES = 60

_CODES: dict[tuple[int, int], np.ndarray] = {}


def _placements(agents: int, jobs: int) -> np.ndarray:
    """Every placement of `jobs` jobs on `agents` agents, as a (agents**jobs, jobs) matrix of indexes."""
    key = (agents, jobs)
    if key not in _CODES:
        codes = np.arange(agents**jobs, dtype=np.int64)[:, None]
        powers = agents ** np.arange(jobs, dtype=np.int64)[None, :]
        _CODES[key] = (codes // powers) % agents
    return _CODES[key]


def jobs_that_fit(agents: int) -> int:
    """Most jobs whose every placement on `agents` agents stays within MOST_PLACEMENTS."""
    k = 0
    while agents ** (k + 1) <= MOST_PLACEMENTS:
        k += 1
    return k


def best_placement(
    cost: np.ndarray,
    use: np.ndarray,
    capacity: np.ndarray,
    agent_of: np.ndarray,
    group: list[int],
    jobs: list[int],
) -> tuple[int, dict[int, int]]:
    """The cheapest placement of `jobs` (all held by agents of `group`) on `group`: (change ≤ 0, moves).

    The other jobs stay where they are and use their share of each agent's capacity. `moves` maps
    each job whose agent changes to its new agent; (0, {}) when the current placement is the best.
    """
    if not jobs:
        return 0, {}
    g = np.asarray(group, dtype=np.int64)
    j = np.asarray(jobs, dtype=np.int64)
    codes = _placements(len(group), len(jobs))
    held = np.isin(agent_of, g)
    held[j] = False
    fixed = np.array([int(use[i, held & (agent_of == i)].sum()) for i in group], dtype=np.int64)
    room = capacity[g] - fixed
    sub_cost = cost[np.ix_(g, j)]  # len(group) × len(jobs)
    sub_use = use[np.ix_(g, j)]
    columns = np.arange(len(jobs))
    total = sub_cost[codes, columns].sum(axis=1)
    placed_use = sub_use[codes, columns]
    feasible = np.ones(len(codes), dtype=bool)
    for k in range(len(group)):
        feasible &= np.where(codes == k, placed_use, 0).sum(axis=1) <= room[k]
    index_of = {agent: k for k, agent in enumerate(group)}
    current = int(sum(cost[agent_of[job], job] for job in jobs))
    if not feasible.any():
        return 0, {}
    values = np.where(feasible, total, np.iinfo(np.int64).max)
    pick = int(np.argmin(values))
    change = int(values[pick]) - current
    if change >= 0:
        return 0, {}
    moves = {}
    for job, k in zip(jobs, codes[pick].tolist(), strict=True):
        if index_of[int(agent_of[job])] != k:
            moves[job] = group[k]
    return change, moves


def exchange_descent(
    cost: np.ndarray,
    use: np.ndarray,
    capacity: np.ndarray,
    agent_of: list[int],
    seed: int,
    passes: int = 20,
    deadline: float | None = None,
) -> tuple[list[int], int]:
    """Best placements over every pair of agents and sampled triples, until a pass gains nothing.

    When a pair or triple holds more jobs than its enumeration allows, a sample of them (drawn from
    `random.Random(seed)`) is re-placed and the rest stay. `agent_of` must be feasible; the result
    is feasible too, returned with the total cost change (≤ 0). `deadline` (a `time.perf_counter`
    value) stops it early, between two neighbourhoods.
    """
    m = cost.shape[0]
    rng = random.Random(seed)
    agents = np.asarray(agent_of, dtype=np.int64).copy()
    total = 0
    for _ in range(passes):
        gained = 0
        groups: list[tuple[int, ...]] = list(itertools.combinations(range(m), 2))
        if m >= 3:
            groups += [tuple(sorted(rng.sample(range(m), 3))) for _ in range(TRIPLES)]
        for group in groups:
            if deadline is not None and time.perf_counter() > deadline:
                return [int(i) for i in agents], total + gained
            held = [int(j) for j in np.flatnonzero(np.isin(agents, group))]
            fit = jobs_that_fit(len(group))
            jobs = held if len(held) <= fit else sorted(rng.sample(held, fit))
            change, moves = best_placement(cost, use, capacity, agents, list(group), jobs)
            if change < 0:
                for job, target in moves.items():
                    agents[job] = target
                gained += change
        total += gained
        if gained == 0:
            break
    return [int(i) for i in agents], total
