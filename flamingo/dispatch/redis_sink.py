"""The Redis sink: subscription queues fed in batches, exactly once.

Every batch is one pre-encoded ``EVALSHA`` of an atomic script
(``transaction.py``): one ``RPUSH key v1 … vn`` per queue (plus ``LTRIM`` for a
max length, ``SADD resque:queues`` for Resque; ``XADD`` per event for a stream) and ``SET <ns>:sink:checkpoint
<position>:<epoch>``, applied only if every key has the right type and the
checkpoint is still the one this sink read; otherwise nothing is written and
the batch is retried after a backoff. One batch is in flight at a time;
whatever arrives meanwhile goes into the next one (batching grows with load,
up to ``batch_max`` events).

Nothing is sent until this process knows the subscriptions (the callable
returns None until the store has loaded them): a batch routed to no queue
would move the checkpoint past events no queue received.

Events come from memory while the sink keeps up; when Redis is slow or down,
memory is capped (``max_memory`` bytes) and the backlog is read back from the
journal. On (re)connect the sink kills its previous Redis client if Redis is
the same server (same ``run_id``; a transaction still buffered can no longer be
applied behind its back — the script's compare-and-set would refuse it
anyway), then reads the checkpoint and resumes after it: no event lost, none
pushed twice. If Redis lost the checkpoint (restarted without persistence), the
copy kept in ``<data_dir>/sink-<ns>.checkpoint`` is used. A checkpoint of
another journal (its epoch differs) or beyond what the journal held at start
(the journal lost its tail in a machine crash) is not trusted: delivery
restarts from what the journal holds. A range the journal cannot read is a
counted gap (``gap_events``), logged once, and delivery moves on.

Events the journal could not keep (disk errors) are delivered from memory in
order with the rest; they have no position, so for them the guarantee is only
"at most once per transaction attempt", and they are lost if memory is full too
(counted in ``status()``).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure

from flamingo._reactor import maybe_global_reactor
from flamingo._types import JsonObject
from flamingo.config import Config
from flamingo.dispatch.failover import HOLD_WITH_SENTINEL, ReleaseGate
from flamingo.dispatch.journal import Journal, JournalGap
from flamingo.dispatch.redis_address import FAILOVER_ERRORS, endpoint_for
from flamingo.dispatch.resp import ResponseError, RespProtocol, command
from flamingo.dispatch.routing import Routes
from flamingo.dispatch.stats import Stats
from flamingo.dispatch.transaction import (
    MOVED,
    SCRIPT,
    SCRIPT_SHA,
    QueueWrite,
    checkpoint_value,
    encode_batch,
    parse_checkpoint,
    resume_point,
)
from flamingo.domain.matching import TermMatcher
from flamingo.domain.subscription import Subscription
from flamingo.logs import logger
from flamingo.stream.messages import message_type

__all__ = ["RedisSink"]

log = logger("flamingo.sink")

CHECKPOINT_FILE = "sink-{namespace}.checkpoint"
WAIT_FOR_SUBSCRIPTIONS = 0.2  # seconds between looks while the store has not loaded yet
CLUSTER_RESQUE = "format resque cannot be delivered in cluster mode (resque:* keys cannot carry the hash tag)"


class BadCheckpoint(Exception):
    """The checkpoint key holds something that is not a checkpoint."""

@attrs.define
class _Item:
    after: int  # the last journal position before this batch
    first: int | None  # its first position; None = not journaled
    frames: list[bytes]
    types: list[str]
    nbytes: int

    @property
    def end(self) -> int:
        """The last position it covers (``after`` when not journaled)."""
        return self.after + len(self.frames) if self.first is not None else self.after


class RedisSink:
    """Delivers journaled events to subscription queues; see the module doc."""

    def __init__(self, journal: Journal, subscriptions: Callable[[], dict[str, Subscription] | None], *,
                 namespace: str = "flamingo", host: str = "127.0.0.1", port: int = 6379,
                 password: str | None = None, db: int = 0, timeout: float = 5.0,
                 batch_max: int = 5000, batch_bytes: int = 2 << 20, max_memory: int = 16 << 20,
                 reactor: IReactorTime | None = None,
                 stats: Stats | None = None, reconnect_max: float = 2.0,
                 endpoint: IStreamClientEndpoint | None = None, where: str | None = None,
                 prefix: str | None = None, wait_replicas: int = 0, cluster: bool = False) -> None:
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
        self.batch_max = batch_max
        self.batch_bytes = batch_bytes
        self.max_memory = max_memory
        self.reactor = reactor
        self.stats = stats
        self.reconnect_max = reconnect_max
        self._ckey = f"{self.prefix}:sink:checkpoint".encode()
        self.checkpoint: int | None = None
        self._cp_raw = b""  # the checkpoint value in Redis as last read or written ("" = none)
        # the highest checkpoint this process sent (committed or maybe: a timed-out batch
        # can still land) or resumed at; a checkpoint beyond it and beyond the journal at
        # start was not written by this journal's events
        self._written_upto = 0
        self._run_id: bytes | None = None  # Redis' run_id when _client_id was given
        self.fencing = True  # off when the Redis user may not use CLIENT (NOPERM)
        self.waiting: str | None = None  # why nothing is sent although connected
        self.progress_at: float | None = None  # reactor seconds: last commit, or last time caught up
        self._gap_upto = 0  # gaps are counted and logged once, however often a batch is retried
        self._items: deque[_Item] = deque()
        self._mem = 0
        self._proto: RespProtocol | None = None
        self._client_id: int | None = None
        self._inflight: defer.Deferred[Any] | None = None
        self._scheduled: IDelayedCall | None = None
        self._reconnect_call: IDelayedCall | None = None
        self._attempt = 0
        self._running = False
        self._connecting = False
        self._matchers: dict[tuple[str, ...], TermMatcher] = {}
        self._drain_waiters: list[defer.Deferred[None]] = []
        self._mirror_fd: int | None = None
        self.connected = False
        self.error: str | None = None
        self.error_since: float | None = None
        self.delivered = 0  # events whose transaction committed
        self.pushed = 0  # values pushed (events x matching queues)
        self.transactions = 0
        self.memory_dropped = 0  # journaled events dropped from memory (re-read from disk)
        self.lost_events = 0  # not journaled and dropped from memory: gone
        self.gap_events = 0  # positions the journal could not give back (deleted, cut short)
        self.queue_errors: dict[str, str] = {}
        self.redelivered = 0  # events a new master lacked after a failover, sent again from the journal
        self.failovers = 0  # reconnects that found another server holding an older checkpoint
        self.wait_short = 0  # batches WAIT did not see on wait_replicas replicas in time
        self.address: str | None = None  # the server of the current connection
        self.cpu_seconds = 0.0  # reactor-thread CPU spent building and handing over batches

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
                   prefix=r.prefix, wait_replicas=r.wait_replicas, cluster=r.cluster)

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self.progress_at = self.reactor.seconds()
        name = CHECKPOINT_FILE.format(namespace=self.namespace)
        path = Path(self.journal.state_dir) / name
        try:
            old = Path(self.journal.dir) / name  # where earlier versions kept it
            if old != path and old.exists():
                if not path.exists():
                    os.replace(old, path)
                    log.info("moved {old} to {new} (state files live in data_dir)", old=str(old), new=str(path))
                else:
                    old.unlink()
            self._mirror_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.fchmod(self._mirror_fd, 0o600)  # a copy moved from the event dir may be 0644
            if self._read_mirror() is None:
                # a first start: remember where this sink's history begins, so a crash
                # before Redis was ever reached still replays from here
                self._mirror(self.journal.last_seq)
        except OSError as e:
            log.warn("cannot keep a local copy of the checkpoint in {p}: {e}", p=str(path), e=e)
        self._connect()

    @defer.inlineCallbacks
    def stop(self) -> Any:
        self._running = False
        for call in (self._scheduled, self._reconnect_call):
            if call is not None and call.active():
                call.cancel()
        self._scheduled = self._reconnect_call = None
        if self._inflight is not None:
            try:
                yield self._inflight
            except Exception:
                pass
        if self._proto is not None:
            proto = self._proto
            proto.transport.loseConnection()
            yield proto.lost_d
        if self._mirror_fd is not None:
            os.close(self._mirror_fd)
            self._mirror_fd = None
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
                and not any(it.first is None for it in self._items))

    def _fire_drained(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            d.callback(None)

    # --- input ------------------------------------------------------------------

    def deliver(self, first: int | None, kept: int, frames: list[bytes], types: list[str]) -> None:
        """A batch the dispatcher has journaled: positions ``first..first+kept-1``, the rest not kept."""
        if kept:
            after = first - 1  # type: ignore[operator]
            if kept == len(frames):
                self._add(_Item(after, first, frames, types, sum(map(len, frames))))
            else:
                self._add(_Item(after, first, frames[:kept], types[:kept], sum(map(len, frames[:kept]))))
        if kept < len(frames):
            rest = frames[kept:]
            self._add(_Item(self.journal.last_seq, None, rest, types[kept:], sum(map(len, rest))))
        self._schedule()

    def _add(self, item: _Item) -> None:
        self._items.append(item)
        self._mem += item.nbytes
        if self._mem > self.max_memory:
            self._shed()

    def _shed(self) -> None:
        """Over the memory cap: drop the oldest journaled batches (the disk has them) down to
        3/4 of the cap, then, if still over, the oldest others.

        Only the oldest go, so after a short lag the sink reads a little from disk and the
        rest from memory (the newest are kept; the margin spares a shed per batch)."""
        target = self.max_memory * 3 // 4
        keep: deque[_Item] = deque()
        mem = self._mem
        for it in self._items:
            if mem > target and it.first is not None:
                mem -= it.nbytes
                self.memory_dropped += len(it.frames)
            else:
                keep.append(it)
        while mem > self.max_memory and keep:  # only batches not on disk are left
            it = keep.popleft()
            mem -= it.nbytes
            self.lost_events += len(it.frames)
            log.error("{n} events neither on disk nor deliverable to Redis were dropped", n=len(it.frames))
        self._items, self._mem = keep, mem

    # --- the pump -----------------------------------------------------------------

    def _schedule(self) -> None:
        if self._scheduled is None and self._inflight is None and self._proto is not None:
            self._scheduled = self.reactor.callLater(0, self._pump)

    def _pump(self) -> None:
        t0 = time.thread_time()  # per batch, not per event: the bench's per-stage CPU
        try:
            self._pump_batch()
        finally:
            self.cpu_seconds += time.thread_time() - t0

    def _pump_batch(self) -> None:
        self._scheduled = None
        if self._proto is None or self._inflight is not None or self.checkpoint is None:
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
        frames, types, new_cp, consumed = self._next_batch()
        if not frames:
            if new_cp != self.checkpoint:  # a gap skipped: record it
                frames, types = [], []
            else:
                self._idle()
                return
        payload, plan, cp_value = self._encode(subs, frames, types, new_cp)
        self._written_upto = max(self._written_upto, new_cp)
        if self.wait_replicas:
            payload.append(command("WAIT", self.wait_replicas, max(1, int(self.timeout * 500))))
        d = self._proto.send(payload, 2 if self.wait_replicas else 1)
        d.addTimeout(self.timeout, self.reactor)
        self._inflight = d
        d.addCallbacks(self._committed, self._transaction_failed,
                       callbackArgs=(new_cp, cp_value, consumed, plan, len(frames)))
        d.addErrback(lambda f: log.failure("sink bookkeeping failed", f))

    def _idle(self) -> None:
        if self._caught_up() and self.checkpoint is not None:  # caught up implies a checkpoint
            self._release(self.checkpoint)
            self._attempt = 0
            self.progress_at = self.reactor.seconds()
            self._fire_drained()

    def _next_batch(self) -> tuple[list[bytes], list[str], int, list[_Item]]:
        frames: list[bytes] = []
        types: list[str] = []
        consumed: list[_Item] = []
        assert self.checkpoint is not None
        pos = self.checkpoint
        room = self.batch_max
        size = 0
        for it in self._items:
            if room <= 0 or size >= self.batch_bytes:
                break
            if it.first is not None and it.end <= pos:
                continue  # delivered already (memory copy of a replayed batch)
            if pos < it.after:
                pos, room = self._from_disk(frames, types, pos, min(room, it.after - pos), it.after)
                if pos < it.after:
                    break  # the disk could not give more now
                if room <= 0:
                    break
            if it.first is None:
                frames.extend(it.frames)
                types.extend(it.types)
                consumed.append(it)
                room -= len(it.frames)
                size += it.nbytes
                continue
            off = pos + 1 - it.first
            take = min(room, len(it.frames) - off)
            if off == 0 and take == len(it.frames):
                frames.extend(it.frames)
                types.extend(it.types)
                size += it.nbytes
            else:
                frames.extend(it.frames[off:off + take])
                types.extend(it.types[off:off + take])
                size += sum(map(len, it.frames[off:off + take]))
            pos += take
            room -= take
        else:
            if room > 0 and pos < self.journal.last_seq:
                pos, room = self._from_disk(frames, types, pos, min(room, self.journal.last_seq - pos),
                                            self.journal.last_seq)
        return frames, types, pos, consumed

    def _from_disk(self, frames: list[bytes], types: list[str], pos: int, n: int,
                   upto: int) -> tuple[int, int]:
        """Read up to ``n`` events after ``pos`` (never past ``upto``, where memory takes over);
        an unreadable range is passed over as a gap: the new position, the room left."""
        if pos + 1 < self.journal.first_seq:
            last = min(self.journal.first_seq - 1, upto)
            self._gap(pos + 1, last, "no longer on disk (deleted or released)")
            return last, self.batch_max - len(frames)
        try:
            got = self.journal.read(pos + 1, max_events=n, max_bytes=self.batch_bytes)
        except JournalGap as gap:
            last = min(gap.last, upto)
            self._gap(gap.first, last, gap.reason)
            return last, self.batch_max - len(frames)
        frames.extend(got)
        types.extend(message_type(f) for f in got)
        return pos + len(got), self.batch_max - len(frames)

    def _gap(self, first: int, last: int, reason: str) -> None:
        """Count and log a range that cannot be delivered, once however often it is met."""
        first = max(first, self._gap_upto + 1)
        if last < first:
            return
        self._gap_upto = last
        self.gap_events += last - first + 1
        log.error("GAP: journal positions {a}..{b} cannot be read ({reason}); {n} events are not "
                  "delivered, delivery goes on after them", a=first, b=last, reason=reason, n=last - first + 1)

    def _matcher(self, terms: tuple[str, ...]) -> TermMatcher:
        m = self._matchers.get(terms)
        if m is None:
            m = TermMatcher(terms)
            if len(self._matchers) > 256:
                self._matchers.clear()
            self._matchers[terms] = m
        return m

    def _encode(self, subs: dict[str, Subscription], frames: list[bytes], types: list[str],
                new_cp: int) -> tuple[list[bytes], list[tuple[Subscription, int]], bytes | None]:
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
        cp_value = checkpoint_value(new_cp, self.journal.epoch) if new_cp != self.checkpoint else None
        return encode_batch(self._ckey, self._cp_raw, cp_value, writes), plan, cp_value

    def _committed(self, replies: list[Any], new_cp: int, cp_value: bytes | None, consumed: list[_Item],
                   plan: list[tuple[Subscription, int]], n: int) -> None:
        self._inflight = None
        result = replies[0]
        if isinstance(result, ResponseError):
            self._refused(str(result), plan)
            return
        self.checkpoint = new_cp
        if cp_value is not None:
            self._cp_raw = cp_value
        self._mirror(new_cp)
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
        ids = {id(it) for it in consumed}
        while self._items:
            it = self._items[0]
            if (it.first is not None and it.end <= new_cp) or id(it) in ids:
                self._items.popleft()
                self._mem -= it.nbytes
            else:
                break
        for (sub, count), (length, trimmed) in zip(plan, result):
            self.pushed += count
            self.queue_errors.pop(sub.name, None)
            if self.stats is not None:
                self.stats.queue(sub.name, length=length, trimmed=trimmed, pushed=count)
        if self.error is not None:
            log.info("Redis deliveries flowing again")
            self.error = self.error_since = None
        self._pump_again()

    def _refused(self, err: str, plan: list[tuple[Subscription, int]]) -> None:
        """Redis wrote nothing of the batch: say why, and retry it after a backoff (nothing skipped)."""
        if err.startswith(MOVED) or err.startswith("NOSCRIPT") or err.startswith(FAILOVER_ERRORS):
            # another writer moved the checkpoint (a late batch of an earlier connection),
            # or the script is gone (SCRIPT FLUSH): reconnect, which re-reads both
            self._set_error(f"batch refused: {err}")
            proto = self._proto
            if proto is not None and proto.transport is not None:
                proto.transport.abortConnection()
            return
        for sub, _ in plan:
            if sub.queue_key(self.prefix) in err or ("resque:queues" in err and sub.format == "resque"):
                self.queue_errors[sub.name] = err
        self._set_error(f"batch refused, nothing delivered until this is fixed: {err}")
        self._scheduled = self.reactor.callLater(self._backoff(), self._pump)

    def _backoff(self) -> float:
        self._attempt += 1
        return min(self.reconnect_max, 0.05 * (2 ** min(self._attempt, 10)))

    def _pump_again(self) -> None:
        if self._proto is not None and self._running:
            self._schedule()

    def _transaction_failed(self, failure: Failure) -> None:
        self._inflight = None
        self._set_error(f"transaction failed: {failure.getErrorMessage() or failure.type.__name__}")
        proto = self._proto
        if proto is not None and proto.transport is not None:
            proto.transport.abortConnection()  # reconnect; the checkpoint decides what was applied

    def _set_error(self, msg: str) -> None:
        if self.error is None:
            self.error_since = self.reactor.seconds()
            log.error("Redis sink: {msg}; the backlog stays on disk", msg=msg)
        self.error = msg

    def _mirror(self, cp: int) -> None:
        """The local copy of the checkpoint (fixed width: rewritten in place)."""
        if self._mirror_fd is not None:
            try:
                os.pwrite(self._mirror_fd, b"%020d:%s\n" % (cp, self.journal.epoch.encode().ljust(16)[:16]), 0)
            except OSError:
                pass

    def _read_mirror(self) -> tuple[int, str | None] | None:
        if self._mirror_fd is None:
            return None
        try:
            data = os.pread(self._mirror_fd, 64, 0)
            return parse_checkpoint(data.split(b"\n")[0].strip()) if data.strip() else None
        except (OSError, ValueError):
            return None

    # --- connection -----------------------------------------------------------------

    def _connect(self) -> None:
        if not self._running or self._connecting:
            return
        self._connecting = True
        ep = self.endpoint or endpoints.HostnameEndpoint(self.reactor, self.host, self.port,
                                                         timeout=max(1, int(self.timeout)))
        d = endpoints.connectProtocol(ep, RespProtocol())
        d.addTimeout(self.timeout, self.reactor)
        d.addCallback(self._handshake)
        d.addErrback(self._connect_failed)

    def _ask(self, proto: RespProtocol, commands: list[bytes]) -> defer.Deferred[list[Any]]:
        d = proto.send(b"".join(commands), len(commands))
        d.addTimeout(self.timeout, self.reactor)
        return d

    @defer.inlineCallbacks
    def _handshake(self, proto: RespProtocol) -> Any:
        try:
            setup: list[bytes] = []
            if self.password:
                setup.append(command("AUTH", self.password))
            if self.db:
                setup.append(command("SELECT", self.db))
            n = len(setup)
            setup += [command("INFO", "server"), command("CLIENT", "ID"), command("SCRIPT", "LOAD", SCRIPT)]
            replies = yield self._ask(proto, setup)
            for r in replies[:n]:
                if isinstance(r, ResponseError):
                    raise r
            info, client_id, sha = replies[n:]
            if isinstance(sha, ResponseError):
                raise ResponseError(f"cannot load the delivery script: {sha}")
            if sha != SCRIPT_SHA:
                raise ResponseError(f"SCRIPT LOAD returned {sha!r}, expected {SCRIPT_SHA!r}")
            run_id = _run_id(info)
            if isinstance(client_id, ResponseError):
                self._fencing_off(client_id)
                client_id = None
            second: list[bytes] = []
            if self.fencing and self._fence_needed(run_id):
                # fence: a batch of the previous connection still buffered in Redis must
                # not be applied after we read the checkpoint. Only on the same server:
                # after a restart the old id may belong to another client
                second.append(command("CLIENT", "KILL", "ID", self._client_id))  # type: ignore[arg-type]
            second.append(command(b"GET", self._ckey))
            replies = yield self._ask(proto, second)
            if len(second) == 2 and isinstance(replies[0], ResponseError):
                if "NOPERM" in str(replies[0]):
                    self._fencing_off(replies[0])
                elif "No such client" not in str(replies[0]):
                    raise replies[0]
            raw = replies[-1]
            if isinstance(raw, ResponseError):
                raise raw
            cp = self._resume_point(raw)
        except BaseException:
            self._connecting = False
            proto.transport.abortConnection()
            raise
        self._connecting = False
        if not self._running:
            proto.transport.loseConnection()
            return
        self._client_id = client_id if self.fencing else None
        self._run_id = run_id
        self._after_failover(cp)
        self.checkpoint = cp
        self._cp_raw = raw if raw is not None else b""
        self._written_upto = max(self._written_upto, cp)
        self._proto = proto
        self.connected = True
        proto.lost_d.addCallback(self._lost, proto)
        peer = proto.transport.getPeer()
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
            mirror = self._read_mirror()
            known = mirror[0] if mirror is not None and mirror[1] in (None, self.journal.epoch) else None
        if known is not None and cp < known:
            lost = known - cp
            self.failovers += 1
            self.redelivered += lost
            log.warn("Redis at {addr} lacks positions {a}..{b} that the previous server had acknowledged "
                     "(asynchronous replication, failover?): delivering these {n} events again from the "
                     "journal", addr=self.where, a=cp + 1, b=known, n=lost)

    def _release(self, cp: int, replicated: bool = False) -> None:
        upto = self._gate.releasable(self.reactor.seconds(), cp, replicated)
        if upto is not None:
            self.journal.release(upto)

    def _fence_needed(self, run_id: bytes | None) -> bool:
        return self._client_id is not None and run_id is not None and run_id == self._run_id

    def _fencing_off(self, err: ResponseError) -> None:
        if self.fencing:
            log.warn("the Redis user may not use CLIENT ({e}): fencing of earlier connections is off; "
                     "the delivery script's checkpoint check still refuses a late batch", e=err)
        self.fencing = False
        self._client_id = None

    def _resume_point(self, raw: Any) -> int:
        """Where to resume, from the checkpoint in Redis (or the local copy); see the module doc."""
        j = self.journal
        try:
            parsed = parse_checkpoint(raw)
        except ValueError:
            raise BadCheckpoint(f"{self._ckey.decode()} holds {raw[:40]!r}, not a checkpoint: "
                                "delete it, or set it to the last position delivered") from None
        source = "Redis"
        if parsed is None:
            parsed = self._read_mirror()
            if parsed is None:
                # first run: start with what comes next (events already in the journal
                # from an earlier run without any sink history are not replayed)
                return min(j.last_seq, self._origin())
            source = "the local copy"
            log.warn("Redis has no checkpoint; resuming from the local copy ({cp})", cp=parsed[0])
        pos, verdict = resume_point(parsed, epoch=j.epoch, epoch_recorded=j.epoch_recorded,
                                    first_seq=j.first_seq, last_seq=j.last_seq,
                                    opened_last_seq=j.opened_last_seq, written_upto=self._written_upto)
        if verdict == "other_journal":
            log.error("JOURNAL CHANGED: the checkpoint in {src} ({cp}) belongs to another journal "
                      "(epoch {theirs}, this one is {ours}): it was re-created or wiped; delivering "
                      "everything it holds, from position {start}", src=source, cp=parsed[0],
                      theirs=parsed[1], ours=j.epoch, start=pos + 1)
            self._gap_upto = min(self._gap_upto, pos)
        elif verdict == "adopted":
            log.warn("journal.state was missing (upgrade or lost): adopting the checkpoint's position "
                     "{cp} from {src}", cp=parsed[0], src=source)
        elif verdict == "rolled_back":
            log.error("JOURNAL ROLLED BACK: the checkpoint in {src} ({cp}) is beyond what the journal held "
                      "at start ({last}): the local disk lost events Redis had got (machine crash?); "
                      "positions {a}..{cp} are reused by new events, delivering from {a}",
                      src=source, cp=parsed[0], last=j.opened_last_seq, a=pos + 1)
        return pos

    def _origin(self) -> int:
        """The position before the first event this process received (for a first run)."""
        first_item = self._items[0] if self._items else None
        if first_item is not None:
            return first_item.after
        return self.journal.last_seq

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = False
        if failure.check(BadCheckpoint):
            self._set_error(failure.getErrorMessage())
        else:
            self._set_error(f"cannot connect to {self.where}: "
                            f"{failure.getErrorMessage() or failure.type.__name__}")
        self._retry()

    def _lost(self, _: Any, proto: RespProtocol) -> None:
        if self._proto is proto:
            self._proto = None
            self.connected = False
            if self._running:
                self._set_error("connection lost")
        self._retry()

    def _retry(self) -> None:
        if not self._running or self._reconnect_call is not None and self._reconnect_call.active():
            return
        self._reconnect_call = self.reactor.callLater(self._backoff(), self._connect)

    # --- status ---------------------------------------------------------------------------

    def backlog(self) -> int:
        """Events received but not yet in Redis."""
        cp = self.checkpoint if self.checkpoint is not None else self._origin()
        return max(0, self.journal.last_seq - cp) + sum(len(it.frames) for it in self._items
                                                         if it.first is None)

    def status(self) -> JsonObject:
        backlog = self.backlog()
        if backlog == 0 and self._running:
            self.progress_at = self.reactor.seconds()
        return {"redis": self.address or self.where, "where": self.where, "connected": self.connected,
                "redelivered": self.redelivered, "failovers": self.failovers, "wait_short": self.wait_short,
                "checkpoint": self.checkpoint, "backlog": backlog,
                "memory_bytes": self._mem, "delivered": self.delivered, "pushed": self.pushed,
                "transactions": self.transactions, "memory_dropped": self.memory_dropped,
                "lost_events": self.lost_events, "gap_events": self.gap_events,
                "queue_errors": dict(self.queue_errors), "waiting": self.waiting,
                "fencing": self.fencing, "progress_at": self.progress_at,
                "error": self.error, "error_since": self.error_since}


def _run_id(info: Any) -> bytes | None:
    """``run_id`` from ``INFO server`` (None if the user may not run INFO)."""
    if not isinstance(info, bytes):
        return None
    for line in info.split(b"\r\n"):
        if line.startswith(b"run_id:"):
            return line[7:].strip()
    return None
