"""A short run of the load benchmark: the figures are there and sane, and no accepted order is lost.

The speed targets are asserted in benchmarks/test_load_bench.py (`make bench`); this run is small
enough for the test suite (40 labs, a few seconds of orders) and checks what must hold at any load.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.faults.load import LoadOptions, run_load

pytestmark = pytest.mark.e2e
KEYS = [
    "ingest_per_s",
    "raw_ceiling_per_s",
    "ingest_ratio",
    "orders_per_s",
    "order_p50_ms",
    "order_p99_ms",
    "health_p99_ms",
    "sse_lag_p99_ms",
    "frames_dropped",
    "max_rss_mb",
    "orders_lost",
]


@pytest.mark.timeout(300)
def test_a_short_load_run_reports_every_figure_and_loses_no_order(tmp_path: Path) -> None:
    options = LoadOptions(
        labs=40,
        seconds=4.0,
        rates=(20.0, 40.0),
        subscribers=10,
        lab_processes=2,
        ingest_s=2.0,
        raw_s=1.0,
        workdir=tmp_path,
    )
    result = run_load(options)
    assert set(KEYS) <= set(result), sorted(set(KEYS) - set(result))
    assert result["orders_lost"] == 0
    assert result["orders_accepted"] > 0, result["order_steps"]
    assert result["labs_live_at_end"] == 40
    assert result["raw_ceiling_per_s"] > 0 and result["ingest_per_s"] > 0
    assert 0 < result["ingest_ratio"] == round(result["ingest_per_s"] / result["raw_ceiling_per_s"], 3)
    assert result["sse_events"] > 0, "the subscribers saw the orders' events"
    assert result["max_rss_mb"] > 0
    for step in result["order_steps"]:
        assert set(step["codes"]) <= {"201", "429", "503"}, step["codes"]
