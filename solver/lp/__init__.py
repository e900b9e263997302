"""Linear programs handed to GLOP as arrays, below every solver that solves one:

- `glop`: an LP kept in GLOP between solves and grown by arrays of rows and columns, its basis
  carried over: the large path's relaxation, the bid prices and the sparse core's relaxation; and,
  solved once, the federation's regional LPs (`solver.federation.region_lp` lays them out).
"""
