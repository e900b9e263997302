"""Work done by hand: the operator's reports (`cosmolocal node report`) reach the running agent
through its inbox and become PROGRESS, DONE or FAILED, via the journal, and count once."""

from __future__ import annotations

from pathlib import Path

import zmq.asyncio
from typer.testing import CliRunner

from cosmolocal.node_commands import node_app
from nodes.config import write_lab
from nodes.journal import Journal
from nodes.manual import ManualExecutor, Report, ReportInbox
from protocol.messages import Done, Failed, Progress
from tests.nodes.fake_planner import FakePlanner
from tests.nodes.samples import assign, lab
from tests.nodes.test_agent import agent_running, of, run, until


def test_reports_become_progress_done_and_failed_over_the_wire(tmp_path: Path) -> None:
    inbox = ReportInbox(tmp_path / "lab.reports")
    journal = Journal(tmp_path / "lab.journal.json", "fablab-test")

    async def scenario(ctx: zmq.asyncio.Context) -> None:
        the_lab = lab({"petg": 5.0})
        async with (
            FakePlanner(ctx, heartbeat_ms=200) as planner,
            agent_running(
                the_lab,
                planner.endpoint,
                speed=1.0,
                executor=lambda clock: ManualExecutor(the_lab.machines, clock),
                reports=inbox,
                journal=journal,
            ) as agent,
        ):
            await until(lambda: agent.welcomed, "WELCOME")
            await planner.send(the_lab.id, assign("a-1", quantity=3))
            await planner.send(the_lab.id, assign("a-2", quantity=2))
            await planner.wait_for("ACCEPT", of("a-2"))
            await planner.wait_for("HEARTBEAT")
            assert planner.messages("PROGRESS") == [] or all(
                m.body.units_done == 0 for m in planner.messages("PROGRESS")
            )  # nothing counts before the operator says so
            inbox.put(Report("a-1", made=2))
            progress = await planner.wait_for("PROGRESS", lambda m: of("a-1")(m) and m.body.units_done == 2)
            assert isinstance(progress.body, Progress) and progress.body.eta is not None
            inbox.put(Report("a-1", made=1))
            done = await planner.wait_for("DONE", of("a-1"))
            assert done.body == Done(assignment_id="a-1", units_done=3)
            inbox.put(Report("a-2", made=1, failed=1, reason="strap tore at fitting"))
            failed = await planner.wait_for("FAILED", of("a-2"))
            assert isinstance(failed.body, Failed) and failed.body.units_done == 1
            assert "strap tore at fitting" in failed.body.reason
            inbox.put(Report("a-1", made=1))  # a job that ended: logged and dropped, counts nothing
            await until(lambda: not list(inbox.folder.glob("*.json")), "the inbox emptied")
        assert agent.jobs["a-1"].units_done == 3 and agent.jobs["a-2"].units_done == 1

    run(scenario)
    saved = journal.load()
    assert saved is not None
    assert {j["assign"]["assignment_id"]: j["units_done"] for j in saved["jobs"]} == {"a-1": 3, "a-2": 1}


def test_a_report_read_twice_counts_once() -> None:
    from nodes.clock import SimClock
    from solver.jobshop.lab_schedule import Job
    from tests.nodes.samples import T0, part

    the_lab = lab()
    executor = ManualExecutor(the_lab.machines, SimClock(T0, 1.0, monotonic=lambda: 0.0))
    executor.add(Job("a-1", part(), 4, T0, "routine"), T0)
    report = Report("a-1", made=2, id="r-1")
    executor.apply(report)
    executor.apply(report)
    assert executor.units_done("a-1", T0) == 2 and executor.units_by("a-1", T0) == 4
    saved = executor.saved("a-1")
    again = ManualExecutor(the_lab.machines, SimClock(T0, 1.0, monotonic=lambda: 0.0))
    again.resume(Job("a-1", part(), 4, T0, "routine"), 2, saved, T0)
    again.apply(report)  # after a restart too
    assert again.units_done("a-1", T0) == 2


def test_node_report_checks_the_journal_and_leaves_the_report(tmp_path: Path) -> None:
    the_lab = lab()
    lab_file = tmp_path / "lab.toml"
    write_lab(the_lab, lab_file)
    runner = CliRunner()
    result = runner.invoke(node_app, ["report", str(lab_file), "a-1", "--made", "2"])
    assert result.exit_code == 0, result.output  # no journal yet: the agent judges
    assert len(list((tmp_path / "lab.reports").glob("*.json"))) == 1
    bad = runner.invoke(node_app, ["report", str(lab_file), "a-1"])
    assert bad.exit_code != 0 and "at least one unit" in bad.output
    no_reason = runner.invoke(node_app, ["report", str(lab_file), "a-1", "--failed", "1"])
    assert no_reason.exit_code != 0 and "say why" in no_reason.output
    Journal(tmp_path / "lab.journal.json", the_lab.id).save({"stock": {}, "jobs": []})
    unknown = runner.invoke(node_app, ["report", str(lab_file), "a-9", "--made", "1"])
    assert unknown.exit_code != 0 and "a-9: not a job of this lab; jobs under way: none" in unknown.output
