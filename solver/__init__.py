"""Pure planning: data in, plan out. No sockets, no HTTP, no database, no wall clock.

A map of the rooms, from the entry points down (import-linter keeps the arrows pointing down):

- `solver.allocation`: who makes what, where. `allocation.allocate.solve` is the planner's entry point
  (the one-model path for a network that fits, the large path beyond), `allocation.emergency`
  inserts an urgent order into a standing plan, `allocation.explain` says why each lab was or was not
  chosen.
- `solver.gap`: the generalised assignment problem on the same sparse core, measured against
  published optima.
- `solver.large`: the large path: a min-cost-flow network, its linear relaxation by column and row
  generation, the bound, and rounding to a whole plan.
- `solver.sparse`: the general sparse model (items, options, resources, pools, setups) and its
  LP + CP-SAT portfolio.
- `solver.jobshop`: scheduling inside a lab: the flexible job shop (CP-SAT beside a tabu search), the
  Brandimarte reader, and the lab's own schedule (`jobshop.lab_schedule`).
- `solver.model`: what every path shares: the problem and its parameters, the objective's weights,
  distances, capabilities, trails, the candidate labs of each order and the lines of a plan.
- `solver.check`: the independent validator. It reads only `solver.model`, never a solver, so a bug
  in a solver cannot hide in its own check.

Every package file stays empty of imports, so that a lab agent importing `solver.jobshop.lab_schedule`
does not load networkx and the planner's models, which only the planner needs.
"""
