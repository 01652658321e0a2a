"""A minimal RESP2 client protocol for the sink's hot path.

txredisapi encodes and tracks every command separately; the sink sends one
pre-encoded ``MULTI … EXEC`` per batch and needs only "these N replies", with
its own timeout and clock. ``RespProtocol.send(payload, nreplies)`` returns a
Deferred firing with the list of replies (errors are ``ResponseError``
instances in the list, not raised). ``written()`` fires once what was sent
has left Twisted's buffer for the kernel's: the sink prepares its next batch
then, not while its last one still waits to be written.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet import abstract, defer, protocol
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["RespProtocol", "ResponseError", "encode", "command", "SEND_LIMIT"]

#: bytes offered to one ``send()`` on the Redis socket (Twisted's default is 128 KiB). The
#: reactor sends once per turn, and a turn may read far more than 128 KiB of the stream
#: (a 64 KiB gzip read is ~360 KiB of events; scenario 2 sends three copies of each): at
#: 128 KiB per turn the sink fell behind the reader for good, shed its batches and read
#: them back from the event log. The kernel takes what its buffer has room for.
SEND_LIMIT = 8 << 20


class ResponseError(Exception):
    """An error reply from Redis (``-ERR …``)."""


class _Incomplete(Exception):
    pass


def command(*args: bytes | str | int) -> bytes:
    """One command, RESP-encoded."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n" % len(b))
        out.append(b)
        out.append(b"\r\n")
    return b"".join(out)


def encode(parts: list[bytes], name: bytes, key: bytes, values: list[bytes]) -> None:
    """Append ``NAME key v1 v2 …`` to ``parts`` (no copying of the values)."""
    parts.append(b"*%d\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (2 + len(values), len(name), name, len(key), key))
    for v in values:
        parts.append(b"$%d\r\n" % len(v))
        parts.append(v)
        parts.append(b"\r\n")


def _parse(buf: bytes | bytearray, pos: int) -> tuple[Any, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind = buf[pos]
    line = bytes(buf[pos + 1:end])
    pos = end + 2
    if kind == 43:  # +
        return line, pos
    if kind == 45:  # -
        return ResponseError(line.decode("utf-8", "replace")), pos
    if kind == 58:  # :
        return int(line), pos
    if kind == 36:  # $
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise _Incomplete
        return bytes(buf[pos:pos + n]), pos + n + 2
    if kind == 42:  # *
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    raise ValueError(f"bad RESP reply type {chr(kind)!r}")


@implementer(IPushProducer)
class _Drain:
    """Registered with the transport as a push producer: Twisted pauses it while its write
    buffer is over ``bufferSize`` and resumes it once the buffer is empty."""

    def __init__(self) -> None:
        self.paused = False
        self.waiters: list[defer.Deferred[None]] = []

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.fire()

    def stopProducing(self) -> None:
        self.paused = False
        self.fire()

    def fire(self) -> None:
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            d.callback(None)


class RespProtocol(protocol.Protocol):
    """Pipelined requests, each expecting a known number of replies."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._waiting: deque[tuple[defer.Deferred[list[Any]], int, list[Any]]] = deque()
        self.connected_d: defer.Deferred[RespProtocol] = defer.Deferred()
        self.lost_d: defer.Deferred[None] = defer.Deferred()
        self.is_connected = False
        self._drain = _Drain()
        self._tracks_drain = False

    def connectionMade(self) -> None:
        self.is_connected = True
        # Nagle + delayed ACK would hold each transaction's tail for up to 40 ms
        setter = getattr(self.transport, "setTcpNoDelay", None)
        if setter is not None:
            setter(True)
        if isinstance(self.transport, abstract.FileDescriptor):  # TCP, Unix sockets
            self.transport.SEND_LIMIT = SEND_LIMIT
        register = getattr(self.transport, "registerProducer", None)
        if register is not None:
            register(self._drain, True)
            self._tracks_drain = True
        self.connected_d.callback(self)

    def written(self) -> defer.Deferred[None]:
        """Fires once what was sent so far is out of Twisted's write buffer (at once if the
        transport does not say, or the buffer is under its ``bufferSize``)."""
        if not self._tracks_drain or not self._drain.paused:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._drain.waiters.append(d)
        return d

    def send(self, payload: bytes | list[bytes], nreplies: int) -> defer.Deferred[list[Any]]:
        if not self.is_connected or self.transport is None:
            return defer.fail(ConnectionError("not connected to Redis"))
        d: defer.Deferred[list[Any]] = defer.Deferred()
        self._waiting.append((d, nreplies, []))
        # one joined write: Twisted would otherwise type-check every part
        self.transport.write(b"".join(payload) if isinstance(payload, list) else payload)
        return d

    def dataReceived(self, data: bytes) -> None:
        self._buf += data
        pos = 0
        buf = self._buf
        try:
            while self._waiting and pos < len(buf):
                try:
                    reply, pos = _parse(buf, pos)
                except _Incomplete:
                    break
                d, n, replies = self._waiting[0]
                replies.append(reply)
                if len(replies) == n:
                    self._waiting.popleft()
                    d.callback(replies)
        except ValueError as e:
            if self.transport is not None:
                self.transport.loseConnection()
            self._fail_all(ConnectionError(f"protocol error: {e}"))
            return
        del buf[:pos]

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.is_connected = False
        self._drain.fire()
        self._fail_all(ConnectionError("connection to Redis lost"))
        if not self.lost_d.called:
            self.lost_d.callback(None)

    def _fail_all(self, err: Exception) -> None:
        waiting, self._waiting = self._waiting, deque()
        for d, _, _ in waiting:
            d.errback(err)
