"""The WebSocket transport: one connection whose messages are a source's events.

A ``WebSocketLink`` speaks RFC 6455 through autobahn's Twisted protocol and
reports to the wader through ``LinkEvents``, like ``HttpLineLink`` does for
HTTP lines. What differs per API stays with the source:

- a ``FrameDecoder`` turns each WebSocket message into event bytes (Jetstream:
  zstd decompression; Mastodon: its JSON reshaped), or None for a message that
  is no event; it raises ``FrameError`` for a message it cannot read (counted,
  the rest flows) and ``EndNotice`` for a server's "I am closing because..."
  (Jetstream's ``ConsumerTooSlow``), whose verdict the end then carries;
- ``send()`` carries client messages (``options_update``, ``subscribe``), and
  ``hello`` messages go out as soon as the socket opens, before anything is
  reported (Jetstream's ``requireHello``, Mastodon's subscriptions).

Dead connections: the link pings every ``ping_interval`` seconds; a pong, like
every message, is ``alive``, so a peer that stopped answering stalls the
wader's timer (fed only by ``alive``) and is aborted. Every timer runs on
``clock`` (a ``task.Clock`` in tests); autobahn's own timers are switched off.
The network goes through ``reactor`` (TLS verified by
``optionsForClientTLS`` for ``wss://``; ``ws://`` for loopback).

Verdicts: a refused handshake is judged by its HTTP status as for HTTP
sources (401/403/... fatal, 420/429 rate limit, others http); a close code of
an open connection by ``close_verdict``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol as TypingProtocol
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IProtocol, IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.python.failure import Failure

from flamingo.errors import failure_text
from flamingo.logs import logger
from flamingo.stream.backoff import cause_for_status
from flamingo.stream.endpoints import StreamRequest
from flamingo.stream.flow import Flow, FlowWait, producing
from flamingo.stream.source import Fatal, LinkEvents, Retry, Verdict

__all__ = ["WebSocketLink", "FrameDecoder", "FrameError", "EndNotice", "FrameStats",
           "close_verdict", "handshake_verdict", "FATAL_CLOSE_CODES"]

log = logger("flamingo.wader")

MAX_ERROR_BODY = 4096

#: close codes that reconnecting would only repeat: the server rejects what we
#: send (1002 protocol error, 1003 unsupported data, 1007 invalid payload,
#: 1008 policy violation: Jetstream's answer to bad options, 1010 extension).
FATAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1010})
#: close codes of a server in trouble (1011 internal error, 1013 try again
#: later): the http schedule (5 s, doubling) rather than an immediate retry.
_TROUBLE_CLOSE_CODES = frozenset({1011, 1013, 1014})


class FrameError(Exception):
    """A message the decoder could not read (``kind``: what failed)."""

    def __init__(self, kind: str, sample: bytes = b"") -> None:
        super().__init__(kind)
        self.kind = kind
        self.sample = sample[:120]


class EndNotice(Exception):
    """The server said why it is about to close; the end carries ``verdict``."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict


#: (message payload, is_binary) -> event bytes, or None for a message that is no event
FrameDecoder = Callable[[bytes, bool], "bytes | None"]


class FrameStats(TypingProtocol):
    def parse_error(self, kind: str, sample: bytes, n: int) -> None: ...


def close_verdict(code: int | None, reason: str) -> Verdict:
    """What an open connection's end means, by its close code (None: no close frame)."""
    if code is None or code == 1006:
        return Retry("dropped", "connection lost" + (f": {reason}" if reason else ""))
    message = f"close {code}" + (f": {reason}" if reason else "")
    if code in FATAL_CLOSE_CODES:
        return Fatal(f"close {code}", message)
    if code in _TROUBLE_CLOSE_CODES:
        return Retry("http", message)
    return Retry("dropped", message)  # 1000, 1001 going away, 1012 restart, 4xxx


