"""Capability: which machines can run a step, which labs can make a design, and the step groups."""

from __future__ import annotations

from protocol.okh import catalogue
from solver.model.capability import can_make, eligible_machines, step_groups
from tests.solver.factory import NEAR, lab, machine, printer

FACE_SHIELD = catalogue()["face-shield"]
VALVE = catalogue()["charlotte-valve"]


def test_small_bed_printer_cannot_print_face_shield_headband() -> None:
    state = lab("a", NEAR, [printer("small", bed_mm=180), printer("big", bed_mm=250)])
    assert eligible_machines(state.lab, FACE_SHIELD.steps[0]) == {"big"}


def test_step_groups_follow_design_steps() -> None:
    state = lab("a", NEAR, [machine("combo", "fdm", "laser", bed_mm=300), machine("bench", "assembly")])
    assert step_groups(state.lab, FACE_SHIELD) == (
        frozenset({"combo"}),
        frozenset({"combo"}),
        frozenset({"bench"}),
    )


def test_lab_without_laser_cannot_make_face_shields() -> None:
    state = lab("a", NEAR, [printer(), machine("bench", "assembly")])
    assert not can_make(state, FACE_SHIELD)


def test_valve_needs_medical_grade_sla() -> None:
    plain = lab("a", NEAR, [machine("sla", "sla"), machine("bench", "assembly")])
    medical = lab("b", NEAR, [machine("sla", "sla", medical_grade=True), machine("bench", "assembly")])
    assert not can_make(plain, VALVE)
    assert can_make(medical, VALVE)


def test_lost_lab_cannot_make_anything() -> None:
    assert can_make(lab("a", NEAR), FACE_SHIELD)
    assert not can_make(lab("a", NEAR, live=False), FACE_SHIELD)
