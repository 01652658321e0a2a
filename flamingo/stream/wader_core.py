"""What every state of the wader's machine shares: config, clock, source, sink, reports.

The machine (``machine.py``) decides which of these run when; this class
does them: schedule attempts, open links, report states (``WaderState``,
logged once per change), drop repeats after a switch, and close links on
stop. It keeps no connection of its own: those live in the states' data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from flamingo._types import JsonObject
from flamingo.config import Config
from flamingo.logs import logger
from flamingo.stream.backoff import Backoffs
from flamingo.stream.endpoints import StreamRequest
from flamingo.stream.overlap import RecentIds, message_id
from flamingo.stream.source import Fatal, Link, LinkEvents, Retry, Source

__all__ = ["Core", "Links", "WaderState", "MessageSink", "ParamsReader", "WaderStats"]

log = logger("flamingo.wader")


class MessageSink(Protocol):
    def connection_started(self, request_line: str) -> None: ...

    def messages_received(self, frames: list[bytes]) -> None: ...


class ParamsReader(Protocol):
    def params(self, stream: str) -> Mapping[str, Sequence[str]]: ...


class WaderStats(Protocol):
    def connection_attempt(self, cause: str) -> None: ...

    def duplicates(self, n: int) -> None: ...


@attrs.frozen
class WaderState:
    """What REST and the console show; replaced (never mutated) on each transition."""

    name: str = "stopped"
    cause: str | None = None
    attempt: int = 0
    next_attempt_at: float | None = None
    message: str | None = None
    connected_since: float | None = None
    request_line: str | None = None

    def to_dict(self) -> JsonObject:
        return attrs.asdict(self)


@attrs.frozen
class Links:
    """What the wader has open now (status, tests)."""

    active: Link | None = None
    candidate: Link | None = None
    deduping: bool = False


@attrs.define(eq=False)
class Core:
    config: Config
    clock: IReactorTime
    now: Callable[[], float]  # epoch time for status (a Clock's seconds() in tests)
    source: Source
    sink: MessageSink
    stats: WaderStats
    store: ParamsReader | None
    events: LinkEvents
    backoffs: Backoffs
    state: WaderState = WaderState()
    listeners: list[Callable[[WaderState], None]] = attrs.Factory(list)
    last_attempt: float | None = None
    links: Links = Links()  # a view for status and tests; the machine's data is the truth
    log: Logger = log

    # -- reports ------------------------------------------------------------------

    def report(self, s: WaderState) -> None:
        old, self.state = self.state, s
        name = s.name
        for cb in list(self.listeners):
            cb(s)
        if old.name == name and old.cause == s.cause and name != "retrying":
            return
        if name == "retrying":
            log.warn("Wader state: retrying ({cause}, attempt {attempt}) in {delay:.2f}s{extra}",
                     cause=s.cause, attempt=s.attempt, message=s.message,
                     extra=f": {s.message}" if s.message else "",
                     delay=max(0.0, (s.next_attempt_at or 0) - self.now()))
        elif name == "fatal":
            log.error("Wader state: fatal ({cause}): {message}; waiting for new params, "
                      "credentials or a restart", cause=s.cause, message=s.message)
        else:
            log.info("Wader state: {name}{extra}", name=name,
                     extra=f" ({s.message})" if s.message else "")

    def waiting_for_params(self) -> None:
        self.report(WaderState("waiting_for_params",
                                message=f"no predicates for the {self.source.stream} stream"))

    def fatal(self, verdict: Fatal, request_line: str | None) -> None:
        self.report(WaderState("fatal", cause=verdict.cause, message=verdict.message,
                               request_line=request_line))

    def connected(self, link: Link) -> None:
        line = link.request_line
        self.report(WaderState("connected", connected_since=self.now(), request_line=line))
        log.info("Listening on stream: {line}", line=line)
        self.sink.connection_started(line)

    def healthy(self) -> None:
        if self.backoffs.attempts:
            log.info("Connection healthy for {t}s: backoff reset",
                     t=self.config.wader.healthy_after)
        self.backoffs.reset()

    def log_replacement_failed(self, verdict: Retry, delay: float) -> None:
        log.warn("Replacement stream failed ({cause}: {message}); keeping the current one, "
                 "trying again in {delay:.2f}s", cause=verdict.cause, message=verdict.message,
                 delay=delay)

    # -- time -----------------------------------------------------------------------

    def min_interval_delay(self, delay: float) -> float:
        if self.last_attempt is None:
            return delay
        earliest = self.last_attempt + self.config.wader.min_interval
        return max(delay, earliest - self.clock.seconds())

    def schedule(self, due: Callable[[], None], delay: float, cause: str,
                 message: str | None) -> IDelayedCall:
        delay = self.min_interval_delay(delay)
        call = self.clock.callLater(delay, due)
        if cause != "initial":
            self.report(WaderState("retrying", cause=cause, attempt=self.backoffs.attempt(cause),
                                   next_attempt_at=self.now() + delay, message=message,
                                   request_line=self.state.request_line))
        return call

    def rearm(self, call: IDelayedCall | None, delay: float,
              fire: Callable[[Link], None], link: Link) -> IDelayedCall:
        if call is not None and call.active():
            call.reset(delay)
            return call
        return self.clock.callLater(delay, fire, link)

    # -- links ------------------------------------------------------------------------

    def request(self) -> StreamRequest | None:
        params = self.store.params(self.source.stream) if self.store is not None else {}
        return self.source.request(params)

    def _link(self, request: StreamRequest, cause: str) -> Link:
        self.last_attempt = self.clock.seconds()
        self.stats.connection_attempt(cause)
        return self.source.open(request, self.events)

    def connect(self, request: StreamRequest, cause: str) -> Link:
        """Open the stream (``cause``: why this attempt: initial, restart, a retry's)."""
        self.report(WaderState("connecting", cause=None if cause == "initial" else cause,
                               attempt=self.backoffs.attempt(cause), request_line=request.request_line))
        log.info("Connecting to stream: {line}", line=request.request_line)
        return self._link(request, cause)

    def applied_in_place(self, link: Link) -> bool:
        """Params changed: True when the source applied them to the open link."""
        params = self.store.params(self.source.stream) if self.store is not None else {}
        if self.source.request(params) is None:
            return False  # no params left: the wader closes the stream and waits
        if not self.source.apply_params(link, params):
            return False
        log.info("Stream params applied on the open connection: {line}", line=link.request_line)
        self.state = attrs.evolve(self.state, request_line=link.request_line)  # status shows them
        return True

    def open_replacement(self, request: StreamRequest) -> Link:
        """The candidate of a switch."""
        log.info("Connecting replacement stream: {line}", line=request.request_line)
        return self._link(request, "restart")

    def stall(self, link: Link) -> None:
        seconds = self.config.wader.stall_timeout
        log.warn("No data for {seconds}s on {line}: dropping the connection (stall)",
                 seconds=seconds, line=link.request_line)
        link.abort(Retry("stall", f"no data for {seconds}s"))

    def stopped(self, links: Iterable[Link], done: Deferred[None]) -> None:
        """Close ``links``; then report "stopped" and fire ``done``."""
        closing = [link.close() for link in links]

        self.links = Links()

        def gone(_: object) -> None:
            self.report(WaderState("stopped"))
            self.source.close_idle()
            done.callback(None)

        if closing:
            gatherResults(closing).addCallback(gone)
        else:
            gone(None)

    # -- messages -------------------------------------------------------------------------

    def deliver(self, frames: list[bytes]) -> None:
        if frames:
            self.sink.messages_received(frames)

    def collect(self, ids: RecentIds, frames: list[bytes]) -> None:
        for f in frames:
            mid = message_id(f)
            if mid is not None:
                ids.add(mid)

    def drop_repeats(self, seen: RecentIds, frames: list[bytes]) -> list[bytes]:
        kept = []
        for f in frames:
            mid = message_id(f)
            if mid is not None and mid in seen:
                continue
            kept.append(f)
        if len(kept) != len(frames):
            self.stats.duplicates(len(frames) - len(kept))
        return kept