def handshake_verdict(status: int | None, phrase: str, body: str, why: str) -> Verdict:
    """A handshake that failed: by its HTTP status when the server sent one."""
    if status is None:
        return Retry("network", why)
    message = f"HTTP {status} {phrase}".rstrip() + (f": {body}" if body else "")
    cause = cause_for_status(status)
    if cause == "fatal":
        return Fatal(f"http {status}", message)
    return Retry(cause, message)


class _Protocol(WebSocketClientProtocol):
    """autobahn's callbacks, handed to the link."""

    @property
    def link(self) -> WebSocketLink:
        link: WebSocketLink = self.factory.link  # set by WebSocketLink on its own factory
        return link

    def onOpen(self) -> None:
        self.link.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.link.message(payload, isBinary)

    def onPong(self, payload: bytes) -> None:
        self.link.pong()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.link.lost(code if wasClean else None, reason or "")

    def failHandshake(self, reason: str) -> None:
        status: int | None = None
        phrase = ""
        line = getattr(self, "http_status_line", None)  # set once the status line was read
        if isinstance(line, str):
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[1].isdigit():
                status, phrase = int(parts[1]), parts[2] if len(parts) > 2 else ""
        body = b""
        data = getattr(self, "data", b"")
        end = data.find(b"\r\n\r\n") if isinstance(data, bytes) else -1
        if end >= 0:
            body = data[end + 4:end + 4 + MAX_ERROR_BODY]
        self.link.handshake_failed(status, phrase, body.decode("utf-8", "replace").strip(), reason)
        super().failHandshake(reason)  # type: ignore[no-untyped-call]  # autobahn: unannotated


