"""What every path of the solver shares: the problem, its parameters and weights, distances,
capabilities, trails, the candidate labs of each order, and the lines a plan is written in."""
