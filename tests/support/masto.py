"""The Mastodon emulator in tests: started on 127.0.0.1, stopped at cleanup; a WebSocket test client."""

from __future__ import annotations

from typing import Any

import orjson
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.web.client import Agent, HTTPConnectionPool

from flamingo.emulator.mastodon import MastodonEmulator, MastoOptions

__all__ = ["start_masto", "ws_client", "WsClient", "http_client"]


def start_masto(testcase: Any, clock: Any = None, **options: Any) -> MastodonEmulator:
    options.setdefault("rate", 0)
    emu = MastodonEmulator(MastoOptions(**options), reactor=reactor, clock=clock)
    emu.start()
    testcase.addCleanup(emu.stop)
    return emu


class WsClient(WebSocketClientProtocol):
    """Collects frames; ``opened`` fires on the handshake, ``gone`` at the close."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, Any]] = []
        self.pings = 0
        self.opened: defer.Deferred[None] = defer.Deferred()
        self.gone: defer.Deferred[None] = defer.Deferred()

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.frames.append(orjson.loads(payload))

    def onPing(self, payload: bytes) -> None:
        self.pings += 1
        super().onPing(payload)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(reason))
        if not self.gone.called:
            self.gone.callback(None)

    def send(self, obj: dict[str, Any]) -> None:
        self.sendMessage(orjson.dumps(obj))


def ws_client(testcase: Any, emu: MastodonEmulator, query: str = "",
              token: str | None = "t") -> defer.Deferred[WsClient]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{emu.streaming_port}/api/v1/streaming{query}",
                                     headers=headers)
    factory.protocol = WsClient
    d = TCP4ClientEndpoint(reactor, "127.0.0.1", emu.streaming_port).connect(factory)

    def opened(proto: WsClient) -> defer.Deferred[WsClient]:
        testcase.addCleanup(lambda: proto.transport.abortConnection() if proto.transport else None)
        return proto.opened.addCallback(lambda _: proto)

    return d.addCallback(opened)


def http_client(testcase: Any) -> HTTPClient:
    """treq over a pool that keeps no connection (a clean reactor after each test)."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    testcase.addCleanup(pool.closeCachedConnections)
    return HTTPClient(Agent(reactor, pool=pool))
