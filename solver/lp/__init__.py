"""Linear programs handed to GLOP as arrays, below every solver that solves one:

- `glop`: an LP kept in GLOP between solves and grown by arrays of rows and columns, its basis
  carried over: the large path's relaxation, the bid prices and the sparse core's relaxation;
- `recorded`: a one-shot LP written through `pywraplp`'s calls (`NumVar`, `Constraint`,
  `SetCoefficient`) but recorded in lists and handed to GLOP whole: the federation's regional LPs.
"""
