"""What must hold after any fault, checked from the recorded history of a run.

The history is what each party kept, not what the checker saw happen: the planner's ledger (its
append-only event log, read from the SQLite file), each lab's journal (what the lab says it
accepted and made), the orders the requester was told were accepted, and the requester's record of
how fast `/health` answered. Each check returns a `Verdict`; a run passes when all of them do.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from protocol.model import Allocation, CostTerms, Lab, Order, Plan
from protocol.okh import catalogue
from solver.check import check
from solver.model.problem import Demand, InTransit, LabState, Problem

#: Planner assignment states whose units are still expected from the lab.
_ACTIVE = {"assigned", "accepted", "running"}
#: /health must answer within this many seconds whenever the planner process is up.
HEALTH_LIMIT_S = 1.0


@dataclass(frozen=True)
class Verdict:
    """One invariant: its name, whether it held, and what was found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class HistoryEvent:
    """One event of the planner's ledger."""

    seq: int
    at: datetime
    kind: str
    data: dict[str, Any]


def read_ledger(path: Path) -> list[HistoryEvent]:
    """Every event of a planner's ledger, oldest first, read without writing to the file."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT seq, at, kind, data FROM events ORDER BY seq").fetchall()
    return [HistoryEvent(r[0], datetime.fromisoformat(r[1]), r[2], json.loads(r[3])) for r in rows]


def read_late_units(path: Path) -> dict[tuple[int, str, str], int]:
    """(plan version, order id, lab id) -> units that plan placed after the order's due date.

    A plan may place units late when no lab can make them in time (late beats never); the validator
    then holds those units to the planning horizon only, and so does `within_capacity_and_stock`.
    """
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT record FROM plans").fetchall()
    late = {}
    for (record,) in rows:
        plan = Plan.model_validate_json(record)
        for a in plan.allocations:
            if a.late_units:
                late[plan.version, a.order_id, a.lab_id] = a.late_units
    return late


def read_journals(folder: Path) -> dict[str, dict[str, Any]]:
    """Lab id -> the journal state each lab left in `folder` (`LAB.journal.json`)."""
    journals = {}
    for path in sorted(folder.glob("*.journal.json")):
        saved = json.loads(path.read_text(encoding="utf-8"))
        journals[saved["lab_id"]] = saved["state"]
    return journals


def _journal_jobs(journals: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str, int, int, str]]:
    """Assignment id -> (lab id, order id, quantity, units done, state) as the labs recorded them."""
    jobs = {}
    for lab_id, state in journals.items():
        for job in state["jobs"]:
            assign = job["assign"]
            jobs[assign["assignment_id"]] = (
                lab_id,
                assign["order_id"],
                int(assign["quantity"]),
                int(job["units_done"]),
                job["state"],
            )
    return jobs


@dataclass(frozen=True)
class Moved:
    """Material a lab's journal says it shipped away, and the parcels it says reached it."""

    shipped: dict[str, float]
    arrived: tuple[InTransit, ...]


def journal_transfers(journals: dict[str, dict[str, Any]]) -> dict[str, Moved]:
    """Lab id -> the material it shipped and received, as the labs recorded it (SPEC.md section 11)."""
    moved = {}
    for lab_id, state in journals.items():
        parcels = state.get("parcels") or {"sent": [], "coming": []}
        shipped: dict[str, float] = defaultdict(float)
        for entry in parcels["sent"]:
            if entry["shipped"]:
                shipped[entry["ship"]["material"]] += float(entry["ship"]["quantity"])
        arrived = tuple(
            InTransit(
                entry["incoming"]["material"],
                float(entry["incoming"]["quantity"]),
                datetime.fromisoformat(entry["incoming"]["arrive_at"]),
            )
            for entry in parcels["coming"]
            if entry["arrived"]
        )
        moved[lab_id] = Moved(dict(shipped), arrived)
    return moved


def no_order_lost(accepted: set[str], views: dict[str, dict[str, Any]]) -> Verdict:
    """Every order the requester was told was accepted exists, and is made or still planned."""
    missing = sorted(accepted - views.keys())
    uncovered = []
    for order_id in sorted(accepted & views.keys()):
        view = views[order_id]
        made = sum(a["units_done"] for a in view["allocations"])
        expected = sum(a["quantity"] - a["units_done"] for a in view["allocations"] if a["state"] in _ACTIVE)
        if view["state"] != "done" and made + expected < view["quantity"]:
            uncovered.append(f"{order_id} ({made} made + {expected} planned < {view['quantity']})")
    done = sum(1 for o in accepted & views.keys() if views[o]["state"] == "done")
    ok = not missing and not uncovered
    detail = f"{len(accepted)} accepted, {done} done"
    if missing:
        detail += f"; missing from the planner: {', '.join(missing)}"
    if uncovered:
        detail += f"; neither made nor planned: {'; '.join(uncovered)}"
    return Verdict("no accepted order lost", ok, detail)


