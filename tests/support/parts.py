"""The daemon's parts as control-surface tests need them, built from the real classes.

A real Store on the test redis-server, the real Stats fed a little traffic,
and a wader that holds the real ``WaderState`` but connects nowhere (REST
and the console only read its state and ask it to restart).
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs
from twisted.internet import defer, reactor

from flamingo.app import App, Started
from flamingo.config import Config, from_mapping
from flamingo.dispatch.stats import Stats
from flamingo.dispatch.store import Store
from flamingo.stream.wader import WaderState
from tests.support.redis import shared_redis

__all__ = ["SECRET_PASSWORD", "SECRET_TOKEN", "FakeWader", "make_stats", "FakeDelivery",
           "make_config", "make_store", "make_app"]

SECRET_PASSWORD = "pw-SECRET-0451"
SECRET_TOKEN = "tok-SECRET-9931"

#: The state a test wader starts in: connected, with a request line to show.
CONNECTED = WaderState(name="connected", connected_since=1700000000.0,
                       request_line="POST /1.1/statuses/filter.json track=cats")


class FakeWader:
    """A wader whose state the test sets; ``restart()`` is counted, not performed."""

    def __init__(self, state: WaderState = CONNECTED) -> None:
        self.state = state
        self.restarts = 0
        self.params_changes = 0

    def restart(self) -> None:
        self.restarts += 1
        self.state = attrs.evolve(self.state, name="connecting")

    def params_changed(self) -> None:
        self.params_changes += 1


def make_stats(clock: Any = reactor) -> Stats:
    """The real Stats, fed a little traffic."""
    stats = Stats(clock=clock)
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
    """A delivery whose ``status()`` (the shape DeliveryService reports) the test sets."""

    def __init__(self) -> None:
        self.journal: dict[str, Any] = {"kind": "spool", "bytes": 2048, "segments": 1,
                                        "writable": True, "error": None, "errors": 0}
        self.redis: dict[str, Any] = {"connected": True, "backlog": 5, "error": None, "memory_dropped": 9,
                                      "pace": {"enabled": True, "holding": True, "holds": 3,
                                               "held_seconds": 1.5, "suspensions": 0, "suspended_for": 0.0}}

    def status(self) -> dict[str, Any]:
        return {"journal": dict(self.journal), "redis": dict(self.redis), "backlog": 5}


def make_config(token: str | None = None, max_body: int | None = None) -> Config:
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


def make_app(config: Config, store: Any) -> App:
    return App(config=config, reactor=reactor, store=store, stats=make_stats(),
               wader=FakeWader(), delivery=FakeDelivery(), started=Started(reactor.seconds() - 5))
