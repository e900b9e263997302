"""How much late work a lab is sent ahead: only what its machines reach within a window.

Work queued at a lab never moves (the planner does not take back work a lab may have started). In
a shortage, a planner that commits a whole day of a lab's late work at each plan fills the queue of
the one lab able to make a design with units already late, and an order that arrives an hour later,
which that lab could still make on time, waits behind them: valve-lombardy in France (seed 133),
live, made 4.2 % of its valves on time with a one-day window where the same replay with six-hour
rounds made 26.5 % (docs/live-vs-sim.md). A late unit loses little by waiting for the next plan; an
order that can still be on time loses its chance. So work planned on time is sent as planned, and
late work only as far as the lab's machines reach within `hours` of now, counting what is already
queued there; the rest stays planned, and the next plan places it again beside whatever came in.

A live planner plans on events, often many times an hour, so a window filled at every plan keeps the
lab's queue full of late work, and every new order waits the whole window behind it. The replay's
rounds fill a queue once a round, and it runs down in between. So a lab is sent late work of a
design only once what is queued on that design's machines runs low (under `REFILL_SHARE` of the
window, or the hours the caller gives), and is then topped up to the window.

Pure: no clock; it imports only the shared model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from protocol.model import Allocation, Design
from solver.model.capability import step_groups
from solver.model.lines import part_of
from solver.model.problem import LabState, free_minutes

#: The window by default: the simulated replay's commit window in a shortage of emergency valves
#: (valve-lombardy's six-hour rounds), where the planner's late work of a whole day cost on-time
#: valves; in hourly replays on the live planner's one-day grid it took on-time valves from 7.1 % to
#: 17.2 % (France, seed 133) and from 14.2 % to 38.5 % (seed 72), with the same valves made.
LATE_WORK_HOURS = 6.0

#: A lab is topped up with late work once its queue on the design's machines runs under this share
#: of the window: an hour of the default 6. In hourly replays on the live planner's one-day grid
#: (docs/live-vs-sim.md, "Late work topped up"), valves on time when a lab is topped up at every
#: plan / under 3 hours of queue / under 1 hour: valve-lombardy in France (seed 133) 17.2 / 17.2 /
#: 21.8 %, in Spain (153) 29.0 / 32.1 / 42.0 %, in Great Britain (8) 46.3 / 51.8 / 58.2 %, in
#: Germany (143) 59.8 / 65.7 / 61.8 %, at seed 72 38.5 / - / 38.4 %; the same at the built-in, at
#: seeds 133 and 147, in Germany (41) and in Italy (8, 155). Fill moved by 0.7 points at most.
REFILL_SHARE = 1 / 6


def queued_hours(state: LabState, groups: tuple[frozenset[str], ...]) -> float:
    """Hours of work queued at a lab on the machines of a design's busiest step: its backlog there
    over those machines' working minutes per hour."""
    pace = {m.id: m.minutes_per_day() / 24.0 for m in state.lab.machines}
    hours = 0.0
    for group in groups:
        per_hour = sum(pace.get(m, 0.0) for m in group)
        if per_hour > 0:
            hours = max(hours, sum(state.backlog_minutes.get(m, 0.0) for m in group) / per_hour)
    return hours


def _take(room: dict[str, float], groups: tuple[frozenset[str], ...], design: Design, units: int) -> float:
    """Spend `units` units' minutes from each step's machines, the freest first; the minutes the
    machines could not cover (0 when the units fit)."""
    short = 0.0
    for step, group in zip(design.steps, groups, strict=True):
        need = units * step.minutes
        for m in sorted(group, key=lambda m: -room[m]):
            used = min(need, room[m])
            room[m] -= used
            need -= used
            if need <= 1e-9:
                break
        short += max(0.0, need)
    return short


def _most_that_fit(
    room: dict[str, float], groups: tuple[frozenset[str], ...], design: Design, most: int
) -> int:
    """The most units of `design`, up to `most`, whose steps the free minutes cover (a machine that
    serves two steps is counted once)."""
    low, high = 0, most
    while low < high:
        mid = (low + high + 1) // 2
        if _take(dict(room), groups, design, mid) <= 1e-6:
            low = mid
        else:
            high = mid - 1
    return low


def late_work_within(
    sent: list[Allocation],
    states: Mapping[str, LabState],
    designs: Mapping[str, Design],
    hours: float,
    refill_hours: float | None = None,
) -> list[Allocation]:
    """`sent` with the late units each lab is sent cut to what its machines reach within `hours`.

    `states` are the labs by id (their queues as `backlog_minutes`), `designs` each allocation's
    design by order id. Units planned on time are kept whole and take the room first; late units
    follow in the order the lab would take them up (planned arrival, then order id), and only where
    the lab's queue on their design's machines is under `refill_hours` (by default `REFILL_SHARE`
    of the window). A lab or design not known is left as it was sent. The units cut are on the plan
    still, for the next plan.
    """
    if hours <= 0:
        raise ValueError(f"the late-work window must be above 0 hours, got {hours}")
    refill = hours * REFILL_SHARE if refill_hours is None else refill_hours
    if not 0 < refill <= hours:
        raise ValueError(f"a lab is topped up under 0 to {hours} hours of queue, not {refill}")
    # The window holds the lab's whole queue, its late work included (not `deferred_minutes`).
    rooms = {
        lab_id: free_minutes(replace(state, deferred_minutes={}), hours / 24.0)
        for lab_id, state in states.items()
    }
    groups: dict[tuple[str, str], tuple[frozenset[str], ...]] = {}

    def groups_of(lab_id: str, design: Design) -> tuple[frozenset[str], ...]:
        key = (lab_id, design.id)
        if key not in groups:
            groups[key] = step_groups(states[lab_id].lab, design)
        return groups[key]

    known = [i for i, a in enumerate(sent) if a.lab_id in states and a.order_id in designs]
    for i in known:  # on-time units take the room first, whole
        a = sent[i]
        on_time = a.quantity - a.late_units
        if on_time > 0:
            design = designs[a.order_id]
            _take(rooms[a.lab_id], groups_of(a.lab_id, design), design, on_time)
    kept: dict[int, int] = {}  # index in `sent` -> late units kept
    late_first = sorted(
        (i for i in known if sent[i].late_units > 0),
        key=lambda i: (sent[i].arrive_by is None, sent[i].arrive_by, sent[i].order_id),
    )
    for i in late_first:
        a = sent[i]
        design = designs[a.order_id]
        group = groups_of(a.lab_id, design)
        if queued_hours(states[a.lab_id], group) >= refill:
            kept[i] = 0  # its queue of this design is still full enough: late work waits
            continue
        units = _most_that_fit(rooms[a.lab_id], group, design, a.late_units)
        _take(rooms[a.lab_id], group, design, units)
        kept[i] = units
    out = []
    for i, a in enumerate(sent):
        if i not in kept or kept[i] == a.late_units:
            out.append(a)
            continue
        quantity = a.quantity - a.late_units + kept[i]
        if quantity <= 0:
            continue
        out.append(part_of(a, quantity, kept[i]))
    return out
