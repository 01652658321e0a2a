"""The HTTP transport: one streaming request whose body is a sequence of messages.

An ``HttpLineLink`` sends the request through a twisted ``Agent``, reads the
body through a ``BodyPump`` (bounded decoding per reactor turn) into a
``StreamDecoder`` (newline or length-delimited, gzip), and reports to the
wader through ``LinkEvents``. What the messages mean (disconnect notices,
which statuses are fatal) is the source's, through a ``LineRules``.

The agent's pool never reuses a connection and its factories are quiet
(no "Starting factory" line at every reconnection): ``QuietEndpoints``.
"""

from __future__ import annotations

from io import BytesIO
from typing import Protocol as TypingProtocol

from twisted.internet import abstract, defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import URI, BrowserLikePolicyForHTTPS, FileBodyProducer, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IResponse
from zope.interface import implementer

from flamingo.errors import failure_text
from flamingo.logs import logger
from flamingo.stream.endpoints import StreamRequest
from flamingo.stream.flow import producing
from flamingo.stream.framing import StreamDecoder
from flamingo.stream.pump import BodyPump
from flamingo.stream.source import Fatal, LinkEvents, Retry, Verdict

__all__ = ["HttpExchange", "HttpLineLink", "LineRules", "LineStats", "QuietEndpoints", "MAX_ERROR_BODY",
           "READ_BYTES"]

log = logger("flamingo.wader")

MAX_ERROR_BODY = 4096
#: bytes asked of the stream's socket per read of a plain body (Twisted reads 64 KiB): at
#: full speed a read is a batch, and every batch has fixed costs (the HTTP and chunked-decoding
#: calls, a journal write, a Redis transaction); the pump still bounds the work per turn
READ_BYTES = 256 * 1024


class LineRules(TypingProtocol):
    """What one connection's messages and statuses mean, per API."""

    def inspect(self, frames: list[bytes]) -> None:
        """See each batch (disconnect notices are remembered here)."""

    def fatal_seen(self) -> Fatal | None:
        """A fatal notice the server sent on this connection, if any."""

    def on_end(self, clean: bool, why: str) -> Verdict:
        """The body ended (``clean``: the server ended it); not on purpose."""

    def on_status(self, code: int, phrase: str, body: str) -> Verdict:
        """A response other than 200, with its (bounded) message."""


class LineStats(TypingProtocol):
    def keepalive(self, n: int) -> None: ...

    def parse_error(self, kind: str, sample: bytes, n: int) -> None: ...


@implementer(IStreamClientEndpoint)
class _QuietEndpoint:
    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        protocolFactory.noisy = False  # type: ignore[attr-defined]  # a Factory's public flag
        return self._endpoint.connect(protocolFactory)


@implementer(IAgentEndpointFactory)
class QuietEndpoints:
    """Endpoints for ``Agent.usingEndpointFactory``: TCP, TLS for https, quiet factories."""

    def __init__(self, reactor: object) -> None:
        self._reactor = reactor
        self._tls = BrowserLikePolicyForHTTPS()

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host.decode("idna")
        endpoint: IStreamClientEndpoint = HostnameEndpoint(self._reactor, host, uri.port)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(self._tls.creatorForNetloc(uri.host, uri.port), endpoint)
        return _QuietEndpoint(endpoint)


