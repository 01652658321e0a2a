"""The Redis sink: subscription queues fed in batches, exactly once.

Every batch is one pre-encoded write: ``MULTI``, one ``RPUSH key v1 … vn`` per
queue (plus ``LTRIM`` for a max length, ``SADD resque:queues`` for Resque),
``SET <ns>:sink:checkpoint <position>`` and ``EXEC``. The checkpoint is the last
journal position the transaction covers, so Redis holds either both the
pushes and the new position or neither. One transaction is in flight at a
time; whatever arrives meanwhile goes into the next one (batching grows with
load, up to ``batch_max`` events).

Events come from memory while the sink keeps up; when Redis is slow or down,
memory is capped (``max_memory`` bytes) and the backlog is read back from the
journal. On (re)connect the sink first kills its previous Redis client (so a
transaction that was still buffered can no longer be applied behind its back),
then reads the checkpoint and resumes after it: no event lost, none pushed
twice. If Redis lost the checkpoint (restarted without persistence), the copy
kept in ``<journal dir>/sink-<ns>.checkpoint`` is used.

Events the journal could not keep (disk errors) are delivered from memory in
order with the rest; they have no position, so for them the guarantee is only
"at most once per transaction attempt", and they are lost if memory is full too
(counted in ``status()``).
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import attrs
import orjson
from twisted.internet import defer, endpoints
from flamingo.logs import logger

from flamingo.dispatch.payloads import BUILDERS
from flamingo.dispatch.resp import ResponseError, RespProtocol, command, encode
from flamingo.stream.messages import message_type
from flamingo.stream.predicates import TermMatcher, haystack, prefilter_view
from flamingo.subscription import Subscription

__all__ = ["RedisSink"]

log = logger("flamingo.sink")

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

    def __init__(self, journal: Any, subscriptions: Callable[[], dict[str, Subscription]], *,
                 namespace: str = "flamingo", host: str = "127.0.0.1", port: int = 6379,
                 password: str | None = None, db: int = 0, timeout: float = 5.0,
                 batch_max: int = 5000, batch_bytes: int = 2 << 20, max_memory: int = 16 << 20,
                 reactor: Any = None,
                 stats: Any = None, reconnect_max: float = 2.0) -> None:
        if reactor is None:
            from twisted.internet import reactor as _r
            reactor = _r
        self.journal = journal
        self._subscriptions = subscriptions
        self.namespace = namespace
        self.host, self.port, self.password, self.db = host, port, password, db
        self.timeout = timeout
        self.batch_max = batch_max
        self.batch_bytes = batch_bytes
        self.max_memory = max_memory
        self.reactor = reactor
        self.stats = stats
        self.reconnect_max = reconnect_max
        self._ckey = f"{namespace}:sink:checkpoint".encode()
        self.checkpoint: int | None = None
        self._items: deque[_Item] = deque()
        self._mem = 0
        self._proto: RespProtocol | None = None
        self._client_id: int | None = None
        self._inflight: defer.Deferred[Any] | None = None
        self._scheduled: Any = None
        self._reconnect_call: Any = None
        self._attempt = 0
        self._running = False
        self._connecting = False
        self._matchers: dict[tuple[str, ...], Any] = {}
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
        self.gap_events = 0  # positions missing from disk when needed (deleted files)
        self.queue_errors: dict[str, str] = {}

    @classmethod
    def from_config(cls, config: Any, journal: Any, subscriptions: Callable[[], dict[str, Subscription]],
                    reactor: Any = None, stats: Any = None) -> "RedisSink":
        r = config.redis
        return cls(journal, subscriptions, namespace=r.namespace, host=r.host, port=r.port,
                   password=r.password, db=r.db, timeout=r.timeout, batch_max=r.batch_max,
                   max_memory=r.memory_max, reactor=reactor, stats=stats)

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        path = Path(self.journal.dir) / f"sink-{self.namespace}.checkpoint"
        try:
            self._mirror_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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
        self._scheduled = None
        if self._proto is None or self._inflight is not None or self.checkpoint is None:
            return
        frames, types, new_cp, consumed = self._next_batch()
        if not frames:
            if new_cp != self.checkpoint:  # a gap skipped: record it
                frames, types = [], []
            else:
                self._idle()
                return
        payload, nreplies, plan = self._encode(frames, types, new_cp)
        d = self._proto.send(payload, nreplies)
        d.addTimeout(self.timeout, self.reactor)
        self._inflight = d
        d.addCallbacks(self._committed, self._transaction_failed,
                       callbackArgs=(new_cp, consumed, plan, len(frames)))
        d.addErrback(lambda f: log.failure("sink bookkeeping failed", f))

    def _idle(self) -> None:
        if self._caught_up():
            self.journal.release(self.checkpoint)
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
                pos, room = self._from_disk(frames, types, pos, min(room, it.after - pos))
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
                pos, room = self._from_disk(frames, types, pos, min(room, self.journal.last_seq - pos))
        return frames, types, pos, consumed

    def _from_disk(self, frames: list[bytes], types: list[str], pos: int, n: int) -> tuple[int, int]:
        if pos + 1 < self.journal.first_seq:
            missing = self.journal.first_seq - 1 - pos
            self.gap_events += missing
            log.error("positions {a}..{b} are no longer on disk; {n} events cannot be delivered",
                      a=pos + 1, b=self.journal.first_seq - 1, n=missing)
            pos = self.journal.first_seq - 1
        got = self.journal.read(pos + 1, max_events=n, max_bytes=self.batch_bytes)
        frames.extend(got)
        types.extend(message_type(f) for f in got)
        return pos + len(got), self.batch_max - len(frames)

    def _matcher(self, terms: tuple[str, ...]) -> Any:
        m = self._matchers.get(terms)
        if m is None:
            m = TermMatcher(terms)
            if len(self._matchers) > 256:
                self._matchers.clear()
            self._matchers[terms] = m
        return m

    def _encode(self, frames: list[bytes], types: list[str], new_cp: int) -> tuple[list[bytes], int, list[Any]]:
        parts: list[bytes] = [b"*1\r\n$5\r\nMULTI\r\n"]
        plan: list[Any] = []  # one entry per queued command: (kind, subscription, count)
        views: dict[int, bytes | None] = {}  # per frame, shared by every filtered subscription
        hays: dict[int, Any] = {}
        for sub in self._subscriptions().values():
            build = BUILDERS[sub.format]
            if sub.types is None and not sub.filter:
                if sub.format == "raw":
                    values = frames
                else:
                    values = [build(f, t) for f, t in zip(frames, types)]
            else:
                wanted = sub.types
                matcher = self._matcher(sub.filter) if sub.filter else None
                values = []
                for i, (f, t) in enumerate(zip(frames, types)):
                    if wanted is not None and t not in wanted:
                        continue
                    if matcher is not None:
                        if t != "tweet":
                            continue
                        if matcher.wants_prefilter():
                            # most tweets are ruled out on their bytes, unparsed
                            view = views.get(i, b"")
                            if view == b"":
                                view = views[i] = prefilter_view(f)
                            if not matcher.may_match(view):
                                continue
                        hay = hays.get(i)
                        if hay is None:
                            try:
                                hay = hays[i] = haystack(orjson.loads(f)) or False
                            except orjson.JSONDecodeError:
                                hay = hays[i] = False
                        if hay is False or not matcher.matches_haystack(hay):
                            continue
                    values.append(build(f, t))
            if not values:
                continue
            key = sub.queue_key(self.namespace).encode()
            encode(parts, b"RPUSH", key, values)
            plan.append(("push", sub, len(values)))
            if sub.max_length is not None:
                parts.append(command("LTRIM", key, -sub.max_length, -1))
                plan.append(("trim", sub, 0))
            if sub.format == "resque":
                parts.append(command("SADD", "resque:queues", sub.name))
                plan.append(("sadd", sub, 0))
        if new_cp != self.checkpoint:
            parts.append(command(b"SET", self._ckey, new_cp))
            plan.append(("checkpoint", None, 0))
        parts.append(b"*1\r\n$4\r\nEXEC\r\n")
        return parts, len(plan) + 2, plan

    def _committed(self, replies: list[Any], new_cp: int, consumed: list[_Item], plan: list[Any],
                   n: int) -> None:
        self._inflight = None
        results = replies[-1]
        if not isinstance(results, list):
            # EXECABORT (a command was rejected while queueing): nothing applied
            err = next((r for r in replies if isinstance(r, ResponseError)), results)
            self._set_error(f"transaction refused: {err}")
            self._scheduled = self.reactor.callLater(min(1.0, self.reconnect_max), self._pump)
            return
        self.checkpoint = new_cp
        self._mirror(new_cp)
        self.journal.release(new_cp)  # the spool drops segments every event of which is in Redis
        self.transactions += 1
        self.delivered += n
        ids = {id(it) for it in consumed}
        while self._items:
            it = self._items[0]
            if (it.first is not None and it.end <= new_cp) or id(it) in ids:
                self._items.popleft()
                self._mem -= it.nbytes
            else:
                break
        for (kind, sub, count), res in zip(plan, results):
            if isinstance(res, ResponseError):
                self.queue_errors[sub.name if sub else "checkpoint"] = str(res)
                log.error("Redis refused {kind} for {q}: {e}", kind=kind, q=sub.name if sub else "-", e=res)
                continue
            if kind == "push":
                self.pushed += count
                if self.stats is not None:
                    length = res
                    trimmed = max(0, length - sub.max_length) if sub.max_length else 0
                    self.stats.queue(sub.name, length=length - trimmed, trimmed=trimmed, pushed=count)
        if self.error is not None:
            log.info("Redis deliveries flowing again")
            self.error = self.error_since = None
        self._pump_again()

    def _pump_again(self) -> None:
        if self._proto is not None and self._running:
            self._schedule()

    def _transaction_failed(self, failure: Any) -> None:
        self._inflight = None
        self._set_error(f"transaction failed: {failure.getErrorMessage() or failure.type.__name__}")
        proto = self._proto
        if proto is not None and proto.transport is not None:
            proto.transport.abortConnection()  # reconnect; the checkpoint decides what was applied

    def _set_error(self, msg: str) -> None:
        if self.error is None:
            self.error_since = time.time()
            log.error("Redis sink: {msg}; the backlog stays on disk", msg=msg)
        self.error = msg

    def _mirror(self, cp: int) -> None:
        if self._mirror_fd is not None:
            try:
                os.pwrite(self._mirror_fd, b"%020d\n" % cp, 0)
            except OSError:
                pass

    def _read_mirror(self) -> int | None:
        if self._mirror_fd is None:
            return None
        try:
            data = os.pread(self._mirror_fd, 21, 0)
            return int(data) if data.strip() else None
        except (OSError, ValueError):
            return None

    # --- connection -----------------------------------------------------------------

    def _connect(self) -> None:
        if not self._running or self._connecting:
            return
        self._connecting = True
        ep = endpoints.HostnameEndpoint(self.reactor, self.host, self.port, timeout=max(1, int(self.timeout)))
        d = endpoints.connectProtocol(ep, RespProtocol())
        d.addTimeout(self.timeout, self.reactor)
        d.addCallback(self._handshake)
        d.addErrback(self._connect_failed)

    @defer.inlineCallbacks
    def _handshake(self, proto: RespProtocol) -> Any:
        try:
            setup: list[bytes] = []
            n = 0
            if self.password:
                setup.append(command("AUTH", self.password))
                n += 1
            if self.db:
                setup.append(command("SELECT", self.db))
                n += 1
            if self._client_id is not None:
                # fence: a transaction of the previous connection still buffered in
                # Redis must not be applied after we read the checkpoint
                setup.append(command("CLIENT", "KILL", "ID", self._client_id))
                n += 1
            setup.append(command("CLIENT", "ID"))
            setup.append(command(b"GET", self._ckey))
            d = proto.send(b"".join(setup), n + 2)
            d.addTimeout(self.timeout, self.reactor)
            replies = yield d
            for r in replies[:n]:
                if isinstance(r, ResponseError) and "No such client" not in str(r):
                    raise r
            client_id, cp = replies[-2], replies[-1]
        except BaseException:
            proto.transport.abortConnection()
            raise
        self._connecting = False
        if not self._running:
            proto.transport.loseConnection()
            return
        self._client_id = client_id
        self._attempt = 0
        self._set_checkpoint(cp)
        self._proto = proto
        self.connected = True
        proto.lost_d.addCallback(self._lost, proto)
        log.info("Redis sink connected to {addr}, resuming after position {cp}",
                 addr=f"{self.host}:{self.port}", cp=self.checkpoint)
        self._schedule()

    def _set_checkpoint(self, raw: Any) -> None:
        last = self.journal.last_seq
        if raw is None:
            cp = self._read_mirror()
            if cp is None:
                cp = last  # first run: start with what comes next
                # (events already in the journal from an earlier run without any
                # sink history are not replayed)
                cp = min(cp, self._origin())
            else:
                log.warn("Redis has no checkpoint; resuming from the local copy ({cp})", cp=cp)
        else:
            cp = int(raw)
        if cp > last:
            log.warn("checkpoint {cp} is beyond the journal ({last}): journal reset? resuming at {last}",
                     cp=cp, last=last)
            cp = last
        self.checkpoint = cp

    def _origin(self) -> int:
        """The position before the first event this process received (for a first run)."""
        first_item = self._items[0] if self._items else None
        if first_item is not None:
            return first_item.after
        return self.journal.last_seq

    def _connect_failed(self, failure: Any) -> None:
        self._connecting = False
        self._set_error(f"cannot connect to {self.host}:{self.port}: "
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
        self._attempt += 1
        delay = min(self.reconnect_max, 0.05 * (2 ** min(self._attempt, 10)))
        self._reconnect_call = self.reactor.callLater(delay, self._connect)

    # --- status ---------------------------------------------------------------------------

    def backlog(self) -> int:
        """Events received but not yet in Redis."""
        cp = self.checkpoint if self.checkpoint is not None else self._origin()
        return max(0, self.journal.last_seq - cp) + sum(len(it.frames) for it in self._items
                                                         if it.first is None)

    def status(self) -> dict[str, Any]:
        return {"redis": f"{self.host}:{self.port}", "connected": self.connected,
                "checkpoint": self.checkpoint, "backlog": self.backlog(),
                "memory_bytes": self._mem, "delivered": self.delivered, "pushed": self.pushed,
                "transactions": self.transactions, "memory_dropped": self.memory_dropped,
                "lost_events": self.lost_events, "gap_events": self.gap_events,
                "queue_errors": dict(self.queue_errors),
                "error": self.error, "error_since": self.error_since}
