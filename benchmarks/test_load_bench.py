"""The load targets of issue 16, asserted on one run of `cosmolocal bench load` (scenarios.faults.load):
1,000 simulated labs (CurveZMQ DEALERs), orders at rising rates, 200 event-stream subscribers.

Run: make bench   (or .venv/bin/pytest benchmarks -k load --benchmark-enable -s)
The size can be changed with COSMOLOCAL_LOAD_LABS and COSMOLOCAL_LOAD_SECONDS. The machine's load
average is recorded beside each figure: on a shared machine every figure is pessimistic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from scenarios.faults.load import LoadOptions, run_load

LABS = int(os.environ.get("COSMOLOCAL_LOAD_LABS", "1000"))
SECONDS = float(os.environ.get("COSMOLOCAL_LOAD_SECONDS", "60"))


@pytest.mark.timeout(900)
def test_load_targets(benchmark: Any, tmp_path: Path) -> None:
    if benchmark.disabled:
        pytest.skip("a run of minutes for `make bench`; tests/load runs a short one in the test suite")
    options = LoadOptions(labs=LABS, seconds=SECONDS, workdir=tmp_path, log=print)
    result = benchmark.pedantic(run_load, args=(options,), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in result.items() if k != "order_steps"})
    print(json.dumps(result, sort_keys=True))
    assert result["orders_lost"] == 0
    assert result["labs_live_at_end"] == LABS
    assert result["orders_per_s"] >= 200 and result["order_p99_ms"] <= 250
    assert result["health_p99_ms"] <= 100
    assert result["sse_lag_p99_ms"] <= 1000
    if result["ingest_ratio"] < 0.5:
        pytest.xfail(f"ingest_ratio {result['ingest_ratio']}: {INGEST_NOT_YET}")


#: The one target not met (docs/benchmarks.md, "A quiet host, the solver's priority and the
#: collector's pauses"): the harness offers 40 CAPACITY frames a second per lab, at most 40,000 a
#: second at 1,000 labs, against a raw ceiling measured without CurveZMQ of some 240,000, so the ratio
#: cannot pass about 0.17 as the bench is written; the planner took 35,000-40,000 of the 40,000.
INGEST_NOT_YET = (
    "not met: the harness offers 40,000 frames a second against a raw ceiling of about 240,000 "
    "(measured 0.146-0.163 on 5 December, quiet host)"
)
