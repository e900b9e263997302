"""Work laid on a lab's machines by the planner: levelled over the machines able to run each step."""

from __future__ import annotations

import pytest

from planner.hours import spread
from protocol.model import Lab, Location, Machine
from protocol.okh import catalogue

LAB = Lab(
    id="lab-a",
    name="Lab A",
    location=Location(lat=45.0, lon=5.0),
    machines=[
        Machine(id="small", processes=["fdm"], hours_per_day=12, tags={"bed_mm": 180}),
        Machine(id="big-1", processes=["fdm"], hours_per_day=12, tags={"bed_mm": 250}),
        Machine(id="big-2", processes=["fdm"], hours_per_day=6, tags={"bed_mm": 250}),
        Machine(id="bench", processes=["assembly", "laser"], hours_per_day=10),
    ],
)


def test_work_fills_the_least_loaded_eligible_machines_first_and_keeps_every_minute() -> None:
    splint = catalogue()["finger-splint"]
    loaded = {"big-1": 720.0, "big-2": 360.0}  # both big printers a day full, the small one empty
    added = spread(LAB, splint, 40, loaded)  # 40 x 25 fdm minutes, 40 x 3 at the bench
    assert sum(added.values()) == pytest.approx(40 * 28)
    assert added["bench"] == pytest.approx(120)
    rest = 1000 - 720  # the small printer first, up to a day; then all three, each by its own hours
    assert added["small"] == pytest.approx(720 + rest * 12 / 30)
    assert added["big-1"] == pytest.approx(rest * 12 / 30)
    assert added["big-2"] == pytest.approx(rest * 6 / 30)


def test_a_step_only_some_machines_can_run_goes_to_them_alone() -> None:
    shield = catalogue()["face-shield"]
    added = spread(LAB, shield, 3)
    fdm = sum(s.minutes for s in shield.steps if s.process == "fdm") * 3
    assert "small" not in added  # the headband needs a 200 mm bed
    assert added["big-1"] == pytest.approx(fdm * 2 / 3) and added["big-2"] == pytest.approx(fdm / 3)
