"""Simulated time for a lab agent: `SimClock` maps a monotonic clock to simulated UTC time.

`start + worked × speed`, so a scenario can run a day of work in minutes and tests can drive time by
hand. It also carries the work lease (SPEC.md section 5): no time is worked past the planner's word.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta


class SimClock:
    """Simulated time: `start + worked wall seconds × speed`.

    `speed` 60 makes one wall second a simulated minute. `monotonic` is injectable so tests can move
    time by hand instead of sleeping. Wall time counts as worked unless one of these stops it:

    - `hold` (until `release`): the owner stops work, e.g. to wait for the planner's word.
    - A lease (`lease`): no time after the lease's monotonic deadline is worked, and simulated time
      does not pass its simulated limit, until a new lease is given. Both are enforced by the clock
      itself, at the instant they pass, however late the owner's loop looks; so a lab never works
      past what its planner vouched for.
    - A stall: with `stall_seconds`, a jump of the monotonic clock longer than that between two
      readings (the process was suspended, the machine slept) is never worked: the clock takes the
      jump out and holds itself at once, whoever reads it first, so no unit can be made in that time
      before the owner notices (`notice_stall`) and decides when work may go on (`release`).
    """

    def __init__(
        self,
        start: datetime,
        speed: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        stall_seconds: float | None = None,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock start must carry a time zone (UTC)")
        if not speed > 0:
            raise ValueError(f"SimClock speed must be positive, got {speed}")
        if stall_seconds is not None and not stall_seconds > 0:
            raise ValueError(f"SimClock stall_seconds must be positive, got {stall_seconds}")
        self.start = start
        self.speed = speed
        #: A gap between readings longer than this is a stall (None: every gap is worked).
        self.stall_seconds = stall_seconds
        self._monotonic = monotonic
        #: Wall seconds worked up to the monotonic instant `_counted_to`.
        self._worked = 0.0
        self._counted_to = monotonic()
        self._last_read = self._counted_to
        self._held = False
        #: Monotonic instant after which nothing is worked (None: no lease limits the work).
        self._lease_until: float | None = None
        #: Wall seconds worked beyond which simulated time stands still (None: no limit).
        self._worked_limit: float | None = None
        self._stall_unseen: float | None = None

    def _count(self, at: float) -> None:
        """Add the wall time worked since the last count, up to `at`."""
        if not self._held:
            end = at if self._lease_until is None else min(at, self._lease_until)
            self._worked += max(0.0, end - self._counted_to)
            if self._worked_limit is not None:
                self._worked = min(self._worked, max(self._worked_limit, 0.0))
        self._counted_to = max(self._counted_to, at)

    def _read(self) -> None:
        """Count the work up to now; a stall since the last reading is taken out and holds the clock."""
        at = self._monotonic()
        gap = at - self._last_read
        if self.stall_seconds is not None and gap > self.stall_seconds:
            self._stall_unseen = gap + (self._stall_unseen or 0.0)
            self._count(self._last_read)
            self._counted_to = at  # the gap is not worked
            self._held = True
        self._last_read = at
        self._count(at)

    def now(self) -> datetime:
        """The current simulated instant (UTC)."""
        self._read()
        return self.start + timedelta(seconds=self._worked * self.speed)

    def notice_stall(self) -> float | None:
        """Read the clock; the wall seconds of stalls found since the last call, or None if none.

        After a stall the clock is held: the caller releases it when work may go on.
        """
        self._read()
        gap, self._stall_unseen = self._stall_unseen, None
        return gap

    @property
    def held(self) -> bool:
        """True while the clock is held (see `hold`; a stall holds it too)."""
        return self._held

    @property
    def lapsed(self) -> bool:
        """True once the lease's deadline or its simulated limit has passed (until a new lease)."""
        if self._lease_until is not None and self._monotonic() >= self._lease_until:
            return True
        if self._worked_limit is not None:
            self._read()
            return self._worked >= self._worked_limit
        return False

    def hold(self) -> None:
        """Stop simulated time until `release`: e.g. a lab waiting for its planner's word."""
        self._read()
        self._held = True

    def release(self) -> None:
        """Let simulated time run again from where it was held (the held span is not worked).

        A lapsed lease still stops it until `lease` gives a new one.
        """
        if self._held:
            at = self._monotonic()
            self._last_read = self._counted_to = max(self._counted_to, at)
            self._held = False

    def lease(self, until: float | None, sim_until: datetime | None = None) -> None:
        """Let wall time be worked up to the monotonic instant `until` (None: without limit), and
        simulated time run up to `sim_until` at most (None: without limit).

        Time between a lapsed lease and the new one is not worked. A deadline that is already past
        stops the work at once; simulated time never goes back.
        """
        self._read()
        self._lease_until = until
        if sim_until is None:
            self._worked_limit = None
        else:
            limit = (sim_until - self.start).total_seconds() / self.speed
            self._worked_limit = max(limit, self._worked)

    def catch_up(self, instant: datetime) -> float:
        """Move simulated time forward to `instant` when it is behind: for a lab with nothing under way,
        whose time held or past its lease cost no work (never back, never past the lease's simulated
        limit). Returns the simulated seconds gained.

        A lab in a replay's shared frame (`protocol.timeframe`) calls it while idle, so the time it
        waited for its first lease, or for its planner's word, does not leave its clock behind its
        planner's for the rest of the run: every unit it made after would have counted as made that
        much later (docs/live-vs-sim.md: 0.2 to 0.4 simulated hours at 2,000x).
        """
        self._read()
        target = (instant - self.start).total_seconds() / self.speed
        if self._worked_limit is not None:
            target = min(target, self._worked_limit)
        gained = max(0.0, target - self._worked)
        self._worked += gained
        return gained * self.speed

    def wall_seconds_until(self, instant: datetime) -> float:
        """Wall seconds until the simulated `instant` (0 when it is already past)."""
        return max(0.0, (instant - self.now()).total_seconds() / self.speed)