def no_double_execution(
    events: list[HistoryEvent], journals: dict[str, dict[str, Any]], views: dict[str, dict[str, Any]]
) -> Verdict:
    """No lab made more units than its assignment allowed, and no order got more than it asked for.

    Checked twice: from the planner's ledger (every units_done it ever recorded) and from the labs'
    journals (what the labs say they made).
    """
    problems = []
    ledger_units: dict[str, tuple[str, int, int]] = {}
    for event in events:
        if event.kind.startswith("job.") and "units_done" in event.data:
            d = event.data
            before = ledger_units.get(d["id"], (d["order_id"], d["quantity"], 0))[2]
            ledger_units[d["id"]] = (d["order_id"], d["quantity"], max(before, d["units_done"]))
    sources = {
        "ledger": {aid: (o, q, u) for aid, (o, q, u) in ledger_units.items()},
        "journals": {aid: (o, q, u) for aid, (_, o, q, u, _) in _journal_jobs(journals).items()},
    }
    for source, jobs in sources.items():
        per_order: dict[str, int] = defaultdict(int)
        for aid, (order_id, quantity, units) in jobs.items():
            if units > quantity:
                problems.append(f"{source}: {aid} made {units} of {quantity} allowed")
            per_order[order_id] += units
        for order_id, units in per_order.items():
            wanted = views[order_id]["quantity"] if order_id in views else None
            if wanted is not None and units > wanted:
                problems.append(f"{source}: order {order_id} got {units} units for {wanted} ordered")
    made = sum(u for _, _, u in sources["journals"].values())
    detail = f"{len(ledger_units)} assignments, {made} units made by the labs"
    return Verdict(
        "no unit made twice", not problems, detail + ("; " + "; ".join(problems) if problems else "")
    )


def within_capacity_and_stock(
    labs: list[Lab],
    views: dict[str, dict[str, Any]],
    journals: dict[str, dict[str, Any]],
    started: datetime,
    late: dict[tuple[int, str, str], int] | None = None,
) -> Verdict:
    """What the labs made fits their starting machine hours and stock (the independent validator).

    Units are held to their order's due date, except those a plan placed late (`late`, from
    `read_late_units`): as in the validator, those need only fit the planning horizon.
    """
    orders = [Order.model_validate({k: v[k] for k in Order.model_fields}) for v in views.values()]
    versions = {a["id"]: a.get("plan_version", -1) for v in views.values() for a in v["allocations"]}
    made_at: dict[tuple[str, str], int] = defaultdict(int)
    late_at: dict[tuple[str, str], int] = defaultdict(int)
    for aid, (lab_id, order_id, quantity, units, _) in _journal_jobs(journals).items():
        if units and order_id in views:
            made_at[(order_id, lab_id)] += units
            planned_late = (late or {}).get((versions.get(aid, -1), order_id, lab_id), 0)
            late_at[(order_id, lab_id)] += max(0, units - (quantity - planned_late))
    violations = check_made(labs, orders, made_at, started, late_at, journal_transfers(journals))
    detail = f"{sum(made_at.values())} units at {len({lab for _, lab in made_at})} labs checked"
    if any(late_at.values()):
        detail += f" ({sum(late_at.values())} of them planned late)"
    return Verdict(
        "capacity and stock never exceeded",
        not violations,
        detail + ("; " + "; ".join(violations[:5]) if violations else ""),
    )


