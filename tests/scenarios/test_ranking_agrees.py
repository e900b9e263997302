"""The simulated replay's labs and the lab agent rank the same work the same (solver.jobshop.ranking).

The simulation queues a plan line as two jobs (its units planned on time, its units planned late);
the lab agent gets one ASSIGN per line, as the planner sends it (road time, units on time, planned
arrival), and splits it into the same two pieces. Both orders must be the same for any lines.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.workshop import job_of
from protocol.messages import Assign
from protocol.model import Location, Order
from protocol.okh import catalogue
from scenarios.sim import Job as SimJob
from scenarios.sim import dispatch_key
from solver.jobshop.lab_schedule import dispatch_pieces
from solver.model.geo import haversine_km
from solver.model.objective import transit_days

T0 = datetime(2026, 5, 4, 8, tzinfo=UTC)
LAB_AT = Location(lat=48.85, lon=2.35, place="Paris")
#: Delivery places from next door to 600 km away.
PLACES = [
    Location(lat=48.86, lon=2.36, place="Paris 11e"),
    Location(lat=49.44, lon=1.10, place="Rouen"),
    Location(lat=45.76, lon=4.84, place="Lyon"),
    Location(lat=43.30, lon=5.37, place="Marseille"),
]
KMH = 60.0  # the scenarios' transport speed and the planner's (solver.model.objective.TRANSPORT_KMH)

line = st.fixed_dictionaries(
    {
        "order": st.integers(0, 3),  # a few orders, so ties between lines of one order happen
        "due_h": st.integers(2, 60),
        "priority": st.sampled_from(["routine", "urgent", "emergency"]),
        "place": st.integers(0, len(PLACES) - 1),
        "on_time": st.integers(0, 4),
        "late": st.integers(0, 4),
        "arrive_after_due_h": st.integers(0, 30),
    }
).filter(lambda spec: spec["on_time"] + spec["late"] > 0)


def _order(spec: dict[str, int | str]) -> Order:
    """The order of a line: lines of the same order number share the order's due date and place."""
    number = int(spec["order"])
    return Order(
        id=f"o{number}",
        design="finger-splint",
        quantity=100,
        due_at=T0 + timedelta(hours=int(spec["due_h"])),
        delivery=PLACES[int(spec["place"])],
        priority=str(spec["priority"]),  # type: ignore[arg-type]
        created_at=T0,
    )


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(line, min_size=1, max_size=8))
def test_the_simulated_lab_and_the_lab_agent_take_the_same_pieces_in_the_same_order(
    lines: list[dict[str, int | str]],
) -> None:
    design = catalogue()["finger-splint"]
    orders: dict[str, Order] = {}
    for spec in lines:  # the first line of an order fixes it
        orders.setdefault(f"o{spec['order']}", _order(spec))

    sim_queue: list[tuple[SimJob, tuple[int, bool]]] = []
    assigns: list[Assign] = []
    seq = 0
    for index, spec in enumerate(lines):
        order = orders[f"o{spec['order']}"]
        on_time, late = int(spec["on_time"]), int(spec["late"])
        arrive_by = order.due_at + timedelta(hours=int(spec["arrive_after_due_h"])) if late else order.due_at
        # the simulation's commit (scenarios.sim.Simulation._commit): on-time units, then late ones
        if on_time:
            seq += 1
            sim_queue.append((SimJob(order, on_time, seq, on_time, arrive_by), (index, False)))
        if late:
            seq += 1
            sim_queue.append((SimJob(order, late, seq, 0, arrive_by), (index, True)))
        # the planner's ASSIGN of the same line (planner.mesh: road time as planner.core counts it)
        assigns.append(
            Assign(
                assignment_id=f"{order.id}-a{index}",
                order_id=order.id,
                design=design,
                quantity=on_time + late,
                due_at=order.due_at,
                delivery=order.delivery,
                priority=order.priority,
                road_hours=transit_days(haversine_km(LAB_AT, order.delivery), KMH) * 24.0,
                on_time_units=on_time,
                arrive_by=arrive_by,
            )
        )

    simulated = [tag for _, tag in sorted(sim_queue, key=lambda item: dispatch_key(item[0], LAB_AT, KMH))]
    by_id = {a.assignment_id: index for index, a in enumerate(assigns)}
    agent = [
        (by_id[piece.job.id], piece.first > 0 or piece.job.on_time == 0)
        for piece in dispatch_pieces([job_of(a) for a in assigns])
    ]
    assert agent == simulated


def test_a_line_split_in_two_keeps_its_on_time_units_first_and_its_late_units_after_other_work() -> None:
    design = catalogue()["finger-splint"]
    due = T0 + timedelta(hours=20)
    split = Assign(
        assignment_id="o1-a1",
        order_id="o1",
        design=design,
        quantity=5,
        due_at=due,
        delivery=PLACES[0],
        priority="urgent",
        road_hours=1.0,
        on_time_units=2,
        arrive_by=due + timedelta(hours=24),
    )
    other = split.model_copy(
        update={
            "assignment_id": "o2-a1",
            "order_id": "o2",
            "due_at": due + timedelta(hours=5),
            "on_time_units": 3,
            "arrive_by": due + timedelta(hours=10),
        }
    )
    pieces = [(p.job.id, p.first, p.count) for p in dispatch_pieces([job_of(split), job_of(other)])]
    assert pieces == [("o1-a1", 0, 2), ("o2-a1", 0, 3), ("o2-a1", 3, 2), ("o1-a1", 2, 3)]
