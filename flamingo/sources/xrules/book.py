"""The desired X rule set in Redis, with an in-memory copy: what REST, CLI and console edit.

Key ``<ns>:rules:filter`` is a hash, one field per rule value, each holding
``{"tag","id","status","error"}`` as JSON. Every edit is one Lua script
(checks and write together: two clients adding at once cannot pass the
tier's count) that publishes ``rules:filter`` on ``<ns>:changes``; the store
hands those notices here (``Store.on_notice``) and this copy is read again.

The reconciler records X's answers with ``record``, which only touches a rule
whose tag is still the one it sent: a rule removed or changed meanwhile is
left as the user made it.

A Redis emptied under the daemon (no persistence, FLUSHALL) has lost the
store's marker (``<ns>:store:epoch``), or holds a new one the store wrote
since: when it also holds no rules, the copy in memory (after a restart, the
copy on disk, ``<data_dir>/rules-<ns>.json``, kept with the marker it was
read under) is written back rather than adopted empty, so the reconciler
never deletes X's rules because Redis lost them. ``trusted`` is False while
there is no marker at all: the reconciler waits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import orjson
from twisted.internet import defer
from twisted.python.failure import Failure

from flamingo.errors import NotFound, ValidationError
from flamingo.logs import logger
from flamingo.sources.xrules.model import Limits, Rule, check_new, select_removed

__all__ = ["RuleBook", "RedisCommands"]

log = logger("flamingo.rules")

# KEYS: rules hash; ARGV: value, rule JSON, max rules, channel, notice
_ADD = b"""
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'exists' end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 'full' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 'ok'
"""

# KEYS: rules hash; ARGV: channel, notice, value...
_REMOVE = b"""
local n = 0
for i = 3, #ARGV do n = n + redis.call('HDEL', KEYS[1], ARGV[i]) end
if n > 0 then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return n
"""

# KEYS: rules hash; ARGV: channel, notice, then (value, tag sent or '', new JSON)...
_RECORD = b"""
local n = 0
for i = 3, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur then
    local tag = cjson.decode(cur)['tag']
    if tag == nil or tag == cjson.null then tag = '' end
    if tag == ARGV[i + 1] and cur ~= ARGV[i + 2] then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
      n = n + 1
    end
  end
end
if n > 0 then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return n
"""

# KEYS: rules hash, store marker -> {marker or false, {field, value, ...}}
_LOAD = b"""
return {redis.call('GET', KEYS[2]), redis.call('HGETALL', KEYS[1])}
"""

# KEYS: rules hash; ARGV: value, JSON, ... (only fields still missing)
_RESTORE = b"""
for i = 1, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


class RedisCommands(Protocol):
    """What the book needs of the store: its key prefix (the namespace, ``{ns}`` in cluster
    mode: the rules share the namespace's hash slot) and one command at a time."""

    prefix: str

    # Any: a Redis reply, as txredisapi (unannotated) decodes it
    def command(self, *args: str | bytes | int | float) -> defer.Deferred[Any]: ...