class WebSocketLink:
    """One WebSocket connection, from its handshake to its end."""

    def __init__(self, request: StreamRequest, headers: Mapping[str, str], decoder: FrameDecoder,
                 events: LinkEvents, *, reactor: object, clock: IReactorTime, turns: IReactorTime,
                 stats: FrameStats, connect_timeout: float, ping_interval: float,
                 max_message_bytes: int, user_agent: str, close_timeout: float = 2.0,
                 trust: Certificate | None = None, hello: Sequence[bytes] = ()) -> None:
        self.request = request
        self.decoder = decoder
        self.events = events
        self.clock = clock
        self.turns = turns  # batching: one report per reactor turn (the real reactor, also in tests)
        self.stats = stats
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.close_timeout = close_timeout
        self.hello = tuple(hello)
        self.protocol: _Protocol | None = None
        self.is_open = False
        self.closing = False  # ended on purpose: nothing more is reported
        self.finished = False
        self.aborted: Retry | None = None
        self.notice: Verdict | None = None  # what the server said before closing
        self.refusal: Verdict | None = None
        self.timed_out = False
        self.pending: list[bytes] = []
        self.flush_call: IDelayedCall | None = None
        self.gate_wait: FlowWait | None = None  # reading paused until delivery's gate opens
        self.ping_call: IDelayedCall | None = None
        self.close_call: IDelayedCall | None = None
        self.pings_sent = 0
        self.pongs = 0
        self.error_counts: dict[str, int] = {}
        self.done: defer.Deferred[None] = defer.Deferred()
        self.factory = _factory(request.url, headers, user_agent, max_message_bytes, reactor)
        self.factory.link = self
        self.timeout_call: IDelayedCall | None = clock.callLater(connect_timeout, self._timed_out)
        self.connect_d: defer.Deferred[IProtocol] | None = _endpoint(reactor, request.url, trust).connect(
            self.factory)
        self.connect_d.addCallbacks(self._connected, self._connect_failed)

    @property
    def request_line(self) -> str:
        return self.request.request_line

    # -- opening --------------------------------------------------------------------

    def _connected(self, protocol: IProtocol) -> None:
        self.connect_d = None
        assert isinstance(protocol, _Protocol)  # built by our factory
        self.protocol = protocol
        if self.closing:
            protocol.dropConnection(abort=True)

    def _connect_failed(self, failure: Failure) -> None:
        self.connect_d = None
        message = failure_text(failure)
        if self.timed_out:
            message = f"no response within {self.connect_timeout}s"
        self._finish()
        if not self.closing:
            self.events.refused(self, Retry("network", message))

    def _timed_out(self) -> None:
        self.timeout_call = None
        self.timed_out = True
        self.refusal = Retry("network", f"no response within {self.connect_timeout}s")
        self._drop()

    def handshake_failed(self, status: int | None, phrase: str, body: str, why: str) -> None:
        if self.refusal is None:
            self.refusal = handshake_verdict(status, phrase, body, why)

    def opened(self, protocol: _Protocol) -> None:
        self.protocol = protocol
        _cancel(self.timeout_call)
        self.timeout_call = None
        if self.closing:
            return
        self.is_open = True
        for message in self.hello:  # what the server needs first (Jetstream's requireHello)
            protocol.sendMessage(message, isBinary=False)  # type: ignore[no-untyped-call]  # autobahn
        self.events.responded(self)
        if self.closing:  # closed on hearing the answer
            return
        self.events.alive(self)
        self.ping_call = self.clock.callLater(self.ping_interval, self._ping)

    # -- messages ----------------------------------------------------------------------

    def message(self, payload: bytes, is_binary: bool) -> None:
        if self.closing:
            return
        try:
            event = self.decoder(payload, is_binary)
        except FrameError as e:
            self.stats.parse_error(e.kind, e.sample or payload[:120], 1)
            n = self.error_counts[e.kind] = self.error_counts.get(e.kind, 0) + 1
            if n & (n - 1) == 0:  # the 1st, 2nd, 4th, 8th... of a kind: never a log flood
                log.warn("Undecodable WebSocket message ({kind}, #{n} on this connection): {sample!r}",
                         kind=e.kind, n=n, sample=(e.sample or payload)[:120])
            event = None
        except EndNotice as e:
            self.notice = e.verdict
            log.warn("The server is closing the stream: {message}", message=e.verdict.message)
            event = None
        if event is not None:
            self.pending.append(event)
        if self.flush_call is None:
            self.flush_call = self.turns.callLater(0, self._flush)

    def _flush(self) -> None:
        """What arrived in one reactor turn, as one batch; ``alive`` once for all of it."""
        self.flush_call = None
        frames, self.pending = self.pending, []
        if self.closing:
            return
        if frames:
            self.events.messages(self, frames)
        if not self.closing:
            self.events.alive(self)
            self._wait_for_gate()

    def _wait_for_gate(self) -> None:
        """Back-pressure: while delivery's gate (``LinkEvents.flow``) is closed, the socket
        is not read (TCP's window pushes back on the server); reading resumes when it opens."""
        gate: Flow | None = getattr(self.events, "flow", None)
        transport = self.protocol.transport if self.protocol is not None else None
        if gate is None or gate.open or transport is None or self.gate_wait is not None:
            return
        producing(transport).pauseProducing()
        self.gate_wait = gate.when_open(self._gate_opened)

    def _gate_opened(self) -> None:
        self.gate_wait = None
        transport = self.protocol.transport if self.protocol is not None else None
        if transport is not None and not self.finished:
            producing(transport).resumeProducing()

    def _drain(self) -> None:
        _cancel(self.flush_call)
        self.flush_call = None
        if self.pending and not self.closing:
            frames, self.pending = self.pending, []
            self.events.messages(self, frames)

    def pong(self) -> None:
        self.pongs += 1
        if not self.closing:
            self.events.alive(self)

    def _ping(self) -> None:
        self.ping_call = None
        if self.protocol is None or self.finished or self.closing:
            return
        self.pings_sent += 1
        self.protocol.sendPing()
        self.ping_call = self.clock.callLater(self.ping_interval, self._ping)

    def send(self, payload: bytes) -> bool:
        """A client message (text); False when the connection is not open."""
        if not self.is_open or self.finished or self.closing or self.protocol is None:
            return False
        self.protocol.sendMessage(payload, isBinary=False)  # type: ignore[no-untyped-call]  # autobahn
        return True

    # -- the end ---------------------------------------------------------------------------

    def abort(self, because: Retry) -> None:
        """End now (a stall): no closing handshake with a peer that may be gone."""
        if self.aborted is None:
            self.aborted = because
        self._drop()

    def close(self) -> defer.Deferred[None]:
        """End on purpose: hand on what arrived, say goodbye, report nothing more."""
        if not self.closing:
            self._drain()
        self.closing = True
        self.pending = []
        if not self.finished:
            protocol = self.protocol
            if self.is_open and protocol is not None:
                protocol.sendClose(1000)
                self.close_call = self.clock.callLater(self.close_timeout, self._drop)
            else:
                self._drop()
        d: defer.Deferred[None] = defer.Deferred()
        if self.finished:
            d.callback(None)
        else:
            self.done.addBoth(lambda _: d.callback(None))
        return d

    def _drop(self) -> None:
        self.close_call = None
        if self.finished:
            return
        if self.protocol is not None:
            self.protocol.dropConnection(abort=True)
        elif self.connect_d is not None:
            self.connect_d.cancel()

    def lost(self, code: int | None, reason: str) -> None:
        """The connection is gone (autobahn's onClose)."""
        was_open = self.is_open
        if not self.closing:
            self._drain()  # what was received comes before the end
        self._finish()
        if self.closing:
            return
        if not was_open:
            verdict: Verdict = self.refusal or Retry("network", reason or "connection lost")
            self.events.refused(self, verdict)
            return
        if isinstance(self.notice, Fatal):
            verdict = self.notice
        elif self.aborted is not None:
            verdict = self.aborted
        elif self.notice is not None:
            verdict = self.notice
        else:
            verdict = close_verdict(code, reason)
        self.events.ended(self, verdict)

    def _finish(self) -> None:
        for call in (self.timeout_call, self.ping_call, self.close_call, self.flush_call, self.gate_wait):
            _cancel(call)
        self.timeout_call = self.ping_call = self.close_call = self.flush_call = self.gate_wait = None
        self.is_open = False
        if not self.finished:
            self.finished = True
            self.done.callback(None)


