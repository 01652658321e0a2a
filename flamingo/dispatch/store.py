"""Stream params, subscriptions and meta in Redis, with an in-memory copy.

Readers (REST, console, the wader) read the copy synchronously; writers get a
Deferred. Every change, by this daemon or by any other client that writes the
keys and PUBLISHes on ``<ns>:changes``, reloads the copy and calls the
``on_change`` callbacks for what actually changed.

Keys (namespace ``ns``)::

    <ns>:streams:<stream>:<param>   set of values
    <ns>:subscriptions              set of names
    <ns>:subscription:<name>        hash (Subscription.to_hash)
    <ns>:meta:stats                 JSON of Stats.snapshot()
    <ns>:meta:process               hash: start_time, host, pid, running, version
    <ns>:queues                     set of queue keys Flamingo created (or adopted)
    <ns>:changes                    pub/sub: "params:<stream>:<param>" / "subscriptions:<name>"
    <ns>:store:epoch                a random id, written when the store first loads

With ``redis.cluster`` every ``<ns>`` above is ``{<ns>}``: the hash tag puts all
of a namespace's keys in one slot, so each MULTI and script stays on one shard.

A change notice names what changed, and only that is read again; any other
message (an older daemon's "params:<stream>", a hand-written "reload") and
every reconnect read everything. A key of the wrong type, or a subscription
hash that does not decode, is skipped with one WARN per key: one stray key
must not stop every load.

The copy is also kept on disk (``<data_dir>/store-<ns>.json``, see
store_copy.py), rewritten on every change. A daemon started while Redis does
not answer takes its subscriptions and params from there, so the sink knows
where events go and the wader what to ask for.

Redis unreachable (at start or later) never stops the daemon: the copy keeps
its last known state, ``available`` turns False, writes fail fast with
StoreUnavailable, txredisapi reconnects with backoff and the copy is reloaded
when Redis answers again.

Redis that comes back *empty* (restarted without persistence, FLUSHALL) has
lost the epoch marker too. Every load reads the marker with the data; when it
is missing while the daemon holds a last-known copy, the copy is written back
(one Lua script: only keys that are still missing, then the marker, then a
change notice) instead of being replaced by the empty one, so readers (the
wader, the Redis sink choosing queues) never see the empty state. After a
restart of the daemon the copy on disk plays the same part. With the marker
present, Redis is the truth: a deletion by any client stays deleted.

Queues: a subscription never takes over a key Flamingo did not create (its
``max_length`` would trim another application's list). Saving one whose queue
key exists and is not in ``<ns>:queues`` is refused (ValidationError), with one
exception: a ``resque`` subscription without ``max_length`` may append to an
existing Resque queue (a list), since feeding an existing worker queue is what
the format is for. Queues of subscriptions already in Redis are adopted into
``<ns>:queues`` at load, so an upgraded install keeps working.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import txredisapi
from twisted.internet import defer, task
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure

from flamingo._reactor import maybe_global_reactor
from flamingo._types import JsonMapping, JsonObject
from flamingo.config import Config
from flamingo.dispatch.redis_address import FAILOVER_ERRORS, endpoint_for
from flamingo.dispatch.store_copy import CopyFile, LocalCopy, copy_path
from flamingo.dispatch.store_redis import RESTORE, SAVE_SUBSCRIPTION, KeyReader
from flamingo.domain.store_rules import (
    Target,
    appends_only,
    change_targets,
    foreign_queue,
    param_values,
    validate_params,
)
from flamingo.domain.subscription import Subscription
from flamingo.errors import NotFound, StoreUnavailable, ValidationError
from flamingo.logs import logger

__all__ = ["Store", "CLUSTER_RESQUE"]

#: Why a resque subscription is refused with redis.cluster.
CLUSTER_RESQUE = ("format resque needs a Redis that is not a cluster: its keys (resque:queue:<name>, "
                  "resque:queues) are fixed by Resque and cannot carry the namespace's hash tag, so they "
                  "would sit on other shards than the batch that feeds them; use format stream or raw")

log = logger("flamingo.dispatch.store")

ChangeCallback = Callable[[str, str], None]
#: One Redis command inside a MULTI: its name, then its arguments.
RedisCommand = tuple[str | bytes | int | float, ...]

def _s(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _why(failure: Failure, timeout: float) -> str:
    """A failure in words (a timeout's own message is a bare tuple of arguments)."""
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return f"no answer within {timeout:g}s"
    return failure.getErrorMessage() or "timeout"


class _ChangeListener(txredisapi.SubscriberProtocol):
    """The pub/sub connection: (re)subscribes on every connect, then forwards."""

    def connectionMade(self):  # type: ignore[no-untyped-def]
        d = super().connectionMade()
        store: Store = self.factory.store
        d.addCallback(lambda _: self.subscribe(store._channel) if self.connected else None)
        d.addCallback(lambda _: store._listener_ready() if self.connected else None)
        d.addErrback(lambda f: log.debug("subscribe failed: {f}", f=f.getErrorMessage()))
        return d

    def messageReceived(self, pattern, channel, message):  # type: ignore[no-untyped-def]
        self.factory.store._change_message(_s(message))

    def connectionLost(self, why):  # type: ignore[no-untyped-def]
        self.factory.store._listener_lost()
        return super().connectionLost(why)


class Store:
    """Redis-backed params/subscriptions/meta with a synchronous in-memory copy."""

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
        self._params: dict[str, dict[str, list[str]]] = {}
        self._subs: dict[str, Subscription] = {}
        self._callbacks: list[ChangeCallback] = []
        self._notice_handlers: dict[str, Callable[[str], None]] = {}
        self._conn: Any = None
        self._listener_factory: Any = None
        self._health = task.LoopingCall(self._check)
        self._health.clock = reactor
        self._health_interval = health_interval
        self._meta_loop: task.LoopingCall | None = None
        self._reloading: defer.Deferred[None] | None = None
        self._queued_waiters: list[defer.Deferred[None]] = []
        self._queued_full = False
        self._queued_targets: set[Target] = set()
        self._loaded = False  # the copy came from Redis
        self._adopted = False  # the copy came from the local file (Redis did not answer)
        self._copy = CopyFile(copy_path(data_dir, namespace)) if data_dir is not None else None
        self._local: LocalCopy | None = None  # the copy on disk when this process started
        self._warned: set[tuple[str, str]] = set()
        self._own_queues: set[str] = set()
        self._ping: defer.Deferred[Any] | None = None
        self._known_waiters: list[defer.Deferred[dict[str, Subscription]]] = []
        self._started: defer.Deferred[None] | None = None
        self._running = False
        self._down_at_start_logged = False
        self.started_at = self.reactor.seconds()
        self.epoch: str | None = None  # the marker this store last saw or wrote
        self.restores = 0  # times Redis came back empty and was re-seeded from memory
        self.last_restore: JsonObject | None = None

    @classmethod
    def from_config(cls, config: Config, reactor: IReactorTime | None = None) -> Store:
        r = config.redis
        endpoint, where = (None, None)
        if r.sentinels or r.cluster:  # txredisapi connects with the global reactor
            endpoint, where = endpoint_for(r, maybe_global_reactor(None))
        return cls(namespace=r.namespace, host=r.host, port=r.port, password=r.password,
                   db=r.db, timeout=r.timeout, reactor=reactor, streams=(config.stream,), source=config.source,
                   data_dir=config.data_dir, endpoint=endpoint, where=where, prefix=r.prefix,
                   cluster=r.cluster)

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

    # --- lifecycle --------------------------------------------------------

    def start(self) -> defer.Deferred[None]:
        """Connect and load; fires after the first load, or after ``timeout`` if Redis is down."""
        self._running = True
        self._read_local()
        if self.endpoint is None:
            self._conn = txredisapi.lazyConnection(self.host, self.port, dbid=self.db or None,
                                                   password=self.password, connectTimeout=self.timeout)
        else:
            # lazyConnection's own factory, given our endpoint: every reconnect resolves again
            conn_f = txredisapi.RedisFactory(self.where, self.db or None, 1, True, password=self.password)
            conn_f.initialDelay, conn_f.maxDelay = 0.1, 2
            conn_f.startConnecting(self.endpoint)
            self._conn = conn_f.handler
        f = txredisapi.SubscriberFactory(isLazy=True)
        f.protocol = _ChangeListener
        f.store = self
        f.password = self.password
        f.maxDelay = 5
        # The same endpoint txredisapi builds for its own connections: getaddrinfo, so
        # IPv6-only hosts work, and the connect timeout bounds each attempt.
        if self.endpoint is not None:
            f.initialDelay, f.maxDelay = 0.1, 2
        f.startConnecting(self.endpoint or HostnameEndpoint(maybe_global_reactor(None), self.host, self.port,
                                                            timeout=self.timeout))
        self._listener_factory = f
        self._health.start(self._health_interval, now=True)
        self._started = defer.Deferred()
        d = self._started
        timer = self.reactor.callLater(self.timeout, self._start_timed_out)

        def stop_timer(result: None) -> None:
            if timer.active():
                timer.cancel()
            return result

        d.addBoth(stop_timer)
        return d

    def _start_timed_out(self) -> None:
        self._adopt_local()
        self._fire_started()

    def _fire_started(self) -> None:
        if self._started is not None:
            d, self._started = self._started, None
            d.callback(None)

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """Stop loops and close both connections (waits for them)."""
        self._running = False
        self._fire_started()
        if self._health.running:
            self._health.stop()
        if self._ping is not None:
            self._ping.cancel()  # a ping to a Redis that is away: its timer would outlive us
        if self._meta_loop is not None and self._meta_loop.running:
            self._meta_loop.stop()
            try:
                yield self._timed(self._write_process(running=False))
            except Exception:
                pass
        if self._reloading is not None:  # let a load (or restore) finish: bounded by its timeouts
            try:
                yield self._reloading
            except Exception:
                pass
        ds = []
        if self._conn is not None:
            ds.append(self._conn.disconnect())
        if self._listener_factory is not None:
            ds.append(self._listener_factory.disconnect())
        yield defer.DeferredList(ds, consumeErrors=True)
        if self._reloading is not None:
            yield self._reloading

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

    # --- writing -----------------------------------------------------------

    def set_params(self, stream: str, params: JsonMapping) -> defer.Deferred[dict[str, list[str]]]:
        """Replace each given param (an empty list deletes it)."""
        try:
            given = {p: param_values(p, v) for p, v in params.items()}
            merged = {**self.params(stream), **given}
            validate_params(stream, {k: v for k, v in merged.items() if v}, self.source)
        except ValidationError as e:
            return defer.fail(e)
        cmds: list[RedisCommand] = []
        for p, values in given.items():
            key = self._param_key(stream, p)
            cmds.append(("DEL", key))
            if values:
                cmds.append(("SADD", key, *values))
        return self._write_params(stream, list(given), cmds)

    def set_param(self, stream: str, param: str, values: Any) -> defer.Deferred[dict[str, list[str]]]:
        return self.set_params(stream, {param: values})

    def add_values(self, stream: str, param: str, values: Any) -> defer.Deferred[dict[str, list[str]]]:
        try:
            vals = param_values(param, values)
            current = self.params(stream)
            current[param] = sorted(set(current.get(param, [])) | set(vals))
            validate_params(stream, current, self.source)
        except ValidationError as e:
            return defer.fail(e)
        if not vals:
            return self._write_params(stream, [param], [])
        return self._write_params(stream, [param], [("SADD", self._param_key(stream, param), *vals)])

    def remove_values(self, stream: str, param: str, values: Any) -> defer.Deferred[dict[str, list[str]]]:
        try:
            vals = param_values(param, values)
            validate_params(stream, {param: vals} if vals else {}, self.source)
        except ValidationError as e:
            return defer.fail(e)
        if param not in self.params(stream):
            return defer.fail(NotFound("param", f"{stream}:{param}"))
        if not vals:
            return self._write_params(stream, [param], [])
        return self._write_params(stream, [param], [("SREM", self._param_key(stream, param), *vals)])

    def delete_param(self, stream: str, param: str) -> defer.Deferred[dict[str, list[str]]]:
        if param not in self.params(stream):
            return defer.fail(NotFound("param", f"{stream}:{param}"))
        return self._write_params(stream, [param], [("DEL", self._param_key(stream, param))])

    def save_subscription(self, sub: Subscription) -> defer.Deferred[Subscription]:
        if not isinstance(sub, Subscription):
            return defer.fail(ValidationError("subscription", f"expected a Subscription, got {sub!r}"))
        if self.cluster and sub.format == "resque":
            return defer.fail(ValidationError("format", CLUSTER_RESQUE, limit="format: raw|envelope|stream "
                                              "with redis.cluster"))
        if not self.available or self._conn is None:
            return defer.fail(StoreUnavailable(f"Redis unreachable: {self.last_error or 'not connected'}"))
        flat: list[str] = []
        for k, v in sub.to_hash().items():
            flat += [k, v]
        queue = sub.queue_key(self.prefix)
        mode = "append" if appends_only(sub) else "strict"
        d = self._timed(self._conn.execute_command(
            "EVAL", SAVE_SUBSCRIPTION, 4, self._sub_key(sub.name), self._subs_key, self._queues_key,
            queue, sub.name, mode, self._channel, f"subscriptions:{sub.name}", ",".join(sub.groups), *flat))

        def saved(reply: Any) -> Any:
            if _s(reply) != "ok":
                raise foreign_queue(sub, queue, _s(reply))
            # a load that starts after the write: never stale
            return self._reload([("subscription", sub.name, None)])
        d.addCallback(saved)
        return d.addCallback(lambda _: sub)

    def delete_subscription(self, name: str, drop_queue: bool = False) -> defer.Deferred[None]:
        sub = self._subs.get(name)
        if sub is None:
            if not self.available:
                return defer.fail(StoreUnavailable(f"Redis unreachable: {self.last_error}"))
            return defer.fail(NotFound("subscription", name))
        cmds: list[RedisCommand] = [("SREM", self._subs_key, name), ("DEL", self._sub_key(name))]
        if drop_queue:
            queue = sub.queue_key(self.prefix)
            cmds += [("DEL", queue), ("SREM", self._queues_key, queue)]
            self._own_queues.discard(queue)
        cmds.append(("PUBLISH", self._channel, f"subscriptions:{name}"))
        d = self._transaction(cmds)
        d.addCallback(lambda _: self._reload([("subscription", name, None)]))
        return d.addCallback(lambda _: None)

    # --- meta ----------------------------------------------------------------

    def start_meta(self, snapshot: Callable[[], JsonObject], interval: float = 5.0) -> None:
        """Write ``snapshot()`` and process info to ``<ns>:meta:*`` every ``interval`` s."""
        self._snapshot = snapshot

        def tick() -> None:
            if self.available:
                d = self._timed(self.write_meta(self._snapshot()))
                d.addErrback(lambda f: log.debug("meta write failed: {e}", e=f.getErrorMessage()))
        if self._meta_loop is not None and self._meta_loop.running:
            self._meta_loop.stop()
        self._meta_loop = task.LoopingCall(tick)
        self._meta_loop.clock = self.reactor
        self._meta_loop.start(interval, now=True)

    def process_info(self, running: bool = True) -> JsonObject:
        from flamingo import __version__ as version
        return {"start_time": int(self.started_at), "host": socket.gethostname(),
                "pid": os.getpid(), "running": running, "version": version}

    def write_meta(self, snapshot: JsonObject) -> defer.Deferred[Any]:
        ns = self.prefix
        proc = self.process_info()
        flat: list[str] = []
        for k, v in proc.items():
            flat += [k, orjson.dumps(v).decode() if not isinstance(v, str) else v]
        return self._transaction([("SET", f"{ns}:meta:stats", orjson.dumps(snapshot)),
                                  ("HSET", f"{ns}:meta:process", *flat)], publish=False)

    def _write_process(self, running: bool) -> defer.Deferred[Any]:
        return self._transaction([("HSET", f"{self.prefix}:meta:process", "running",
                                   orjson.dumps(running).decode())], publish=False)

    @defer.inlineCallbacks
    def read_meta(self) -> Any:
        """``{"stats": ..., "process": ...}`` as last written (by any daemon of this namespace)."""
        ns = self.prefix
        stats = yield self._timed(self._conn.get(f"{ns}:meta:stats"))
        proc = yield self._timed(self._conn.hgetall(f"{ns}:meta:process"))
        out_proc = {}
        for k, v in (proc or {}).items():
            try:
                out_proc[_s(k)] = orjson.loads(v)
            except orjson.JSONDecodeError:
                out_proc[_s(k)] = _s(v)
        return {"stats": orjson.loads(stats) if stats else None, "process": out_proc}

    @defer.inlineCallbacks
    def stream_info(self, key: str) -> Any:
        """``(length, XINFO GROUPS reply)`` of a stream (``(0, [])`` when it does not exist)."""
        length = yield self._timed(self._conn.execute_command("XLEN", key))
        if not length:
            return 0, []
        groups = yield self._timed(self._conn.execute_command("XINFO", "GROUPS", key))
        return int(length), groups

    # --- internals -------------------------------------------------------------

    def _timed(self, d: defer.Deferred[Any]) -> defer.Deferred[Any]:
        d.addTimeout(self.timeout, self.reactor)

        def unavailable(f: Failure) -> Any:
            if f.check(txredisapi.ResponseError) and str(f.value).startswith(FAILOVER_ERRORS):
                # a replica now (failover), or another node owns the slot: find the server again
                self._drop_connections()
                self._mark_down(str(f.value))
                raise StoreUnavailable(f"Redis {self.where} is not the master: {f.value}")
            if f.check(defer.TimeoutError, defer.CancelledError, txredisapi.ConnectionError,
                       ConnectionError, OSError):
                why = _why(f, self.timeout)
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

    def _transaction(self, cmds: list[RedisCommand], publish: bool = True) -> defer.Deferred[Any]:
        """MULTI + cmds + EXEC in one pipeline write, with a timeout."""
        if not self.available or self._conn is None:
            return defer.fail(StoreUnavailable(f"Redis unreachable: {self.last_error or 'not connected'}"))

        @defer.inlineCallbacks
        def run() -> Any:
            pipe = yield self._conn.pipeline()
            pipe.execute_command("MULTI")
            for c in cmds:
                pipe.execute_command(*c)
            pipe.execute_command("EXEC")
            replies = yield pipe.execute_pipeline()
            for r in replies:
                if isinstance(r, Exception):
                    raise r
            return replies[-1]
        return self._timed(run())

    def _write_params(self, stream: str, names: list[str],
                      cmds: list[RedisCommand]) -> defer.Deferred[dict[str, list[str]]]:
        cmds = cmds + [("PUBLISH", self._channel, f"params:{stream}:{p}") for p in names]
        d = self._transaction(cmds)
        d.addCallback(lambda _: self._reload([("params", stream, p) for p in names]))
        return d.addCallback(lambda _: self.params(stream))

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

    # --- loading ---------------------------------------------------------------------

    def _check(self) -> None:
        if self._conn is None or self._ping is not None:
            return  # one health check at a time
        d = self._conn.ping()
        d.addTimeout(min(self.timeout, max(self._health_interval, 0.5)), self.reactor)
        self._ping = d

        def ok(_: Any) -> Any:
            if not self.available:
                self.available = True
                if self._loaded or self._down_at_start_logged:
                    log.info("Redis {addr} reachable again", addr=self.where)
                return self._reload()
            return None

        def bad(f: Failure) -> None:
            if not self._running:
                return  # cancelled by stop()
            self._mark_down(_why(f, min(self.timeout, max(self._health_interval, 0.5))))
        def over(result: Any) -> Any:
            self._ping = None
            return result
        d.addBoth(over)
        d.addCallbacks(ok, bad)
        d.addErrback(lambda f: log.failure("store health check", f))

    def _listener_ready(self) -> None:
        # (Re)subscribed: anything published while we were away was missed.
        if self.available:
            self._reload()
        for kind, handler in list(self._notice_handlers.items()):
            handler(kind)  # a bare kind: read everything of it again

    def _listener_lost(self) -> None:
        pass

    def _change_message(self, message: str) -> None:
        handler = self._notice_handlers.get(message.partition(":")[0])
        if handler is not None:  # a part with keys of its own (X rules): not the store's copy
            handler(message)
            return
        self._reload(change_targets(message))

    def on_notice(self, kind: str, handler: Callable[[str], None]) -> None:
        """Change notices ``<kind>:...`` go to ``handler`` instead of reloading the store;
        after a reconnect of the notice channel it is called with the bare ``kind``."""
        self._notice_handlers[kind] = handler

    def command(self, *args: str | bytes | int | float) -> defer.Deferred[Any]:
        """One Redis command (a script, a read) for a part that keeps its own keys,
        with the store's timeout and unavailability rules."""
        if not self.available or self._conn is None:
            return defer.fail(StoreUnavailable(f"Redis unreachable: {self.last_error or 'not connected'}"))
        return self._timed(self._conn.execute_command(*args))

    def _reload(self, targets: Iterable[Target] | None = None) -> defer.Deferred[None]:
        """Reload the copy (all of it, or the targets); calls made while a load runs share the next one."""
        d: defer.Deferred[None] = defer.Deferred()
        if not self._running:
            d.callback(None)
            return d
        full = targets is None or not self._loaded
        if self._reloading is not None:
            self._queued_waiters.append(d)
            if full:
                self._queued_full = True
            else:
                self._queued_targets.update(targets or ())
            return d
        self._run_load([d], None if full else set(targets or ()))
        return d

    def _run_load(self, waiters: list[defer.Deferred[None]], targets: set[Target] | None) -> None:
        self._reloading = self._load_checked() if targets is None else self._load_targets(targets)

        def done(result: Any) -> None:
            self._reloading = None
            if isinstance(result, tuple):
                params, subs = result
                self._loaded = True
                self._apply(params, subs)
                self._save_copy()
                self._fire_known()
                self._fire_started()
            else:
                log.warn("store reload failed: {e}", e=result.getErrorMessage())
            for w in waiters:
                w.callback(None)
            queued, self._queued_waiters = self._queued_waiters, []
            full, self._queued_full = self._queued_full or not self._loaded, False
            more, self._queued_targets = self._queued_targets, set()
            if queued:
                if self._running:
                    self._run_load(queued, None if full else more)
                else:
                    for w in queued:
                        w.callback(None)
        self._reloading.addBoth(done)

    @defer.inlineCallbacks
    def _load_checked(self) -> Any:
        """Load; if Redis lost the marker while we hold a copy, restore it first.

        The empty state is never applied when there is a copy to restore: the
        sink reads ``subscriptions()`` for every batch, and an empty copy for a
        moment would commit events to no queue at all. The copy is the one in
        memory, or after a restart of the daemon the local file.
        """
        params, subs, marker = yield self._timed(self._load())
        if marker is None:
            if self._loaded or self._adopted:
                base = (self._params, self._subs)
            elif self._local is not None:
                base = (self._local.params, self._local.subscriptions)
            else:
                base = ({}, {})
            if base[0] or base[1]:
                yield self._restore(*base)
                params, subs, marker = yield self._timed(self._load())
            else:  # a first start (or nothing to restore): this Redis is now ours
                epoch = secrets.token_hex(8)
                ok = yield self._timed(self._conn.set(self._epoch_key, epoch, only_if_not_exists=True))
                marker = epoch if ok else (yield self._timed(self._conn.get(self._epoch_key)))
        self.epoch = _s(marker) if marker is not None else None
        self._own_queues.clear()  # read everything: Redis may have lost <ns>:queues too
        yield self._adopt_queues(subs)
        return params, subs

    @defer.inlineCallbacks
    def _adopt_queues(self, subs: dict[str, Subscription]) -> Any:
        """The queues of subscriptions already in Redis are Flamingo's (installs from before ``<ns>:queues``)."""
        queues = sorted({s.queue_key(self.prefix) for s in subs.values() if not appends_only(s)}
                        - self._own_queues)
        if queues:
            try:
                yield self._timed(self._conn.sadd(self._queues_key, queues))
            except txredisapi.ResponseError as e:
                self._warn_once(self._queues_key, str(e))
                return
            self._own_queues.update(queues)

    @defer.inlineCallbacks
    def _load_targets(self, targets: set[Target]) -> Any:
        """Read only what the change notices named, on top of the current copy."""
        read = self._reader()
        params = {s: dict(ps) for s, ps in self._params.items()}
        subs = dict(self._subs)
        for kind, name, param in sorted(targets, key=lambda t: (t[0], t[1], t[2] or "")):
            if kind == "params" and param is not None:
                values = yield self._timed(read.members(self._param_key(name, param)))
                stream = params.setdefault(name, {})
                if values:
                    stream[param] = values
                else:
                    stream.pop(param, None)
            elif kind == "params":
                params[name] = (yield self._timed(read.params(name))).get(name, {})
            else:
                subscribed = yield self._timed(read.is_subscribed(name))
                sub = (yield self._timed(read.subscription(name))) if subscribed else None
                if sub is None:
                    subs.pop(name, None)
                else:
                    subs[name] = sub
        params = {s: ps for s, ps in params.items() if ps}
        marker = yield self._timed(self._conn.get(self._epoch_key))
        if marker is None or _s(marker) != self.epoch:  # emptied, or re-seeded by another daemon
            return (yield self._load_checked())
        yield self._adopt_queues(subs)
        return params, subs

    @defer.inlineCallbacks
    def _restore(self, params_copy: dict[str, dict[str, list[str]]], subs_copy: dict[str, Subscription]) -> Any:
        """Write a copy back to a Redis that lost it (see the module doc)."""
        params = [[self._param_key(stream, p), values]
                  for stream, ps in sorted(params_copy.items()) for p, values in sorted(ps.items()) if values]
        subs = []
        for name, sub in sorted(subs_copy.items()):
            flat: list[str] = []
            for k, v in sub.to_hash().items():
                flat += [k, v]
            subs.append([name, self._sub_key(name), flat])
        changes = [f"params:{s}" for s in sorted(params_copy)] + [f"subscriptions:{n}" for n in sorted(subs_copy)]
        queues = sorted({s.queue_key(self.prefix) for s in subs_copy.values() if not appends_only(s)})
        doc = orjson.dumps({"params": params, "subs": subs, "queues": queues, "changes": changes})
        epoch = secrets.token_hex(8)
        done = yield self._timed(self._conn.execute_command(
            "EVAL", RESTORE, 3, self._epoch_key, self._subs_key, self._queues_key, epoch, self._channel, doc))
        if done == 1:
            self.restores += 1
            self.last_restore = {"at": self.reactor.seconds(), "params": len(params), "subscriptions": len(subs)}
            source = "memory" if self._loaded or self._adopted else f"the local copy {self.copy_path}"
            log.warn("Redis lost flamingo's keys (restarted without persistence?): restored {n} params "
                     "and {m} subscriptions from {source}", n=len(params), m=len(subs), source=source)

    def _reader(self) -> KeyReader:
        return KeyReader(self._conn, self.prefix, self._warn_once)

    def _load(self) -> defer.Deferred[Any]:
        return self._reader().everything()

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
