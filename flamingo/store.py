"""Stream params, subscriptions and meta in Redis, with an in-memory copy.

Readers (REST, console, the wader) read the copy synchronously; writers get a
Deferred. Every change, by this daemon or by any other client that writes the
keys and PUBLISHes on ``<ns>:changes``, reloads the copy and calls the
``on_change`` callbacks for what actually changed.

Keys (namespace ``ns``, see DESIGN.md)::

    <ns>:streams:<stream>:<param>   set of values
    <ns>:subscriptions              set of names
    <ns>:subscription:<name>        hash (Subscription.to_hash)
    <ns>:meta:stats                 JSON of Stats.snapshot()
    <ns>:meta:process               hash: start_time, host, pid, running, version
    <ns>:queues                     set of queue keys Flamingo created (or adopted)
    <ns>:changes                    pub/sub: "params:<stream>:<param>" / "subscriptions:<name>"
    <ns>:store:epoch                a random id, written when the store first loads

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
import re
import secrets
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import orjson
import txredisapi
from twisted.internet import defer, task

from flamingo.errors import NotFound, StoreUnavailable, ValidationError
from flamingo.logs import logger
from flamingo.store_copy import LocalCopy, copy_path, encode, read_copy, write_copy
from flamingo.subscription import Subscription

__all__ = ["Store"]

log = logger("flamingo.store")

_PARAM_RE = re.compile(r"[a-z_][a-z0-9_]{0,31}")
_STREAM_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

ChangeCallback = Callable[[str, str], None]

# KEYS: marker, subscriptions set; ARGV: epoch, changes channel, JSON of
# {"params": [[key, [values]]], "subs": [[name, hash key, [field, value, ...]]],
#  "changes": [message]}. Atomic: two daemons cannot both restore, and a key
# written in the moments before (through any client) is kept as written.
_RESTORE = b"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local doc = cjson.decode(ARGV[3])
for _, p in ipairs(doc.params) do
  if redis.call('EXISTS', p[1]) == 0 then
    local vals = p[2]
    for i = 1, #vals, 500 do
      redis.call('SADD', p[1], unpack(vals, i, math.min(i + 499, #vals)))
    end
  end
end
for _, s in ipairs(doc.subs) do
  if redis.call('EXISTS', s[2]) == 0 then redis.call('HSET', s[2], unpack(s[3])) end
  redis.call('SADD', KEYS[2], s[1])
end
redis.call('SET', KEYS[1], ARGV[1])
for _, c in ipairs(doc.changes) do redis.call('PUBLISH', ARGV[2], c) end
return 1
"""

# KEYS: subscription hash, subscriptions set, queues set, queue key; ARGV: name,
# mode, channel, change message, field, value, ... Refuses (returns the key's
# type) when the queue exists and is not Flamingo's; modes: "strict" (any
# existing key refuses), "append" (an existing list is allowed, not adopted).
_SAVE_SUBSCRIPTION = b"""
local q = KEYS[4]
local mode = ARGV[2]
if redis.call('SISMEMBER', KEYS[3], q) == 0 then
  local t = redis.call('TYPE', q)['ok']
  if t == 'none' then
    redis.call('SADD', KEYS[3], q)
  elseif mode ~= 'append' or t ~= 'list' then
    return t
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 'ok'
"""

#: What a change notice asks to read again: ("params", stream, param or None)
#: or ("subscription", name, None).
Target = tuple[str, str, "str | None"]


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _why(failure: Any, timeout: float) -> str:
    """A failure in words (a timeout's own message is a bare tuple of arguments)."""
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return f"no answer within {timeout:g}s"
    return failure.getErrorMessage() or "timeout"


def _appends_only(sub: Subscription) -> bool:
    """A Resque subscription without max_length may feed an existing worker queue."""
    return sub.format == "resque" and sub.max_length is None


def _foreign_queue(sub: Subscription, queue: str, kind: str) -> ValidationError:
    """The refusal of a queue key Flamingo did not create (REST: 422)."""
    if sub.format == "resque" and kind == "list":
        return ValidationError("max_length", f"{queue} is an existing Resque queue that Flamingo did not "
                               "create: max_length would trim other producers' jobs (drop max_length, "
                               "or choose another name)")
    return ValidationError("name", f"{queue} already exists ({kind}) and was not created by Flamingo: "
                           "choose another subscription name")