def _s(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _wishes(rules: Mapping[str, Rule]) -> set[tuple[str, str | None]]:
    return {(r.value, r.tag) for r in rules.values()}


def _json(rule: Rule) -> str:
    return orjson.dumps({k: v for k, v in rule.to_dict().items() if k != "value"}).decode()


class RuleBook:
    """The rules Flamingo wants at X, as Redis holds them; reads are synchronous."""

    def __init__(self, store: RedisCommands, limits: Limits, stream: str = "filter",
                 copy_path: Path | None = None) -> None:
        self.store = store
        self.copy_path = copy_path  # <data_dir>/rules-<ns>.json: the rules as last loaded
        self._epoch: str | None = None  # the store's marker they were loaded under
        self.limits = limits
        self.stream = stream
        self._rules: dict[str, Rule] = {}
        self.trusted = False  # loaded from a Redis that kept the store's marker
        self.loaded = False
        self._listeners: list[Callable[[], None]] = []
        self._loading: defer.Deferred[None] | None = None
        self._waiters: list[defer.Deferred[None]] = []

    @property
    def key(self) -> str:
        return f"{self.store.prefix}:rules:{self.stream}"

    @property
    def _channel(self) -> str:
        return f"{self.store.prefix}:changes"

    @property
    def notice(self) -> str:
        return f"rules:{self.stream}"

    def rules(self) -> list[Rule]:
        return [self._rules[v] for v in sorted(self._rules)]

    def get(self, value: str) -> Rule | None:
        return self._rules.get(value)

    def on_change(self, callback: Callable[[], None]) -> None:
        """``callback()`` after a load that changed the rules wished for (the reconciler's cue)."""
        self._listeners.append(callback)

    # -- edits ------------------------------------------------------------------------

    def add(self, value: object, tag: object = None) -> defer.Deferred[tuple[Rule, bool]]:
        """-> (rule, created). ValidationError for what X would refuse; an existing value: unchanged."""
        return defer.Deferred.fromCoroutine(self._add(value, tag))

    async def _add(self, value: object, tag: object) -> tuple[Rule, bool]:
        await self._settled()
        rule = check_new(self.rules(), value, tag, self.limits)
        if rule is None:
            assert isinstance(value, str)  # check_new accepted it
            return self._rules[value.strip()], False
        reply: object = await self.store.command("EVAL", _ADD, 1, self.key, rule.value, _json(rule),
                                                 self.limits.max_rules, self._channel, self.notice)
        await self.load()
        if _s(reply) == "full":  # another client filled the set meanwhile
            raise ValidationError("rules", f"this tier allows {self.limits.max_rules} rules",
                                  limit=f"rules: at most {self.limits.max_rules}")
        current = self._rules.get(rule.value, rule)
        return current, _s(reply) == "ok"

    def remove(self, value: object = None, tag: object = None) -> defer.Deferred[list[Rule]]:
        """Remove by value, or every rule with a tag; -> the rules left. NotFound when none matched."""
        return defer.Deferred.fromCoroutine(self._remove(value, tag))

    async def _remove(self, value: object, tag: object) -> list[Rule]:
        await self._settled()
        gone = select_removed(self.rules(), value, tag)
        if not gone:
            raise NotFound("rule", str(value if value is not None else f"tag {tag}"))
        await self.store.command("EVAL", _REMOVE, 1, self.key, self._channel, self.notice,
                                 *[r.value for r in gone])
        await self.load()
        return self.rules()

    def record(self, changes: Mapping[str, tuple[str | None, Rule]]) -> defer.Deferred[object]:
        """Write X's verdicts: value -> (tag the reconciler sent, rule as it now is); -> the script's reply."""
        if not changes:
            return defer.succeed(0)
        args: list[str] = []
        for value, (sent_tag, rule) in changes.items():
            args += [value, sent_tag or "", _json(rule)]
        d: defer.Deferred[object] = self.store.command("EVAL", _RECORD, 1, self.key, self._channel, self.notice,
                                                       *args)
        return d.addCallback(lambda n: self.load().addCallback(lambda _: n))

    # -- loading ----------------------------------------------------------------------

    def changed(self, message: str) -> None:
        """A change notice for this book (``Store.on_notice``)."""
        if message in (self.notice, "rules"):  # "rules": the notice channel reconnected
            self.load().addErrback(lambda f: log.warn("rules reload failed: {e}", e=f.getErrorMessage()))

    def _settled(self) -> defer.Deferred[None]:
        return self.load() if not self.loaded else defer.succeed(None)

    def load(self) -> defer.Deferred[None]:
        """Read the rules again; fires after a read that started after this call
        (calls made during a read share the next one)."""
        d: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(d)
        if self._loading is None:
            self._run_load()
        return d

    def _run_load(self) -> None:
        waiters, self._waiters = self._waiters, []
        self._loading = self._load()

        def done(result: object) -> None:
            self._loading = None
            for w in waiters:
                if isinstance(result, Failure):
                    w.errback(result)
                else:
                    w.callback(None)
            if self._waiters:  # asked for during this read: one more
                self._run_load()
        self._loading.addBoth(done)

    def _load(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._read())

    async def _read(self) -> None:
        marker, flat = await self.store.command("EVAL", _LOAD, 2, self.key, f"{self.store.prefix}:store:epoch")
        epoch = _s(marker) if marker else None
        rules: dict[str, Rule] = {}
        for i in range(0, len(flat) - 1, 2):
            value = _s(flat[i])
            try:
                doc = orjson.loads(flat[i + 1])
            except orjson.JSONDecodeError:
                log.warn("rule {value!r} in {key} is not JSON: skipped", value=value, key=self.key)
                continue
            rules[value] = Rule.from_dict(value, doc if isinstance(doc, dict) else {})
        known_epoch, base = (self._epoch, self._rules) if self.loaded else self._read_copy()
        # Redis emptied (no marker yet, or a new one since our copy) and holding no rules:
        # our copy is the truth, written back; with the same marker, an empty set was meant
        if not rules and base and (epoch is None or (known_epoch is not None and epoch != known_epoch)):
            args: list[str] = []
            for r in base.values():
                args += [r.value, _json(r)]
            await self.store.command("EVAL", _RESTORE, 1, self.key, *args)
            log.warn("Redis lost the X rules: {n} written back from {where}", n=len(base),
                     where="memory" if self.loaded else str(self.copy_path))
            rules = dict(base)
        self.trusted = epoch is not None
        before, self._rules = self._rules, rules
        self.loaded = True
        if self.trusted:
            self._epoch = epoch
            self._save_copy()
        if _wishes(before) != _wishes(rules):  # X's verdicts recorded are not a change to sync
            for cb in list(self._listeners):
                cb()

    # -- the copy on disk (a restart over an emptied Redis) ------------------------------

    def _read_copy(self) -> tuple[str | None, dict[str, Rule]]:
        if self.copy_path is None or not self.copy_path.exists():
            return None, {}
        try:
            doc = orjson.loads(self.copy_path.read_bytes())
            rules = {v: Rule.from_dict(v, d) for v, d in doc["rules"].items() if isinstance(d, dict)}
            epoch = doc.get("epoch")
            return (epoch if isinstance(epoch, str) else None), rules
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            log.warn("X rules copy {path} unreadable ({e}): not used", path=str(self.copy_path), e=str(e))
            return None, {}

    def _save_copy(self) -> None:
        if self.copy_path is None:
            return
        rules = {v: orjson.loads(_json(r)) for v, r in self._rules.items()}
        data = orjson.dumps({"epoch": self._epoch, "rules": rules}, option=orjson.OPT_SORT_KEYS)
        try:
            if self.copy_path.exists() and self.copy_path.read_bytes() == data:
                return
            tmp = self.copy_path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, self.copy_path)
        except OSError as e:
            log.warn("X rules copy {path} not written: {e}", path=str(self.copy_path), e=str(e))
