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

from collections.abc import Callable
from typing import TypeVar

import txredisapi
from twisted.internet import defer, task
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from flamingo._reactor import maybe_global_reactor
from flamingo.config import Config
from flamingo.dispatch.redis_address import endpoint_for
from flamingo.dispatch.store_base import describe, text
from flamingo.dispatch.store_writes import CLUSTER_RESQUE, StoreWrites
from flamingo.domain.store_rules import change_targets
from flamingo.logs import logger

__all__ = ["Store", "CLUSTER_RESQUE"]

log = logger("flamingo.dispatch.store")

T = TypeVar("T")


class _ChangeListener(txredisapi.SubscriberProtocol):  # type: ignore[misc]  # txredisapi: no types
    """The pub/sub connection: (re)subscribes on every connect, then forwards."""

    def connectionMade(self) -> defer.Deferred[None]:
        d: defer.Deferred[None] = super().connectionMade()
        store: Store = self.factory.store
        d.addCallback(lambda _: self.subscribe(store._channel) if self.connected else None)
        d.addCallback(lambda _: store._listener_ready() if self.connected else None)
        d.addErrback(lambda f: log.debug("subscribe failed: {f}", f=f.getErrorMessage()))
        return d

    def messageReceived(self, pattern: bytes | None, channel: bytes, message: bytes) -> None:
        self.factory.store._change_message(text(message))


class Store(StoreWrites):
    """Redis-backed params/subscriptions/meta with a synchronous in-memory copy.

    Layers: store_base.py (the copy, keys, timed commands, the local copy),
    store_load.py (loading, restoring), store_writes.py (writes, meta); here
    the connections and their life."""

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
        self._health = task.LoopingCall(self._check)
        self._health.clock = self.reactor
        self._health.start(self._health_interval, now=True)
        d: defer.Deferred[None] = defer.Deferred()
        self._started = d
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

    def stop(self) -> defer.Deferred[None]:
        """Stop loops and close both connections (waits for them)."""
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        self._running = False
        self._fire_started()
        if self._health is not None and self._health.running:
            self._health.stop()
        if self._ping is not None:
            self._ping.cancel()  # a ping to a Redis that is away: its timer would outlive us
        if self._meta_loop is not None and self._meta_loop.running:
            self._meta_loop.stop()
            try:
                await self._timed(self._write_process(running=False))
            except Exception as e:  # Redis away or slow: the stale "running" is the price
                log.debug("process not marked stopped in Redis: {e}", e=e)
        if self._reloading is not None:  # let a load (or restore) finish: bounded by its timeouts
            try:
                await self._reloading  # _run_load's done() takes a failed load
            except Exception as e:  # done() itself failed: stopping goes on
                log.warn("store load ended badly while stopping: {e}", e=e)
        ds = []
        if self._conn is not None:
            ds.append(self._conn.disconnect())
        if self._listener_factory is not None:
            ds.append(self._listener_factory.disconnect())
        await defer.DeferredList(ds, consumeErrors=True)
        if self._reloading is not None:
            await self._reloading

    # --- reachability and change notices --------------------------------------

    def _check(self) -> None:
        if self._conn is None or self._ping is not None:
            return  # one health check at a time
        d = self._conn.ping()
        d.addTimeout(min(self.timeout, max(self._health_interval, 0.5)), self.reactor)
        self._ping = d

        def ok(_: object) -> defer.Deferred[None] | None:
            if not self.available:
                self.available = True
                if self._loaded or self._down_at_start_logged:
                    log.info("Redis {addr} reachable again", addr=self.where)
                return self._reload()
            return None

        def bad(f: Failure) -> None:
            if not self._running:
                return  # cancelled by stop()
            self._mark_down(describe(f, min(self.timeout, max(self._health_interval, 0.5))))

        def over(result: T) -> T:
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

    def command(self, *args: str | bytes | int | float) -> defer.Deferred[object]:
        """One Redis command (a script, a read) for a part that keeps its own keys,
        with the store's timeout and unavailability rules."""
        if not self.available or self._conn is None:
            return self._unavailable()
        d: defer.Deferred[object] = self._conn.execute_command(*args)
        return self._timed(d)