def check_made(
    labs: list[Lab],
    orders: list[Order],
    made_at: dict[tuple[str, str], int],
    started: datetime,
    late_at: dict[tuple[str, str], int] | None = None,
    moved: dict[str, Moved] | None = None,
) -> list[str]:
    """The validator's verdict on units made per (order, lab), against the labs' starting state.

    Demand is taken as what was made: whether that matches the orders is `no_double_execution`'s
    business; this checks capability, machine hours by due date, and stock. `late_at` gives, per
    (order, lab), how many of the units made were planned late (held to the horizon only). `moved`
    (`journal_transfers`) is the material the labs shipped (off their starting stock) and received
    (usable from its arrival, as the validator holds material in transit).
    """
    moved = moved or {}
    states = []
    for lab in labs:
        stock = dict(lab.stock)
        got = moved.get(lab.id, Moved({}, ()))
        for material, amount in got.shipped.items():
            stock[material] = max(0.0, stock.get(material, 0.0) - amount)
        states.append(LabState(lab=lab, backlog_minutes={}, stock=stock, incoming=got.arrived))
    made: dict[str, int] = defaultdict(int)
    for (order_id, _), units in made_at.items():
        made[order_id] += units
    problem = Problem(
        now=started,
        designs=catalogue(),
        labs=states,
        # More made than ordered is no_double_execution's verdict; here it is checked like the rest.
        demands=[
            Demand(order=o.model_copy(update={"quantity": max(o.quantity, made[o.id])}), quantity=made[o.id])
            for o in orders
            if made.get(o.id)
        ],
    )
    executed = Plan(
        version=1,
        objective=0,
        bound=0,
        status="FEASIBLE",
        solve_seconds=0,
        allocations=[
            Allocation(
                order_id=o,
                lab_id=lab,
                quantity=q,
                cost=CostTerms(km=0, transport=0),
                late_units=min(q, (late_at or {}).get((o, lab), 0)),
            )
            for (o, lab), q in sorted(made_at.items())
        ],
    )
    return check(problem, executed)


def labs_agree(journals: dict[str, dict[str, Any]], views: dict[str, dict[str, Any]]) -> Verdict:
    """Each lab's record of its jobs matches the planner's: same units made, same work still open."""
    jobs = _journal_jobs(journals)
    planner = {a["id"]: a for view in views.values() for a in view["allocations"]}
    problems = []
    for aid, a in planner.items():
        mine = jobs.get(aid)
        if mine is None:
            if a["units_done"] or a["state"] in _ACTIVE:
                problems.append(
                    f"{aid}: planner says {a['state']} with {a['units_done']} made; "
                    f"lab {a['lab_id']} never had it"
                )
            continue
        lab_id, _, _, units, state = mine
        if units != a["units_done"]:
            problems.append(f"{aid}: lab {lab_id} made {units}, planner counts {a['units_done']}")
        if (state in _ACTIVE) != (a["state"] in _ACTIVE):
            problems.append(f"{aid}: lab {lab_id} has it {state}, planner {a['state']}")
    for aid in sorted(jobs.keys() - planner.keys()):
        problems.append(f"{aid}: lab {jobs[aid][0]} has a job the planner does not know")
    detail = f"{len(planner)} assignments compared with {len(journals)} lab journals"
    return Verdict(
        "labs agree with the planner",
        not problems,
        detail + ("; " + "; ".join(problems[:5]) if problems else ""),
    )


def health_responsive(samples: list[tuple[float, float | None, bool]]) -> Verdict:
    """/health answered within HEALTH_LIMIT_S whenever the planner process was up.

    `samples` holds (seconds since start, latency or None when unanswered, planner up).
    """
    up = [(t, latency) for t, latency, planner_up in samples if planner_up]
    slow = [(t, latency) for t, latency in up if latency is None or latency > HEALTH_LIMIT_S]
    worst = max((latency for _, latency in up if latency is not None), default=0.0)
    detail = f"{len(up)} probes while up, slowest {worst * 1000:.0f} ms"
    if slow:
        detail += f"; {len(slow)} over {HEALTH_LIMIT_S:g} s or unanswered (first at {slow[0][0]:.1f} s)"
    return Verdict(f"/health answered within {HEALTH_LIMIT_S:g} s", not slow, detail)


def replan_seconds_after_loss(events: list[HistoryEvent]) -> list[float]:
    """For each lab lost with work returned: seconds until the next plan was committed."""
    delays = []
    for i, event in enumerate(events):
        if event.kind != "lab.lost":
            continue
        returned = any(
            e.kind == "job.failed" and e.data.get("lab_id") == event.data["lab_id"]
            for e in events[i + 1 : i + 50]
        )
        if not returned:
            continue
        following = next((e for e in events[i + 1 :] if e.kind == "plan.committed"), None)
        if following is not None:
            delays.append((following.at - event.at).total_seconds())
    return delays
