"""`cosmolocal chaos` on real processes: every fault kind, then every invariant, from the history."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from scenarios.faults.chaos import FAULT_KINDS, GARBAGE_FRAMES, INSECURE_ONLY, ChaosOptions, run_chaos

#: The faults come 0.2 to 0.6 s apart instead of 0.5 to 2 s, and the labs work at 3,000x: the same
#: faults, met sooner by the same work, in less of the suite's time.
FAULT_GAP_S = (0.2, 0.6)
SOONER = ["--fault-gap", str(FAULT_GAP_S[0]), str(FAULT_GAP_S[1])]


#: A run of 4 labs took about 130 s at a load average of 30, past pytest's default limit here (120 s);
#: the command itself gives up after 300 s.
@pytest.mark.timeout(400)
def test_chaos_over_a_lossy_link_keeps_every_invariant(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "cosmolocal", "chaos", "--labs", "4", "--orders", "6", "--seed", "1"]
    command += ["--speed", "3000", *SOONER]
    run = subprocess.run(
        [*command, "--json", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert run.stdout.strip(), run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert "invariants" in report, f"the run broke: {report.get('error')}\n{run.stderr[-3000:]}"
    failed = [v for v in report["invariants"] if not v["ok"]]
    assert run.returncode == 0 and report["ok"] and not failed, failed
    assert {f["kind"] for f in report["faults"]} >= set(FAULT_KINDS) | set(INSECURE_ONLY)
    counts = report["counts"]
    assert counts["orders_done"] == counts["orders"] == 6
    assert counts["units_made"] == counts["units_ordered"]
    assert counts["planner_epochs"] == 2 and counts["labs_lost"] >= 1
    # The garbage fault queues GARBAGE_FRAMES; the ones its socket has not passed on when it closes
    # (0.5 s of linger), or when the planner is killed (another fault, 0.2-0.6 s apart), are lost with
    # the connection: a clean clone's run counted 8,402 of 10,000, four runs here every one. What
    # must hold is that a flood reaches the planner and is refused and counted, not its exact size.
    assert counts["frames_rejected"] >= GARBAGE_FRAMES // 2 and counts["impersonations_refused"] >= 1
    link = counts["link"]
    assert link["dropped"] > 0 and link["duplicated"] > 0 and link["reordered"] > 0 and link["cut"] > 0


@pytest.mark.timeout(400)
def test_chaos_on_a_secure_mesh_refuses_strangers_and_keeps_every_invariant(tmp_path: Path) -> None:
    options = ChaosOptions(
        labs=4, orders=6, seed=3, secure=True, faults=8, speed=3_000.0, fault_gap_s=FAULT_GAP_S
    )
    report = run_chaos(replace(options, workdir=tmp_path))
    assert report.ok, [v for v in report.verdicts if not v.ok]
    kinds = {f["kind"] for f in report.faults}
    assert "stranger" in kinds and "impostor" in kinds
    assert report.counts["keys_refused"] >= 1 and report.counts["impersonations_refused"] >= 1
    assert report.counts["orders_done"] == 6


@pytest.mark.timeout(400)
def test_chaos_at_eight_labs_and_forty_orders_keeps_every_labs_hours(tmp_path: Path) -> None:
    """Issue 16, item 6: at this size the planner once gave a lab more work by a due date than its
    hours allow (seed 9001: fablab-paris, 7,791 minutes within 3.79 days where 7,371 fit), handing out
    again the hours of work the lab had finished faster than declared. Labs run at 3,000x here so the
    run stays short; the faster the labs, the more hours such a planner would hand out twice."""
    options = ChaosOptions(
        labs=8, orders=40, seed=9001, secure=True, speed=3_000.0, timeout_s=240, fault_gap_s=FAULT_GAP_S
    )
    report = run_chaos(replace(options, workdir=tmp_path))
    # /health within 1 s is held by the two runs above; with 8 labs, the planner and this test on two
    # cores shared with other work, a probe can wait past 1 s while nothing is wrong (seen at a load
    # average of 25). Every other invariant must hold.
    failed = [v for v in report.verdicts if not v.ok and not v.name.startswith("/health")]
    assert not failed, failed
    assert report.counts["orders_done"] == 40 and report.counts["planner_epochs"] == 2
