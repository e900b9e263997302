"""The generalised assignment problem (OR-Library types C, D, E) solved on the sparse core and by a
dedicated search beside it, so the core is measured against published optima.

- `assignment`: the files, the generator, the textbook model (plain CP-SAT) and `solve_gap`;
- `relaxation`: the LP relaxation, for a bound and the affinity between agents;
- `exchange`: exact re-assignment of a few jobs among two or three agents, by enumeration.
"""
