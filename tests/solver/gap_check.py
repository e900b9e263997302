"""An independent check of a GAP assignment, written apart from solver.gap so its bugs cannot hide here.

It rebuilds the 0/1 assignment matrix from the answer and checks the two families of constraints of
the textbook model: every job on exactly one agent, and every agent's load within its capacity.
"""

from __future__ import annotations


def gap_violations(
    cost: list[list[int]], use: list[list[int]], capacity: list[int], agent_of: list[int] | None
) -> tuple[int | None, list[str]]:
    """(objective, what is violated) of `agent_of` against the raw matrices; objective None if unusable."""
    agents, jobs = len(capacity), len(cost[0]) if cost else 0
    if agent_of is None:
        return None, ["no assignment"]
    if len(agent_of) != jobs:
        return None, [f"{len(agent_of)} jobs answered, the instance has {jobs}"]
    x = [[0] * jobs for _ in range(agents)]
    problems = []
    for j, i in enumerate(agent_of):
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < agents:
            problems.append(f"job {j}: agent {i!r} does not exist")
            continue
        x[i][j] += 1
    for j in range(jobs):
        placed = sum(x[i][j] for i in range(agents))
        if placed != 1:
            problems.append(f"job {j}: placed {placed} times")
    for i in range(agents):
        load = sum(use[i][j] * x[i][j] for j in range(jobs))
        if load > capacity[i]:
            problems.append(f"agent {i}: load {load} over capacity {capacity[i]}")
    objective = sum(cost[i][j] * x[i][j] for i in range(agents) for j in range(jobs))
    return (None if problems else objective), problems
