"""`cosmolocal chaos` on real processes: every fault kind, then every invariant, from the history."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scenarios.chaos import FAULT_KINDS, INSECURE_ONLY, ChaosOptions, run_chaos


def test_chaos_over_a_lossy_link_keeps_every_invariant(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "cosmolocal", "chaos", "--labs", "4", "--orders", "6", "--seed", "1"]
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
    assert counts["frames_rejected"] >= 10_000 and counts["impersonations_refused"] >= 1
    link = counts["link"]
    assert link["dropped"] > 0 and link["duplicated"] > 0 and link["reordered"] > 0 and link["cut"] > 0


def test_chaos_on_a_secure_mesh_refuses_strangers_and_keeps_every_invariant(tmp_path: Path) -> None:
    report = run_chaos(ChaosOptions(labs=4, orders=6, seed=3, secure=True, faults=8, workdir=tmp_path))
    assert report.ok, [v for v in report.verdicts if not v.ok]
    kinds = {f["kind"] for f in report.faults}
    assert "stranger" in kinds and "impostor" in kinds
    assert report.counts["keys_refused"] >= 1 and report.counts["impersonations_refused"] >= 1
    assert report.counts["orders_done"] == 6
