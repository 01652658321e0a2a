"""The wader: holds the connection to a streaming API through every failure.

One ``Wader`` (a twisted Service) keeps at most one *active* connection,
plus, during a graceful restart, one *candidate* with the new predicates.
The candidate replaces the active connection as soon as its response
status is 200 (Twitter's advice: connect with the new predicates, wait for
the first response, then drop the old connection); frames the new one
repeats from the old one are dropped by id for ``overlap_timeout`` seconds.

States (``WaderState.name``): connecting, connected, retrying, fatal,
waiting_for_params, stopped. Every transition is logged.

Time goes through ``clock`` (an IReactorTime; a ``task.Clock`` in tests),
the network through ``reactor`` (real loopback in tests).
"""

from __future__ import annotations

import time as _time
from typing import Any, Callable, Protocol as TypingProtocol

import attrs
from twisted.application.service import Service
from twisted.internet import defer

from flamingo.config import Config
from flamingo.logs import logger
from flamingo.stream.backoff import Backoffs
from flamingo.stream.endpoints import Endpoint, StreamRequest
from flamingo.stream.overlap import RecentIds, message_id
from flamingo.stream.source import Fatal, Link, Retry, Source, Verdict
from flamingo.stream.twitter import FATAL_DISCONNECT_CODES, TwitterV11Source, auth_for

__all__ = ["Wader", "WaderState", "MessageSink", "auth_for", "FATAL_DISCONNECT_CODES"]

log = logger("flamingo.wader")


