"""What is left of the labs once a plan is made.

`residual_labs` turns a plan into the labs' remaining state: each lab's allocated work is placed on
its machines by a max-flow (as the validator does) and added in front of the backlog, and the
materials are taken off the stock. Work added in front is conservative: whatever fits the residual
capacity by a due date also fits beside the plan's own work.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import networkx as nx

from protocol.model import Allocation
from solver.problem import LabState, Problem


def residual_labs(problem: Problem, allocations: list[Allocation]) -> list[LabState]:
    """The labs of `problem` once `allocations` are made (see the module docstring)."""
    by_lab: dict[str, list[Allocation]] = defaultdict(list)
    for a in allocations:
        by_lab[a.lab_id].append(a)
    design_of = {
        d.order.id: problem.designs[d.order.design]
        for d in problem.demands
        if d.order.design in problem.designs
    }
    states = []
    for state in problem.labs:
        mine = by_lab.get(state.lab.id)
        if not mine:
            states.append(state)
            continue
        graph = nx.DiGraph()
        stock = dict(state.stock)
        for k, a in enumerate(mine):
            design = design_of[a.order_id]
            for material, amount in design.materials_per_unit().items():
                stock[material] = max(0.0, stock.get(material, 0.0) - amount * a.quantity)
            for i, step in enumerate(design.steps):
                node = ("work", k, i)
                graph.add_edge("source", node, capacity=step.minutes * a.quantity)
                for machine in state.lab.machines:
                    if step.can_run_on(machine):
                        graph.add_edge(node, ("machine", machine.id))
        for machine in state.lab.machines:
            graph.add_edge(("machine", machine.id), "sink")
        _, flow = nx.maximum_flow(graph, "source", "sink")
        backlog = dict(state.backlog_minutes)
        for machine in state.lab.machines:
            placed = sum(f.get(("machine", machine.id), 0.0) for n, f in flow.items() if n != "source")
            backlog[machine.id] = backlog.get(machine.id, 0.0) + placed
        states.append(replace(state, backlog_minutes=backlog, stock=stock))
    return states
