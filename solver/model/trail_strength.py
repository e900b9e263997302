"""How strong each trail is against the other labs able to make its design.

A trail's discount is meant to prefer a lab known to deliver over one not known to. When every lab
that makes a design has delivered it as well (a surge that keeps them all busy), no lab is better
known than another, and a discount for all of them would only lower the price of distance: plans
would ship farther for nothing. So a trail earns its strength above the design's reference, the
mean trail over the live labs able to make the design (neutral for those without one), never below
neutral (`TrailRules.strength`). In the ant-colony systems trails come from, a trail biases a choice
through its share among the alternatives, not through its size: the same idea.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from protocol.model import Design, Lab
from solver.model.capability import step_groups
from solver.model.problem import Problem
from solver.model.trails import DEFAULT_RULES, TrailKey, TrailRules


def design_references(
    trails: Mapping[TrailKey, float],
    labs: Iterable[Lab],
    designs: Mapping[str, Design],
    rules: TrailRules = DEFAULT_RULES,
) -> dict[str, float]:
    """Per design with a trail, the mean trail over `labs` able to make it (neutral for those without)."""
    labs = list(labs)
    reference: dict[str, float] = {}
    for design_id in {design_id for design_id, _ in trails}:
        design = designs.get(design_id)
        able = [lab.id for lab in labs if design is not None and all(step_groups(lab, design))]
        taus = [trails.get((design_id, lab_id), rules.neutral) for lab_id in able]
        reference[design_id] = sum(taus) / len(taus) if taus else rules.neutral
    return reference


def trail_strengths(
    trails: Mapping[TrailKey, float], reference: Mapping[str, float], rules: TrailRules = DEFAULT_RULES
) -> dict[TrailKey, float]:
    """Each trail's strength (0 to 1) above its design's `reference` (`design_references`)."""
    return {key: rules.strength(tau, reference.get(key[0])) for key, tau in trails.items()}


#: Where a problem keeps its strengths once found: a solve reads them from its candidates, its model
#: or network, and its bound (40 ms for 5,000 labs and two designs, each time).
_KEPT = "_trail_strengths"


def problem_trail_strengths(problem: Problem, rules: TrailRules = DEFAULT_RULES) -> dict[TrailKey, float]:
    """The strengths of a problem's trails against the mean trail of its live labs able to make each
    design; found once per problem and rules (a problem is immutable)."""
    if not problem.trails:
        return {}
    kept = problem.__dict__.get(_KEPT)
    if kept is not None and kept[0] is rules:
        return kept[1]
    live = [s.lab for s in problem.labs if s.live]
    strengths = trail_strengths(
        problem.trails, design_references(problem.trails, live, problem.designs, rules), rules
    )
    object.__setattr__(problem, _KEPT, (rules, strengths))  # frozen: kept beside its fields, not in them
    return strengths
