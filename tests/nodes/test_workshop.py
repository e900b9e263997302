"""Accepting, refusing and reporting jobs without sockets (nodes.workshop)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from nodes.clock import SimClock
from nodes.manual import ManualExecutor, Report
from nodes.printers import PrinterExecutor, PrinterLink
from nodes.simulated import SimulatedExecutor as Executor
from nodes.workshop import MAX_OPERATIONS_PER_JOB, MAX_UNITS_PER_JOB, Workshop
from protocol.messages import Accept, Done, Failed, Progress, Refuse, Stock
from tests.nodes.fake_printer import FakePrinterServer
from tests.nodes.samples import T0, assign, lab, part


def workshop(stock: dict[str, float] | None = None, fail_rate: float = 0.0) -> Workshop:
    the_lab = lab(stock)
    clock = SimClock(T0, 1.0, monotonic=lambda: 0.0)
    return Workshop(the_lab, Executor(the_lab.machines, clock), fail_rate, random.Random(1))


def test_accept_reserves_stock_and_reports_progress_then_done() -> None:
    shop = workshop({"petg": 1.0})
    reply = shop.receive(assign(quantity=3), T0)
    stock, accept = reply.messages  # the reservation is reported before the ACCEPT
    assert isinstance(accept, Accept) and accept.eta == T0 + timedelta(minutes=32)
    assert isinstance(stock, Stock) and stock.stock == {"petg": pytest.approx(0.7)}
    assert shop.stock["petg"] == pytest.approx(0.7)
    assert shop.jobs["a-1"].state == "accepted"

    assert shop.advance(T0 + timedelta(minutes=5)) == []  # nothing new: no message
    assert shop.jobs["a-1"].state == "running"
    (progress,) = shop.advance(T0 + timedelta(minutes=12))
    assert isinstance(progress, Progress) and progress.units_done == 1 and progress.eta == accept.eta
    (done,) = shop.advance(T0 + timedelta(minutes=40))
    assert done == Done(assignment_id="a-1", units_done=3)
    assert shop.jobs["a-1"].state == "done"
    assert shop.advance(T0 + timedelta(minutes=50)) == []
    assert shop.backlog_minutes(T0 + timedelta(minutes=50)) == {"prusa-1": 0.0, "bench": 0.0}


def test_refusals_say_why() -> None:
    shop = workshop({"petg": 1.0})
    (refuse,) = shop.receive(assign("a-1", quantity=33), T0).messages
    assert refuse == Refuse(assignment_id="a-1", reason="not enough stock: petg needs 3.300 kg, 1.000 free")
    assert shop.stock == {"petg": 1.0}
    (refuse,) = shop.receive(assign("a-2", design=part(fdm_bed_mm=300)), T0).messages
    assert isinstance(refuse, Refuse) and "bed_mm=300" in refuse.reason
    (refuse,) = shop.receive(assign("a-3", quantity=MAX_UNITS_PER_JOB + 1), T0).messages
    assert isinstance(refuse, Refuse) and "exceeds" in refuse.reason
    ten_steps = part().model_copy(update={"steps": part().steps * 5})
    too_many = assign("a-5", quantity=MAX_OPERATIONS_PER_JOB // 10 + 1, design=ten_steps)
    (refuse,) = shop.receive(too_many, T0).messages
    assert isinstance(refuse, Refuse) and "operations exceeds" in refuse.reason
    empty = workshop({})
    (refuse,) = empty.receive(assign("a-4", quantity=2), T0).messages
    assert isinstance(refuse, Refuse) and refuse.reason == "not enough stock: petg needs 0.200 kg, 0.000 free"
    assert {j.state for j in shop.jobs.values()} == {"refused"}


def test_duplicates_get_the_first_answer_and_run_once() -> None:
    shop = workshop({"petg": 1.0})
    first = shop.receive(assign(quantity=2), T0)
    again = shop.receive(assign(quantity=2), T0)
    assert again.duplicate and again.messages == first.messages[-1:]
    assert shop.stock["petg"] == pytest.approx(0.8)  # reserved once
    assert len(shop.executor.operations("a-1")) == 4
    shop.advance(T0 + timedelta(hours=1))
    after_end = shop.receive(assign(quantity=2), T0 + timedelta(hours=1))
    assert after_end.messages == [first.messages[-1], Done(assignment_id="a-1", units_done=2)]
    refused = shop.receive(assign("r", quantity=100), T0)
    assert shop.receive(assign("r", quantity=100), T0).messages == refused.messages


def test_failure_injection_fails_the_job_and_returns_unused_stock() -> None:
    shop = workshop({"petg": 1.0}, fail_rate=1.0)
    shop.receive(assign(quantity=5), T0)
    fail_after = shop.jobs["a-1"].fail_after_units
    assert fail_after is not None and 0 <= fail_after < 5
    messages = shop.advance(T0 + timedelta(hours=2))
    failed, stock = messages[-2:]
    assert isinstance(failed, Failed) and failed.units_done == fail_after
    assert "simulated failure" in failed.reason
    assert isinstance(stock, Stock)
    assert shop.jobs["a-1"].state == "failed"
    assert shop.stock["petg"] == pytest.approx(1.0 - 0.1 * fail_after)
    assert shop.resync_messages() == [failed] and shop.unacknowledged_ends() == [failed]
    assert shop.acknowledge_end("a-1") and not shop.acknowledge_end("a-1")
    assert shop.resync_messages() == [] and shop.unacknowledged_ends() == []


def test_resync_lists_running_jobs() -> None:
    shop = workshop()
    shop.receive(assign(quantity=2), T0)
    shop.advance(T0 + timedelta(minutes=13))
    assert shop.resync_messages() == [
        Progress(assignment_id="a-1", units_done=1, eta=T0 + timedelta(minutes=22))
    ]
    with pytest.raises(ValueError, match="fail_rate"):
        workshop(fail_rate=2.0)


def test_withdrawn_job_stops_returns_its_stock_and_reports_the_units_made() -> None:
    shop = workshop({"petg": 1.0})
    shop.receive(assign("a-1", quantity=3), T0)
    shop.receive(assign("a-2", quantity=1), T0)
    at = T0 + timedelta(minutes=12)  # one unit of a-1 made, the second under way
    messages = shop.reconcile({"a-2"}, lambda aid: True, at)
    failed, stock = messages
    assert isinstance(failed, Failed) and failed.assignment_id == "a-1" and failed.units_done == 1
    assert "withdrawn by the planner" in failed.reason
    # a-1's third unit never started: its 0.1 kg comes back; the second was under way and is spent.
    assert isinstance(stock, Stock) and stock.stock["petg"] == pytest.approx(1.0 - 0.3 - 0.1 + 0.1)
    assert shop.jobs["a-1"].state == "failed" and shop.jobs["a-2"].state in {"accepted", "running"}
    # Listed again while ended: the end is repeated (the first FAILED may have been lost).
    assert shop.reconcile({"a-1", "a-2"}, lambda aid: True, at) == [failed]


def test_a_list_older_than_the_assign_withdraws_nothing() -> None:
    shop = workshop({"petg": 1.0})
    shop.receive(assign("a-1", quantity=3), T0)
    assert shop.reconcile(set(), lambda aid: False, T0 + timedelta(minutes=1)) == []
    assert shop.jobs["a-1"].state == "accepted"


def test_a_job_finished_before_the_withdrawal_reports_done() -> None:
    shop = workshop({"petg": 1.0})
    shop.receive(assign("a-1", quantity=1), T0)
    (done, _stock) = shop.reconcile(set(), lambda aid: True, T0 + timedelta(hours=2))
    assert done == Done(assignment_id="a-1", units_done=1)


def test_a_restarted_workshop_resumes_from_its_journal(tmp_path) -> None:
    from nodes.journal import Journal

    shop = workshop({"petg": 1.0})
    shop.receive(assign("a-1", quantity=3), T0)
    shop.receive(assign("a-2", quantity=1), T0)
    shop.advance(T0 + timedelta(minutes=12))  # a-1: one unit made
    journal = Journal(tmp_path / "lab.journal.json", shop.lab.id)
    journal.save(shop.to_journal())

    again = workshop({"petg": 1.0})  # the lab file's stock; the journal's wins
    again.from_journal(journal.load(), T0 + timedelta(minutes=20))
    assert again.stock == pytest.approx(shop.stock)
    assert again.jobs["a-1"].units_done == 1 and again.jobs["a-1"].state == "running"
    # A duplicate ASSIGN after the restart gets the first answer, and the job is not scheduled twice.
    reply = again.receive(assign("a-1", quantity=3), T0 + timedelta(minutes=20))
    assert reply.duplicate and isinstance(reply.messages[0], Accept)
    later = again.advance(T0 + timedelta(hours=3))
    done = [m for m in later if isinstance(m, Done)]
    assert {(d.assignment_id, d.units_done) for d in done} == {("a-1", 3), ("a-2", 1)}


def test_a_journal_of_another_lab_is_refused(tmp_path) -> None:
    from nodes.journal import Journal, JournalError

    Journal(tmp_path / "j.json", "lab-x").save({"stock": {}, "jobs": []})
    with pytest.raises(JournalError, match="journal of lab 'lab-x'"):
        Journal(tmp_path / "j.json", "lab-y").load()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(JournalError, match="invalid JSON"):
        Journal(tmp_path / "bad.json", "lab-y").load()


def test_a_promise_counts_the_units_by_an_instant_and_finds_the_first_unit_beyond_it() -> None:
    shop = workshop({"petg": 1.0})
    shop.receive(assign(quantity=3), T0)
    ends = shop.executor.unit_ends("a-1")
    assert shop.promise(T0) == {"a-1": 0}
    assert shop.promise(ends[0]) == {"a-1": 1} and shop.promise(ends[-1] + timedelta(hours=1)) == {"a-1": 3}
    just_before = timedelta(microseconds=1)
    assert shop.limit({"a-1": 1}) == ends[1] - just_before
    assert shop.limit({}) == ends[0] - just_before  # a job taken after the promise: none of it
    assert shop.limit({"a-1": 3}) is None


def test_supply_grows_the_free_stock() -> None:
    shop = workshop({"petg": 0.1})
    assert shop.supply("petg", 0.4).stock == {"petg": pytest.approx(0.5)}
    assert shop.supply("pla", 1.0).stock == {"petg": pytest.approx(0.5), "pla": 1.0}
    with pytest.raises(ValueError, match="positive"):
        shop.supply("petg", 0.0)


def test_a_lost_material_stops_the_jobs_that_still_need_it() -> None:
    shop = workshop({"petg": 1.0})
    shop.receive(assign("a-1", quantity=3), T0)  # 10 + 2 min a unit on one printer
    shop.advance(T0 + timedelta(minutes=15))
    failed, stock = shop.lose_stock("petg", T0 + timedelta(minutes=15))
    assert isinstance(failed, Failed) and failed.units_done == 1
    assert "petg lost" in failed.reason and shop.jobs["a-1"].state == "failed"
    assert stock == Stock(stock={"petg": 0.0})  # the unused reservation is lost too
    (refuse,) = shop.receive(assign("a-2", quantity=1), T0 + timedelta(minutes=16)).messages
    assert isinstance(refuse, Refuse) and "not enough stock" in refuse.reason


def test_a_machine_down_stops_its_jobs_and_new_ones_go_to_the_machines_left() -> None:
    shop = workshop({"petg": 1.0})
    shop.receive(assign("a-1", quantity=3), T0)
    now = T0 + timedelta(minutes=15)
    failed, stock = shop.machine_down("prusa-1", now)
    assert isinstance(failed, Failed) and failed.units_done == 1 and "machine prusa-1 down" in failed.reason
    assert stock.stock["petg"] == pytest.approx(0.8)  # the two units not made give their petg back
    assert [m.id for m in shop.working_lab().machines] == ["bench"]
    (refuse,) = shop.receive(assign("a-2", quantity=1), now).messages
    assert isinstance(refuse, Refuse) and "fdm" in refuse.reason
    assert shop.machine_down("prusa-1", now) == []  # already down: nothing more
    assert shop.machine_up("prusa-1") and not shop.machine_up("prusa-1")
    _, accept = shop.receive(assign("a-3", quantity=1), now).messages
    assert isinstance(accept, Accept)
    with pytest.raises(ValueError, match="no machine 'laser-9'"):
        shop.machine_down("laser-9", now)


def test_work_by_hand_takes_machines_down_and_a_printer_lab_refuses_it_whole() -> None:
    the_lab = lab({"petg": 1.0})
    clock = SimClock(T0, 1.0, monotonic=lambda: 0.0)
    shop = Workshop(the_lab, ManualExecutor(the_lab.machines, clock))
    shop.receive(assign("a-1", quantity=3), T0)
    shop.report(Report("a-1", made=1, id="r-1"), T0)
    failed, stock = shop.machine_down("prusa-1", T0 + timedelta(minutes=15))
    assert isinstance(failed, Failed) and failed.units_done == 1 and "machine prusa-1 down" in failed.reason
    assert stock.stock["petg"] == pytest.approx(0.9)  # the units not reported give their petg back
    (refuse,) = shop.receive(assign("a-2", quantity=1), T0).messages
    assert isinstance(refuse, Refuse) and "fdm" in refuse.reason
    assert shop.machine_up("prusa-1")

    link = PrinterLink("prusa-1", "octoprint", "http://127.0.0.1:9", None)
    printers = PrinterExecutor(
        the_lab.machines, clock, {"prusa-1": link}, [], servers={"prusa-1": FakePrinterServer()}
    )
    printed = Workshop(the_lab, printers)
    with pytest.raises(ValueError, match="printer server says so"):
        printed.machine_down("prusa-1", T0)
    assert printed.down == set() and [m.id for m in printed.working_lab().machines] == ["prusa-1", "bench"]
    assert printed.supply("petg", 0.5).stock == {"petg": pytest.approx(1.5)}
