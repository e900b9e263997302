"""Run one planner process: the HTTP API on uvicorn and the mesh endpoints in the same event loop."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from planner.app import PlannerSettings, create_app

log = logging.getLogger(__name__)


def serve(
    settings: PlannerSettings, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info"
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    app = create_app(settings, own_process=True)
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    log.info("planner HTTP API on http://%s:%d (docs at /docs)", host, port)
    asyncio.run(server.serve())
