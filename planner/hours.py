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


def deferred_late_work(
    lab: Lab, jobs: list[tuple[Design, int, float]], backlog: dict[str, float]
) -> dict[str, tuple[tuple[float, float], ...]]:
    """Machine id -> the late work a lab holds that waits behind new work leaving sooner, as
    (days from now until it must leave, minutes) (`solver.model.problem.LabState.deferred_minutes`).

    `jobs` are (design, units planned late and not made yet, days until they must leave by the
    plan's arrival for them). A lab takes its work earliest leave-by first, so an order that can
    still be on time goes ahead of units already late; counted as the first thing the lab works,
    late work queued at the nearest labs left no room for the next batch of emergencies in the
    plans, and the lab made them late or another lab did. Left out: work that must leave now, and
    one unit per machine (it may be running, and a unit started keeps its machine). No machine
    defers more than its backlog (`backlog`), the earliest parts kept first.
    """
    parts: dict[str, list[tuple[float, float]]] = {}
    running: dict[str, float] = {}  # machine id -> minutes of the longest unit step it may be running
    for design, units, days in sorted(jobs, key=lambda job: job[2]):
        if units <= 0:
            continue
        for step in design.steps:
            for m in lab.machines:
                if step.can_run_on(m):
                    running[m.id] = max(running.get(m.id, 0.0), step.minutes)
        if days <= 0:
            continue
        for machine_id, minutes in spread(lab, design, units).items():
            parts.setdefault(machine_id, []).append((days, minutes))
    deferred: dict[str, tuple[tuple[float, float], ...]] = {}
    for machine_id, found in parts.items():
        total = sum(minutes for _, minutes in found)
        keep = running.get(machine_id, 0.0) + max(0.0, total - backlog.get(machine_id, 0.0))
        left = []
        for days, minutes in found:  # earliest first: what the lab works first is kept first
            kept = min(keep, minutes)
            keep -= kept
            if minutes - kept > 1e-9:
                left.append((days, minutes - kept))
        if left:
            deferred[machine_id] = tuple(left)
    return deferred
