"""The lab's journal: a small file that lets a restarted agent remember what it accepted and made.

The agent writes it before it sends what a change implies (an ACCEPT, a PROGRESS, a DONE), so that
after a crash it never tells the planner less than it said before. Each write goes to a temporary
file that is flushed to disk and then renamed over the journal, so a crash leaves either the old or
the new journal, never half of one. The format is JSON, readable by people (SPEC.md section 5).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = "cosmolocal-lab-journal/1"


class JournalError(ValueError):
    """The journal exists but cannot be used (names the file and the reason)."""


class Journal:
    """One lab's journal file (see the module docstring)."""

    def __init__(self, path: Path, lab_id: str) -> None:
        self.path = path
        self.lab_id = lab_id
        self.writes = 0

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is no journal yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot read the journal: {exc.strerror}") from None
        try:
            saved = json.loads(text)
        except json.JSONDecodeError as exc:
            raise JournalError(f"{self.path}: not a journal (invalid JSON at line {exc.lineno})") from None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise JournalError(f"{self.path}: not a lab journal of format {FORMAT}")
        if saved.get("lab_id") != self.lab_id:
            raise JournalError(
                f"{self.path}: journal of lab {saved.get('lab_id')!r}, not of {self.lab_id!r}; "
                "give each lab its own --journal"
            )
        state = saved.get("state")
        if not isinstance(state, dict):
            raise JournalError(f"{self.path}: field 'state' missing")
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Replace the journal with `state`, durably (temporary file, fsync, rename)."""
        payload = json.dumps({"format": FORMAT, "lab_id": self.lab_id, "state": state}, indent=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        self.writes += 1
