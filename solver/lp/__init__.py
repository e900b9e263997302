"""Linear programs built from numpy arrays and kept in GLOP between solves (`glop`): the engine under
the large path's relaxation, the bid prices and the sparse core's relaxation, below all of them."""
