"""Which machines of a lab can run which step, and so which labs can make which design.

A step runs on a machine that offers its process and meets its required tags. The set of machines
eligible for a step is that step's *group* at the lab; capacity is shared between groups that have
machines in common, which is why the allocator works with groups rather than with processes.
"""

from __future__ import annotations

from protocol.model import Design, Lab, Step
from solver.model.problem import LabState


def eligible_machines(lab: Lab, step: Step) -> frozenset[str]:
    """Ids of the machines of `lab` that can run `step` (process offered, required tags met)."""
    return frozenset(m.id for m in lab.machines if step.can_run_on(m))


def step_groups(lab: Lab, design: Design) -> tuple[frozenset[str], ...]:
    """For each step of `design`, in order, the machines of `lab` eligible for it (may be empty)."""
    return tuple(eligible_machines(lab, step) for step in design.steps)


def can_make(state: LabState, design: Design) -> bool:
    """True when the lab is live and every step of the design has at least one eligible machine."""
    return state.live and all(step_groups(state.lab, design))
