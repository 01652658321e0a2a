"""The Redis sink: subscription queues fed in batches, exactly once.

Every batch is one pre-encoded ``EVALSHA`` of an atomic script
(``transaction.py``): one ``RPUSH key v1 … vn`` per queue (plus ``LTRIM`` for a
max length, ``SADD resque:queues`` for Resque; ``XADD`` per event for a stream) and ``SET <ns>:sink:checkpoint
<position>:<epoch>``, applied only if every key has the right type and the
checkpoint is still the one this sink read; otherwise nothing is written and
the batch is retried after a backoff. Up to two batches are in flight: the
second is cut and sent once the first's bytes are written, and its
compare-and-set expects the checkpoint the first one writes, so Redis applies
it only after the first (a refused or lost first batch takes the second with
it; the sink then goes on from the checkpoint it knows, or reads it again on
reconnecting). Whatever arrives meanwhile goes into the next batch (batching
grows with load, up to ``batch_max`` events).

Nothing is sent until this process knows the subscriptions (the callable
returns None until the store has loaded them): a batch routed to no queue
would move the checkpoint past events no queue received.

Events come from memory while the sink keeps up; when Redis is slow or down,
memory is capped (``max_memory`` bytes) and the backlog is read back from the
journal. While Redis takes batches, the sink paces the stream instead: from
half of ``max_memory`` the reader pauses until Redis caught up
(``sink_pace.py``), so a reader faster than Redis does not run ahead into
the event log and back. On (re)connect the sink kills its previous Redis client if Redis is
the same server (same ``run_id``; a transaction still buffered can no longer be
applied behind its back — the script's compare-and-set would refuse it
anyway), then reads the checkpoint and resumes after it: no event lost, none
pushed twice. If Redis lost the checkpoint (restarted without persistence), the
copy kept in ``<data_dir>/sink-<ns>.checkpoint`` is used. A checkpoint of
another journal (its epoch differs) or beyond what the journal held at start
(the journal lost its tail in a machine crash) is not trusted: delivery
restarts from what the journal holds. A range the journal cannot read is a
counted gap (``gap_events``), logged once, and delivery moves on.

The connection is Twisted's ``ClientService`` with the handshake as its
``prepareConnection`` and the sink's backoff as its retry policy
(``sink_link.py``); the memory backlog and batch cutting are in
``sink_batch.py``, the local checkpoint copy and the resume decision in
``sink_checkpoint.py``.

Events the journal could not keep (disk errors) are delivered from memory in
order with the rest; they have no position, so for them the guarantee is only
"at most once per transaction attempt", and they are lost if memory is full too
(counted in ``status()``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import attrs
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure

from flamingo._reactor import maybe_global_reactor
from flamingo._types import JsonObject
from flamingo.config import Config
from flamingo.dispatch.failover import HOLD_WITH_SENTINEL, ReleaseGate
from flamingo.dispatch.journal import Journal
from flamingo.dispatch.redis_address import FAILOVER_ERRORS, abort, endpoint_for
from flamingo.dispatch.resp import ResponseError, RespProtocol, command
from flamingo.dispatch.routing import Routes
from flamingo.dispatch.sink_batch import Backlog, Item
from flamingo.dispatch.sink_checkpoint import CHECKPOINT_FILE, BadCheckpoint, CheckpointMirror, resume_after
from flamingo.dispatch.sink_link import RedisLink
from flamingo.dispatch.sink_pace import Pace
from flamingo.dispatch.stats import Stats
from flamingo.dispatch.transaction import MOVED, QueueWrite, checkpoint_value, encode_batch
from flamingo.domain.matching import TermMatcher
from flamingo.domain.subscription import Subscription
from flamingo.errors import failure_text
from flamingo.logs import logger
from flamingo.stream.flow import Flow

__all__ = ["RedisSink", "BadCheckpoint", "CHECKPOINT_FILE"]

log = logger("flamingo.sink")

WAIT_FOR_SUBSCRIPTIONS = 0.2  # seconds between looks while the store has not loaded yet
CLUSTER_RESQUE = "format resque cannot be delivered in cluster mode (resque:* keys cannot carry the hash tag)"


MAX_IN_FLIGHT = 2  # batches sent and not yet answered: Redis works on one while the next one is cut


@attrs.frozen(eq=False)
class _Batch:
    """One encoded batch, and what it expects of Redis: the checkpoint it follows."""

    payload: list[bytes]
    plan: list[tuple[Subscription, int]]
    expected_raw: bytes  # the checkpoint's value in Redis it follows (the script's compare-and-set)
    new_cp: int
    cp_value: bytes | None  # the new checkpoint's value (None: unchanged)
    consumed: list[Item]
    events: int

    @property
    def after_raw(self) -> bytes:
        """The checkpoint's value in Redis once this batch is applied."""
        return self.cp_value if self.cp_value is not None else self.expected_raw