class _Body(Protocol):
    """Receives one streaming response body and hands it to its link."""

    def __init__(self, link: HttpLineLink) -> None:
        self.link = link

    def connectionMade(self) -> None:
        transport = self.transport  # the Agent's TransportProxyProducer
        if self.link.pump is not None and IPushProducer.providedBy(transport):
            self.link.pump.producer = transport
        # the response's socket, behind the TransportProxyProducer: larger reads of a
        # plain body (64 KiB of gzip is already ~360 KiB of events: larger reads cost more there)
        sock = getattr(transport, "_producer", None)
        decoder = self.link.decoder
        if isinstance(sock, abstract.FileDescriptor) and not (decoder is not None and decoder.gzip):
            sock.bufferSize = READ_BYTES

    def dataReceived(self, data: bytes) -> None:
        self.link.data_received(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.link.body_lost(reason)


class HttpExchange:
    """The request half of a streaming HTTP link, shared by HTTP lines and SSE.

    Sends the request through an ``Agent``, gives up after ``connect_timeout``
    on the link's clock, reads a refusal's (bounded) body into the verdict its
    status calls for, and hands a 200 to ``_start_body``. A subclass sets the
    attributes below and supplies ``_start_body``, ``_status_verdict`` and
    ``_finish``.
    """

    request: StreamRequest
    events: LinkEvents
    clock: IReactorTime
    connect_timeout: float
    closing: bool
    timed_out: bool
    aborted: Retry | None
    body: Protocol | None
    request_d: defer.Deferred[IResponse] | None
    timeout_call: IDelayedCall | None

    def _send(self, agent: IAgent, method: bytes, url: bytes, headers: Headers,
              producer: FileBodyProducer | None) -> None:
        self.request_d = agent.request(method, url, headers, producer)
        self.timeout_call = self.clock.callLater(self.connect_timeout, self._connect_timed_out)
        self.request_d.addCallbacks(self._response, self._request_failed)
        self.request_d.addErrback(lambda f: log.failure("Wader bug handling a response", f))

    @property
    def request_line(self) -> str:
        return self.request.request_line

    def close(self) -> defer.Deferred[None]:
        raise NotImplementedError

    def _start_body(self, response: IResponse) -> None:
        raise NotImplementedError

    def _status_verdict(self, code: int, phrase: str, body: str) -> Verdict:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    # -- the response -------------------------------------------------------

    def _connect_timed_out(self) -> None:
        self.timeout_call = None
        self.timed_out = True
        if self.request_d is not None:
            self.request_d.cancel()

    def _response_arrived(self) -> None:
        self.request_d = None
        _cancel(self.timeout_call)
        self.timeout_call = None

    def _request_failed(self, failure: Failure) -> None:
        self._response_arrived()
        self._finish()
        if self.closing:
            return
        message = failure_text(failure)
        if self.timed_out:
            message = f"no response within {self.connect_timeout}s"
        self.events.refused(self, Retry("network", message))

    def _response(self, response: IResponse) -> defer.Deferred[None] | None:
        self._response_arrived()
        if self.closing:
            response.deliverBody(_Discard())
            self._finish()
            return None
        if response.code == 200:
            self.events.responded(self)
            if self.closing:  # the wader closed it on hearing the answer
                response.deliverBody(_Discard())
                self._finish()
            else:
                self._start_body(response)
            return None
        reader = _ErrorBody()
        response.deliverBody(reader)
        d = reader.done
        d.addTimeout(self.connect_timeout, self.clock,
                     onTimeoutCancel=lambda result, timeout: reader.abort())
        return d.addCallback(lambda body: self._http_error(response, body))

    def _http_error(self, response: IResponse, body: bytes) -> None:
        self._finish()
        if self.closing:
            return
        text = body[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
        self.events.refused(self, self._status_verdict(
            response.code, response.phrase.decode("latin-1", "replace"), text))

    # -- ending ----------------------------------------------------------------

    def abort(self, because: Retry) -> None:
        """End now, even if the peer is stalled (no TLS close_notify wait)."""
        if self.aborted is None:
            self.aborted = because
        self._drop()

    def _drop(self) -> None:
        if self.body is not None and self.body.transport is not None:
            producing(self.body.transport).stopProducing()
        elif self.request_d is not None:
            self.request_d.cancel()


class HttpLineLink(HttpExchange):
    """One HTTP streaming request, from request to the end of its body."""

    def __init__(self, request: StreamRequest, headers: Headers, rules: LineRules,
                 events: LinkEvents, *, agent: IAgent, clock: IReactorTime,
                 turns: IReactorTime, stats: LineStats, connect_timeout: float,
                 max_message_bytes: int) -> None:
        self.request = request
        self.rules = rules
        self.events = events
        self.clock = clock
        self.turns = turns  # the pump's reactor turns (the real reactor, also in tests)
        self.stats = stats
        self.connect_timeout = connect_timeout
        self.max_message_bytes = max_message_bytes
        self.body: _Body | None = None
        self.decoder: StreamDecoder | None = None
        self.pump: BodyPump | None = None
        self.closing = False  # ended on purpose: nothing more is reported
        self.aborted: Retry | None = None
        self.timed_out = False
        self.finished = False
        self.done: defer.Deferred[None] = defer.Deferred()
        self.keepalives_seen = 0
        self.errors_seen = 0
        self.error_counts: dict[str, int] = {}
        producer = FileBodyProducer(BytesIO(request.body)) if request.body is not None else None
        self._send(agent, request.method.encode(), request.url.encode(), headers, producer)

    def _status_verdict(self, code: int, phrase: str, body: str) -> Verdict:
        return self.rules.on_status(code, phrase, body)

    # -- the body -----------------------------------------------------------

    def _start_body(self, response: IResponse) -> None:
        encoding = response.headers.getRawHeaders(b"content-encoding", [b""])[0].lower()
        self.decoder = StreamDecoder(self.max_message_bytes, gzip=encoding in (b"gzip", b"x-gzip"))
        # the wader's gate (closed while the event log's writer is behind), if it has one
        self.pump = BodyPump(self.decoder, self._decoded, self.turns.callLater,
                             gate=getattr(self.events, "flow", None))
        self.body = _Body(self)
        self.events.alive(self)
        response.deliverBody(self.body)

    def data_received(self, data: bytes) -> None:
        if self.closing or self.pump is None:
            return
        self.events.alive(self)
        self.pump.data_received(data)

    def _decoded(self, frames: list[bytes]) -> bool:
        """One reactor turn of decoding done (the pump's callback): count, pass frames on."""
        if self.closing:
            return False
        decoder = self.decoder
        assert decoder is not None  # the pump exists only with its decoder
        if self.pump is not None and not self.pump.ending:
            self.events.alive(self)  # decoding what was received (maybe paused): not a stall
        keepalives = decoder.parser.keepalives - self.keepalives_seen
        if keepalives:
            self.keepalives_seen = decoder.parser.keepalives
            self.stats.keepalive(keepalives)
        if decoder.parser.errors_total != self.errors_seen:
            self.errors_seen = decoder.parser.errors_total
            self._count_errors(decoder)
        if frames:
            self.rules.inspect(frames)
            self.events.messages(self, frames)
        if decoder.broken:
            self.abort(Retry("network", "undecodable response body"))
            return False
        return not self.closing

    def _count_errors(self, decoder: StreamDecoder) -> None:
        """Parse errors of one step, in bulk per kind; logged at the 1st, 2nd, 4th, 8th...
        of a kind on this connection: never a log flood, whatever the garbage."""
        samples: dict[str, bytes] = {}
        for err in decoder.take_errors():
            samples.setdefault(err.kind, err.sample)
        for kind, n in decoder.take_error_counts().items():
            sample = samples.get(kind, b"")
            self.stats.parse_error(kind, sample, n)
            before = self.error_counts.get(kind, 0)
            total = self.error_counts[kind] = before + n
            if total.bit_length() > before.bit_length():  # a power of two in (before, total]
                log.warn("Stream parse error ({kind}, #{n} on this connection): {sample!r}",
                         kind=kind, n=total, sample=sample[:120])

    # -- the end --------------------------------------------------------------

    def close(self) -> defer.Deferred[None]:
        if self.pump is not None and not self.closing:
            self.pump.drain()  # what was received is handed on (the pump may be behind)
        self.closing = True
        if self.pump is not None:
            self.pump.stop()  # a body that already ended is reported now (closing: no retry)
        if not self.finished:
            self._drop()
        d: defer.Deferred[None] = defer.Deferred()
        if self.finished:
            d.callback(None)
        else:
            self.done.addBoth(lambda _: d.callback(None))
        return d

    def body_lost(self, reason: Failure) -> None:
        if self.pump is not None and not self.closing:
            self.pump.end(lambda: self._body_ended(reason))  # after what is still queued
        else:
            self._body_ended(reason)

    def _body_ended(self, reason: Failure) -> None:
        self._finish()
        if self.closing:
            return
        fatal = self.rules.fatal_seen()
        if fatal is not None:
            verdict: Verdict = fatal
        elif self.aborted is not None:
            verdict = self.aborted
        else:
            clean = reason.check(ResponseDone) is not None
            why = failure_text(reason)
            verdict = self.rules.on_end(clean, why)
        self.events.ended(self, verdict)

    def _finish(self) -> None:
        if self.pump is not None:
            self.pump.stop()
        _cancel(self.timeout_call)
        self.timeout_call = None
        if not self.finished:
            self.finished = True
            self.done.callback(None)


def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


class _ErrorBody(Protocol):
    """Reads at most ``MAX_ERROR_BODY`` bytes of an error response's message."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        if self.size < MAX_ERROR_BODY:
            self.parts.append(data)
            self.size += len(data)
        else:
            self.abort()

    def abort(self) -> bytes:
        if self.transport is not None:
            producing(self.transport).stopProducing()
        return b"".join(self.parts)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        if not self.done.called:
            self.done.callback(b"".join(self.parts))


class _Discard(Protocol):
    """Body of a response nobody wants any more: end its connection at once."""

    def connectionMade(self) -> None:
        if self.transport is not None:
            producing(self.transport).stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

