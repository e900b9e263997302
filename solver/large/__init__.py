"""The large path, for networks too big for one model: a min-cost-flow network over candidate
edges, its linear relaxation by column and row generation with an honest bound, and rounding to a
whole, valid plan (`path.solve_large`)."""
