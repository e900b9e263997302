"""Exact re-assignment of a few jobs among a few agents, by branch and bound: the cheapest neighbourhood.

Why: a CP-SAT solve of even four agents' jobs costs a few hundredths of a second on types D and E
(tight knapsacks are slow to prove, and each solve has its set-up), while a compiled depth-first
branch and bound settles the jobs of two or three agents, and most neighbourhoods of four, in well
under a millisecond. What makes it fast is its second bound: each job at its cheapest agent with
the agent's use charged at its capacity price in the LP (solver.gap.relaxation), less that price
times the room left. It holds for any prices, and on these tight instances it is within a few
units of the optimum, so most branches close at once. A descent over every pair and every triple
of agents (`exchange_descent`) therefore removes every improving shift, swap and multi-job trade
among two or three agents; solve_gap's larger neighbourhoods use the same search first
(`cheapest_placement`), and CP-SAT where it stops unproven.

Pure and deterministic: pairs and triples come in a fixed order, samples (only where a group holds
more jobs than MOST_JOBS, or there are more triples than MOST_TRIPLES) from generators seeded by
the caller, ties keep the current assignment, and every search is bounded in
nodes, not seconds. The kernels compile once per machine (seconds; `compile_ahead`), then load
from numba's cache.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
from numba import njit

#: Most jobs of a pair, and of a triple, of agents placed anew at once (a sample when they hold more).
#: The branch and bound's work grows with them; at these sizes a whole descent over 20 agents' pairs
#: and triples, from CP-SAT's first assignment, takes about 50 ms.
MOST_JOBS = {2: 24, 3: 14}
#: Most nodes of one neighbourhood's search: a bound on its work, counted, so the answer is the same on
#: any machine (the best placement found within it when it runs out).
NODE_LIMIT = 50_000
#: Every triple of agents is tried in a pass when there are at most this many (20 agents: 1,140),
#: else this many drawn at random. All pairs are always tried.
MOST_TRIPLES = 2_000
#: Groups searched per call of the compiled code: the deadline is checked between two calls.
GROUPS_PER_CALL = 64


@njit(cache=True, nogil=True)
def cheapest_placement(sub_cost, sub_use, room, price, current, node_limit, placement) -> tuple[int, int]:
    """Depth-first branch and bound: the cheapest placement of the jobs (columns) on the agents (rows)
    within `room`, if it costs less than `current`; written to `placement`. Returns its cost (or
    `current` when none is cheaper) and the nodes searched: fewer than `node_limit` means the search
    was complete, so the cost is the optimum (or `current` is).

    Compiled without the interpreter lock, so the neighbourhoods of several threads run at once.

    Two lower bounds prune: each job left at its cheapest agent; and the same with each agent's use
    charged at its `price` (≥ 0, the LP's value of its capacity) less the room left times the price,
    which holds for any prices and is far tighter where capacity binds (types D and E).
    """
    agents, jobs = sub_cost.shape
    if jobs == 0:
        return current, 0  # nothing to place: the current (empty) placement stands
    # Jobs whose cheapest and second cheapest agents differ most first: the costly choices branch early.
    regret = np.zeros(jobs, dtype=np.int64)
    for k in range(jobs):
        first, second = np.iinfo(np.int64).max, np.iinfo(np.int64).max
        for a in range(agents):
            c = sub_cost[a, k]
            if c < first:
                first, second = c, first
            elif c < second:
                second = c
        regret[k] = (second - first) if agents > 1 else 0
    order = np.argsort(-regret, kind="mergesort")
    # Each job's agents, cheapest first; and the least the jobs from each depth on can cost.
    ranked = np.empty((jobs, agents), dtype=np.int64)
    floor = np.zeros(jobs + 1, dtype=np.int64)
    priced_floor = np.zeros(jobs + 1)
    for d in range(jobs - 1, -1, -1):
        k = order[d]
        ranked[d] = np.argsort(sub_cost[:, k], kind="mergesort")
        floor[d] = floor[d + 1] + sub_cost[ranked[d, 0], k]
        least = np.inf
        for a in range(agents):
            least = min(least, sub_cost[a, k] + price[a] * sub_use[a, k])
        priced_floor[d] = priced_floor[d + 1] + least
    left = room.copy()
    priced_room = 0.0
    for a in range(agents):
        priced_room += price[a] * left[a]
    slot = np.full(jobs, -1, dtype=np.int64)  # index into ranked[d] of the agent chosen at depth d
    best, partial, depth, nodes = current, 0, 0, 0
    while depth >= 0:
        k = order[depth]
        r = slot[depth]
        if r >= 0:  # take back this depth's previous choice
            a = ranked[depth, r]
            left[a] += sub_use[a, k]
            priced_room += price[a] * sub_use[a, k]
            partial -= sub_cost[a, k]
        r += 1
        while r < agents:
            a = ranked[depth, r]
            if partial + sub_cost[a, k] + floor[depth + 1] >= best:
                r = agents  # agents come cheapest first: none after this one can do better
                break
            if sub_use[a, k] <= left[a]:
                rest = priced_floor[depth + 1] - (priced_room - price[a] * sub_use[a, k])
                if partial + sub_cost[a, k] + rest < best - 1e-9:
                    break
            r += 1
        if r >= agents:
            slot[depth] = -1
            depth -= 1
            continue
        a = ranked[depth, r]
        slot[depth] = r
        left[a] -= sub_use[a, k]
        priced_room -= price[a] * sub_use[a, k]
        partial += sub_cost[a, k]
        nodes += 1
        if depth == jobs - 1:
            best = partial
            for d in range(jobs):
                placement[order[d]] = ranked[d, slot[d]]
        else:
            depth += 1
        if nodes >= node_limit:
            break
    return best, nodes


@njit(cache=True)
def _place_group(cost, use, capacity, price, agents, group, most, node_limit) -> int:
    """Re-place (a sample of at most `most` of) the jobs `group` holds at their cheapest; the change."""
    n = cost.shape[1]
    size = group.shape[0]
    held = np.empty(n, dtype=np.int64)
    count = 0
    for j in range(n):
        for g in range(size):
            if agents[j] == group[g]:
                held[count] = j
                count += 1
                break
    if count == 0:
        return 0
    if count > most:  # a sample: the first `most` of a partial shuffle, then in job order
        for t in range(most):
            pick = t + np.random.randint(count - t)
            held[t], held[pick] = held[pick], held[t]
        count = most
        held[:count].sort()
    jobs = held[:count]
    room = np.empty(size, dtype=np.int64)
    for g in range(size):
        room[g] = capacity[group[g]]
    for j in range(n):
        for g in range(size):
            if agents[j] == group[g]:
                room[g] -= use[group[g], j]
    sub_cost = np.empty((size, count), dtype=np.int64)
    sub_use = np.empty((size, count), dtype=np.int64)
    current = 0
    for t in range(count):
        j = jobs[t]
        current += cost[agents[j], j]
        for g in range(size):
            sub_cost[g, t] = cost[group[g], j]
            sub_use[g, t] = use[group[g], j]
            if agents[j] == group[g]:
                room[g] += use[group[g], j]  # the job's own use is free to place again
    placement = np.empty(count, dtype=np.int64)
    prices = np.empty(size)
    for g in range(size):
        prices[g] = price[group[g]]
    value = cheapest_placement(sub_cost, sub_use, room, prices, current, node_limit, placement)[0]
    if value >= current:
        return 0
    for t in range(count):
        agents[jobs[t]] = group[placement[t]]
    return value - current


@njit(cache=True)
def _place_groups(cost, use, capacity, price, agents, groups, most_pair, most_triple, node_limit) -> int:
    """Each group in turn (a row of agents; -1 pads a pair) re-placed at its cheapest; the total change."""
    gained = 0
    for row in range(groups.shape[0]):
        if groups[row, 2] < 0:
            gained += _place_group(cost, use, capacity, price, agents, groups[row, :2], most_pair, node_limit)
        else:
            gained += _place_group(cost, use, capacity, price, agents, groups[row], most_triple, node_limit)
    return gained


@njit(cache=True)
def _seed(seed: int) -> None:
    np.random.seed(seed)


def _groups(agents: int, rng: np.random.Generator) -> np.ndarray:
    """One pass's groups: every pair, then every triple (or MOST_TRIPLES drawn when there are more)."""
    pairs = [(a, b, -1) for a, b in itertools.combinations(range(agents), 2)]
    if agents < 3:
        return np.array(pairs, dtype=np.int64).reshape(-1, 3)
    if math.comb(agents, 3) <= MOST_TRIPLES:
        triples = list(itertools.combinations(range(agents), 3))
    else:
        triples = [tuple(sorted(rng.choice(agents, 3, replace=False))) for _ in range(MOST_TRIPLES)]
    return np.array(pairs + triples, dtype=np.int64).reshape(-1, 3)


def exchange_descent(
    cost: np.ndarray,
    use: np.ndarray,
    capacity: np.ndarray,
    agent_of: list[int],
    seed: int,
    passes: int = 20,
    deadline: float | None = None,
    price: np.ndarray | None = None,
) -> tuple[list[int], int]:
    """Best placements over every pair and every triple of agents, until a pass gains nothing.

    When a group holds more jobs than MOST_JOBS, a sample of them is re-placed and the rest stay;
    samples (of jobs, and of triples beyond MOST_TRIPLES) come from generators seeded with `seed`.
    `price` (each agent's capacity price, ≥ 0; the LP's) sharpens the search's bound: it changes how
    fast a group's search completes, never what a complete one finds. `agent_of` must be feasible;
    the result is feasible too, returned with the total cost change (≤ 0). `deadline` (a
    `time.perf_counter` value) stops it early, between two chunks of GROUPS_PER_CALL groups.
    """
    cost = np.ascontiguousarray(cost, dtype=np.int64)
    use = np.ascontiguousarray(use, dtype=np.int64)
    capacity = np.ascontiguousarray(capacity, dtype=np.int64)
    agents = np.asarray(agent_of, dtype=np.int64).copy()
    prices = np.zeros(cost.shape[0]) if price is None else np.ascontiguousarray(price, dtype=np.float64)
    rng = np.random.default_rng(seed)
    _seed(seed % (1 << 32))
    most_pair, most_triple = MOST_JOBS[2], MOST_JOBS[3]
    total = 0
    for _ in range(passes):
        gained = 0
        groups = _groups(cost.shape[0], rng)
        for lo in range(0, len(groups), GROUPS_PER_CALL):
            if deadline is not None and time.perf_counter() > deadline:
                return [int(i) for i in agents], total + gained
            chunk = groups[lo : lo + GROUPS_PER_CALL]
            gained += int(
                _place_groups(cost, use, capacity, prices, agents, chunk, most_pair, most_triple, NODE_LIMIT)
            )
        total += gained
        if gained == 0:
            break
    return [int(i) for i in agents], total


def compile_ahead() -> None:
    """Compile the kernels now (about 10 s once per machine, then read from numba's cache).

    They compile on their first call otherwise, inside the caller's time limit: the first solve on a
    fresh install would find less. `bench gap` and the benchmark call this before their clocks.
    """
    one = np.ones((3, 3), dtype=np.int64)
    room = np.full(3, 3, dtype=np.int64)
    exchange_descent(one, one, room, [0, 1, 2], seed=0, passes=1)
    cheapest_placement(one, one, room, np.zeros(3), 3, 10, np.empty(3, dtype=np.int64))
