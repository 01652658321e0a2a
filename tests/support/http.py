"""The REST API under test: in memory through treq's StubTreq, or on a real loopback port.

``StubTreq`` runs the real resource (guard, Klein app, handlers) without a
socket; tests of what the server sends on the wire (Host, Content-Length,
real clients) use :class:`Server`.
"""

from __future__ import annotations

import json
from typing import Any

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet import defer, reactor
from twisted.web.client import Agent, HTTPConnectionPool

from flamingo.app import App
from flamingo.web import make_site
from tests.support.waiting import until

__all__ = ["Server", "Stub", "parse"]


def parse(response: Any, body: bytes) -> Any:
    """The body as JSON when the server says it is JSON, else None."""
    ctype = response.headers.getRawHeaders("content-type", [""])[0]
    return json.loads(body) if ctype.startswith("application/json") else None


class _Client:
    http: Any
    url: str

    @defer.inlineCallbacks
    def request(self, method: str, path: str, *, token: str | None = None,
                headers: dict[str, Any] | None = None, **kw: Any) -> Any:
        """(response, body bytes, parsed JSON or None)."""
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        response = yield self.http.request(method, self.url + path, headers=h, **kw)
        body = yield response.content()
        return response, body, parse(response, body)


class Server(_Client):
    """The API on a real loopback port and a treq client for it."""

    def __init__(self, testcase: Any, app: App) -> None:
        self.app = app
        self.site = make_site(app)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        testcase.addCleanup(self.port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        testcase.addCleanup(pool.closeCachedConnections)
        self.http = HTTPClient(Agent(reactor, pool=pool))
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"


class Stub(_Client):
    """The API's resource in memory: the same guard, routes and handlers, no port.

    Handlers that wait on Redis answer later: ``request`` flushes the
    in-memory connection until the response is there (a bounded poll).
    """

    def __init__(self, testcase: Any, app: App) -> None:
        self.app = app
        self.site = make_site(app)
        self.url = "http://127.0.0.1:4711"
        stub = StubTreq(self.site.resource)
        self.http = _Flushing(stub)


class _Flushing:
    """StubTreq's ``request``, fired once the in-memory exchange is complete."""

    def __init__(self, stub: StubTreq) -> None:
        self.stub = stub

    @defer.inlineCallbacks
    def request(self, method: str, url: str, **kw: Any) -> Any:
        response = yield self._settled(self.stub.request(method, url, **kw))
        body = yield self._settled(self.stub.content(response))
        return _Read(response, body)

    def _settled(self, d: defer.Deferred[Any]) -> defer.Deferred[Any]:
        """``d``'s result, flushing the in-memory connection until it has one."""
        outcome: list[Any] = []
        d.addBoth(outcome.append)

        def flushed() -> bool:
            self.stub.flush()
            return bool(outcome)

        return until(flushed).addCallback(lambda _: outcome[0])


class _Read:
    """A response whose body was already read (``content()`` returns it)."""

    def __init__(self, response: Any, body: bytes) -> None:
        self._response = response
        self._body = body

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    def content(self) -> defer.Deferred[bytes]:
        return defer.succeed(self._body)