def _boxes(values: list[str]) -> list[str]:
    """Location numbers grouped four by four ("w,s,e,n"): params are Redis sets, and
    a set of loose numbers would lose each box's order."""
    numbers = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if len(numbers) % 4:
        return values  # left as given: validation names the mistake
    return [",".join(numbers[i : i + 4]) for i in range(0, len(numbers), 4)]


def _validate(stream: str, params: dict[str, list[str]]) -> None:
    """Refuse what the Streaming API would refuse (predicates.py when present)."""
    if not _STREAM_RE.fullmatch(stream):
        raise ValidationError("stream", f"not a stream name: {stream!r}")
    for param, values in params.items():
        if not isinstance(param, str) or not _PARAM_RE.fullmatch(param):
            raise ValidationError("param", f"not a parameter name: {param!r}")
        for v in values:
            if not isinstance(v, str) or not v.strip():
                raise ValidationError(param, f"values must be non-empty strings, got {v!r}")
    try:
        from flamingo.stream import predicates  # helper A's module
    except ImportError:  # pragma: no cover - only before it lands
        return
    validate = getattr(predicates, "validate_params", None)
    if validate is None:  # pragma: no cover
        return
    problems = validate(stream, {k: list(v) for k, v in params.items() if v}, allow_count=True)
    # A filter stream without predicates is a valid state to store: the wader
    # waits for params (it is how a fresh daemon starts).
    problems = [p for p in problems if getattr(p, "limit", None) != "at least one predicate"]
    if problems:
        p = problems[0]
        if isinstance(p, ValidationError):
            raise p
        raise ValidationError(getattr(p, "field", "params"), getattr(p, "message", str(p)),
                              getattr(p, "limit", None))


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
                 reactor: Any = None, streams: tuple[str, ...] = ("filter",),
                 health_interval: float = 1.0, data_dir: Path | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _r
            reactor = _r
        self.namespace = namespace
        self.host, self.port, self.password, self.db = host, port, password, db
        self.timeout = timeout
        self.reactor = reactor
        self.available = False
        self.last_error: str | None = None
        self._default_streams = tuple(streams)
        self._params: dict[str, dict[str, list[str]]] = {}
        self._subs: dict[str, Subscription] = {}
        self._callbacks: list[ChangeCallback] = []
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
        self.copy_path = copy_path(data_dir, namespace) if data_dir is not None else None
        self._local: LocalCopy | None = None
        self._written: bytes | None = None
        self._copy_error: str | None = None
        self._warned: set[tuple[str, str]] = set()
        self._own_queues: set[str] = set()
        self._ping: defer.Deferred[Any] | None = None
        self._known_waiters: list[defer.Deferred[dict[str, Subscription]]] = []
        self._started: defer.Deferred[None] | None = None
        self._running = False
        self._down_at_start_logged = False
        self.started_at = time.time()
        self.epoch: str | None = None  # the marker this store last saw or wrote
        self.restores = 0  # times Redis came back empty and was re-seeded from memory
        self.last_restore: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, config: Any, reactor: Any = None) -> "Store":
        r = config.redis
        return cls(namespace=r.namespace, host=r.host, port=r.port, password=r.password,
                   db=r.db, timeout=r.timeout, reactor=reactor, streams=(config.stream,),
                   data_dir=config.data_dir)

    # --- keys -------------------------------------------------------------

    @property
    def _channel(self) -> str:
        return f"{self.namespace}:changes"

    def _param_key(self, stream: str, param: str) -> str:
        return f"{self.namespace}:streams:{stream}:{param}"

    def _sub_key(self, name: str) -> str:
        return f"{self.namespace}:subscription:{name}"

    @property
    def _subs_key(self) -> str:
        return f"{self.namespace}:subscriptions"

    @property
    def _epoch_key(self) -> str:
        return f"{self.namespace}:store:epoch"

    @property
    def _queues_key(self) -> str:
        return f"{self.namespace}:queues"

    # --- lifecycle --------------------------------------------------------

    def start(self) -> defer.Deferred[None]:
        """Connect and load; fires after the first load, or after ``timeout`` if Redis is down."""
        self._running = True
        self._read_local()
        self._conn = txredisapi.lazyConnection(self.host, self.port, dbid=self.db or None,
                                               password=self.password, connectTimeout=self.timeout)
        f = txredisapi.SubscriberFactory(isLazy=True)
        f.protocol = _ChangeListener
        f.store = self
        f.password = self.password
        f.maxDelay = 5
        f.startConnecting(txredisapi._makeEndpoint(self.host, self.port, self.timeout))
        self._listener_factory = f
        self._health.start(self._health_interval, now=True)
        self._started = defer.Deferred()
        d = self._started
        timer = self.reactor.callLater(self.timeout, self._start_timed_out)
        d.addBoth(lambda r: (timer.cancel() if timer.active() else None, r)[1])
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

    def status(self) -> dict[str, Any]:
        """For stats/meta: reachability and the re-seeds after Redis came back empty."""
        return {"available": self.available, "last_error": self.last_error if not self.available else None,
                "restores": self.restores, "last_restore": self.last_restore,
                "source": "redis" if self._loaded else "local copy" if self._adopted else None}

    # --- writing -----------------------------------------------------------

    def set_params(self, stream: str, params: Mapping[str, Any]) -> defer.Deferred[dict[str, list[str]]]:
        """Replace each given param (an empty list deletes it)."""
        try:
            given = {p: self._values(p, v) for p, v in params.items()}
            merged = {**self.params(stream), **given}
            _validate(stream, {k: v for k, v in merged.items() if v})
        except ValidationError as e:
            return defer.fail(e)
        cmds: list[tuple[Any, ...]] = []
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
            vals = self._values(param, values)
            current = self.params(stream)
            current[param] = sorted(set(current.get(param, [])) | set(vals))
            _validate(stream, current)
        except ValidationError as e:
            return defer.fail(e)
        if not vals:
            return self._write_params(stream, [param], [])
        return self._write_params(stream, [param], [("SADD", self._param_key(stream, param), *vals)])

    def remove_values(self, stream: str, param: str, values: Any) -> defer.Deferred[dict[str, list[str]]]:
        try:
            vals = self._values(param, values)
            _validate(stream, {param: vals} if vals else {})
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
        if not self.available or self._conn is None:
            return defer.fail(StoreUnavailable(f"Redis unreachable: {self.last_error or 'not connected'}"))
        flat: list[str] = []
        for k, v in sub.to_hash().items():
            flat += [k, v]
        queue = sub.queue_key(self.namespace)
        mode = "append" if _appends_only(sub) else "strict"
        d = self._timed(self._conn.execute_command(
            "EVAL", _SAVE_SUBSCRIPTION, 4, self._sub_key(sub.name), self._subs_key, self._queues_key,
            queue, sub.name, mode, self._channel, f"subscriptions:{sub.name}", *flat))

        def saved(reply: Any) -> Any:
            if _s(reply) != "ok":
                raise _foreign_queue(sub, queue, _s(reply))
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
        cmds: list[tuple[Any, ...]] = [("SREM", self._subs_key, name), ("DEL", self._sub_key(name))]
        if drop_queue:
            queue = sub.queue_key(self.namespace)
            cmds += [("DEL", queue), ("SREM", self._queues_key, queue)]
            self._own_queues.discard(queue)
        cmds.append(("PUBLISH", self._channel, f"subscriptions:{name}"))
        d = self._transaction(cmds)
        d.addCallback(lambda _: self._reload([("subscription", name, None)]))
        return d.addCallback(lambda _: None)

    # --- meta ----------------------------------------------------------------

    def start_meta(self, snapshot: Callable[[], dict[str, Any]], interval: float = 5.0) -> None:
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

    def process_info(self, running: bool = True) -> dict[str, Any]:
        from flamingo import __version__ as version  # type: ignore[attr-defined]
        return {"start_time": int(self.started_at), "host": socket.gethostname(),
                "pid": os.getpid(), "running": running, "version": version}

    def write_meta(self, snapshot: dict[str, Any]) -> defer.Deferred[Any]:
        ns = self.namespace
        proc = self.process_info()
        flat: list[str] = []
        for k, v in proc.items():
            flat += [k, orjson.dumps(v).decode() if not isinstance(v, str) else v]
        return self._transaction([("SET", f"{ns}:meta:stats", orjson.dumps(snapshot)),
                                  ("HSET", f"{ns}:meta:process", *flat)], publish=False)

    def _write_process(self, running: bool) -> defer.Deferred[Any]:
        return self._transaction([("HSET", f"{self.namespace}:meta:process", "running",
                                   orjson.dumps(running).decode())], publish=False)

    @defer.inlineCallbacks
    def read_meta(self) -> Any:
        """``{"stats": ..., "process": ...}`` as last written (by any daemon of this namespace)."""
        ns = self.namespace
        stats = yield self._timed(self._conn.get(f"{ns}:meta:stats"))
        proc = yield self._timed(self._conn.hgetall(f"{ns}:meta:process"))
        out_proc = {}
        for k, v in (proc or {}).items():
            try:
                out_proc[_s(k)] = orjson.loads(v)
            except orjson.JSONDecodeError:
                out_proc[_s(k)] = _s(v)
        return {"stats": orjson.loads(stats) if stats else None, "process": out_proc}

    # --- internals -------------------------------------------------------------

    @staticmethod
    def _values(param: str, values: Any) -> list[str]:
        if isinstance(values, str):
            values = [v.strip() for v in values.split(",") if v.strip()]
        if not isinstance(values, (list, tuple, set, frozenset)):
            raise ValidationError(param, f"expected a list of values, got {type(values).__name__}")
        out = []
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                raise ValidationError(param, f"values must be strings, got {v!r}")
            out.append(str(v).strip())
        if param == "locations":
            out = _boxes(out)
        return sorted(set(out))

    def _timed(self, d: defer.Deferred[Any]) -> defer.Deferred[Any]:
        d.addTimeout(self.timeout, self.reactor)

        def unavailable(f: Any) -> Any:
            if f.check(defer.TimeoutError, defer.CancelledError, txredisapi.ConnectionError,
                       ConnectionError, OSError):
                why = _why(f, self.timeout)
                self._mark_down(why)
                raise StoreUnavailable(f"Redis unreachable: {why}")
            return f
        return d.addErrback(unavailable)

    def _transaction(self, cmds: list[tuple[Any, ...]], publish: bool = True) -> defer.Deferred[Any]:
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
                      cmds: list[tuple[Any, ...]]) -> defer.Deferred[dict[str, list[str]]]:
        cmds = cmds + [("PUBLISH", self._channel, f"params:{stream}:{p}") for p in names]
        d = self._transaction(cmds)
        d.addCallback(lambda _: self._reload([("params", stream, p) for p in names]))
        return d.addCallback(lambda _: self.params(stream))

    def _mark_down(self, why: str) -> None:
        self.last_error = why
        if self.available:
            self.available = False
            log.error("Redis {addr} unreachable ({why}); running on last known params and "
                      "subscriptions, reconnecting", addr=f"{self.host}:{self.port}", why=why)
        elif not self._loaded and not self._down_at_start_logged:
            self._down_at_start_logged = True
            if self._local is not None:
                log.warn("Redis {addr} unreachable at start ({why}); retrying until it answers, on the "
                         "params and subscriptions of the local copy {path} until then",
                         addr=f"{self.host}:{self.port}", why=why, path=str(self.copy_path))
            else:
                log.warn("Redis {addr} unreachable at start ({why}); retrying until it answers (no params "
                         "or subscriptions until then)", addr=f"{self.host}:{self.port}", why=why)
        if not self._loaded:
            self._adopt_local()

    # --- the local copy ----------------------------------------------------------

    def _read_local(self) -> None:
        if self.copy_path is None or self._local is not None:
            return
        try:
            self._local = read_copy(self.copy_path)
        except (OSError, ValueError) as e:
            log.warn("store copy {path} unreadable ({e}); ignored (Redis will be the only source)",
                     path=str(self.copy_path), e=getattr(e, "strerror", None) or str(e))
            return
        if self._local is not None:
            self._written = encode(self._local)

    def _adopt_local(self) -> None:
        """Redis does not answer at start: take what the local copy says (once)."""
        if self._loaded or self._adopted or self._local is None:
            return
        self._adopted = True
        self.epoch = self._local.epoch
        self._apply(self._local.params, self._local.subscriptions)
        self._fire_known()

    def _save_copy(self) -> None:
        """Rewrite the local copy when the copy from Redis differs from it."""
        if self.copy_path is None or not self._loaded:
            return
        copy = LocalCopy(params=self._params, subscriptions=self._subs, epoch=self.epoch)
        data = encode(copy)
        if data == self._written:
            return
        try:
            self.copy_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_copy(self.copy_path, copy)
        except OSError as e:
            why = e.strerror or str(e)
            if why != self._copy_error:
                log.warn("cannot write the store copy {path}: {why} (a restart while Redis is down "
                         "would not know the subscriptions)", path=str(self.copy_path), why=why)
            self._copy_error = why
            return
        self._written, self._copy_error = data, None
        self._local = copy

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
                    log.info("Redis {addr} reachable again", addr=f"{self.host}:{self.port}")
                return self._reload()
            return None

        def bad(f: Any) -> None:
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

    def _listener_lost(self) -> None:
        pass

    def _change_message(self, message: str) -> None:
        self._reload(self._targets(message))

    @staticmethod
    def _targets(message: str) -> list[Target] | None:
        """What a change notice names; None (everything) for any other message."""
        kind, _, rest = message.partition(":")
        if kind == "subscriptions" and rest:
            return [("subscription", rest, None)]
        if kind == "params":
            stream, _, param = rest.partition(":")
            if _STREAM_RE.fullmatch(stream) and (not param or _PARAM_RE.fullmatch(param)):
                return [("params", stream, param or None)]
        return None

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
        queues = sorted({s.queue_key(self.namespace) for s in subs.values() if not _appends_only(s)}
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
        conn = self._conn
        params = {s: dict(ps) for s, ps in self._params.items()}
        subs = dict(self._subs)
        for kind, name, param in sorted(targets, key=lambda t: (t[0], t[1], t[2] or "")):
            if kind == "params" and param is not None:
                key = self._param_key(name, param)
                values = yield self._timed(self._members(key))
                stream = params.setdefault(name, {})
                if values:
                    stream[param] = values
                else:
                    stream.pop(param, None)
            elif kind == "params":
                params[name] = (yield self._timed(self._load_params(f"{self.namespace}:streams:{name}:"))).get(name, {})
            else:
                member = yield self._timed(conn.sismember(self._subs_key, name))
                sub = (yield self._timed(self._load_subscription(name))) if member else None
                if sub is None:
                    subs.pop(name, None)
                else:
                    subs[name] = sub
        params = {s: ps for s, ps in params.items() if ps}
        marker = yield self._timed(conn.get(self._epoch_key))
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
        doc = orjson.dumps({"params": params, "subs": subs, "changes": changes})
        epoch = secrets.token_hex(8)
        done = yield self._timed(self._conn.execute_command(
            "EVAL", _RESTORE, 2, self._epoch_key, self._subs_key, epoch, self._channel, doc))
        if done == 1:
            self.restores += 1
            self.last_restore = {"at": time.time(), "params": len(params), "subscriptions": len(subs)}
            source = "memory" if self._loaded or self._adopted else f"the local copy {self.copy_path}"
            log.warn("Redis lost flamingo's keys (restarted without persistence?): restored {n} params "
                     "and {m} subscriptions from {source}", n=len(params), m=len(subs), source=source)

    @defer.inlineCallbacks
    def _members(self, key: str) -> Any:
        """The sorted members of a param set; a key of another type is skipped (one WARN)."""
        try:
            members = yield self._conn.smembers(key)
        except txredisapi.ResponseError as e:
            self._warn_once(key, str(e))
            return []
        return sorted(_s(m) for m in members or ())

    @defer.inlineCallbacks
    def _load_params(self, prefix: str) -> Any:
        keys: set[str] = set()
        cursor = 0
        while True:
            cursor, batch = yield self._conn.scan(cursor, pattern=prefix + "*", count=1000)
            keys.update(_s(k) for k in batch)
            if int(cursor) == 0:
                break
        base = f"{self.namespace}:streams:"
        params: dict[str, dict[str, list[str]]] = {}
        for key in sorted(keys):
            stream, sep, param = key[len(base):].rpartition(":")
            if not sep or not stream:
                continue
            values = yield self._members(key)
            if values:
                params.setdefault(stream, {})[param] = values
        return params

    @defer.inlineCallbacks
    def _load_subscription(self, name: str) -> Any:
        """One subscription, or None (skipped with one WARN) when its hash is not one."""
        key = self._sub_key(name)
        try:
            fields = yield self._conn.hgetall(key)
        except txredisapi.ResponseError as e:
            self._warn_once(key, str(e))
            return None
        try:
            return Subscription.from_hash(name, fields or {})
        except ValidationError as e:
            self._warn_once(key, f"subscription {name!r} is invalid ({e})")
            return None

    @defer.inlineCallbacks
    def _load(self) -> Any:
        params = yield self._load_params(f"{self.namespace}:streams:")
        subs: dict[str, Subscription] = {}
        try:
            names = yield self._conn.smembers(self._subs_key)
        except txredisapi.ResponseError as e:
            self._warn_once(self._subs_key, str(e))
            names = []
        for name in sorted(_s(n) for n in names or ()):
            sub = yield self._load_subscription(name)
            if sub is not None:
                subs[name] = sub
        # read last: a Redis emptied at any moment of this load has lost it, so a
        # partial (or empty) read is never taken for the truth
        marker = yield self._conn.get(self._epoch_key)
        return params, subs, marker

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
