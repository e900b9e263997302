"""solver/ reads like a map: no module imports itself back through another, and package files stay
empty, so importing a lab's schedule loads nothing of the planner's solvers."""

from __future__ import annotations

import subprocess
import sys

import grimp
import networkx as nx


def test_no_module_of_the_solver_imports_itself_back_through_another() -> None:
    graph = grimp.build_graph("solver")
    imports = nx.DiGraph()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            imports.add_edge(module, imported)
    assert list(nx.simple_cycles(imports)) == []


def test_importing_the_lab_schedule_loads_no_planner_solver() -> None:
    probe = (
        "import sys, solver.jobshop.lab_schedule; "
        "print(sorted(m for m in sys.modules if m.startswith(('solver.allocation', 'solver.large', "
        "'solver.sparse', 'solver.gap', 'networkx'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