@attrs.define(eq=False)
class _Flight:
    """A batch sent and not yet answered."""

    batch: _Batch
    reply: defer.Deferred[list[object]]
    written: bool = False  # its bytes left Twisted's buffer: the next batch may be cut


class RedisSink:
    """Delivers journaled events to subscription queues; see the module doc."""

    def __init__(self, journal: Journal, subscriptions: Callable[[], dict[str, Subscription] | None], *,
                 namespace: str = "flamingo", host: str = "127.0.0.1", port: int = 6379,
                 password: str | None = None, db: int = 0, timeout: float = 5.0,
                 batch_max: int = 5000, batch_bytes: int = 2 << 20, max_memory: int = 16 << 20,
                 reactor: IReactorTime | None = None,
                 stats: Stats | None = None, reconnect_max: float = 2.0,
                 endpoint: IStreamClientEndpoint | None = None, where: str | None = None,
                 prefix: str | None = None, wait_replicas: int = 0, cluster: bool = False,
                 pace: bool = True) -> None:
        reactor = maybe_global_reactor(reactor)
        self.journal = journal
        self._subscriptions = subscriptions
        self.namespace = namespace
        self.prefix = prefix or namespace  # what every key starts with (``{ns}`` in cluster mode)
        self.endpoint = endpoint  # None: redis host:port; else one that resolves at each connect
        self.where = where or f"{host}:{port}"
        self.wait_replicas = wait_replicas
        self.cluster = cluster
        self._gate = ReleaseGate(HOLD_WITH_SENTINEL if endpoint is not None and not cluster else 0.0)
        self.host, self.port, self.password, self.db = host, port, password, db
        self.timeout = timeout
        self.reactor = reactor
        self.stats = stats
        self.reconnect_max = reconnect_max
        self._ckey = f"{self.prefix}:sink:checkpoint".encode()
        self._backlog = Backlog(journal, batch_max=batch_max, batch_bytes=batch_bytes, max_memory=max_memory)
        self._mirror = CheckpointMirror(journal, namespace)
        self.checkpoint: int | None = None
        self._cp_raw = b""  # the checkpoint value in Redis as last read or written ("" = none)
        # the highest checkpoint this process sent (committed or maybe: a timed-out batch
        # can still land) or resumed at; a checkpoint beyond it and beyond the journal at
        # start was not written by this journal's events
        self._written_upto = 0
        self.waiting: str | None = None  # why nothing is sent although connected
        self.progress_at: float | None = None  # reactor seconds: last commit, or last time caught up
        self._proto: RespProtocol | None = None
        self._flight: deque[_Flight] = deque()  # sent, not yet answered (oldest first)
        self._scheduled: IDelayedCall | None = None
        self._attempt = 0
        self._running = False
        self._matchers: dict[tuple[str, ...], TermMatcher] = {}
        self._drain_waiters: list[defer.Deferred[None]] = []
        self.connected = False
        self.error: str | None = None
        self.error_since: float | None = None
        self.delivered = 0  # events whose transaction committed
        self.pushed = 0  # values pushed (events x matching queues)
        self.transactions = 0
        self.queue_errors: dict[str, str] = {}
        self.redelivered = 0  # events a new master lacked after a failover, sent again from the journal
        self.failovers = 0  # reconnects that found another server holding an older checkpoint
        self.wait_short = 0  # batches WAIT did not see on wait_replicas replicas in time
        self.address: str | None = None  # the server of the current connection
        self.cpu_seconds = 0.0  # reactor-thread CPU spent building and handing over batches
        self._last_commit: float | None = None  # reactor seconds: connected, or the last batch committed
        #: holds the stream's gate while Redis takes batches slower than they come (``pace_with``)
        self.pace = Pace(None, reactor, high=max_memory // 2, low=max_memory // 4, recheck=self._pace,
                         enabled=pace)
        self._link = RedisLink(self._endpoint, clock=reactor, timeout=timeout, password=password, db=db,
                               checkpoint_key=self._ckey, retry=self._retry_delay, ready=self._ready,
                               failed=self._connect_failed, where=self.where)

    @classmethod
    def from_config(cls, config: Config, journal: Journal, subscriptions: Callable[[], dict[str, Subscription] | None],
                    reactor: IReactorTime | None = None, stats: Stats | None = None) -> RedisSink:
        r = config.redis
        endpoint, where = (None, None)
        if r.sentinels or r.cluster:
            endpoint, where = endpoint_for(r, maybe_global_reactor(reactor))
        return cls(journal, subscriptions, namespace=r.namespace, host=r.host, port=r.port,
                   password=r.password, db=r.db, timeout=r.timeout, batch_max=r.batch_max,
                   max_memory=r.memory_max, reactor=reactor, stats=stats, endpoint=endpoint, where=where,
                   prefix=r.prefix, wait_replicas=r.wait_replicas, cluster=r.cluster, pace=r.pace)

    # --- what the backlog and the connection hold ---------------------------------

    @property
    def batch_max(self) -> int:
        return self._backlog.batch_max

    @property
    def batch_bytes(self) -> int:
        return self._backlog.batch_bytes

    @property
    def max_memory(self) -> int:
        return self._backlog.max_memory

    @property
    def memory_dropped(self) -> int:
        """Journaled events dropped from memory (re-read from disk)."""
        return self._backlog.memory_dropped

    @property
    def lost_events(self) -> int:
        """Not journaled and dropped from memory: gone."""
        return self._backlog.lost_events

    @property
    def gap_events(self) -> int:
        """Positions the journal could not give back (deleted, cut short)."""
        return self._backlog.gap_events

    @property
    def _mem(self) -> int:
        return self._backlog.mem

    @property
    def fencing(self) -> bool:
        """False once the Redis user turned out not to be allowed CLIENT (NOPERM)."""
        return self._link.fencing

    @property
    def _client_id(self) -> int | None:
        return self._link.client_id

    def _endpoint(self) -> IStreamClientEndpoint:
        """Where the next connection attempt goes (the given endpoint resolves at each connect)."""
        return self.endpoint or endpoints.HostnameEndpoint(self.reactor, self.host, self.port,
                                                           timeout=max(1, int(self.timeout)))

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self.progress_at = self.reactor.seconds()
        self._mirror.open()
        self._link.start()

    def stop(self) -> defer.Deferred[None]:
        """Stop delivering: the batch in flight is waited for, the connection closed."""
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        self._running = False
        self.pace.release()
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        while self._flight:
            await self._flight[0].reply  # never fails: _transaction_failed handles its errors
        await self._link.stop()  # closes the connection (or ends the attempt), waits until it is done
        self._mirror.close()
        self._fire_drained()

    def drained(self) -> defer.Deferred[None]:
        """Fires when everything received so far is in Redis (or the sink stops)."""
        d: defer.Deferred[None] = defer.Deferred()
        if self._caught_up():
            d.callback(None)
        else:
            self._drain_waiters.append(d)
        return d

    def _caught_up(self) -> bool:
        return (self.checkpoint is not None and self.checkpoint >= self.journal.last_seq
                and not self._backlog.has_unjournaled())

    def _fire_drained(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            d.callback(None)

    # --- input ------------------------------------------------------------------

    def deliver(self, first: int | None, kept: int, frames: list[bytes], types: list[str]) -> None:
        """A batch the dispatcher has journaled: positions ``first..first+kept-1``, the rest not kept."""
        self._backlog.deliver(first, kept, frames, types)
        self._pace()
        self._schedule()

    # --- pacing ---------------------------------------------------------------------

    def pace_with(self, flow: Flow) -> None:
        """Pace the stream through ``flow``, the gate its reader waits at."""
        self.pace.flow = flow

    def _pace(self) -> None:
        cp = self.checkpoint
        self.pace.update(self._backlog.mem, taking=self._running and self._proto is not None and self.error is None,
                         last_commit=self._last_commit,
                         from_memory=cp is not None and self._backlog.in_memory_after(cp))

    # --- the pump -----------------------------------------------------------------

    def _schedule(self) -> None:
        if self._scheduled is None and self._proto is not None and self._may_send():
            self._scheduled = self.reactor.callLater(0, self._pump)

    def _may_send(self) -> bool:
        """Room for a batch: none in flight, or one whose bytes are written (cutting the next
        one before would hold them up). Events without a journal position are only ever
        taken by a lone batch: they have no position to tell two batches' shares apart."""
        flight = self._flight
        if not flight:
            return True
        return len(flight) < MAX_IN_FLIGHT and flight[-1].written and not self._backlog.has_unjournaled()

    def _pump(self) -> None:
        t0 = time.thread_time()  # per batch, not per event: the bench's per-stage CPU
        try:
            self._pump_batch()
        finally:
            self.cpu_seconds += time.thread_time() - t0

    def _pump_batch(self) -> None:
        self._scheduled = None
        proto = self._proto
        if proto is None or self.checkpoint is None or not self._may_send():
            return
        subs = self._subscriptions()
        if subs is None:
            # routing to an unknown set would move the checkpoint past events
            # that no queue received: wait (a look every WAIT_FOR_SUBSCRIPTIONS s)
            if self.waiting is None:
                log.info("Redis sink waiting for the subscriptions to be loaded")
            self.waiting = "subscriptions unknown"
            self._scheduled = self.reactor.callLater(WAIT_FOR_SUBSCRIPTIONS, self._pump)
            return
        self.waiting = None
        if self._flight:  # after the batch in flight: its checkpoint is the one this one expects
            last = self._flight[-1].batch
            batch = self._cut(subs, last.new_cp, last.after_raw)
        else:
            batch = self._cut(subs, self.checkpoint, self._cp_raw)
        if batch is None:
            if not self._flight:
                self._idle()
            return
        self._send(proto, batch)

    def _cut(self, subs: dict[str, Subscription], checkpoint: int, cp_raw: bytes) -> _Batch | None:
        """The batch after ``checkpoint`` (None: nothing to send)."""
        frames, types, new_cp, consumed = self._backlog.next_batch(checkpoint)
        if not frames and new_cp == checkpoint:
            return None
        # no frames but a new checkpoint: a gap skipped, recorded by an empty batch
        payload, plan, cp_value = self._encode(subs, frames, types, checkpoint, new_cp, cp_raw)
        return _Batch(payload, plan, cp_raw, new_cp, cp_value, consumed, len(frames))

    def _send(self, proto: RespProtocol, batch: _Batch) -> None:
        self._written_upto = max(self._written_upto, batch.new_cp)
        payload = batch.payload
        if self.wait_replicas:
            payload = [*payload, command("WAIT", self.wait_replicas, max(1, int(self.timeout * 500)))]
        d = proto.send(payload, 2 if self.wait_replicas else 1)
        d.addTimeout(self.timeout, self.reactor)
        flight = _Flight(batch, d)
        d.addCallbacks(self._answered, self._transaction_failed, callbackArgs=(flight,), errbackArgs=(flight,))
        d.addErrback(lambda f: log.failure("sink bookkeeping failed", f))
        self._flight.append(flight)
        proto.written().addCallback(lambda _: self._written(flight))

    def _written(self, flight: _Flight) -> None:
        flight.written = True
        if flight in self._flight:
            self._schedule()

    def _idle(self) -> None:
        if self._caught_up() and self.checkpoint is not None:  # caught up implies a checkpoint
            self._release(self.checkpoint)
            self._attempt = 0
            self.progress_at = self.reactor.seconds()
            self._fire_drained()

    def _matcher(self, terms: tuple[str, ...]) -> TermMatcher:
        m = self._matchers.get(terms)
        if m is None:
            m = TermMatcher(terms)
            if len(self._matchers) > 256:
                self._matchers.clear()
            self._matchers[terms] = m
        return m

    def _encode(self, subs: dict[str, Subscription], frames: list[bytes], types: list[str], checkpoint: int,
                new_cp: int, cp_raw: bytes) -> tuple[list[bytes], list[tuple[Subscription, int]], bytes | None]:
        """The batch's script call, which queue gets how many values, the new checkpoint value."""
        writes: list[QueueWrite] = []
        plan: list[tuple[Subscription, int]] = []
        routes = Routes(frames, types, self._matcher)
        for sub in subs.values():
            if self.cluster and sub.format == "resque":
                self.queue_errors[sub.name] = CLUSTER_RESQUE
                continue
            values = routes.values_for(sub)
            if not values:
                continue
            writes.append(QueueWrite(sub.queue_key(self.prefix).encode(), values, sub.max_length,
                                     sub.name.encode() if sub.format == "resque" else None,
                                     stream=sub.format == "stream",
                                     groups=tuple(g.encode() for g in sub.groups)))
            plan.append((sub, len(values)))
        cp_value = checkpoint_value(new_cp, self.journal.epoch) if new_cp != checkpoint else None
        return encode_batch(self._ckey, cp_raw, cp_value, writes), plan, cp_value

    def _answered(self, replies: list[object], flight: _Flight) -> None:
        if not self._flight or self._flight[0] is not flight:
            # sent after a batch that was refused or lost: its compare-and-set expected that
            # batch's checkpoint, so Redis refused it too (or, had another writer moved the
            # checkpoint there, the next batch's compare-and-set or the reconnect finds out)
            return
        self._flight.popleft()
        b = flight.batch
        result = replies[0]
        if isinstance(result, ResponseError):
            self._flight.clear()  # each of them expects this one's checkpoint: refused in turn
            self._refused(str(result), b.plan)
            return
        self._committed(replies, b.new_cp, b.cp_value, b.consumed, b.plan, b.events)

    def _committed(self, replies: list[object], new_cp: int, cp_value: bytes | None, consumed: list[Item],
                   plan: list[tuple[Subscription, int]], n: int) -> None:
        result = replies[0]
        self.checkpoint = new_cp
        if cp_value is not None:
            self._cp_raw = cp_value
        self._mirror.write(new_cp)
        replicated = False
        if self.wait_replicas:
            acks = replies[1]
            replicated = isinstance(acks, int) and acks >= self.wait_replicas
            if not replicated:
                self.wait_short += 1
                if self.wait_short == 1 or self.wait_short % 1000 == 0:
                    log.warn("WAIT: a batch reached {n} of {want} replicas in time ({total} batches so far); "
                             "a failover now could lose it from Redis (the journal keeps it)",
                             n=acks, want=self.wait_replicas, total=self.wait_short)
        self._release(new_cp, replicated)  # the spool drops segments every event of which is in Redis
        self.transactions += 1
        self.delivered += n
        self._attempt = 0
        self.progress_at = self.reactor.seconds()
        self._backlog.committed(new_cp, consumed)
        self._last_commit = self.reactor.seconds()
        for (sub, count), (length, trimmed) in zip(plan, _pairs(result)):
            self.pushed += count
            self.queue_errors.pop(sub.name, None)
            if self.stats is not None:
                self.stats.queue(sub.name, length=length, trimmed=trimmed, pushed=count)
        if self.error is not None:
            log.info("Redis deliveries flowing again")
            self.error = self.error_since = None
        self._pace()
        self._pump_again()

    def _refused(self, err: str, plan: list[tuple[Subscription, int]]) -> None:
        """Redis wrote nothing of the batch: say why, and retry it after a backoff (nothing skipped)."""
        if err.startswith(MOVED) or err.startswith("NOSCRIPT") or err.startswith(FAILOVER_ERRORS):
            # another writer moved the checkpoint (a late batch of an earlier connection),
            # or the script is gone (SCRIPT FLUSH): reconnect, which re-reads both
            self._set_error(f"batch refused: {err}")
            self._abort()
            return
        for sub, _ in plan:
            if sub.queue_key(self.prefix) in err or ("resque:queues" in err and sub.format == "resque"):
                self.queue_errors[sub.name] = err
        self._set_error(f"batch refused, nothing delivered until this is fixed: {err}")
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()  # a send due now would skip the backoff
        self._scheduled = self.reactor.callLater(self._backoff(), self._pump)

    def _backoff(self) -> float:
        """The next delay of a retry (a refused batch, a reconnect): 0.1 s doubling up to ``reconnect_max``;
        back to the start once a batch commits or the sink is caught up."""
        self._attempt += 1
        return min(self.reconnect_max, 0.05 * (1 << min(self._attempt, 10)))

    def _retry_delay(self, failed_attempts: int) -> float:
        """ClientService's retry policy: the sink's own backoff (shared with refused batches)."""
        return self._backoff()

    def _pump_again(self) -> None:
        if self._proto is not None and self._running:
            self._schedule()

    def _transaction_failed(self, failure: Failure, flight: _Flight) -> None:
        if flight not in self._flight:
            return  # the flight was given up already (a batch before it failed or was refused)
        self._flight.clear()
        self._set_error(f"transaction failed: {failure_text(failure)}")
        self._abort()  # reconnect; the checkpoint decides what was applied

    def _abort(self) -> None:
        if self._proto is not None:
            abort(self._proto)

    def _set_error(self, msg: str) -> None:
        if self.error is None:
            self.error_since = self.reactor.seconds()
            log.error("Redis sink: {msg}; the backlog stays on disk", msg=msg)
        self.error = msg
        self.pace.release()

    def _release(self, cp: int, replicated: bool = False) -> None:
        upto = self._gate.releasable(self.reactor.seconds(), cp, replicated)
        if upto is not None:
            self.journal.release(upto)

    # --- connection (RedisLink calls these) -----------------------------------------------

    def _ready(self, proto: RespProtocol, raw: bytes | None) -> None:
        """The handshake read the checkpoint ``raw``: resume after it (raises to refuse the connection)."""
        if not self._running:
            raise defer.CancelledError("the sink is stopping")
        cp, verdict = resume_after(raw, key=self._ckey.decode(), journal=self.journal, mirror=self._mirror,
                                   written_upto=self._written_upto, origin=self._backlog.origin())
        if verdict == "other_journal":
            self._backlog.gap_upto = min(self._backlog.gap_upto, cp)
        self._after_failover(cp)
        self.checkpoint = cp
        self._cp_raw = raw if raw is not None else b""
        self._written_upto = max(self._written_upto, cp)
        self._proto = proto
        self.connected = True
        self._last_commit = self.reactor.seconds()
        proto.lost_d.addCallback(self._lost, proto)
        peer = proto.transport.getPeer() if proto.transport is not None else None
        self.address = f"{getattr(peer, 'host', self.host)}:{getattr(peer, 'port', self.port)}"
        log.info("Redis sink connected to {addr} ({where}), resuming after position {cp}",
                 addr=self.address, where=self.where, cp=self.checkpoint)
        if self.error is not None and not self.queue_errors:
            # a connection error is over once connected; a refused batch (queue_errors)
            # stays until a batch commits, and a refusal seen again sets it again
            self.error = self.error_since = None
        self._schedule()

    def _after_failover(self, cp: int) -> None:
        """A reconnect that finds an older checkpoint than this process last committed: the server
        lost the newest batches (a failover to a replica that had not got them). Resuming from
        ``cp`` re-delivers them from the journal; say so and count them."""
        known = self.checkpoint
        if known is None:  # a restart: the local copy is the last position this sink committed
            known = self._mirror.last_committed()
        if known is not None and cp < known:
            lost = known - cp
            self.failovers += 1
            self.redelivered += lost
            log.warn("Redis at {addr} lacks positions {a}..{b} that the previous server had acknowledged "
                     "(asynchronous replication, failover?): delivering these {n} events again from the "
                     "journal", addr=self.where, a=cp + 1, b=known, n=lost)

    def _connect_failed(self, failure: Failure) -> None:
        if not self._running:
            return  # stopping: the attempt was cancelled
        if failure.check(BadCheckpoint):
            self._set_error(failure.getErrorMessage())
        else:
            self._set_error(f"cannot connect to {self.where}: "
                            f"{failure_text(failure)}")

    def _lost(self, _: None, proto: RespProtocol) -> None:
        if self._proto is proto:
            self._proto = None
            self.connected = False
            self.pace.release()
            self._link.lost()
            if self._running:
                self._set_error("connection lost")

    # --- status ---------------------------------------------------------------------------

    def backlog(self) -> int:
        """Events received but not yet in Redis."""
        cp = self.checkpoint if self.checkpoint is not None else self._backlog.origin()
        return max(0, self.journal.last_seq - cp) + self._backlog.unjournaled()

    def status(self) -> JsonObject:
        backlog = self.backlog()
        if backlog == 0 and self._running:
            self.progress_at = self.reactor.seconds()
        return {"redis": self.address or self.where, "where": self.where, "connected": self.connected,
                "redelivered": self.redelivered, "failovers": self.failovers, "wait_short": self.wait_short,
                "checkpoint": self.checkpoint, "backlog": backlog,
                "memory_bytes": self._backlog.mem, "delivered": self.delivered, "pushed": self.pushed,
                "transactions": self.transactions, "memory_dropped": self.memory_dropped,
                "lost_events": self.lost_events, "gap_events": self.gap_events,
                "queue_errors": dict(self.queue_errors), "waiting": self.waiting,
                "fencing": self.fencing, "progress_at": self.progress_at, "pace": self.pace.status(),
                "error": self.error, "error_since": self.error_since}


def _pairs(result: object) -> list[tuple[int, int]]:
    """The script's reply: ``[length, trimmed]`` per queue written, in the plan's order."""
    if not isinstance(result, list):
        return []
    return [(int(r[0]), int(r[1])) for r in result if isinstance(r, list) and len(r) >= 2]
