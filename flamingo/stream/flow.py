"""Back-pressure from delivery to the stream: a gate the reader waits at.

The gate has holders, each closing it for its own reason; it is open when
none holds it. The journal's writer thread (``JOURNAL``) holds it while the
bytes waiting to be written are above a high-water mark, down to a low one;
the Redis sink (``SINK``) while its in-memory backlog is high and Redis is
taking batches (``dispatch/sink_pace.py``). A source's
reader (``BodyPump``) checks the gate before each turn of decoding: while it
is closed the pump pauses its transport (``pauseProducing``: the socket is not
read, TCP's window pushes back on the server) and resumes when it opens. A
source without a pump finds the gate as ``LinkEvents.flow`` (the wader's) and
can do the same; the writer also has a hard cap of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

__all__ = ["Flow", "FlowWait", "Producing", "producing", "JOURNAL", "SINK"]

JOURNAL = "journal"  # the event log's writer is behind
SINK = "redis"  # the Redis sink paces the stream


class Producing(Protocol):
    """A transport as a push producer: what a link pauses, resumes or stops reading."""

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None: ...


def producing(transport: object) -> Producing:
    """``transport`` as the producer it is: TCP and the Agent's response transports declare
    ``IPushProducer``, TLS (``TLSMemoryBIOProtocol``) has the methods without declaring it."""
    return cast(Producing, transport)


class FlowWait:
    """One waiter at a closed gate; ``cancel()`` withdraws it (an ``IDelayedCall``'s shape)."""

    def __init__(self, flow: Flow, callback: Callable[[], None]) -> None:
        self._flow = flow
        self._callback = callback
        self._pending = True

    def active(self) -> bool:
        return self._pending

    def cancel(self) -> None:
        if self._pending:
            self._pending = False
            self._flow._forget(self)

    def _fire(self) -> None:
        if self._pending:
            self._pending = False
            self._callback()


class Flow:
    """Open (read on) or closed by one or more holders (pause reading); counts how often and
    how long it was closed."""

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        self.open = True
        self.pauses = 0  # times the gate closed
        self.paused_seconds = 0.0  # how long it was closed, in all (with ``now``)
        self._now = now
        self._closed_at = 0.0
        self._waiters: list[FlowWait] = []
        self._holders: set[str] = set()

    def close(self, holder: str = JOURNAL) -> None:
        """``holder`` holds the gate closed until it calls ``reopen(holder)``."""
        self._holders.add(holder)
        if self.open:
            self.open = False
            self.pauses += 1
            if self._now is not None:
                self._closed_at = self._now()

    def reopen(self, holder: str = JOURNAL) -> None:
        """``holder`` lets go; once no holder is left the gate opens and the waiters run,
        in the order they came."""
        self._holders.discard(holder)
        if self.open or self._holders:
            return
        self.open = True
        if self._now is not None:
            self.paused_seconds += self._now() - self._closed_at
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w._fire()

    def when_open(self, callback: Callable[[], None]) -> FlowWait:
        """``callback()`` when the gate opens (at once if it is open)."""
        w = FlowWait(self, callback)
        if self.open:
            w._fire()
        else:
            self._waiters.append(w)
        return w

    def _forget(self, w: FlowWait) -> None:
        try:
            self._waiters.remove(w)
        except ValueError:
            pass

    def held_by(self, holder: str) -> bool:
        return holder in self._holders

    def status(self) -> dict[str, float | int | bool | list[str]]:
        return {"open": self.open, "pauses": self.pauses, "paused_seconds": round(self.paused_seconds, 3),
                "held_by": sorted(self._holders)}
