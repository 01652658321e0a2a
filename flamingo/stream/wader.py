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
import orjson
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, _HTTP11ClientFactory
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from flamingo import __version__
from flamingo.config import Config
from flamingo.logs import logger
from flamingo.stream.auth import BasicAuth, BearerAuth, OAuth1
from flamingo.stream.backoff import Backoffs, cause_for_status
from flamingo.stream.endpoints import Endpoint, StreamRequest, endpoint_for
from flamingo.stream.framing import StreamDecoder
from flamingo.stream.overlap import RecentIds, message_id
from flamingo.stream.pump import BodyPump

__all__ = ["Wader", "WaderState", "MessageSink", "auth_for", "FATAL_DISCONNECT_CODES"]

log = logger("flamingo.wader")

#: disconnect codes that reconnecting would only repeat (2 duplicate stream,
#: 6 token revoked, 7 admin logout): fatal until params/credentials change or restart.
FATAL_DISCONNECT_CODES = frozenset({2, 6, 7})
_MAX_ERROR_BODY = 4096


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


def auth_for(config: Config) -> Any:
    """The request authenticator the config names."""
    if config.auth == "oauth1":
        o = config.oauth
        return OAuth1(o.consumer_key or "", o.consumer_secret or "", o.token or "",
                      o.token_secret or "")
    if config.auth == "bearer":
        return BearerAuth(config.bearer_token or "")
    return BasicAuth(config.username or "", config.password or "")


