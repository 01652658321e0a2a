"""A minimal HTTP/1.1 server protocol with byte-level control of the response.

The emulator needs to close in the middle of a message, garble a length
prefix or stall without keep-alives, so it speaks HTTP itself instead of
going through ``twisted.web``: parse one request (request line, headers,
``Content-Length`` body), hand it to a handler, then either answer with a
complete response or switch to a never-ending chunked stream.

A connection gets ``request_timeout`` seconds (on the factory's clock) to
send its complete request; one that sends nothing or half a header is
answered 408 and dropped, so idle sockets cannot pile up.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import cast
from urllib.parse import parse_qsl, urlsplit

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory

__all__ = ["Request", "HTTPServerProtocol", "HTTPServerFactory", "REASONS", "TcpTransport", "as_tcp", "status_line"]

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    411: "Length Required",
    413: "Request Entity Too Large",
    416: "Range Unacceptable",
    420: "Enhance Your Calm",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def status_line(code: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (code, REASONS.get(code, "Unknown").encode())


@attrs.define
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def accepts_gzip(self) -> bool:
        """``Accept-Encoding`` lists gzip (and not with ``q=0``)."""
        accept = self.headers.get("accept-encoding", "").lower()
        return any(tok.split(";")[0].strip() == "gzip" and "q=0" not in tok.replace(" ", "")
                   for tok in accept.split(","))

    @property
    def query_pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.target).query, keep_blank_values=True)

    def form_pairs(self) -> list[tuple[str, str]]:
        """Form-encoded body pairs (a POST without a content type counts as a form, as curl -d sends)."""
        ctype = self.headers.get("content-type", "application/x-www-form-urlencoded")
        if not self.body or "application/x-www-form-urlencoded" not in ctype.lower():
            return []
        return parse_qsl(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)


class TcpTransport(typing.Protocol):
    """What the emulator uses of a TCP transport (``ITCPTransport`` and ``IConsumer``)."""

    disconnecting: bool

    def write(self, data: bytes) -> None: ...

    def writeSequence(self, data: list[bytes]) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def registerProducer(self, producer: object, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...


def as_tcp(transport: object) -> TcpTransport:
    """A connection's transport as the TCP transport it is (Twisted types it as ``ITransport``)."""
    return cast(TcpTransport, transport)


class HTTPServerProtocol(Protocol):
    """Reads one request, then belongs to whatever the handler does with it."""


    def __init__(self, handle: Callable[[HTTPServerProtocol, Request], None],
                 on_connect: Callable[[HTTPServerProtocol], bool] | None = None):
        self.handle = handle
        self.on_connect = on_connect
        self._buffer = b""
        self._request: Request | None = None
        self._need = 0
        self.done = False
        self.on_lost: Callable[[], None] | None = None
        self.on_timeout: Callable[[HTTPServerProtocol], None] | None = None
        self._timeout_call: IDelayedCall | None = None
        self.bytes_received = 0

    @property
    def tcp(self) -> TcpTransport:
        """The connection's transport: a TCP one, connected (a call before or after is a bug)."""
        return as_tcp(self.transport)

    def connectionMade(self) -> None:
        factory: HTTPServerFactory | None = self.factory
        if factory is not None:
            factory.protocols.add(self)
        if self.on_connect is not None and not self.on_connect(self):
            self.done = True
            self.tcp.abortConnection()
            return
        if not self.done and factory is not None and factory.clock is not None:
            self._timeout_call = factory.clock.callLater(factory.request_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timeout_call = None
        if self.done:
            return
        if self.on_timeout is not None:
            self.on_timeout(self)
        self.respond(408, b"No complete request in time\n")

    def _cancel_timeout(self) -> None:
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None

    def dataReceived(self, data: bytes) -> None:
        self.bytes_received += len(data)
        if self.done:
            return  # streaming: whatever the client sends now is ignored
        self._buffer += data
        if self._request is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    self.respond(431, b"Request header too large\n")
                return
            head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            try:
                self._request = self._parse_head(head)
            except ValueError as e:
                self.respond(400, f"{e}\n".encode())
                return
            if "chunked" in self._request.headers.get("transfer-encoding", "").lower():
                self.respond(411, b"Send a Content-Length\n")
                return
            try:
                self._need = int(self._request.headers.get("content-length", "0"))
            except ValueError:
                self.respond(400, b"Bad Content-Length\n")
                return
            if self._need < 0 or self._need > MAX_BODY_BYTES:
                self.respond(413, b"Request body too large\n")
                return
            if self._need and "100-continue" in self._request.headers.get("expect", "").lower():
                self.tcp.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if len(self._buffer) >= self._need:
            request, self._request = self._request, None
            request.body, self._buffer = self._buffer[: self._need], b""
            self.done = True
            self._cancel_timeout()
            self.handle(self, request)

    @staticmethod
    def _parse_head(head: bytes) -> Request:
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
            raise ValueError("bad request encoding") from None
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ValueError("bad request line")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise ValueError("bad header line")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return Request(parts[0].upper(), parts[1], parts[2], headers)

    def respond(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """A complete response, then close."""
        self.done = True
        self._cancel_timeout()
        out = [status_line(code)]
        all_headers = {"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(body)),
                       "Connection": "close"}
        all_headers.update(headers or {})
        for name, value in all_headers.items():
            out.append(f"{name}: {value}\r\n".encode("latin-1"))
        out.append(b"\r\n")
        out.append(body)
        self.tcp.writeSequence(out)
        self.tcp.loseConnection()

    def start_stream(self, headers: dict[str, str]) -> None:
        """The headers of a never-ending chunked ``200 OK``."""
        out = [status_line(200)]
        all_headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked",
                       "Connection": "close"}
        all_headers.update(headers)
        for name, value in all_headers.items():
            out.append(f"{name}: {value}\r\n".encode("latin-1"))
        out.append(b"\r\n")
        self.tcp.writeSequence(out)

    def connectionLost(self, reason: object = None) -> None:
        self._cancel_timeout()
        factory: HTTPServerFactory | None = self.factory
        if factory is not None:
            factory.protocols.discard(self)
            for waiter in factory.waiters.pop(self, ()):
                waiter.callback(None)
        if self.on_lost is not None:
            self.on_lost()


class HTTPServerFactory(ServerFactory):
    """``clock`` (an ``IReactorTime``) runs the request timeouts; without one there are none."""

    def __init__(self, handle: Callable[[HTTPServerProtocol, Request], None],
                 on_connect: Callable[[HTTPServerProtocol], bool] | None = None,
                 clock: IReactorTime | None = None, request_timeout: float = 10.0,
                 on_timeout: Callable[[HTTPServerProtocol], None] | None = None) -> None:
        self.handle = handle
        self.on_connect = on_connect
        self.clock = clock
        self.request_timeout = request_timeout
        self.on_timeout = on_timeout
        self.protocols: set[HTTPServerProtocol] = set()
        self.waiters: dict[HTTPServerProtocol, list[Deferred[None]]] = {}

    def buildProtocol(self, addr: IAddress | None) -> HTTPServerProtocol:
        proto = HTTPServerProtocol(self.handle, self.on_connect)
        proto.factory = self
        proto.on_timeout = self.on_timeout
        return proto
