"""The wader's MessageSink: journal first, then typing and stats, then Redis.

``Dispatcher.messages_received(frames)`` is the hot path (one call per TCP
read): one write to the journal, one ``message_type`` per frame, one stats
update per batch, one hand-over to the sink (which batches per reactor turn).

``DeliveryService`` owns the journal and the sink: started before the wader,
stopped after it, flushing what was received to disk and (within a bounded
wait) to Redis. Its ``status()`` is what ``App.delivery`` exposes.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson
from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from flamingo._reactor import maybe_global_reactor
from flamingo._types import JsonObject
from flamingo.config import Config
from flamingo.dispatch.journal import Journal, one_line
from flamingo.dispatch.redis_sink import RedisSink
from flamingo.dispatch.stages import StageCpu
from flamingo.logs import logger
from flamingo.stats import Stats
from flamingo.stream.messages import message_type, parse_limit

if TYPE_CHECKING:  # the store is built beside delivery; only its type is needed here
    from flamingo.store import Store

__all__ = ["Dispatcher", "DeliveryService", "build_delivery"]

log = logger("flamingo.dispatch")


class Dispatcher:
    """The stream side's message sink: journal first, then the Redis sink."""

    def __init__(self, journal: Journal, sink: RedisSink | None, stats: Stats) -> None:
        self.journal = journal
        self.sink = sink
        self.stats = stats
        self.cpu = StageCpu(sink=(lambda: sink.cpu_seconds) if sink is not None else (lambda: 0.0))

    def connection_started(self, request_line: str) -> None:
        self.stats.connection_started(request_line)

    def messages_received(self, frames: list[bytes]) -> None:
        if not frames:
            return
        t0 = time.thread_time()
        frames, fixed = one_line(frames)
        if fixed:
            self.journal.newlines_replaced += fixed
        t1 = time.thread_time()
        first = self.journal.append(frames)
        t2 = time.thread_time()
        kept = 0 if first is None else min(len(frames), self.journal.next_seq - first)
        types = [message_type(f) for f in frames]
        counts = Counter(types)
        self.stats.events(counts, len(frames), sum(map(len, frames)))
        if len(counts) > 1 or "tweet" not in counts:
            self._control(frames, types, counts)
        if self.sink is not None:
            self.sink.deliver(first, kept, frames, types)
        cpu = self.cpu
        cpu.journal += t2 - t1
        cpu.dispatch += time.thread_time() - t2 + (t1 - t0)

    def _control(self, frames: list[bytes], types: list[str], counts: Counter[str]) -> None:
        """Rare messages the stats look into: limit notices and stall warnings."""
        if "limit" in counts:
            for f, t in zip(frames, types):
                if t == "limit":
                    n = parse_limit(f)
                    if n is not None:
                        self.stats.limit_notice(n)
        if "warning" in counts:
            for f, t in zip(frames, types):
                if t == "warning":
                    try:
                        w = orjson.loads(f)["warning"]
                        self.stats.warning_message(w.get("code"), w.get("message"), w.get("percent_full"))
                    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                        pass

    def status(self) -> JsonObject:
        return {"journal": self.journal.status(),
                "redis": self.sink.status() if self.sink is not None else None,
                "backlog": self.sink.backlog() if self.sink is not None else 0}


class DeliveryService(service.Service):
    """Owns journal + sink; ``status()`` is what REST and the console show as delivery."""

    name = "delivery"

    def __init__(self, journal: Journal, sink: RedisSink | None, stats: Stats,
                 flush_timeout: float = 5.0, reactor: IReactorTime | None = None, store: Store | None = None,
                 meta_interval: float = 5.0) -> None:
        reactor = maybe_global_reactor(reactor)
        self.journal = journal
        self.sink = sink
        self.stats = stats
        self.reactor = reactor
        self.flush_timeout = flush_timeout
        self.store = store
        self.meta_interval = meta_interval
        self.dispatcher = Dispatcher(journal, sink, stats)
        stats.provide("journal", journal.status)
        stats.provide("cpu", self.dispatcher.cpu.snapshot)
        stats.provide("delivery", self._delivery_stats)

    def _delivery_stats(self) -> JsonObject:
        st = self.sink.status() if self.sink is not None else {}
        return {"backlog": st.get("backlog", 0), "redis_connected": st.get("connected"),
                "checkpoint": st.get("checkpoint"), "error": st.get("error"),
                "lost_events": st.get("lost_events", 0), "gap_events": st.get("gap_events", 0),
                "waiting": st.get("waiting")}

    def startService(self) -> None:
        super().startService()
        self.journal.open()
        if self.sink is not None:
            self.sink.start()
        if self.store is not None:
            self.store.start_meta(self.stats.snapshot, self.meta_interval)

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        """Flush: everything received is on disk; Redis gets it within ``flush_timeout``."""
        super().stopService()
        if self.sink is not None:
            d = self.sink.drained()
            d.addTimeout(self.flush_timeout, self.reactor)
            try:
                yield d
            except defer.TimeoutError:
                log.warn("stopping with {n} events not yet in Redis (kept in the journal, "
                         "delivered at the next start)", n=self.sink.backlog())
            yield self.sink.stop()
        yield self.journal.close()

    def status(self) -> JsonObject:
        return self.dispatcher.status()

    # MessageSink, so the service itself can be handed to the wader
    def connection_started(self, request_line: str) -> None:
        self.dispatcher.connection_started(request_line)

    def messages_received(self, frames: list[bytes]) -> None:
        self.dispatcher.messages_received(frames)


def build_delivery(config: Config, store: Store, stats: Stats, reactor: IReactorTime | None = None) -> DeliveryService:
    """The delivery part of the daemon from its config (journal or event log, Redis sink)."""
    journal = Journal.from_config(config, reactor=reactor)  # state files in config.data_dir
    # known_subscriptions is None until the store has loaded: the sink waits for it
    sink = RedisSink.from_config(config, journal, store.known_subscriptions, reactor=reactor, stats=stats)
    return DeliveryService(journal, sink, stats, flush_timeout=config.redis.timeout, reactor=reactor,
                           store=store)
