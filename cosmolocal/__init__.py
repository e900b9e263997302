"""The `cosmolocal` command line: a thin layer over protocol, solver, nodes, planner and scenarios."""
