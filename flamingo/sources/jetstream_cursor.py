"""Where a Jetstream subscription resumes, and which replayed events are repeats (pure).

Jetstream's cursor is an event's ``time_us``: ``?cursor=T`` replays every
event from T on (delivery is at least once). Flamingo resumes, after a
reconnect or a restart (even after ``kill -9``: the journal on disk is the
truth), from ``last − rewind``, where ``last`` is the newest ``time_us``
handed on (at start: the newest one in the journal's tail). What the replay
repeats is dropped before the journal:

- an event whose key (did, time_us, kind, collection, rkey) the window of
  recent keys holds is a repeat;
- an event at or before the resume point that the window can no longer
  vouch for (older than what it has forgotten) is a repeat too: it was
  received before what the journal holds.

The window is bounded (``size`` keys, oldest forgotten first) and remembers
the newest ``time_us`` it forgot (``floor``; before anything is forgotten,
just before the first event ever handed on: a rewind past the first
connection's start brings events Flamingo never subscribed to, and they are
dropped too), so the second rule is exact for
a server whose ``time_us`` grows with its own order (Jetstream's does: it is
the time the instance saw the event) and never drops an event the window can
decide by key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable

import attrs

from flamingo.sources.jetstream_events import EventHead, head

__all__ = ["ResumeWindow"]


@attrs.define
class ResumeWindow:
    """The newest ``time_us`` handed on, the recent keys, the resume point of the link."""

    size: int = 50_000
    last: int | None = None  # the newest time_us handed on (or journaled, at start)
    floor: int | None = None  # the newest time_us the window has forgotten
    resume_point: int | None = None  # ``last`` when the current connection was asked for
    _keys: OrderedDict[Hashable, int] = attrs.field(factory=OrderedDict)

    def seed(self, frames: Iterable[bytes]) -> int:
        """Remember journaled events (oldest first); how many were Jetstream events."""
        n = 0
        for raw in frames:
            h = head(raw)
            if h is not None:
                self.handed_on(h)
                n += 1
        return n

    def cursor(self, rewind_us: int, since: int | None = None) -> int | None:
        """The ``cursor`` of the next connection: ``rewind_us`` before the newest event
        handed on; before any, ``rewind_us`` before ``since`` (when the first
        connection was opened, so a first connection that ended before its
        first event leaves no gap); None (live) for the very first. Pure: asking
        is not connecting (``opening`` marks the resume point)."""
        base = self.last if self.last is not None else since
        if base is None:
            return None
        return max(0, base - rewind_us)

    def opening(self) -> None:
        """A connection opens now with ``cursor()``: what came before is the resume point."""
        self.resume_point = self.last

    def is_repeat(self, h: EventHead) -> bool:
        if h.key in self._keys:
            return True
        point = self.resume_point
        return point is not None and self.floor is not None and h.time_us <= min(point, self.floor)

    def handed_on(self, h: EventHead) -> None:
        """``h`` goes on to the journal: remember it."""
        keys = self._keys
        if self.floor is None and not keys:
            # the first event ever: what a later replay brings from before it was never
            # subscribed to (the first connection is live, without a cursor)
            self.floor = h.time_us - 1
        if h.key not in keys:
            keys[h.key] = h.time_us
            while len(keys) > self.size:
                _, t = keys.popitem(last=False)
                if self.floor is None or t > self.floor:
                    self.floor = t
        if self.last is None or h.time_us > self.last:
            self.last = h.time_us

    def __len__(self) -> int:
        return len(self._keys)
