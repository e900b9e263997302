"""One logging set-up for every cosmolocal process: readable lines with time, level and source."""

from __future__ import annotations

import logging
import sys

LEVELS = ("debug", "info", "warning", "error")


def setup_logging(level: str = "info", name: str | None = None) -> None:
    """Log to stderr; `name` (a lab id, 'planner') prefixes each line so mixed logs stay readable."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r}: choose one of {', '.join(LEVELS)}")
    prefix = f"{name} " if name else ""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s",
        force=True,
    )
