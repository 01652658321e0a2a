"""Pacing: the stream is read no faster than Redis takes its events, while Redis takes them.

Without it a reader faster than Redis runs ahead for good: the sink's memory
passes ``redis.memory_max``, its oldest batches are dropped and read back
from the event log, and every event is read, written and re-read while the
reactor's time goes to the reader instead of to Redis (measured: 2-4.5× the
CPU per delivered event, docs/performance.md). So the sink holds the
stream's gate (``flow.SINK``) from half of ``memory_max`` down to a quarter,
and the reader pauses its socket meanwhile, as it does for the journal's
writer. TCP's window pushes back on the server.

The event log stays the buffer whenever pacing could cost events. The gate
is let go, and not taken again until things change, when:

- Redis is not taking batches: not connected, a batch refused, or none
  committed for ``patience`` seconds (slow or stopped); an outage fills the
  event log as before;
- the backlog is partly on disk only (after an outage or a restart):
  catching up could take minutes, and a live stream cannot wait that long;
- the source says the client is falling behind (v1.1's ``FALLING_BEHIND``
  warning, a stall disconnect): pacing stops for ``SUSPEND_SECONDS``, so a
  stream faster than Redis is kept whole on disk rather than cut off;
- ``redis.pace: false``.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from flamingo._types import JsonObject
from flamingo.logs import logger
from flamingo.stream.flow import SINK, Flow

__all__ = ["Pace", "PATIENCE", "SUSPEND_SECONDS"]

log = logger("flamingo.sink")

PATIENCE = 1.0  # seconds without a committed batch before the sink lets the stream go
SUSPEND_SECONDS = 600.0  # no pacing this long after the source said the client falls behind


@attrs.define(eq=False)
class Pace:
    """Holds ``flow`` for the sink; ``update(...)`` after every hand-over and commit."""

    flow: Flow | None
    clock: IReactorTime
    high: int  # bytes in memory at which the gate closes
    low: int  # ... and at or below which it opens
    recheck: Callable[[], None]  # the sink's ``update`` call, run again after ``patience``
    enabled: bool = True
    patience: float = PATIENCE
    holds: int = 0  # times the sink closed the gate
    held_seconds: float = 0.0
    suspended_until: float = 0.0
    suspensions: int = 0
    _held_at: float | None = None
    _check: IDelayedCall | None = None

    @property
    def holding(self) -> bool:
        return self._held_at is not None

    def update(self, mem: int, *, taking: bool, last_commit: float | None, from_memory: bool) -> None:
        """``mem``: bytes the sink holds; ``taking``: connected with no error; ``last_commit``: reactor
        seconds of the last committed batch; ``from_memory``: nothing to read back from disk."""
        now = self.clock.seconds()
        may = (self.enabled and self.flow is not None and taking and from_memory and now >= self.suspended_until
               and last_commit is not None and now - last_commit < self.patience)
        if not may or mem <= self.low:
            self.release()
        elif mem >= self.high and not self.holding:
            self._hold(now)

    def _hold(self, now: float) -> None:
        assert self.flow is not None
        self._held_at = now
        self.holds += 1
        self.flow.close(SINK)
        self._check = self.clock.callLater(self.patience, self._recheck)

    def _recheck(self) -> None:
        self._check = None
        if self.holding:
            self.recheck()
            if self.holding:  # still taking batches: look again later
                self._check = self.clock.callLater(self.patience, self._recheck)

    def release(self) -> None:
        if self._held_at is None:
            return
        self.held_seconds += self.clock.seconds() - self._held_at
        self._held_at = None
        if self._check is not None and self._check.active():
            self._check.cancel()
        self._check = None
        assert self.flow is not None
        self.flow.reopen(SINK)

    def suspend(self, why: str) -> None:
        """The source says the client is too slow: let the stream run into the event log for a while."""
        now = self.clock.seconds()
        if self.enabled and now >= self.suspended_until:
            self.suspensions += 1
            log.warn("{why}: the Redis sink stops pacing the stream for {s:.0f} s; what Redis cannot take "
                     "at once waits in the event log", why=why, s=SUSPEND_SECONDS)
        self.suspended_until = now + SUSPEND_SECONDS
        self.release()

    def status(self) -> JsonObject:
        now = self.clock.seconds()
        held = self.held_seconds + (now - self._held_at if self._held_at is not None else 0.0)
        return {"enabled": self.enabled, "holding": self.holding, "holds": self.holds,
                "held_seconds": round(held, 3), "suspensions": self.suspensions,
                "suspended_for": round(max(0.0, self.suspended_until - now), 1)}
