"""The store's state and the helpers every part of it uses.

``Store`` (store.py) is built in layers, one job each: this base (the copy in
memory, the keys, timed commands and transactions, reachability, the local
copy on disk), loading (store_load.py), writing and meta (store_writes.py),
and the connections and their life (store.py).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import txredisapi
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure

from flamingo._reactor import maybe_global_reactor
from flamingo._types import JsonObject
from flamingo.dispatch.redis_address import FAILOVER_ERRORS
from flamingo.dispatch.store_copy import CopyFile, LocalCopy, copy_path
from flamingo.domain.store_rules import Target
from flamingo.domain.subscription import Subscription
from flamingo.errors import StoreUnavailable
from flamingo.logs import logger

__all__ = ["StoreBase", "ChangeCallback", "RedisCommand", "Params", "Loaded", "text", "describe"]

log = logger("flamingo.dispatch.store")

T = TypeVar("T")

ChangeCallback = Callable[[str, str], None]
#: One Redis command inside a MULTI: its name, then its arguments.
RedisCommand = tuple[str | bytes | int | float, ...]
#: ``params[stream][param] = values``
Params = dict[str, dict[str, list[str]]]
#: What a load gives: the params and the subscriptions.
Loaded = tuple[Params, dict[str, Subscription]]


def text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def describe(failure: Failure, timeout: float) -> str:
    """A failure in words (a timeout's own message is a bare tuple of arguments)."""
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return f"no answer within {timeout:g}s"
    return failure.getErrorMessage() or "timeout"


class StoreBase:
    """The copy in memory and what every layer of the store uses; see store.py."""

    def __init__(self, namespace: str = "flamingo", host: str = "127.0.0.1", port: int = 6379,
                 password: str | None = None, db: int = 0, timeout: float = 5.0,
                 reactor: IReactorTime | None = None, streams: tuple[str, ...] = ("filter",),
                 health_interval: float = 1.0, data_dir: Path | None = None, source: str = "twitter",
                 endpoint: IStreamClientEndpoint | None = None, where: str | None = None,
                 prefix: str | None = None, cluster: bool = False) -> None:
        reactor = maybe_global_reactor(reactor)
        self.namespace = namespace
        self.prefix = prefix or namespace  # what every key starts with (``{ns}`` in cluster mode)
        #: None: redis host:port; else an endpoint that finds the server at each (re)connect
        self.endpoint = endpoint
        self.where = where or f"{host}:{port}"
        self.cluster = cluster
        self.host, self.port, self.password, self.db = host, port, password, db
        self.timeout = timeout
        self.reactor = reactor
        self.available = False
        self.last_error: str | None = None
        self._default_streams = tuple(streams)
        self.source = source  # whose param rules apply (catalog.py)
        self._params: Params = {}
        self._subs: dict[str, Subscription] = {}
        self._callbacks: list[ChangeCallback] = []
        self._notice_handlers: dict[str, Callable[[str], None]] = {}
        self._conn: Any = None  # txredisapi's connection handler (untyped library)
        self._listener_factory: Any = None  # txredisapi's SubscriberFactory
        self._health: task.LoopingCall | None = None  # the reachability check, from start()
        self._health_interval = health_interval
        self._meta_loop: task.LoopingCall | None = None
        self._reloading: defer.Deferred[Loaded] | None = None  # the load running now
        self._queued_waiters: list[defer.Deferred[None]] = []
        self._queued_full = False
        self._queued_targets: set[Target] = set()
        self._loaded = False  # the copy came from Redis
        self._adopted = False  # the copy came from the local file (Redis did not answer)
        self._copy = CopyFile(copy_path(data_dir, namespace)) if data_dir is not None else None
        self._local: LocalCopy | None = None  # the copy on disk when this process started
        self._warned: set[tuple[str, str]] = set()
        self._own_queues: set[str] = set()
        self._ping: defer.Deferred[None] | None = None
        self._known_waiters: list[defer.Deferred[dict[str, Subscription]]] = []
        self._started: defer.Deferred[None] | None = None
        self._running = False
        self._down_at_start_logged = False
        self.started_at = self.reactor.seconds()
        self.epoch: str | None = None  # the marker this store last saw or wrote
        self.restores = 0  # times Redis came back empty and was re-seeded from memory
        self.last_restore: JsonObject | None = None

    # --- keys -------------------------------------------------------------

    @property
    def _channel(self) -> str:
        return f"{self.prefix}:changes"

    def _param_key(self, stream: str, param: str) -> str:
        return f"{self.prefix}:streams:{stream}:{param}"

    def _sub_key(self, name: str) -> str:
        return f"{self.prefix}:subscription:{name}"

    @property
    def _subs_key(self) -> str:
        return f"{self.prefix}:subscriptions"

    @property
    def _epoch_key(self) -> str:
        return f"{self.prefix}:store:epoch"

    @property
    def _queues_key(self) -> str:
        return f"{self.prefix}:queues"

    # --- reading (synchronous, from the copy) ------------------------------

    def stream_names(self) -> list[str]:
        return sorted(set(self._default_streams) | set(self._params))

    def params(self, stream: str) -> dict[str, list[str]]:
        return {k: list(v) for k, v in sorted(self._params.get(stream, {}).items()) if v}

    def subscriptions(self) -> dict[str, Subscription]:
        return dict(self._subs)

    def when_known(self) -> defer.Deferred[dict[str, Subscription]]:
        """Fires with the subscriptions once ``known_subscriptions()`` is no longer None."""
        known = self.known_subscriptions()
        if known is not None:
            return defer.succeed(known)
        d: defer.Deferred[dict[str, Subscription]] = defer.Deferred()
        self._known_waiters.append(d)
        return d

    def _fire_known(self) -> None:
        known = self.known_subscriptions()
        if known is not None:
            waiters, self._known_waiters = self._known_waiters, []
            for d in waiters:
                d.callback(dict(known))

    def known_subscriptions(self) -> dict[str, Subscription] | None:
        """The subscriptions, or None while this process does not know them yet.

        The sink routes nothing until it knows where events go: delivering to an
        empty set would move the checkpoint past events no queue received."""
        return dict(self._subs) if self._loaded or self._adopted else None

    def on_change(self, callback: ChangeCallback) -> None:
        """``callback(kind, name)``; kind is "params" or "subscriptions"."""
        self._callbacks.append(callback)

    def status(self) -> JsonObject:
        """For stats/meta: reachability and the re-seeds after Redis came back empty."""
        return {"available": self.available, "last_error": self.last_error if not self.available else None,
                "restores": self.restores, "last_restore": self.last_restore,
                "source": "redis" if self._loaded else "local copy" if self._adopted else None}

    def _fire_started(self) -> None:
        if self._started is not None:
            d, self._started = self._started, None
            d.callback(None)

    # --- internals -------------------------------------------------------------

    def _timed(self, d: defer.Deferred[T]) -> defer.Deferred[T]:
        """``d`` bounded by the timeout; a lost, silent or demoted Redis is StoreUnavailable."""
        d.addTimeout(self.timeout, self.reactor)

        def unavailable(f: Failure) -> Failure:
            if f.check(txredisapi.ResponseError) and str(f.value).startswith(FAILOVER_ERRORS):
                # a replica now (failover), or another node owns the slot: find the server again
                self._drop_connections()
                self._mark_down(str(f.value))
                raise StoreUnavailable(f"Redis {self.where} is not the master: {f.value}")
            if f.check(defer.TimeoutError, defer.CancelledError, txredisapi.ConnectionError,
                       ConnectionError, OSError):
                why = describe(f, self.timeout)
                self._mark_down(why)
                raise StoreUnavailable(f"Redis unreachable: {why}")
            return f
        return d.addErrback(unavailable)

    def _drop_connections(self) -> None:
        """Close the current connections; txredisapi reconnects through the endpoint, which resolves again."""
        for conn in (self._conn, self._listener_factory):
            factory = getattr(conn, "_factory", conn)  # the handler's factory, or the factory itself
            for proto in list(getattr(factory, "pool", ()) or ()):
                if proto.transport is not None:
                    proto.transport.loseConnection()

    def _within(self, work: Coroutine[defer.Deferred[object], object, T]) -> defer.Deferred[T]:
        """``work`` (Redis reads) bounded by the timeout, like ``_timed``."""
        return self._timed(defer.ensureDeferred(work))

    def _unavailable(self) -> defer.Deferred[T]:
        return defer.fail(StoreUnavailable(f"Redis unreachable: {self.last_error or 'not connected'}"))

    def _transaction(self, cmds: list[RedisCommand]) -> defer.Deferred[object]:
        """MULTI + cmds + EXEC in one pipeline write, with a timeout: EXEC's reply."""
        conn = self._conn
        if not self.available or conn is None:
            return self._unavailable()

        async def run() -> object:
            pipe = await conn.pipeline()
            pipe.execute_command("MULTI")
            for c in cmds:
                pipe.execute_command(*c)
            pipe.execute_command("EXEC")
            replies: list[object] = await pipe.execute_pipeline()
            for r in replies:
                if isinstance(r, Exception):
                    raise r
            return replies[-1]
        return self._timed(defer.ensureDeferred(run()))

    def _mark_down(self, why: str) -> None:
        self.last_error = why
        if self.available:
            self.available = False
            log.error("Redis {addr} unreachable ({why}); running on last known params and "
                      "subscriptions, reconnecting", addr=self.where, why=why)
        elif not self._loaded and not self._down_at_start_logged:
            self._down_at_start_logged = True
            if self._local is not None:
                log.warn("Redis {addr} unreachable at start ({why}); retrying until it answers, on the "
                         "params and subscriptions of the local copy {path} until then",
                         addr=self.where, why=why, path=str(self.copy_path))
            else:
                log.warn("Redis {addr} unreachable at start ({why}); retrying until it answers (no params "
                         "or subscriptions until then)", addr=self.where, why=why)
        if not self._loaded:
            self._adopt_local()

    # --- the local copy ----------------------------------------------------------

    @property
    def copy_path(self) -> Path | None:
        """Where the local copy lives (None: no ``data_dir``, no copy)."""
        return self._copy.path if self._copy is not None else None

    def _read_local(self) -> None:
        if self._copy is not None and self._local is None:
            self._local = self._copy.read()

    def _adopt_local(self) -> None:
        """Redis does not answer at start: take what the local copy says (once)."""
        if self._loaded or self._adopted or self._local is None:
            return
        self._adopted = True
        self.epoch = self._local.epoch
        self._apply(self._local.params, self._local.subscriptions)
        self._fire_known()

    def _save_copy(self) -> None:
        """Keep the local copy in step with what was read from Redis."""
        if self._copy is not None and self._loaded:
            self._copy.save(LocalCopy(params=self._params, subscriptions=self._subs, epoch=self.epoch))

    def _warn_once(self, key: str, why: str) -> None:
        if (key, why) not in self._warned:
            self._warned.add((key, why))
            log.warn("Redis key {key} skipped: {why}", key=key, why=why)


    def _apply(self, params: dict[str, dict[str, list[str]]], subs: dict[str, Subscription]) -> None:
        """Swap in the new copy and tell callbacks what differs."""
        old_params, old_subs = self._params, self._subs
        self._params, self._subs = params, subs
        changes = [("params", s) for s in sorted(set(old_params) | set(params))
                   if old_params.get(s) != params.get(s)]
        changes += [("subscriptions", n) for n in sorted(set(old_subs) | set(subs))
                    if old_subs.get(n) != subs.get(n)]
        for kind, name in changes:
            for cb in list(self._callbacks):
                try:
                    cb(kind, name)
                except Exception:
                    log.failure("on_change callback failed for {kind} {name}", kind=kind, name=name)
