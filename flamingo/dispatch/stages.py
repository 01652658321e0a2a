"""CPU seconds per stage of the delivery path: ``/meta.json``'s ``cpu``, read by the bench.

Counted per batch with ``time.thread_time()`` (a few clock reads per batch,
never per event), so a regression shows where it is: the dispatcher's own
work on the reactor thread (line check, typing, stats, hand-over), the event
log's writes (the journal writer thread's CPU, or the reactor's when the
journal writes inline), the Redis sink's batch building. ``reactor`` is the
reactor thread's whole CPU time (``snapshot()`` runs on it), so what the
reactor spends reading and parsing the stream and on its sockets is
``reactor - dispatch - sink`` (minus ``journal`` when it is inline).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs

from flamingo._types import JsonObject

__all__ = ["StageCpu"]


@attrs.define
class StageCpu:
    """Cumulative CPU seconds per stage (see the module doc)."""

    dispatch: float = 0.0
    journal: float = 0.0
    journal_inline: float = 0.0  # the part of ``journal`` spent on the reactor thread
    journal_thread: bool = False  # a writer thread does (most of) the journal's writes
    sink: Callable[[], float] = lambda: 0.0

    def snapshot(self) -> JsonObject:
        reactor = time.thread_time()  # the caller is the reactor thread
        dispatch, journal, sink = self.dispatch, self.journal, self.sink()
        inline = self.journal_inline
        return {"process": round(time.process_time(), 4), "reactor": round(reactor, 4),
                "stream": round(max(0.0, reactor - dispatch - sink - inline), 4),
                "dispatch": round(dispatch, 4), "journal": round(journal, 4),
                "journal_reactor": round(inline, 4), "sink": round(sink, 4),
                "journal_thread": self.journal_thread}
