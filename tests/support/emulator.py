"""Start a Streaming API emulator inside a trial test, stopped at cleanup.

    emu = start_emulator(self, seed=1, rate=0, size="small")
    url = emu.url + "/1.1/statuses/filter.json"
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol

from flamingo.emulator import Emulator, EmulatorOptions

__all__ = ["start_emulator", "RawClient", "request"]


def start_emulator(
    testcase: Any,
    options: EmulatorOptions | None = None,
    *,
    clock: IReactorTime | None = None,
    reactor: Any = None,
    now: Any = None,
    **option_values: Any,
) -> Emulator:
    """A listening emulator on 127.0.0.1 (random port); ``testcase.addCleanup`` stops it.

    ``clock`` (a ``twisted.internet.task.Clock``) drives its timers;
    ``option_values`` are ``EmulatorOptions`` fields (``size`` defaults to
    ``small`` here, to keep tests fast).
    """
    if options is None:
        option_values.setdefault("size", "small")
        options = EmulatorOptions(**option_values)
    kwargs: dict[str, Any] = {"reactor": reactor or _reactor, "clock": clock}
    if now is not None:
        kwargs["now"] = now
    emu = Emulator(options, **kwargs)
    emu.start("127.0.0.1", 0)
    testcase.addCleanup(emu.stop)
    return emu


# -- a raw HTTP/1.1 client that keeps every byte (framing, chunking, gzip checks)


class RawClient(Protocol):
    def __init__(self) -> None:
        self.raw = b""
        self.closed: defer.Deferred = defer.Deferred()
        self.lost = False
        self._waiters: list[tuple[Callable[[], bool], defer.Deferred]] = []

    def dataReceived(self, data: bytes) -> None:
        self.raw += data
        self._check()

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True
        self._check()
        self.closed.callback(None)

    def _check(self) -> None:
        for item in list(self._waiters):
            cond, d = item
            if cond() or self.lost:
                self._waiters.remove(item)
                d.callback(None)

    def wait_for(self, cond: Callable[[], bool]) -> defer.Deferred:
        """Fires once ``cond()`` is true (or the connection is gone)."""
        d: defer.Deferred = defer.Deferred()
        if cond() or self.lost:
            d.callback(None)
        else:
            self._waiters.append((cond, d))
        return d

    # -- views --------------------------------------------------------------
    @property
    def head(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[0]

    @property
    def status(self) -> int | None:
        if b"\r\n" not in self.raw:
            return None
        return int(self.raw.split(b" ", 2)[1])

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            if k.strip().lower() == name.lower():
                return v.strip()
        return None

    def chunks(self) -> list[bytes]:
        """Complete HTTP chunks received so far."""
        if b"\r\n\r\n" not in self.raw:
            return []
        body = self.raw.split(b"\r\n\r\n", 1)[1]
        out, i = [], 0
        while True:
            j = body.find(b"\r\n", i)
            if j < 0:
                break
            n = int(body[i:j], 16)
            if len(body) < j + 2 + n + 2:
                break
            out.append(body[j + 2 : j + 2 + n])
            i = j + 2 + n + 2
        return out

    def body(self, gzip: bool = False) -> bytes:
        data = b"".join(self.chunks())
        if gzip:
            return zlib.decompressobj(31).decompress(data)
        return data

    def close(self) -> defer.Deferred:
        if not self.lost:
            self.transport.abortConnection()
        return self.closed


@defer.inlineCallbacks
def request(port: int, method: str = "GET", target: str = "/1.1/statuses/sample.json",
            headers: dict[str, str] | None = None, body: bytes = b"", testcase=None):
    """Open a connection, send one request; returns the RawClient (closed at cleanup)."""
    client = RawClient()
    yield connectProtocol(TCP4ClientEndpoint(_reactor, "127.0.0.1", port), client)
    all_headers = {"Host": f"127.0.0.1:{port}"}
    if body or method == "POST":
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        all_headers["Content-Length"] = str(len(body))
    all_headers.update(headers or {})
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items())
    client.transport.write(head.encode() + b"\r\n" + body)
    if testcase is not None:
        testcase.addCleanup(client.close)
    return client
