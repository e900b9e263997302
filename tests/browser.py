"""Debian's Chromium for the browser tests: where it is and how it must start on this closed network."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def find_chromium() -> Path:
    """$COSMOLOCAL_CHROMIUM, else `chromium` (Debian's package) or `chromium-browser` on the PATH.

    When none is found, a path that does not exist, so that the browser tests skip with a reason.
    """
    if os.environ.get("COSMOLOCAL_CHROMIUM"):
        return Path(os.environ["COSMOLOCAL_CHROMIUM"])
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else Path("chromium-not-found")


CHROMIUM = find_chromium()
#: Headless, sandbox off (tests run as root), and nothing that calls out to the network.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