def _cancel(call: IDelayedCall | FlowWait | None) -> None:
    if call is not None and call.active():
        call.cancel()


class _Factory(WebSocketClientFactory):
    """autobahn's factory, knowing the one link it serves."""

    link: WebSocketLink


def _factory(url: str, headers: Mapping[str, str], user_agent: str, max_message_bytes: int,
             reactor: object) -> _Factory:
    factory = _Factory(url, headers=dict(headers), useragent=user_agent,  # type: ignore[no-untyped-call]
                       reactor=reactor)
    factory.protocol = _Protocol
    factory.noisy = False  # no "Starting factory" line at every reconnection
    # every timer is ours (on the injected clock): autobahn's are switched off
    factory.setProtocolOptions(  # type: ignore[no-untyped-call]  # autobahn: unannotated
        openHandshakeTimeout=0, closeHandshakeTimeout=0, autoPingInterval=0,
        serverConnectionDropTimeout=0, maxMessagePayloadSize=max_message_bytes,
        maxFramePayloadSize=max_message_bytes)
    return factory


def _endpoint(reactor: object, url: str, trust: Certificate | None = None) -> IStreamClientEndpoint:
    """TCP to the URL's host; TLS with the host's certificate checked for wss (against the
    platform's trust store, or ``trust``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port)
    if secure:
        endpoint = wrapClientTLS(optionsForClientTLS(host, trustRoot=trust), endpoint)
    return endpoint
