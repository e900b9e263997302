"""The generalised assignment problem (OR-Library types C, D, E) solved on the sparse core and by a
neighbourhood search beside it, so the core is measured against published optima."""
