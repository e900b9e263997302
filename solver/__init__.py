"""Pure planning: data in, plan out. No sockets, no HTTP, no database, no wall clock.

Import from the modules (`solver.allocate.solve`, `solver.check.check`, `solver.problem`): this
package file stays empty so that a lab agent importing `solver.schedule` does not load OR-Tools
and networkx, which only the planner needs.
"""
