"""The GAP's linear relaxation: a lower bound, and which agents compete for the same jobs.

Why: the LP of types D and E lies within about 1 % of the optimum, so its value is a valid bound
to report beside CP-SAT's, and its reduced costs say, for every job, which agents are nearly as
good as the best. Two agents that are both nearly best for many jobs are the ones whose jobs are
worth re-assigning together: `affinity` counts those jobs, and solve_gap draws its neighbourhoods
by it rather than blindly. GLOP is deterministic, so the same instance gives the same affinity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.linear_solver import pywraplp

#: Agents per job counted as nearly best (by reduced cost) when building the affinity.
NEAR_BEST = 3


@dataclass(frozen=True)
class Relaxation:
    """LP bound (in the minimisation sense) and the m × m affinity between agents (zero diagonal)."""

    bound: float
    affinity: np.ndarray
    #: Each agent's capacity price in the LP (≥ 0): what a unit of its capacity is worth.
    price: np.ndarray


def relax(cost: np.ndarray, use: np.ndarray, capacity: np.ndarray) -> Relaxation | None:
    """Solve the LP relaxation of the minimisation GAP (cost, use: m × n); None if it has no solution."""
    m, n = cost.shape
    lp = pywraplp.Solver.CreateSolver("GLOP")
    if lp is None:  # pragma: no cover - GLOP ships with ortools
        return None
    x = {(i, j): lp.NumVar(0.0, 1.0, "") for i in range(m) for j in range(n) if use[i, j] <= capacity[i]}
    assign = []
    for j in range(n):
        terms = [x[i, j] for i in range(m) if (i, j) in x]
        if not terms:
            return None
        assign.append(lp.Add(sum(terms) == 1))
    caps = [
        lp.Add(sum(int(use[i, j]) * x[i, j] for j in range(n) if (i, j) in x) <= int(capacity[i]))
        for i in range(m)
    ]
    lp.Minimize(sum(int(cost[i, j]) * v for (i, j), v in x.items()))
    if lp.Solve() != pywraplp.Solver.OPTIMAL:
        return None
    u = np.array([c.dual_value() for c in assign])
    v = np.array([c.dual_value() for c in caps])
    reduced = np.full((m, n), np.inf)
    for i, j in x:
        reduced[i, j] = cost[i, j] - u[j] - v[i] * use[i, j]
    near = np.argsort(reduced, axis=0, kind="stable")[: min(NEAR_BEST, m)]
    affinity = np.zeros((m, m))
    for j in range(n):
        for a, b in zip(*np.meshgrid(near[:, j], near[:, j]), strict=True):
            for p, q in zip(a, b, strict=True):
                if p != q:
                    affinity[p, q] += 1.0
    return Relaxation(float(lp.Objective().Value()), affinity, np.maximum(-v, 0.0))
