"""Work laid on a lab's machines when the planner does not know the lab's own schedule.

The planner counts work against a lab's machines in two cases where the lab has not said where it
runs: work assigned but not yet acknowledged, and the hours of everything the lab made or still
makes for it (see `PlannerCore._lab_state`). Each step's minutes are poured onto the machines able
to run it, filling the least loaded first (load measured in days of each machine's own hours), so
that one machine is not counted full while a sibling that could take the same work stays empty.
"""

from __future__ import annotations

from protocol.model import Design, Lab


def spread(lab: Lab, design: Design, units: int, loaded: dict[str, float] | None = None) -> dict[str, float]:
    """Machine id -> nominal minutes of `units` units of `design`, levelled over the eligible machines.

    `loaded` gives the minutes already on each machine (not changed); the new work goes where the
    machines' loads, in days of their own hours, are lowest, rising together. Steps no machine of the
    lab can run are left out (the validator refuses such work on its own).
    """
    load = dict(loaded or {})
    added: dict[str, float] = {}
    for step in design.steps:
        eligible = [m for m in lab.machines if step.can_run_on(m)]
        if not eligible:
            continue
        for machine_id, minutes in _pour(
            [(m.id, m.minutes_per_day(), load.get(m.id, 0.0)) for m in eligible], step.minutes * units
        ).items():
            load[machine_id] = load.get(machine_id, 0.0) + minutes
            added[machine_id] = added.get(machine_id, 0.0) + minutes
    return added


def _pour(machines: list[tuple[str, float, float]], amount: float) -> dict[str, float]:
    """Water-filling: (id, minutes per day, minutes loaded) -> minutes of `amount` each machine takes.

    The least loaded machines (in days) rise first, then together, until `amount` is placed.
    """
    ranked = sorted(machines, key=lambda m: m[2] / m[1])
    level = ranked[0][2] / ranked[0][1]
    rate = 0.0
    left = amount
    count = 0
    while count < len(ranked):
        rate += ranked[count][1]
        count += 1
        next_level = ranked[count][2] / ranked[count][1] if count < len(ranked) else float("inf")
        room = rate * (next_level - level)
        if room >= left:
            level += left / rate
            break
        left -= room
        level = next_level
    return {mid: max(0.0, level * per_day - loaded) for mid, per_day, loaded in ranked[:count]}


def add(totals: dict[str, float], extra: dict[str, float]) -> dict[str, float]:
    """Per machine, `totals` plus `extra` (a new dict)."""
    out = dict(totals)
    for key, value in extra.items():
        out[key] = out.get(key, 0.0) + value
    return out
