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


def flow_days(lab: Lab, design: Design, groups: tuple[frozenset[str], ...]) -> float:
    """Days the last unit of a batch of `design` at `lab` needs beyond the work of its busiest
    machines: the steps on machines apart from theirs, each for one unit on its fastest machine, at
    the pace of the machine's hours spread over the day (`Machine.minutes_per_day`).

    The allocator counts a lab's machine minutes by a due date, step by step, as if the steps of a
    unit could run at once. They run in turn: a valve's assembly on the bench follows its print, so
    with the printers busy up to the moment the valves must leave, the last one is assembled after
    it, and leaves late: live, in the valve-lombardy shortage in Germany (seed 143), 16 of the 17
    jobs planned on time that arrived late had no job ahead of them that could have left later,
    and each was 2 to 15 minutes late. Steps that share machines with the busiest step queue on
    them and are counted there already: a lab whose one machine does everything needs no flow time.
    """
    pace = {m.id: m.minutes_per_day() for m in lab.machines}
    busiest: frozenset[str] = frozenset()
    most = -1.0
    for step, group in zip(design.steps, groups, strict=True):
        minutes_per_day = sum(pace.get(m, 0.0) for m in group)
        load = step.minutes / minutes_per_day if minutes_per_day > 0 else 0.0
        if load > most:
            most, busiest = load, group
    flow = 0.0
    for step, group in zip(design.steps, groups, strict=True):
        fastest = max((pace.get(m, 0.0) for m in group), default=0.0)
        if fastest > 0 and not group & busiest:
            flow += step.minutes / fastest
    return flow
