"""The store's Redis side: its Lua scripts and the reads of a load.

A load must survive a stray key: one of the wrong type (a string where a set
should be) or a subscription hash that does not decode is skipped with one
WARN per key and problem, and the rest loads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import txredisapi

from flamingo.domain.subscription import Subscription
from flamingo.errors import ValidationError

__all__ = ["RESTORE", "SAVE_SUBSCRIPTION", "KeyReader"]

# KEYS: marker, subscriptions set, queues set; ARGV: epoch, changes channel, JSON of
# {"params": [[key, [values]]], "subs": [[name, hash key, [field, value, ...]]],
#  "queues": [queue key], "changes": [message]}. Atomic: two daemons cannot both restore, and a key
# written in the moments before (through any client) is kept as written.
RESTORE = b"""
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
for _, q in ipairs(doc.queues) do redis.call('SADD', KEYS[3], q) end
redis.call('SET', KEYS[1], ARGV[1])
for _, c in ipairs(doc.changes) do redis.call('PUBLISH', ARGV[2], c) end
return 1
"""

# KEYS: subscription hash, subscriptions set, queues set, queue key; ARGV: name,
# mode, channel, change message, groups (comma-separated, "" for none), field,
# value, ... Refuses (returns the key's type) when the queue exists and is not
# Flamingo's; modes: "strict" (any existing key refuses), "append" (an existing
# list is allowed, not adopted). A stream's consumer groups are made at "$"
# (MKSTREAM), idempotently: a group that exists (BUSYGROUP) keeps its position.
SAVE_SUBSCRIPTION = b"""
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
if ARGV[5] ~= '' then
  local t = redis.call('TYPE', q)['ok']
  if t == 'none' or t == 'stream' then
    for g in string.gmatch(ARGV[5], '[^,]+') do
      redis.pcall('XGROUP', 'CREATE', q, g, '$', 'MKSTREAM')
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 'ok'
"""


def _s(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@attrs.define
class KeyReader:
    """Reads params and subscriptions of one namespace; ``warn(key, why)`` for a skipped key."""

    conn: Any  # a txredisapi connection (untyped library)
    namespace: str  # the key prefix: the namespace, or {namespace} in cluster mode
    warn: Callable[[str, str], None]

    async def members(self, key: str) -> list[str]:
        """The sorted members of a param set (``[]`` for a key of another type)."""
        try:
            members = await self.conn.smembers(key)
        except txredisapi.ResponseError as e:
            self.warn(key, str(e))
            return []
        return sorted(_s(m) for m in members or ())

    async def params(self, stream: str | None = None) -> dict[str, dict[str, list[str]]]:
        """``{stream: {param: values}}`` for one stream, or every stream (SCAN)."""
        base = f"{self.namespace}:streams:"
        prefix = base if stream is None else f"{base}{stream}:"
        keys: set[str] = set()
        cursor = 0
        while True:
            cursor, batch = await self.conn.scan(cursor, pattern=prefix + "*", count=1000)
            keys.update(_s(k) for k in batch)
            if int(cursor) == 0:
                break
        params: dict[str, dict[str, list[str]]] = {}
        for key in sorted(keys):
            name, sep, param = key[len(base):].rpartition(":")
            if not sep or not name:
                continue
            values = await self.members(key)
            if values:
                params.setdefault(name, {})[param] = values
        return params

    async def subscription(self, name: str) -> Subscription | None:
        """One subscription, or None when its hash is not one."""
        key = f"{self.namespace}:subscription:{name}"
        try:
            fields = await self.conn.hgetall(key)
        except txredisapi.ResponseError as e:
            self.warn(key, str(e))
            return None
        try:
            return Subscription.from_hash(name, fields or {})
        except ValidationError as e:
            self.warn(key, f"subscription {name!r} is invalid ({e})")
            return None

    async def is_subscribed(self, name: str) -> bool:
        member = await self.conn.sismember(f"{self.namespace}:subscriptions", name)
        return bool(member)

    async def subscriptions(self) -> dict[str, Subscription]:
        key = f"{self.namespace}:subscriptions"
        try:
            names = await self.conn.smembers(key)
        except txredisapi.ResponseError as e:
            self.warn(key, str(e))
            names = []
        subs: dict[str, Subscription] = {}
        for name in sorted(_s(n) for n in names or ()):
            sub = await self.subscription(name)
            if sub is not None:
                subs[name] = sub
        return subs

    async def everything(self) -> tuple[dict[str, dict[str, list[str]]], dict[str, Subscription], object]:
        """(params, subscriptions, marker). The marker is read last: a Redis emptied at
        any moment of this load has lost it, so a partial (or empty) read is never
        taken for the truth."""
        params = await self.params()
        subs = await self.subscriptions()
        marker: object = await self.conn.get(f"{self.namespace}:store:epoch")
        return params, subs, marker
