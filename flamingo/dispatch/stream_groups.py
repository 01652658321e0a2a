"""Consumer-group lag of ``format: stream`` subscriptions, read every few seconds.

The sink knows each stream's length and trims from its own batches; how far
behind each consumer group is only Redis knows (``XINFO GROUPS``: ``pending``
entries delivered but not acknowledged, ``lag`` entries not yet delivered).
Redis before 7.0 reports no ``lag``: it is shown as null, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from flamingo._types import JsonObject
from flamingo.dispatch.stats import Stats
from flamingo.logs import logger

if TYPE_CHECKING:
    from flamingo.dispatch.store import Store

__all__ = ["GroupWatch", "parse_groups"]

log = logger("flamingo.sink")


def _text(v: object) -> str | None:
    if v is None:
        return None
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _int(v: object) -> int | None:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float, str, bytes)):
        return None  # what int() would refuse
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def parse_groups(reply: object) -> list[JsonObject]:
    """``XINFO GROUPS`` (a list of flat field/value lists, or of maps) -> one dict per group."""
    out: list[JsonObject] = []
    items = reply if isinstance(reply, (list, tuple)) else ()
    for item in items:
        if isinstance(item, dict):
            fields = {_text(k): v for k, v in item.items()}
        elif isinstance(item, (list, tuple)):
            fields = {_text(item[i]): item[i + 1] for i in range(0, len(item) - 1, 2)}
        else:
            continue
        out.append({"name": _text(fields.get("name")), "consumers": _int(fields.get("consumers")),
                    "pending": _int(fields.get("pending")), "lag": _int(fields.get("lag")),
                    "last_delivered_id": _text(fields.get("last-delivered-id"))})
    return sorted(out, key=lambda g: g["name"] or "")


class GroupWatch:
    """Every ``interval`` s, reads each stream subscription's length and groups into ``stats``."""

    def __init__(self, store: Store, stats: Stats, interval: float = 2.0,
                 reactor: IReactorTime | None = None) -> None:
        self.store = store
        self.stats = stats
        self._loop = task.LoopingCall(self.tick)
        if reactor is not None:
            self._loop.clock = reactor
        self.interval = interval
        self._running: defer.Deferred[None] | None = None

    def start(self) -> None:
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def tick(self) -> defer.Deferred[None] | None:
        if self._running is not None or not self.store.available:
            return None  # one read at a time; none while Redis is away
        subs = {n: s for n, s in self.store.subscriptions().items() if s.format == "stream"}
        self.stats.forget_streams(set(subs))
        if not subs:
            return None
        d = self._read(sorted(subs), lambda n: subs[n].queue_key(self.store.prefix))
        self._running = d

        def done(_: None) -> None:
            self._running = None

        def failed(f: Failure) -> None:
            self._running = None
            log.debug("consumer group stats not read: {e}", e=f.getErrorMessage())
        d.addCallbacks(done, failed)
        return d

    def _read(self, names: list[str], key_of: Callable[[str], str]) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._read_all(names, key_of))

    async def _read_all(self, names: list[str], key_of: Callable[[str], str]) -> None:
        for name in names:
            length, reply = await self.store.stream_info(key_of(name))
            self.stats.stream_groups(name, parse_groups(reply), length)
