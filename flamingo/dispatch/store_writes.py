"""The store's writes: params, subscriptions, and the meta keys.

Every write is one MULTI (or one script) that also PUBLISHes a change notice,
then reloads what it changed, so the copy in memory is never stale after the
returned Deferred fires. Redis unreachable: StoreUnavailable at once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import orjson
from twisted.internet import defer, task

from flamingo._types import JsonMapping, JsonObject
from flamingo.dispatch.store_base import RedisCommand, text
from flamingo.dispatch.store_load import StoreLoading
from flamingo.dispatch.store_redis import SAVE_SUBSCRIPTION
from flamingo.domain.store_rules import appends_only, foreign_queue, param_values, validate_params
from flamingo.domain.subscription import Subscription
from flamingo.errors import NotFound, StoreUnavailable, ValidationError
from flamingo.logs import logger

__all__ = ["StoreWrites", "CLUSTER_RESQUE"]

#: Why a resque subscription is refused with redis.cluster.
CLUSTER_RESQUE = ("format resque needs a Redis that is not a cluster: its keys (resque:queue:<name>, "
                  "resque:queues) are fixed by Resque and cannot carry the namespace's hash tag, so they "
                  "would sit on other shards than the batch that feeds them; use format stream or raw")

log = logger("flamingo.dispatch.store")


class StoreWrites(StoreLoading):
    """Writing params and subscriptions; the meta keys."""

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

    def set_param(self, stream: str, param: str, values: object) -> defer.Deferred[dict[str, list[str]]]:
        return self.set_params(stream, {param: values})

    def add_values(self, stream: str, param: str, values: object) -> defer.Deferred[dict[str, list[str]]]:
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

    def remove_values(self, stream: str, param: str, values: object) -> defer.Deferred[dict[str, list[str]]]:
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
            return self._unavailable()
        flat: list[str] = []
        for k, v in sub.to_hash().items():
            flat += [k, v]
        queue = sub.queue_key(self.prefix)
        mode = "append" if appends_only(sub) else "strict"
        d = self._timed(self._conn.execute_command(
            "EVAL", SAVE_SUBSCRIPTION, 4, self._sub_key(sub.name), self._subs_key, self._queues_key,
            queue, sub.name, mode, self._channel, f"subscriptions:{sub.name}", ",".join(sub.groups), *flat))

        def saved(reply: object) -> defer.Deferred[None]:
            if text(reply) != "ok":
                raise foreign_queue(sub, queue, text(reply))
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
        def tick() -> None:
            if self.available:
                d = self._timed(self.write_meta(snapshot()))
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

    def write_meta(self, snapshot: JsonObject) -> defer.Deferred[object]:
        ns = self.prefix
        proc = self.process_info()
        flat: list[str] = []
        for k, v in proc.items():
            flat += [k, orjson.dumps(v).decode() if not isinstance(v, str) else v]
        return self._transaction([("SET", f"{ns}:meta:stats", orjson.dumps(snapshot)),
                                  ("HSET", f"{ns}:meta:process", *flat)])

    def _write_process(self, running: bool) -> defer.Deferred[object]:
        return self._transaction([("HSET", f"{self.prefix}:meta:process", "running",
                                   orjson.dumps(running).decode())])

    def read_meta(self) -> defer.Deferred[JsonObject]:
        """``{"stats": ..., "process": ...}`` as last written (by any daemon of this namespace)."""
        return defer.ensureDeferred(self._read_meta())

    async def _read_meta(self) -> JsonObject:
        ns = self.prefix
        stats = await self._timed(self._conn.get(f"{ns}:meta:stats"))
        proc = await self._timed(self._conn.hgetall(f"{ns}:meta:process"))
        out_proc: JsonObject = {}
        for k, v in (proc or {}).items():
            try:
                out_proc[text(k)] = orjson.loads(v)
            except orjson.JSONDecodeError:
                out_proc[text(k)] = text(v)
        return {"stats": orjson.loads(stats) if stats else None, "process": out_proc}

    def stream_info(self, key: str) -> defer.Deferred[tuple[int, object]]:
        """``(length, XINFO GROUPS reply)`` of a stream (``(0, [])`` when it does not exist)."""
        return defer.ensureDeferred(self._stream_info(key))

    async def _stream_info(self, key: str) -> tuple[int, object]:
        length = await self._timed(self._conn.execute_command("XLEN", key))
        if not length:
            return 0, []
        groups: object = await self._timed(self._conn.execute_command("XINFO", "GROUPS", key))
        return int(length), groups

    def _write_params(self, stream: str, names: list[str],
                      cmds: list[RedisCommand]) -> defer.Deferred[dict[str, list[str]]]:
        cmds = cmds + [("PUBLISH", self._channel, f"params:{stream}:{p}") for p in names]
        d = self._transaction(cmds)
        d.addCallback(lambda _: self._reload([("params", stream, p) for p in names]))
        return d.addCallback(lambda _: self.params(stream))
