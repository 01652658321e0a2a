"""The store's loading: the copy in memory read again from Redis, or Redis re-seeded from it.

A change notice names what changed, and only that is read again (``_load_targets``);
any other message and every reconnect read everything (``_load_checked``), which
restores the copy to a Redis that lost the epoch marker (see store.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

import orjson
import txredisapi
from twisted.internet import defer
from twisted.python.failure import Failure

from flamingo.dispatch.store_base import Loaded, Params, StoreBase, text
from flamingo.dispatch.store_redis import RESTORE, KeyReader
from flamingo.domain.store_rules import Target, appends_only
from flamingo.domain.subscription import Subscription
from flamingo.logs import logger

__all__ = ["StoreLoading"]

log = logger("flamingo.dispatch.store")


class StoreLoading(StoreBase):
    """Loading the copy; calls made while a load runs share the next one."""

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
        load = self._load_checked() if targets is None else self._load_targets(targets)
        self._reloading = defer.ensureDeferred(load)

        def done(result: Loaded | Failure) -> None:
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

    async def _load_checked(self) -> Loaded:
        """Load; if Redis lost the marker while we hold a copy, restore it first.

        The empty state is never applied when there is a copy to restore: the
        sink reads ``subscriptions()`` for every batch, and an empty copy for a
        moment would commit events to no queue at all. The copy is the one in
        memory, or after a restart of the daemon the local file.
        """
        params, subs, marker = await self._within(self._reader().everything())
        if marker is None:
            base: Loaded
            if self._loaded or self._adopted:
                base = (self._params, self._subs)
            elif self._local is not None:
                base = (self._local.params, self._local.subscriptions)
            else:
                base = ({}, {})
            if base[0] or base[1]:
                await self._restore(*base)
                params, subs, marker = await self._within(self._reader().everything())
            else:  # a first start (or nothing to restore): this Redis is now ours
                epoch = secrets.token_hex(8)
                ok = await self._timed(self._conn.set(self._epoch_key, epoch, only_if_not_exists=True))
                marker = epoch if ok else await self._timed(self._conn.get(self._epoch_key))
        self.epoch = text(marker) if marker is not None else None
        self._own_queues.clear()  # read everything: Redis may have lost <ns>:queues too
        await self._adopt_queues(subs)
        return params, subs

    async def _adopt_queues(self, subs: dict[str, Subscription]) -> None:
        """The queues of subscriptions already in Redis are Flamingo's (installs from before ``<ns>:queues``)."""
        queues = sorted({s.queue_key(self.prefix) for s in subs.values() if not appends_only(s)}
                        - self._own_queues)
        if queues:
            try:
                await self._timed(self._conn.sadd(self._queues_key, queues))
            except txredisapi.ResponseError as e:
                self._warn_once(self._queues_key, str(e))
                return
            self._own_queues.update(queues)

    async def _load_targets(self, targets: set[Target]) -> Loaded:
        """Read only what the change notices named, on top of the current copy."""
        read = self._reader()
        params = {s: dict(ps) for s, ps in self._params.items()}
        subs = dict(self._subs)
        for kind, name, param in sorted(targets, key=lambda t: (t[0], t[1], t[2] or "")):
            if kind == "params" and param is not None:
                values = await self._within(read.members(self._param_key(name, param)))
                stream = params.setdefault(name, {})
                if values:
                    stream[param] = values
                else:
                    stream.pop(param, None)
            elif kind == "params":
                params[name] = (await self._within(read.params(name))).get(name, {})
            else:
                subscribed = await self._within(read.is_subscribed(name))
                sub = await self._within(read.subscription(name)) if subscribed else None
                if sub is None:
                    subs.pop(name, None)
                else:
                    subs[name] = sub
        params = {s: ps for s, ps in params.items() if ps}
        marker = await self._timed(self._conn.get(self._epoch_key))
        if marker is None or text(marker) != self.epoch:  # emptied, or re-seeded by another daemon
            return await self._load_checked()
        await self._adopt_queues(subs)
        return params, subs

    async def _restore(self, params_copy: Params, subs_copy: dict[str, Subscription]) -> None:
        """Write a copy back to a Redis that lost it (see the module doc)."""
        params: list[tuple[str, list[str]]] = [(self._param_key(stream, p), values)
                  for stream, ps in sorted(params_copy.items()) for p, values in sorted(ps.items()) if values]
        subs: list[tuple[str, str, list[str]]] = []
        for name, sub in sorted(subs_copy.items()):
            flat: list[str] = []
            for k, v in sub.to_hash().items():
                flat += [k, v]
            subs.append((name, self._sub_key(name), flat))
        changes = [f"params:{s}" for s in sorted(params_copy)] + [f"subscriptions:{n}" for n in sorted(subs_copy)]
        queues = sorted({s.queue_key(self.prefix) for s in subs_copy.values() if not appends_only(s)})
        doc = orjson.dumps({"params": params, "subs": subs, "queues": queues, "changes": changes})
        epoch = secrets.token_hex(8)
        done = await self._timed(self._conn.execute_command(
            "EVAL", RESTORE, 3, self._epoch_key, self._subs_key, self._queues_key, epoch, self._channel, doc))
        if done == 1:
            self.restores += 1
            self.last_restore = {"at": self.reactor.seconds(), "params": len(params), "subscriptions": len(subs)}
            source = "memory" if self._loaded or self._adopted else f"the local copy {self.copy_path}"
            log.warn("Redis lost flamingo's keys (restarted without persistence?): restored {n} params "
                     "and {m} subscriptions from {source}", n=len(params), m=len(subs), source=source)

    def _reader(self) -> KeyReader:
        return KeyReader(self._conn, self.prefix, self._warn_once)