class MessageSink(TypingProtocol):
    def connection_started(self, request_line: str) -> None: ...

    def messages_received(self, frames: list[bytes]) -> None: ...


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

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class Wader(Service):
    """The stream connection service (contract 6)."""

    name = "wader"

    def __init__(self, config: Config, reactor: Any, store: Any, sink: MessageSink,
                 stats: Any = None, clock: Any = None, agent: Any = None,
                 endpoint: Endpoint | None = None, auth: Any = None,
                 now: Callable[[], float] | None = None, source: Source | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.store = store
        self.sink = sink
        self.stats = stats if stats is not None else _NoStats()
        self.source: Source = source if source is not None else TwitterV11Source(
            config, reactor, self.clock, self.stats, endpoint=endpoint, auth=auth, agent=agent)
        # epoch time for status (next_attempt_at); a Clock's seconds() in tests
        self._now = now if now is not None else (
            self.clock.seconds if clock is not None else _time.time)
        self.backoffs = Backoffs(config.wader.backoff)
        self.state = WaderState()
        self.active: Link | None = None  # the connection messages come from
        self.candidate: Link | None = None  # its replacement, while it connects
        self._stall_call: Any = None
        self._retry_call: Any = None
        self._debounce_call: Any = None
        self._healthy_call: Any = None
        self._overlap_call: Any = None
        self._last_attempt: float | None = None
        self._next_cause = "initial"
        self._dedupe: RecentIds | None = None  # ids seen on the old connection
        self._collect: RecentIds | None = None  # collecting while a candidate connects
        self._subscribed = False
        self._state_callbacks: list[Callable[[WaderState], None]] = []

    # -- public ---------------------------------------------------------------

    @property
    def stream(self) -> str:
        return self.source.stream

    def startService(self) -> None:
        super().startService()
        if not self._subscribed and hasattr(self.store, "on_change"):
            self.store.on_change(self._store_changed)
            self._subscribed = True
        self._schedule(0.0, "initial")

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self._cancel_timers()
        conns = [c for c in (self.candidate, self.active) if c is not None]
        self.active = self.candidate = None
        ds = [c.close() for c in conns]
        d = defer.gatherResults(ds) if ds else defer.succeed(None)

        def done(_: Any) -> None:
            self._set("stopped")
            self.source.close_idle()

        d.addCallback(done)
        return d

    def restart(self) -> None:
        """Graceful restart now (SIGUSR1, REST, console): overlap if connected."""
        if not self.running:
            return
        log.info("Wader restart requested")
        self._cancel(self._debounce_call)
        self._debounce_call = None
        self._replace()

    def params_changed(self) -> None:
        """Params were edited: one graceful restart after ``debounce`` seconds of quiet."""
        if not self.running:
            return
        delay = self.config.wader.debounce
        if self._debounce_call is not None and self._debounce_call.active():
            self._debounce_call.reset(delay)
        else:
            self._debounce_call = self.clock.callLater(delay, self._debounced)

    # -- state ------------------------------------------------------------------

    def on_state(self, callback: Callable[[WaderState], None]) -> None:
        """Call ``callback(state)`` after every transition (REST events, tests)."""
        self._state_callbacks.append(callback)

    def _set(self, name: str, **kw: Any) -> None:
        old = self.state
        self.state = WaderState(name=name, **kw)
        for cb in list(self._state_callbacks):
            cb(self.state)
        if old.name != name or old.cause != self.state.cause or name == "retrying":
            s = self.state
            if name == "retrying":
                log.warn("Wader state: retrying ({cause}, attempt {attempt}) in {delay:.2f}s{extra}",
                         cause=s.cause, attempt=s.attempt, message=s.message,
                         extra=f": {s.message}" if s.message else "",
                         delay=max(0.0, (s.next_attempt_at or 0) - self._now()))
            elif name == "fatal":
                log.error("Wader state: fatal ({cause}): {message}; waiting for new params, "
                          "credentials or a restart", cause=s.cause, message=s.message)
            else:
                log.info("Wader state: {name}{extra}", name=name,
                         extra=f" ({s.message})" if s.message else "")

    # -- scheduling -------------------------------------------------------------

    def _cancel(self, call: Any) -> None:
        if call is not None and call.active():
            call.cancel()

    def _cancel_timers(self) -> None:
        for name in ("_retry_call", "_debounce_call", "_healthy_call", "_overlap_call",
                     "_stall_call"):
            self._cancel(getattr(self, name))
            setattr(self, name, None)

    def _min_interval_delay(self, delay: float) -> float:
        if self._last_attempt is None:
            return delay
        earliest = self._last_attempt + self.config.wader.min_interval
        return max(delay, earliest - self.clock.seconds())

    def _schedule(self, delay: float, cause: str, message: str | None = None) -> None:
        self._cancel(self._retry_call)
        delay = self._min_interval_delay(delay)
        self._next_cause = cause
        self._retry_call = self.clock.callLater(delay, self._attempt)
        if cause != "initial":
            self._set("retrying", cause=cause, attempt=self.backoffs.attempt(cause),
                      next_attempt_at=self._now() + delay, message=message,
                      request_line=self.state.request_line)

    def _retry(self, cause: str, message: str) -> None:
        if not self.running:
            return
        self._cancel(self._healthy_call)
        self._schedule(self.backoffs.next_delay(cause), cause, message)

    def _fatal(self, cause: str, message: str, request_line: str | None) -> None:
        self._cancel(self._retry_call)
        self._cancel(self._healthy_call)
        self._set("fatal", cause=cause, message=message, request_line=request_line)

    def _store_changed(self, kind: str, name: str) -> None:
        if kind == "params" and name == self.stream:
            self.params_changed()

    def _debounced(self) -> None:
        self._debounce_call = None
        log.info("Stream params changed: reconnecting with the new predicates")
        self._replace()

    def _replace(self) -> None:
        """Reconnect with the current params, overlapping if a connection is up."""
        if self.active is not None and self.state.name == "connected":
            if self.candidate is not None:
                self.candidate.close()
                self.candidate = None
            delay = self._min_interval_delay(0.0)
            if delay > 0:
                self._cancel(self._retry_call)
                self._retry_call = self.clock.callLater(delay, self._replace)
                return
            self._start_candidate()
        else:
            self._cancel(self._retry_call)
            self._retry_call = None
            if self.active is not None:
                self.active.close()
                self.active = None
            self._schedule(0.0, "restart")

    # -- connecting -------------------------------------------------------------

    def _build_request(self) -> StreamRequest | None:
        params = self.store.params(self.stream) if self.store is not None else {}
        return self.source.request(params)

    def _attempt(self) -> None:
        self._retry_call = None
        if not self.running:
            return
        request = self._build_request()
        if request is None:
            self._set("waiting_for_params", message=f"no predicates for the {self.stream} stream")
            return
        cause = self._next_cause
        self._set("connecting", cause=None if cause == "initial" else cause,
                  attempt=self.backoffs.attempt(cause), request_line=request.request_line)
        log.info("Connecting to stream: {line}", line=request.request_line)
        self.active = self._open(request, cause)

    def _start_candidate(self) -> None:
        request = self._build_request()
        if request is None:  # predicates removed: close the stream and wait
            old, self.active = self.active, None
            if old is not None:
                old.close()
            self._cancel(self._healthy_call)
            self._set("waiting_for_params", message=f"no predicates for the {self.stream} stream")
            return
        log.info("Connecting replacement stream: {line}", line=request.request_line)
        self._collect = RecentIds(self.config.wader.dedupe_window)
        self.candidate = self._open(request, "restart")
        self._cancel(self._overlap_call)
        self._overlap_call = self.clock.callLater(self.config.wader.overlap_timeout,
                                                  self._candidate_timeout)

    def _candidate_timeout(self) -> None:
        self._overlap_call = None
        c = self.candidate
        if c is not None:
            log.warn("Replacement stream gave no response in {t}s: keeping the current one",
                     t=self.config.wader.overlap_timeout)
            self.candidate = None
            self._collect = None
            c.close()
        elif self._dedupe is not None:
            self._dedupe = None  # overlap over: stop checking ids

    def _open(self, request: StreamRequest, cause: str) -> Link:
        self._last_attempt = self.clock.seconds()
        self.stats.connection_attempt(cause)
        return self.source.open(request, self)

    # -- what links report (LinkEvents) -------------------------------------------

    def responded(self, link: Link) -> None:
        if link is self.candidate:
            self._promote(link)
        elif link is not self.active:
            return
        self._connected(link)

    def refused(self, link: Link, verdict: Verdict) -> None:
        fatal = isinstance(verdict, Fatal)
        if link is self.candidate:
            self._candidate_failed(link, verdict.cause, verdict.message, fatal=fatal)
            return
        if link is not self.active:
            return
        self.active = None
        if fatal:
            self._fatal(verdict.cause, verdict.message, link.request_line)
        else:
            self._retry(verdict.cause, verdict.message)

    def alive(self, link: Link) -> None:
        if link is not self.active:
            return
        timeout = self.config.wader.stall_timeout
        if self._stall_call is not None and self._stall_call.active():
            self._stall_call.reset(timeout)
        else:
            self._stall_call = self.clock.callLater(timeout, self._stalled, link)

    def _stalled(self, link: Link) -> None:
        self._stall_call = None
        if link is not self.active:
            return
        seconds = self.config.wader.stall_timeout
        log.warn("No data for {seconds}s on {line}: dropping the connection (stall)",
                 seconds=seconds, line=link.request_line)
        link.abort(Retry("stall", f"no data for {seconds}s"))

    def _connected(self, conn: Link) -> None:
        line = conn.request_line
        self._set("connected", connected_since=self._now(), request_line=line)
        log.info("Listening on stream: {line}", line=line)
        self.sink.connection_started(line)
        self._cancel(self._healthy_call)
        self._healthy_call = self.clock.callLater(self.config.wader.healthy_after, self._healthy)

    def _healthy(self) -> None:
        self._healthy_call = None
        if self.backoffs.attempts:
            log.info("Connection healthy for {t}s: backoff reset",
                     t=self.config.wader.healthy_after)
        self.backoffs.reset()

    def _promote(self, conn: Link) -> None:
        """The replacement answered 200: it becomes active, the old one goes."""
        old = self.active
        self.active, self.candidate = conn, None
        self._dedupe, self._collect = self._collect, None
        self._cancel(self._overlap_call)
        self._overlap_call = self.clock.callLater(self.config.wader.overlap_timeout,
                                                  self._candidate_timeout)
        if old is not None:
            old.close()

    def _candidate_failed(self, conn: Link, cause: str, message: str,
                          fatal: bool = False) -> None:
        self.candidate = None
        self._collect = None
        self._cancel(self._overlap_call)
        if fatal:  # the new params are refused: say so, drop the old stream too
            old, self.active = self.active, None
            if old is not None:
                old.close()
            self._fatal(cause, message, conn.request_line)
            return
        if self.active is None:  # the old stream is gone too: an ordinary failure
            log.warn("Replacement stream failed ({cause}: {message})", cause=cause,
                     message=message)
            self._retry(cause, message)
            return
        delay = self.backoffs.next_delay(cause)
        log.warn("Replacement stream failed ({cause}: {message}); keeping the current one, "
                 "trying again in {delay:.2f}s", cause=cause, message=message, delay=delay)
        self._cancel(self._retry_call)
        self._retry_call = self.clock.callLater(self._min_interval_delay(delay), self._replace)

    # -- data ---------------------------------------------------------------------

    def messages(self, conn: Link, frames: list[bytes]) -> None:
        if self._collect is not None and conn is self.active:
            for f in frames:  # ids the replacement may repeat
                mid = message_id(f)
                if mid is not None:
                    self._collect.add(mid)
        elif self._dedupe is not None and conn is self.active:
            seen = self._dedupe
            kept = []
            for f in frames:
                mid = message_id(f)
                if mid is not None and mid in seen:
                    continue
                kept.append(f)
            if len(kept) != len(frames):
                self.stats.duplicates(len(frames) - len(kept))
                frames = kept
        if frames:
            self.sink.messages_received(frames)

    def ended(self, conn: Link, verdict: Verdict) -> None:
        if conn is not self.active:
            return
        self.active = None
        self._cancel(self._healthy_call)
        self._cancel(self._stall_call)
        if self.candidate is not None:
            # A replacement is on its way: the server dropping the old stream
            # (v1.1 sends disconnect 7 to the oldest connection of an account)
            # is expected. The replacement's outcome decides what happens next.
            log.info("Old stream ended while its replacement connects ({message})",
                     message=verdict.message)
            return
        if isinstance(verdict, Fatal):
            self._fatal(verdict.cause, verdict.message, conn.request_line)
        else:
            self._retry(verdict.cause, verdict.message)


class _NoStats:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *a, **k: None
