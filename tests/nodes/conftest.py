"""One OctoPrint server (with its Virtual Printer) for the node tests that need a real one: it takes
several seconds to start, so the tests share it, each starting from an idle, connected printer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.nodes.printer_servers import OctoPrint


@pytest.fixture(scope="session")
def octoprint_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctoPrint]:
    server = OctoPrint(tmp_path_factory.mktemp("octoprint")).start()
    yield server
    server.stop()


@pytest.fixture
def octoprint(octoprint_server: OctoPrint) -> OctoPrint:
    """The shared OctoPrint, its printer idle and connected (after a test's injected fault too)."""
    if octoprint_server.state() != "Operational":
        octoprint_server.api("POST", "/api/job", json={"command": "cancel"})
        octoprint_server.reconnect()
    return octoprint_server
