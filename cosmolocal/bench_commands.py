"""`cosmolocal bench`: standard instances and seeded synthetic ones, solved and compared to known values.

Each sub-command prints a table by default and, with `--json`, one JSON object per instance on its
own line with at least the keys `instance`, `objective`, `bound`, `best_known`, `gap_pct`, `seconds`
and `feasible`, for scripts.
"""

from __future__ import annotations

import typer

bench_app = typer.Typer(
    name="bench",
    help="Solve standard benchmark instances (GAP, flexible job-shop) and synthetic ones at scale.",
    no_args_is_help=True,
)

from cosmolocal.bench_gap import gap  # noqa: E402

bench_app.command("gap")(gap)

from cosmolocal.bench_scale import scale  # noqa: E402

bench_app.command("scale")(scale)

from cosmolocal.bench_fjsp import fjsp  # noqa: E402

bench_app.command("fjsp")(fjsp)

from cosmolocal.bench_load import load  # noqa: E402

bench_app.command("load")(load)

from cosmolocal.bench_federation import federation  # noqa: E402

bench_app.command("federation")(federation)
