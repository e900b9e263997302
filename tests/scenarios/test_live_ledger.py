"""What the live replay reads from the planner's ledger: when units were made."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scenarios.live import Made, _read_ledger

T = datetime(2026, 12, 5, 12, tzinfo=UTC)


def _ledger(path: Path, events: list[tuple[datetime, str, dict[str, object]]]) -> Path:
    """A ledger file with just the tables `_read_ledger` reads."""
    db_path = path / "planner.db"
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, at TEXT, kind TEXT, data TEXT)")
        db.execute("CREATE TABLE plans (version INTEGER PRIMARY KEY, record TEXT)")
        db.execute("INSERT INTO plans VALUES (1, ?)", (json.dumps({"solve_seconds": 0.5}),))
        for at, kind, data in events:
            db.execute(
                "INSERT INTO events (at, kind, data) VALUES (?, ?, ?)",
                (at.isoformat(), kind, json.dumps(data)),
            )
    return db_path


def test_a_jobs_last_units_count_when_its_lab_said_it_ended(tmp_path: Path) -> None:
    job = {"id": "o-1-a1", "order_id": "o-1", "lab_id": "lab-a"}
    end = T + timedelta(hours=10)
    db_path = _ledger(
        tmp_path,
        [
            (T, "job.accepted", job | {"units_done": 0, "eta": (T + timedelta(hours=9)).isoformat()}),
            # two units made, recorded at the lab's tick; the schedule moved: a new ETA
            (T + timedelta(hours=4), "job.running", job | {"units_done": 2, "eta": end.isoformat()}),
            # the last unit: recorded 5 simulated minutes after the lab's end (tick, frame, loop)
            (end + timedelta(minutes=5), "job.done", job | {"units_done": 3, "eta": end.isoformat()}),
            # a DONE recorded before the lab's last ETA (it finished early): the record stands
            (T, "job.accepted", job | {"id": "o-1-a2", "units_done": 0, "eta": end.isoformat()}),
            (
                T + timedelta(hours=1),
                "job.done",
                job | {"id": "o-1-a2", "units_done": 1, "eta": end.isoformat()},
            ),
        ],
    )
    made, solves = _read_ledger(db_path)
    assert made == [
        (T + timedelta(hours=4), "o-1", "lab-a", 2, 0),
        (end, "o-1", "lab-a", 1, 0),
        (T + timedelta(hours=1), "o-1", "lab-a", 1, 0),
    ]
    assert solves == [0.5]


def test_a_jobs_first_units_are_the_ones_its_plan_counted_on_time(tmp_path: Path) -> None:
    # Of 5 units, the plan counted 3 on time: the first 3 the lab makes, over its reports.
    job = {"id": "o-2-a1", "order_id": "o-2", "lab_id": "lab-b", "on_time_units": 3}
    db_path = _ledger(
        tmp_path,
        [
            (T + timedelta(hours=2), "job.running", job | {"units_done": 2}),
            (T + timedelta(hours=4), "job.running", job | {"units_done": 4}),
            (T + timedelta(hours=6), "job.done", job | {"units_done": 5}),
        ],
    )
    made, _ = _read_ledger(db_path)
    assert [(m.units, m.planned_on_time) for m in made] == [(2, 2), (2, 1), (1, 0)]
    assert made[0] == Made(T + timedelta(hours=2), "o-2", "lab-b", 2, 2)
