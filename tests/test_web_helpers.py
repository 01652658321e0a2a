"""Shared pieces of the REST tests: tiny fakes of the wader/stats/delivery
(contracts 5, 6, 7), a real Store on the test redis-server, and a real
listening server with a treq client. No tests here."""

from __future__ import annotations

import json
import uuid
from typing import Any

import attrs
from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.web.client import Agent, HTTPConnectionPool

from flamingo.app import App
from flamingo.config import from_mapping
from flamingo.store import Store
from flamingo.web import make_site
from tests.support.redis import free_port, shared_redis

SECRET_PASSWORD = "pw-SECRET-0451"
SECRET_TOKEN = "tok-SECRET-9931"


@attrs.define
class FakeState:
    """Contract 6's WaderState shape."""

    name: str = "connected"
    cause: str | None = None
    attempt: int = 0
    next_attempt_at: float | None = None
    message: str | None = None
    connected_since: float | None = 1700000000.0
    request_line: str | None = "POST /1.1/statuses/filter.json track=cats"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class FakeWader:
    def __init__(self) -> None:
        self.state = FakeState()
        self.restarts = 0
        self.params_changes = 0

    def restart(self) -> None:
        self.restarts += 1
        self.state = attrs.evolve(self.state, name="connecting")

    def params_changed(self) -> None:
        self.params_changes += 1


def make_stats() -> Any:
    """The real Stats (contract 5), fed a little traffic."""
    from flamingo.stats import Stats

    stats = Stats(clock=reactor)
    stats.connection_attempt("network")
    stats.connection_attempt("network")
    stats.connection_attempt("http")
    stats.connection_started("POST /1.1/statuses/filter.json")
    stats.events({"tweet": 40, "delete": 2, "limit": 1}, 43, 43_000)
    stats.limit_notice(7)
    stats.duplicates(3)
    stats.queue("q1", length=12, trimmed=4, pushed=16)
    return stats


class FakeDelivery:
    """DeliveryService.status()'s shape (contract 7)."""

    def __init__(self) -> None:
        self.journal: dict[str, Any] = {"kind": "spool", "bytes": 2048, "segments": 1,
                                        "writable": True, "error": None, "errors": 0}
        self.redis: dict[str, Any] = {"connected": True, "backlog": 5, "error": None}

    def status(self) -> dict[str, Any]:
        return {"journal": dict(self.journal), "redis": dict(self.redis), "backlog": 5}


def make_config(token: str | None = None, max_body: int | None = None) -> Any:
    web: dict[str, Any] = {}
    if token:
        web["token"] = token
    if max_body:
        web["max_body"] = max_body
    return from_mapping({"username": "flamingo", "password": SECRET_PASSWORD, "web": web},
                        environ={})


@defer.inlineCallbacks
def make_store(testcase: Any, redis_port: int | None = None, timeout: float = 2.0) -> Any:
    """A real Store on the shared redis-server (or a dead port), own namespace."""
    if redis_port is None:
        server = shared_redis()
        host, port = server.host, server.port
    else:
        host, port = "127.0.0.1", redis_port
    store = Store(namespace="w" + uuid.uuid4().hex[:8], host=host, port=port, timeout=timeout,
                  reactor=reactor, health_interval=0.2)
    testcase.addCleanup(store.stop)
    yield store.start()
    return store


def make_app(config: Any, store: Any) -> App:
    return App(config=config, reactor=reactor, store=store, stats=make_stats(),
               wader=FakeWader(), delivery=FakeDelivery(), started_at=reactor.seconds() - 5)


class Server:
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

    @defer.inlineCallbacks
    def request(self, method: str, path: str, *, token: str | None = None,
                headers: dict[str, Any] | None = None, **kw: Any) -> Any:
        """(response, body bytes, parsed JSON or None)."""
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        response = yield self.http.request(method, self.url + path, headers=h, **kw)
        body = yield response.content()
        parsed = None
        ctype = response.headers.getRawHeaders("content-type", [""])[0]
        if ctype.startswith("application/json"):
            parsed = json.loads(body)
        return response, body, parsed


__all__ = ["FakeWader", "make_stats", "FakeDelivery", "FakeState", "make_config", "make_store",
           "make_app", "Server", "free_port", "SECRET_PASSWORD", "SECRET_TOKEN"]
