"""The wader's MessageSink: journal first, then typing and stats, then Redis.

``Dispatcher.messages_received(frames)`` is the hot path (one call per
turn of the stream's reader): one ``message_type`` per frame, one stats
update per batch, one write to the journal (on its writer thread:
``journal_writer.py``) and, once that write completed, one hand-over to the
sink (which batches per reactor turn).

``DeliveryService`` owns the journal and the sink: started before the wader,
stopped after it, flushing what was received to disk and (within a bounded
wait) to Redis. Its ``status()`` is what ``App.delivery`` exposes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime

from flamingo._reactor import maybe_global_reactor
from flamingo._types import JsonObject
from flamingo.config import Config
from flamingo.dispatch.journal import Journal, one_line
from flamingo.dispatch.journal_writer import InlineWriter, JournalWriter, ThreadWriter, Written
from flamingo.dispatch.redis_sink import RedisSink
from flamingo.dispatch.stages import StageCpu
from flamingo.dispatch.stats import Stats
from flamingo.dispatch.stream_groups import GroupWatch
from flamingo.logs import logger
from flamingo.stream.flow import Flow
from flamingo.stream.messages import STALL, message_type, parse_disconnect, parse_limit

if TYPE_CHECKING:  # the store is built beside delivery; only its type is needed here
    from flamingo.dispatch.store import Store

__all__ = ["Dispatcher", "DeliveryService", "build_delivery"]

log = logger("flamingo.dispatch")


class Dispatcher:
    """The stream side's message sink: journal first, then the Redis sink."""

    def __init__(self, journal: Journal, sink: RedisSink | None, stats: Stats,
                 writer: Callable[[Journal, Callable[[Written], None], StageCpu], JournalWriter] | None = None
                 ) -> None:
        self.journal = journal
        self.sink = sink
        self.stats = stats
        self.cpu = StageCpu(sink=(lambda: sink.cpu_seconds) if sink is not None else (lambda: 0.0))
        self.writer: JournalWriter = (writer or InlineWriter)(journal, self._written, self.cpu)
        self.cpu.journal_thread = self.writer.threaded

    def connection_started(self, request_line: str) -> None:
        self.stats.connection_started(request_line)

    def messages_received(self, frames: list[bytes]) -> None:
        if not frames:
            return
        t0 = time.thread_time()
        cpu = self.cpu
        inline = cpu.journal_inline
        frames, fixed = one_line(frames)
        if fixed:
            self.journal.newlines_replaced += fixed
        types = [message_type(f) for f in frames]
        counts = Counter(types)
        nbytes = sum(map(len, frames))
        self.stats.events(counts, len(frames), nbytes)
        if len(counts) > 1 or "tweet" not in counts:
            self._control(frames, types, counts)
        self.writer.submit(frames, types, nbytes)  # the sink gets them once written (_written)
        inline = cpu.journal_inline - inline  # the journal's share of this call on this thread
        cpu.dispatch += time.thread_time() - t0 - inline

    def _written(self, w: Written) -> None:
        """The journal wrote a batch (positions ``first..first+kept-1``): on to Redis."""
        if self.sink is not None:
            self.sink.deliver(w.first, w.kept, w.frames, w.types)

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
                        if w.get("code") == "FALLING_BEHIND" and self.sink is not None:
                            self.sink.pace.suspend(f"the stream warns FALLING_BEHIND ({w.get('percent_full')}% full)")
                    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                        pass
        if "disconnect" in counts and self.sink is not None:
            for f, t in zip(frames, types):
                notice = parse_disconnect(f) if t == "disconnect" else None
                if notice is not None and notice[0] == STALL:
                    self.sink.pace.suspend("the stream disconnected this client as too slow (code 4, stall)")

    def status(self) -> JsonObject:
        return {"journal": self.journal.status(),
                "redis": self.sink.status() if self.sink is not None else None,
                "backlog": self.backlog()}

    def backlog(self) -> int:
        """Events received and not yet in Redis: being written, or written and not delivered."""
        return self.writer.pending_events + (self.sink.backlog() if self.sink is not None else 0)


class DeliveryService(service.Service):
    """Owns journal + sink; ``status()`` is what REST and the console show as delivery."""

    name = "delivery"

    def __init__(self, journal: Journal, sink: RedisSink | None, stats: Stats,
                 flush_timeout: float = 5.0, reactor: IReactorTime | None = None, store: Store | None = None,
                 meta_interval: float = 5.0, writer_thread: bool = False) -> None:
        reactor = maybe_global_reactor(reactor)
        self.journal = journal
        self.sink = sink
        self.stats = stats
        self.reactor = reactor
        self.flush_timeout = flush_timeout
        self.store = store
        self.meta_interval = meta_interval
        #: back-pressure to the stream (the wader's links read it): closed while the writer is behind
        self.flow = Flow(now=reactor.seconds)
        if sink is not None:
            sink.pace_with(self.flow)
        writer = None
        if writer_thread and IReactorFromThreads.providedBy(reactor):
            call = reactor.callFromThread
            flow = self.flow

            def writer(j: Journal, deliver: Callable[[Written], None], cpu: StageCpu) -> JournalWriter:
                return ThreadWriter(j, deliver, cpu, call, flow, seconds=reactor.seconds)
        self.dispatcher = Dispatcher(journal, sink, stats, writer=writer)
        self.groups = GroupWatch(store, stats, min(2.0, meta_interval), reactor) if store is not None else None
        stats.provide("journal", journal.status)
        stats.provide("cpu", self.dispatcher.cpu.snapshot)
        stats.provide("delivery", self._delivery_stats)

    def _delivery_stats(self) -> JsonObject:
        st = self.sink.status() if self.sink is not None else {}
        return {"backlog": self.dispatcher.backlog(), "redis_connected": st.get("connected"),
                "checkpoint": st.get("checkpoint"), "error": st.get("error"),
                "lost_events": st.get("lost_events", 0), "gap_events": st.get("gap_events", 0),
                "waiting": st.get("waiting"), "writer": self.dispatcher.writer.status()}

    def startService(self) -> None:
        service.Service.startService(self)
        self.journal.open()
        self.dispatcher.writer.start()
        if self.sink is not None:
            self.sink.start()
        if self.store is not None:
            self.store.start_meta(self.stats.snapshot, self.meta_interval)
        if self.groups is not None:
            self.groups.start()

    def stopService(self) -> defer.Deferred[None]:
        """Flush: everything received is on disk; Redis gets it within ``flush_timeout``."""
        service.Service.stopService(self)
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.groups is not None:
            self.groups.stop()
        await self.dispatcher.writer.stop()  # what was received is written and handed on
        if self.sink is not None:
            d = self.sink.drained()
            d.addTimeout(self.flush_timeout, self.reactor)
            try:
                await d
            except defer.TimeoutError:
                log.warn("stopping with {n} events not yet in Redis (kept in the journal, "
                         "delivered at the next start)", n=self.sink.backlog())
            await self.sink.stop()
        await self.journal.close()

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
                           store=store, writer_thread=config.journal.writer == "thread")
