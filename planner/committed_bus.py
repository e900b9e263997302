"""An event bus that tells listeners of an event only once the event is in the ledger's file.

With the ledger written by a thread of its own (planner.ledger_writer), a change is visible in the
planner's memory before its event is committed. A listener that saw an event the file does not
hold could be told of it again, under the same sequence number but with other content, after a
planner killed with -9 restarts. So each event waits for the commit of what was written before it,
and listeners get events in the order they were made.
"""

from __future__ import annotations

from planner.events import Event, EventBus
from planner.store import Ledger


class CommittedBus(EventBus):
    """`EventBus` whose `publish` waits for the ledger's commit (module docstring)."""

    def __init__(self, ledger: Ledger, queue_size: int = 10_000) -> None:
        super().__init__(queue_size)
        self._ledger = ledger

    def publish(self, event: Event) -> None:
        """Deliver to every listener once everything written so far is in the file."""
        self._ledger.after_commit(lambda: EventBus.publish(self, event))
