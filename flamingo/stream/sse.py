"""Server-sent events: a framer (pure) and a ``Link`` over one HTTP response.

``SseParser`` follows the HTML living standard's parsing rules: lines end in
CRLF, LF or CR (a CR ends its line at once; an LF opening the next chunk
is its pair, skipped), ``:`` starts a comment (Mastodon's ``:thump``
heartbeat, counted), ``event:`` names the event, ``data:`` lines join with
LF, a blank line dispatches. Any split of the byte stream parses the same.
An over-long line or event is skipped and counted, never buffered without
bound.

``SseLink`` sends one GET (``Accept: text/event-stream``) through an
``Agent``; 200 is ``responded``, every chunk (heartbeats included) is
``alive``, events go through the source's ``decode`` into message bytes,
another status is ``refused`` with the verdict its status calls for.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from flamingo.stream.endpoints import StreamRequest
from flamingo.stream.flow import Flow, FlowWait, producing
from flamingo.stream.http_lines import HttpExchange, LineStats
from flamingo.stream.source import LinkEvents, Retry, Verdict
from flamingo.stream.websocket import handshake_verdict

__all__ = ["SseEvent", "SseParser", "SseLink"]

_EOL = re.compile(rb"\r\n|\n|\r")


@attrs.frozen
class SseEvent:
    event: str
    data: bytes  # data lines joined by LF


class SseParser:
    """Bytes in, events out; heartbeats (comments) and errors counted."""

    def __init__(self, max_event_bytes: int = 1 << 20) -> None:
        self.max_event_bytes = max_event_bytes
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line: drop up to its end
        self._after_cr = False  # the last chunk ended in CR
        self._event = ""
        self._data: list[bytes] = []
        self._size = 0
        self._broken = False  # the current event lost a line: dropped at its blank line
        self.heartbeats = 0
        self.errors = 0

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if self._after_cr and chunk:
            self._after_cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]  # the LF of a CRLF split across chunks
        self._buf += chunk
        out: list[SseEvent] = []
        pos = 0
        buf = self._buf
        while True:
            m = _EOL.search(buf, pos)
            if m is None:
                break
            line = bytes(buf[pos:m.start()])
            pos = m.end()
            if m.group() == b"\r" and pos == len(buf):
                self._after_cr = True  # a CR ends the line now; an LF that follows is skipped
            if self._skipping:  # the end of an over-long line: its event is dropped too
                self._skipping = False
                self._reset()
                self._broken = True
                continue
            event = self._line(line)
            if event is not None:
                out.append(event)
        del buf[:pos]
        if len(buf) > self.max_event_bytes:
            self.errors += 1
            self._skipping = True
            del buf[:]
        return out

    def _line(self, line: bytes) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            self.heartbeats += 1
            return None
        field, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if field == b"event":
            self._event = value.decode("utf-8", "replace")
        elif field == b"data":
            self._size += len(value) + 1
            if self._size > self.max_event_bytes:
                self.errors += 1
                self._reset()
                self._broken = True
                return None
            self._data.append(value)
        return None  # id, retry and unknown fields: ignored (Mastodon sends no ids)

    def _dispatch(self) -> SseEvent | None:
        if not self._data or self._broken:  # no data: nothing to dispatch (the standard's rule)
            self._reset()
            return None
        event = SseEvent(self._event or "message", b"\n".join(self._data))
        self._reset()
        return event

    def _reset(self) -> None:
        self._event = ""
        self._data = []
        self._size = 0
        self._broken = False


#: the source's reading of a batch of events: message bytes for the wader
Decode = Callable[[list[SseEvent]], list[bytes]]


class _Body(Protocol):
    def __init__(self, link: SseLink) -> None:
        self.link = link

    def dataReceived(self, data: bytes) -> None:
        self.link.data_received(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.link.body_lost(reason)


class SseLink(HttpExchange):
    """One SSE response, from its request to its end."""

    def __init__(self, request: StreamRequest, headers: Headers, decode: Decode, events: LinkEvents,
                 *, agent: IAgent, clock: IReactorTime, stats: LineStats, connect_timeout: float,
                 max_event_bytes: int) -> None:
        self.request = request
        self.decode = decode
        self.events = events
        self.clock = clock
        self.stats = stats
        self.connect_timeout = connect_timeout
        self.parser = SseParser(max_event_bytes)
        self.gate_wait: FlowWait | None = None  # reading paused until delivery's gate opens
        self.body: _Body | None = None
        self.closing = False
        self.finished = False
        self.aborted: Retry | None = None
        self.timed_out = False
        self.done: defer.Deferred[None] = defer.Deferred()
        headers.setRawHeaders(b"accept", [b"text/event-stream"])
        self._send(agent, b"GET", request.url.encode(), headers, None)

    def _start_body(self, response: IResponse) -> None:
        self.events.alive(self)
        self.body = _Body(self)
        response.deliverBody(self.body)

    def _status_verdict(self, code: int, phrase: str, body: str) -> Verdict:
        return handshake_verdict(code, phrase, body, "")

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        beats, errors = self.parser.heartbeats, self.parser.errors
        parsed = self.parser.feed(data)
        if self.parser.heartbeats != beats:
            self.stats.keepalive(self.parser.heartbeats - beats)
        if self.parser.errors != errors:
            self.stats.parse_error("sse event too long", data[:120], self.parser.errors - errors)
        self.events.alive(self)  # heartbeats included: what the stall timer waits for
        if parsed:
            frames = self.decode(parsed)
            if frames and not self.closing:
                self.events.messages(self, frames)
        self._wait_for_gate()

    def _wait_for_gate(self) -> None:
        """Back-pressure: while delivery's gate (``LinkEvents.flow``) is closed, the response
        is not read; reading resumes when it opens."""
        gate: Flow | None = getattr(self.events, "flow", None)
        transport = self.body.transport if self.body is not None else None
        if gate is None or gate.open or transport is None or self.closing or self.gate_wait is not None:
            return
        producing(transport).pauseProducing()
        self.gate_wait = gate.when_open(self._gate_opened)

    def _gate_opened(self) -> None:
        self.gate_wait = None
        transport = self.body.transport if self.body is not None else None
        if transport is not None and not self.finished:
            producing(transport).resumeProducing()

    def close(self) -> defer.Deferred[None]:
        self.closing = True
        if not self.finished:
            self._drop()
        d: defer.Deferred[None] = defer.Deferred()
        if self.finished:
            d.callback(None)
        else:
            self.done.addBoth(lambda _: d.callback(None))
        return d

    def body_lost(self, reason: Failure) -> None:
        self._finish()
        if self.closing:
            return
        verdict: Verdict
        if self.aborted is not None:
            verdict = self.aborted
        elif reason.check(ResponseDone) is not None:
            verdict = Retry("dropped", "the server ended the stream")
        else:
            verdict = Retry("dropped", f"connection lost: {reason.getErrorMessage()}")
        self.events.ended(self, verdict)

    def _finish(self) -> None:
        if self.timeout_call is not None and self.timeout_call.active():
            self.timeout_call.cancel()
        self.timeout_call = None
        if self.gate_wait is not None:
            self.gate_wait.cancel()
            self.gate_wait = None
        if not self.finished:
            self.finished = True
            self.done.callback(None)
