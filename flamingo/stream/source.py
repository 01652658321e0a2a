"""The seam between the wader (when to connect) and a source (how to talk to one API).

The wader owns the life of a connection: states, backoff, the stall timer,
the debounce of params changes, the overlap switch and its dedupe. A
``Source`` owns what differs per API: the request (URL, auth, params), the
transport (HTTP lines for v1.1; WebSocket and SSE fit the same ``Link``),
bytes → messages, and the verdict on every failure (retry with a cause, or
fatal with the server's message).

A source's link reports to the wader through ``LinkEvents``; after
``Link.close()`` (an end on purpose) it reports nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred

from flamingo.stream.endpoints import StreamRequest

__all__ = ["Retry", "Fatal", "Verdict", "Link", "LinkEvents", "Source", "JournalTail"]

Params = Mapping[str, Sequence[str]]


@attrs.frozen
class Retry:
    """Try again after the backoff of ``cause`` (network, stall, http, rate_limit, dropped)."""

    cause: str
    message: str


@attrs.frozen
class Fatal:
    """Retrying would only repeat this: wait for new params, credentials or a restart."""

    cause: str  # "http 401", "disconnect 6": what status and metrics show
    message: str  # the server's own words


Verdict = Retry | Fatal


class Link(Protocol):
    """One connection a source opened, from its request to its end."""

    @property
    def request_line(self) -> str: ...

    def abort(self, because: Retry) -> None:
        """End now (a stall): ``LinkEvents.ended`` follows with ``because``,
        unless the server had already said something fatal."""

    def close(self) -> Deferred[None]:
        """End on purpose (restart, replacement, stop): what was received is
        handed on first, then nothing more is reported. Fires when it is gone."""


class LinkEvents(Protocol):
    """What a link tells the wader."""

    def responded(self, link: Link) -> None:
        """The server accepted the request (HTTP 200, WebSocket open)."""

    def refused(self, link: Link, verdict: Verdict) -> None:
        """The connection never opened: network error, HTTP error, timeout."""

    def alive(self, link: Link) -> None:
        """Bytes arrived or were decoded: not a stall."""

    def messages(self, link: Link, frames: list[bytes]) -> None:
        """One batch of messages, in order, as the source frames them."""

    def ended(self, link: Link, verdict: Verdict) -> None:
        """An open connection ended without being closed on purpose."""

    # Optionally also ``flow``: a ``flamingo.stream.flow.Flow`` (the wader has one when its
    # sink does), closed while delivery is behind: a link stops reading while it is closed
    # (``BodyPump(gate=...)`` does this for HTTP bodies). Read it with getattr(events, "flow", None).


class JournalTail(Protocol):
    """The journal as a source sees it at start: what was last received, to resume from."""

    def tail(self, max_events: int, max_bytes: int = 16 << 20) -> list[bytes]:
        """The last events journaled, oldest first (readable ones only)."""


class Source(Protocol):
    """One streaming API. ``TwitterV11Source`` is the first; see docs/ARCHITECTURE.md."""

    @property
    def stream(self) -> str: ...

    def request(self, params: Params) -> StreamRequest | None:
        """The request for these params; None while the stream cannot open
        without params (the wader then waits for them)."""

    def open(self, request: StreamRequest, events: LinkEvents) -> Link:
        """Start a connection; its outcome arrives through ``events``."""

    def apply_params(self, link: Link, params: Params) -> bool:
        """Apply changed params to an open link in place (a message on the
        socket, a REST call); False: the wader reconnects with overlap."""

    def close_idle(self) -> None:
        """Release what outlives connections (connection pools)."""