class _BodyProtocol(Protocol):
    """Receives one streaming response body and hands it to its connection."""

    def __init__(self, conn: "_Connection") -> None:
        self.conn = conn

    def connectionMade(self) -> None:
        if self.conn.pump is not None:
            self.conn.pump.producer = self.transport

    def dataReceived(self, data: bytes) -> None:
        self.conn.data_received(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.conn.body_lost(reason)


class _Connection:
    """One HTTP streaming request, from request to the end of its body."""

    def __init__(self, wader: "Wader", request: StreamRequest, role: str) -> None:
        self.wader = wader
        self.request = request
        self.role = role  # "active" | "candidate"
        self.protocol: _BodyProtocol | None = None
        self.request_d: defer.Deferred[Any] | None = None
        self.decoder: StreamDecoder | None = None
        self.pump: BodyPump | None = None
        self.stall_call: Any = None
        self.closing = False  # we ended it on purpose: no retry
        self.stalled = False
        self.disconnect_code: int | None = None
        self.disconnect_reason: str | None = None
        self.done: defer.Deferred[None] = defer.Deferred()
        self.timeout_call: Any = None
        self.timed_out = False
        self.finished = False
        self.messages = 0
        self.errors_seen = 0
        self.keepalives_seen = 0
        self.error_counts: dict[str, int] = {}

    def connect_timed_out(self) -> None:
        """No response headers within ``connect_timeout``: give up on this request."""
        self.timeout_call = None
        self.timed_out = True
        if self.request_d is not None:
            self.request_d.cancel()

    def response_arrived(self) -> None:
        self.request_d = None
        if self.timeout_call is not None and self.timeout_call.active():
            self.timeout_call.cancel()
        self.timeout_call = None

    # -- body ---------------------------------------------------------------

    def start_body(self, response: IResponse) -> None:
        encoding = response.headers.getRawHeaders(b"content-encoding", [b""])[0].lower()
        self.decoder = StreamDecoder(self.wader.config.wader.max_message_bytes,
                                     gzip=encoding in (b"gzip", b"x-gzip"))
        self.pump = BodyPump(self.decoder, self.decoded, self.wader.reactor.callLater)
        self.protocol = _BodyProtocol(self)
        self.arm_stall()
        response.deliverBody(self.protocol)

    def arm_stall(self) -> None:
        timeout = self.wader.config.wader.stall_timeout
        if self.stall_call is not None and self.stall_call.active():
            self.stall_call.reset(timeout)
        else:
            self.stall_call = self.wader.clock.callLater(timeout, self.stall)

    def stall(self) -> None:
        self.stall_call = None
        self.stalled = True
        log.warn("No data for {seconds}s on {line}: dropping the connection (stall)",
                 seconds=self.wader.config.wader.stall_timeout, line=self.request.request_line)
        self.abort()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.pump is None:
            return
        self.arm_stall()
        self.pump.data_received(data)

    def decoded(self, frames: list[bytes]) -> bool:
        """One reactor turn of decoding done (the pump's callback): count, log, pass frames on."""
        if self.closing:
            return False
        decoder = self.decoder
        assert decoder is not None
        w = self.wader
        if self.pump is not None and not self.pump.ending:
            self.arm_stall()  # decoding what was received (the transport may be paused): not a stall
        keepalives = decoder.parser.keepalives - self.keepalives_seen
        if keepalives:
            self.keepalives_seen = decoder.parser.keepalives
            w.stats.keepalive(keepalives)
        if decoder.parser.errors_total != self.errors_seen:
            self.errors_seen = decoder.parser.errors_total
            self.count_errors(decoder)
        if frames:
            self.messages += len(frames)
            w.frames_received(self, frames)
        if decoder.broken:
            self.abort()
            return False
        return not self.closing

    def count_errors(self, decoder: StreamDecoder) -> None:
        """Parse errors of one step, in bulk per kind; logged at the 1st, 2nd, 4th, 8th...
        of a kind on this connection: never a log flood, whatever the garbage."""
        samples: dict[str, bytes] = {}
        for err in decoder.take_errors():
            samples.setdefault(err.kind, err.sample)
        for kind, n in decoder.take_error_counts().items():
            sample = samples.get(kind, b"")
            self.wader.stats.parse_error(kind, sample, n)
            before = self.error_counts.get(kind, 0)
            total = self.error_counts[kind] = before + n
            if total.bit_length() > before.bit_length():  # a power of two in (before, total]
                log.warn("Stream parse error ({kind}, #{n} on this connection): {sample!r}",
                         kind=kind, n=total, sample=sample[:120])

    def check_disconnect(self, frame: bytes) -> None:
        try:
            body = orjson.loads(frame)["disconnect"]
            code, reason = int(body.get("code", 0)), str(body.get("reason", ""))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return
        self.disconnect_code, self.disconnect_reason = code, reason
        self.wader.stats.disconnect_message(code, reason)
        log.warn("Disconnect message from the server: code {code}: {reason}",
                 code=code, reason=reason)

    def abort(self) -> None:
        """End the connection now, even if the peer is stalled (no TLS close_notify wait)."""
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.stopProducing()
        elif self.request_d is not None:
            self.request_d.cancel()

    def close(self) -> defer.Deferred[None]:
        """End on purpose (restart, replacement, stop); fires when the body is gone."""
        if self.pump is not None and not self.closing:
            self.pump.drain()  # what was received is handed on (the pump may be behind)
        self.closing = True
        if self.pump is not None:
            self.pump.stop()  # a body that already ended is reported now (closing: no retry)
        if not self.finished:
            self.abort()
        d: defer.Deferred[None] = defer.Deferred()
        if self.finished:
            d.callback(None)
        else:
            self.done.addBoth(lambda _: d.callback(None))
        return d

    def body_lost(self, reason: Failure) -> None:
        if self.pump is not None and not self.closing:
            self.pump.end(lambda: self.body_ended(reason))  # after what is still queued
        else:
            self.body_ended(reason)

    def body_ended(self, reason: Failure) -> None:
        self.finish()
        self.wader.body_lost(self, reason)

    def finish(self) -> None:
        if self.pump is not None:
            self.pump.stop()
        if self.timeout_call is not None and self.timeout_call.active():
            self.timeout_call.cancel()
        self.timeout_call = None
        if self.stall_call is not None and self.stall_call.active():
            self.stall_call.cancel()
        self.stall_call = None
        if not self.finished:
            self.finished = True
            self.done.callback(None)


class Wader(Service):
    """The stream connection service (contract 6)."""

    name = "wader"

    def __init__(self, config: Config, reactor: Any, store: Any, sink: MessageSink,
                 stats: Any = None, clock: Any = None, agent: Any = None,
                 endpoint: Endpoint | None = None, auth: Any = None,
                 now: Callable[[], float] | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.store = store
        self.sink = sink
        self.stats = stats if stats is not None else _NoStats()
        self.endpoint = endpoint if endpoint is not None else endpoint_for(config)
        self.auth = auth if auth is not None else auth_for(config)
        self.pool = _QuietPool(reactor, persistent=False)
        self.agent = agent if agent is not None else Agent(reactor, pool=self.pool)
        # epoch time for status (next_attempt_at); a Clock's seconds() in tests
        self._now = now if now is not None else (
            self.clock.seconds if clock is not None else _time.time)
        self.backoffs = Backoffs(config.wader.backoff)
        self.state = WaderState()
        self.active: _Connection | None = None
        self.candidate: _Connection | None = None
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
        return self.endpoint.stream

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
            self.pool.closeCachedConnections()

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
        for name in ("_retry_call", "_debounce_call", "_healthy_call", "_overlap_call"):
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
        if self.endpoint.needs_params() and not self.endpoint.has_params(params):
            return None
        return self.endpoint.request(params)

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
        self.active = self._open(request, "active", cause)

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
        self.candidate = self._open(request, "candidate", "restart")
        self._cancel(self._overlap_call)
        self._overlap_call = self.clock.callLater(self.config.wader.overlap_timeout,
                                                  self._candidate_timeout)

    def _candidate_timeout(self) -> None:
        self._overlap_call = None
        c = self.candidate
        if c is not None and c.protocol is None:
            log.warn("Replacement stream gave no response in {t}s: keeping the current one",
                     t=self.config.wader.overlap_timeout)
            self.candidate = None
            self._collect = None
            c.close()
        elif self._dedupe is not None:
            self._dedupe = None  # overlap over: stop checking ids

    def _headers(self, request: StreamRequest) -> Headers:
        # POST: the form body is signed; GET: the query, once, through the URL
        signed = request.form if request.method == "POST" else ()
        url = request.url
        h = Headers({
            b"User-Agent": [f"Flamingo/{__version__}".encode()],
            b"Authorization": [self.auth.header(request.method, url, signed)],
        })
        if self.config.wader.gzip:
            h.addRawHeader(b"Accept-Encoding", b"deflate, gzip")
        if request.content_type:
            h.addRawHeader(b"Content-Type", request.content_type)
        return h

    def _open(self, request: StreamRequest, role: str, cause: str) -> _Connection:
        conn = _Connection(self, request, role)
        self._last_attempt = self.clock.seconds()
        self.stats.connection_attempt(cause)
        body = None
        if request.body is not None:
            from twisted.web.client import FileBodyProducer
            from io import BytesIO

            body = FileBodyProducer(BytesIO(request.body))
        d = self.agent.request(request.method.encode(), request.url.encode(),
                               self._headers(request), body)
        conn.request_d = d
        conn.timeout_call = self.clock.callLater(self.config.wader.connect_timeout,
                                                 conn.connect_timed_out)
        d.addCallbacks(lambda r: self._response(conn, r), lambda f: self._request_failed(conn, f))
        d.addErrback(lambda f: log.failure("Wader bug handling a response", f))
        return conn

    def _request_failed(self, conn: _Connection, failure: Failure) -> None:
        conn.response_arrived()
        conn.finish()
        if conn.closing:
            return
        message = failure.getErrorMessage() or failure.type.__name__
        if conn.timed_out:
            message = f"no response within {self.config.wader.connect_timeout}s"
        if conn is self.candidate:
            self._candidate_failed(conn, "network", message)
            return
        if conn is not self.active:
            return
        self.active = None
        self._retry("network", message)

    def _response(self, conn: _Connection, response: IResponse) -> Any:
        conn.response_arrived()
        if conn.closing:
            response.deliverBody(_Discard())
            conn.finish()
            return None
        if response.code == 200:
            if conn is self.candidate:
                self._promote(conn)
            self._connected(conn)
            conn.start_body(response)
            return None
        reader = _ErrorBody()
        d = reader.done
        response.deliverBody(reader)
        d.addTimeout(self.config.wader.connect_timeout, self.clock,
                     onTimeoutCancel=lambda result, timeout: reader.abort())
        d.addCallback(lambda body: self._http_error(conn, response, body))
        return d

    def _connected(self, conn: _Connection) -> None:
        line = conn.request.request_line
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

    def _promote(self, conn: _Connection) -> None:
        """The replacement answered 200: it becomes active, the old one goes."""
        old = self.active
        self.active, self.candidate = conn, None
        conn.role = "active"
        self._dedupe, self._collect = self._collect, None
        self._cancel(self._overlap_call)
        self._overlap_call = self.clock.callLater(self.config.wader.overlap_timeout,
                                                  self._candidate_timeout)
        if old is not None:
            old.role = "old"
            old.close()

    def _candidate_failed(self, conn: _Connection, cause: str, message: str,
                          fatal: bool = False) -> None:
        self.candidate = None
        self._collect = None
        self._cancel(self._overlap_call)
        if fatal:  # the new params are refused: say so, drop the old stream too
            old, self.active = self.active, None
            if old is not None:
                old.close()
            self._fatal(cause, message, conn.request.request_line)
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

    def _http_error(self, conn: _Connection, response: IResponse, body: bytes) -> None:
        conn.finish()
        if conn.closing:
            return
        code = response.code
        text = body[:_MAX_ERROR_BODY].decode("utf-8", "replace").strip()
        message = f"HTTP {code} {response.phrase.decode('latin-1', 'replace')}" + (
            f": {text}" if text else "")
        cause = cause_for_status(code)
        if conn is self.candidate:
            self._candidate_failed(conn, cause, message, fatal=cause == "fatal")
            return
        if conn is not self.active:
            return
        self.active = None
        if cause == "fatal":
            self._fatal(f"http {code}", message, conn.request.request_line)
        else:
            self._retry(cause, message)

    # -- data ---------------------------------------------------------------------

    def frames_received(self, conn: _Connection, frames: list[bytes]) -> None:
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
        for f in frames:
            if f.startswith(b'{"disconnect"'):
                conn.check_disconnect(f)
        if frames:
            self.sink.messages_received(frames)

    def body_lost(self, conn: _Connection, reason: Failure) -> None:
        if conn.closing or conn is not self.active:
            return
        self.active = None
        self._cancel(self._healthy_call)
        if self.candidate is not None:
            # A replacement is on its way: the server dropping the old stream
            # (v1.1 sends disconnect 7 to the oldest connection of an account)
            # is expected. The replacement's outcome decides what happens next.
            log.info("Old stream ended while its replacement connects ({code})",
                     code=conn.disconnect_code or reason.type.__name__)
            return
        if conn.disconnect_code in FATAL_DISCONNECT_CODES:
            self._fatal(f"disconnect {conn.disconnect_code}",
                        f"disconnect {conn.disconnect_code}: {conn.disconnect_reason}",
                        conn.request.request_line)
            return
        if conn.stalled:
            self._retry("stall", f"no data for {self.config.wader.stall_timeout}s")
            return
        if conn.decoder is not None and conn.decoder.broken:
            self._retry("network", "undecodable response body")
            return
        if conn.disconnect_code is not None:
            why = f"disconnect {conn.disconnect_code}: {conn.disconnect_reason}"
        elif reason.check(ResponseDone):
            why = "the server ended the stream"
        else:
            why = f"connection lost: {reason.getErrorMessage() or reason.type.__name__}"
        self._retry("dropped", why)


class _QuietFactory(_HTTP11ClientFactory):
    noisy = False  # no "Starting factory" lines at every (re)connection


class _QuietPool(HTTPConnectionPool):
    """The stream's own pool: one connection per request, never reused."""

    _factory = _QuietFactory


class _ErrorBody(Protocol):
    """Reads at most ``_MAX_ERROR_BODY`` bytes of an error response's message."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        if self.size < _MAX_ERROR_BODY:
            self.parts.append(data)
            self.size += len(data)
        else:
            self.abort()

    def abort(self) -> bytes:
        if self.transport is not None:
            self.transport.stopProducing()
        return b"".join(self.parts)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        if not self.done.called:
            self.done.callback(b"".join(self.parts))


class _Discard(Protocol):
    """Body of a response nobody wants any more: end its connection at once."""

    def connectionMade(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass


class _NoStats:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *a, **k: None
