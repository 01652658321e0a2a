"""Mastodon as a ``Source``: one multiplexed WebSocket (or SSE), gaps filled from REST.

A connection first finds the streaming server (``/api/v2/instance``, unless
``mastodon.streaming_url``), checks its health, then opens one WebSocket and
sends one ``subscribe`` per tag or list id (SSE: one response per
subscription). A params change subscribes and unsubscribes on the open
socket. Events reach the queue as ``{"event", "stream", "payload"}`` with the
payload decoded (``mastodon_api.shape``).

Nothing lost: the source keeps the newest status id passed on per stream
(rebuilt from the journal's tail at start, so a restart after ``kill -9``
knows it too). Once a connection is open and subscribed, and before any live
event is passed on, each stream with a known newest id is filled from its REST
timeline (``mastodon_rest.fill``); the filled statuses go first, in id order,
as ``update`` events, then what arrived live meanwhile. Nothing twice: events
already passed on (or journaled) are dropped by id (``RecentIds``, counted in
``duplicates_dropped``); ``delete`` events always pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from flamingo import __version__
from flamingo._types import JsonObject
from flamingo.config import Config
from flamingo.logs import logger
from flamingo.sources.mastodon_api import (
    Shaped,
    ShapeError,
    StreamKey,
    http_url,
    is_newer,
    needs_params,
    newest_ids,
    read_shaped,
    read_ws,
    shape_sse,
    sse_path,
    subscribe_message,
    subscriptions,
    timeline_path,
    ws_url,
)
from flamingo.sources.mastodon_gap import GapStats, fill_gaps, label
from flamingo.sources.mastodon_rest import MastodonRest, failure_verdict, plain_words, server_words
from flamingo.stream.endpoints import StreamRequest
from flamingo.stream.http_lines import QuietEndpoints
from flamingo.stream.overlap import RecentIds
from flamingo.stream.source import JournalTail, Link, LinkEvents, Params, Retry, Verdict
from flamingo.stream.sse import SseEvent, SseLink
from flamingo.stream.websocket import WebSocketLink

__all__ = ["MastodonSource", "MastodonLink", "MastodonStats", "TAIL_EVENTS", "TAIL_BYTES", "HOLD_MAX_BYTES"]

log = logger("flamingo.wader")

#: events read back from the journal at start for the newest ids and the dedupe window,
#: and the bytes they may take (a journal's tail stops at its byte cap, from the oldest
#: end: fewer events are asked for until the newest are surely in)
TAIL_EVENTS = 4_000
TAIL_BYTES = 64 << 20
#: live events held while a gap fill runs, at most (bytes): a REST API that crawls must not
#: grow memory without bound; past it the fill is abandoned and the held events go on
HOLD_MAX_BYTES = 64 << 20


@runtime_checkable
class MastodonStats(Protocol):
    def keepalive(self, n: int) -> None: ...

    def parse_error(self, kind: str, sample: bytes, n: int) -> None: ...

    def duplicates(self, n: int) -> None: ...


class MastodonSource:
    """An instance's streaming API; ``reactor`` connects, ``clock`` times."""

    def __init__(self, config: Config, reactor: IReactorTime, clock: IReactorTime, stats: MastodonStats,
                 journal: JournalTail | None = None, now: Callable[[], float] | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.clock = clock
        self.stats = stats
        self.journal = journal
        self.now = now or clock.seconds
        self.conf = config.mastodon
        self.user_agent = f"Flamingo/{__version__}"
        self.pool = HTTPConnectionPool(reactor, persistent=False)  # SSE responses
        self.agent = Agent.usingEndpointFactory(reactor, QuietEndpoints(reactor), pool=self.pool)
        self.rest_pool = HTTPConnectionPool(reactor, persistent=True)
        self.rest_pool.maxPersistentPerHost = 2
        rest_agent = Agent.usingEndpointFactory(reactor, QuietEndpoints(reactor), pool=self.rest_pool)
        self.rest = MastodonRest(HTTPClient(rest_agent), config.bearer_token or "", clock,
                                 config.wader.connect_timeout, self.user_agent)
        self.seen = RecentIds(config.wader.dedupe_window)
        self.newest: dict[StreamKey, str] = {}
        self.gap = GapStats()
        self.streaming: str | None = self.conf.streaming_url
        self.hold_max_bytes = HOLD_MAX_BYTES
        self._resumed = False

    @property
    def stream(self) -> str:
        return self.config.stream

    # -- the resume position ------------------------------------------------------

    def resume(self) -> None:
        """Newest ids and recent event ids from the journal's tail (once, at the first open)."""
        if self._resumed:
            return
        self._resumed = True
        if self.journal is None:
            return
        shaped = [s for s in (read_shaped(f) for f in self._journal_tail(self.journal)) if s is not None]
        self.newest.update(newest_ids(shaped))
        for s in shaped:
            if s.dedupe is not None:
                self.seen.add(s.dedupe)
        if self.newest:
            log.info("Resuming Mastodon streams from the journal: {streams}",
                     streams=", ".join(f"{label(k)} after {v}" for k, v in sorted(self.newest.items())))

    def _journal_tail(self, journal: JournalTail) -> list[bytes]:
        """The journal's last events, the very last included: a tail cut by its byte cap
        (read oldest first) would miss the newest ids, so ask for fewer until it is not."""
        n, biggest = TAIL_EVENTS, self.config.wader.max_message_bytes
        while True:
            events = journal.tail(n, TAIL_BYTES)
            size = sum(map(len, events))
            if len(events) >= n or size + biggest <= TAIL_BYTES or n <= 1:
                return events
            n //= 2

    def pass_on(self, events: Sequence[Shaped]) -> list[bytes]:
        """Drop repeats, note the newest ids, give the frames to hand to the wader."""
        frames: list[bytes] = []
        repeats = 0
        for e in events:
            if e.dedupe is not None:
                if e.dedupe in self.seen:
                    repeats += 1
                    continue
                self.seen.add(e.dedupe)
            if e.event == "update" and e.status_id is not None and is_newer(e.status_id, self.newest.get(e.key)):
                self.newest[e.key] = e.status_id
            frames.append(e.frame)
        if repeats:
            self.stats.duplicates(repeats)
        return frames

    # -- the Source seam --------------------------------------------------------------

    def request(self, params: Params) -> StreamRequest | None:
        keys = subscriptions(self.stream, params)
        if needs_params(self.stream) and not keys:
            return None
        return self.request_for(keys)

    def request_for(self, keys: Sequence[StreamKey]) -> StreamRequest:
        """The (secret-free) request line and the subscriptions, in a ``StreamRequest``."""
        shown = ",".join(k[1] for k in keys if len(k) > 1)
        param = "tag" if self.stream.startswith("hashtag") else "list"
        line = f"/api/v1/streaming?stream={self.stream}" + (f"&{param}={shown}" if shown else "")
        form = tuple((k[0], k[1] if len(k) > 1 else "") for k in keys)
        return StreamRequest("GET", self.config.api.url, None, form, line)

    def open(self, request: StreamRequest, events: LinkEvents) -> MastodonLink:
        self.resume()
        keys: list[StreamKey] = [(stream, value) if value else (stream,) for stream, value in request.form]
        return MastodonLink(self, request, keys, events)

    def apply_params(self, link: Link, params: Params) -> bool:
        if self.conf.transport != "websocket" or not isinstance(link, MastodonLink):
            return False  # SSE: one response per subscription, reconnected
        keys = subscriptions(self.stream, params)
        return bool(keys) and link.resubscribe(keys, self.request_for(keys))

    def close_idle(self) -> None:
        self.pool.closeCachedConnections()
        self.rest_pool.closeCachedConnections()

    # -- the REST side ---------------------------------------------------------------------

    def prepare(self) -> defer.Deferred[str]:
        """Discovery (cached until a connection is refused) and the health check."""
        return defer.Deferred.fromCoroutine(self._prepare())

    async def _prepare(self) -> str:
        if self.streaming is None:
            self.streaming = await self.rest.discover(self.config.api.url)
            log.info("Mastodon streaming server: {url}", url=self.streaming)
        base: str = self.streaming
        await self.rest.health(base)
        return base

    def forget_discovery(self) -> None:
        self.streaming = self.conf.streaming_url

    def fill_due(self, keys: Sequence[StreamKey]) -> list[StreamKey]:
        if not self.conf.gap_fill:
            return []
        return [k for k in keys if k in self.newest and timeline_path(k) is not None]

    def fill(self, keys: Sequence[StreamKey]) -> defer.Deferred[list[Shaped]]:
        """Each stream's gap since its newest id, all streams merged in id order."""
        return fill_gaps(self.rest, self.config.api.url, {k: self.newest[k] for k in keys},
                         self.conf.gap_max, self.gap, self.now())

    def status(self) -> JsonObject:
        """The gap fill's figures, with where the next one starts and the streaming server."""
        return {**self.gap.to_dict(self.rest.budget.to_dict()),
                "newest_ids": {label(k): v for k, v in sorted(self.newest.items())},
                "streaming_url": self.streaming, "transport": self.conf.transport}


class _Inner:
    """The ``LinkEvents`` a MastodonLink gives its transport links."""

    def __init__(self, outer: MastodonLink) -> None:
        self.outer = outer

    def responded(self, link: Link) -> None:
        self.outer.inner_responded(link)

    def refused(self, link: Link, verdict: Verdict) -> None:
        self.outer.inner_failed(link, verdict)

    def alive(self, link: Link) -> None:
        self.outer.inner_alive(link)

    def messages(self, link: Link, frames: list[bytes]) -> None:
        self.outer.inner_messages(link, frames)

    def ended(self, link: Link, verdict: Verdict) -> None:
        self.outer.inner_failed(link, verdict)


class MastodonLink:
    """One connection: discovery, health, the transport, the gap fill, then live events."""

    def __init__(self, source: MastodonSource, request: StreamRequest, keys: list[StreamKey],
                 events: LinkEvents) -> None:
        self.source = source
        self.request = request
        self.keys = keys
        self.events = events
        self.inner: list[WebSocketLink | SseLink] = []
        self.waiting: set[int] = set()  # transport links not responded yet
        #: links heard from since ``alive`` was last passed on: it is passed on once every
        #: one of them has been (one silent SSE response among live ones is still a stall)
        self.fresh: set[int] = set()
        self.buffer: list[Shaped] = []
        self.buffer_bytes = 0
        self.filling = False
        self.live = False
        self.opened = False  # the wader was told ``responded``
        self.closing = False
        self.reported = False  # refused or ended told once
        self.aborted: Retry | None = None
        #: what is under way before the link is live (discovery and health, or the gap fill)
        self.step: defer.Deferred[str] | defer.Deferred[list[Shaped]] | None = None
        step = self.step = source.prepare()
        step.addCallbacks(self._prepared, self._prepare_failed)
        step.addErrback(lambda f: log.failure("Mastodon link bug", f))

    @property
    def request_line(self) -> str:
        return self.request.request_line

    @property
    def websocket(self) -> WebSocketLink | None:
        link = self.inner[0] if self.inner else None
        return link if isinstance(link, WebSocketLink) else None

    # -- opening ------------------------------------------------------------------------

    def _prepared(self, base: str) -> None:
        self.step = None
        if self.closing:
            return
        src = self.source
        w = src.config.wader
        token = src.config.bearer_token or ""
        if src.conf.transport == "websocket":
            url = ws_url(base)
            req = StreamRequest("GET", url, None, (), self.request_line)
            link: WebSocketLink | SseLink = WebSocketLink(
                req, {"Authorization": f"Bearer {token}"}, _ws_frame, _Inner(self),
                reactor=src.reactor, clock=src.clock, turns=src.reactor, stats=src.stats,
                connect_timeout=w.connect_timeout, ping_interval=min(15.0, w.stall_timeout / 3),
                max_message_bytes=w.max_message_bytes, user_agent=src.user_agent)
            self._opened_inner(link)
            return
        for key in self.keys:
            if self.closing:  # an earlier response was refused at once: open no more
                return
            path, query = sse_path(key)
            req = StreamRequest("GET", http_url(base, path, query), None, (), self.request_line)
            headers = Headers({b"User-Agent": [src.user_agent.encode()],
                               b"Authorization": [f"Bearer {token}".encode()]})
            sse = SseLink(req, headers, _sse_decoder(key, src.stats), _Inner(self), agent=src.agent, clock=src.clock,
                          stats=src.stats, connect_timeout=w.connect_timeout,
                          max_event_bytes=w.max_message_bytes)
            self._opened_inner(sse)

    def _opened_inner(self, link: WebSocketLink | SseLink) -> None:
        self.inner.append(link)
        if self.closing:  # it failed inside its constructor, or a sibling did
            link.close()
        elif not link.finished:
            self.waiting.add(id(link))

    def _prepare_failed(self, failure: Failure) -> None:
        self.step = None
        if failure.check(defer.CancelledError) or self.closing:
            return
        self.source.forget_discovery()
        self._report(self.aborted or failure_verdict(failure))

    def inner_responded(self, link: Link) -> None:
        self.waiting.discard(id(link))
        if self.closing:
            return
        ws = self.websocket
        if ws is not None:
            for key in self.keys:
                ws.send(subscribe_message(key))
        if self.waiting:
            return
        self.opened = True
        self.events.responded(self)
        if self.closing:
            return
        due = self.source.fill_due(self.keys)
        if not due:
            self.live = True
            return
        self.filling = True
        log.info("Filling the gap since the last events from REST: {streams}",
                 streams=", ".join(label(k) for k in due))
        step = self.step = self.source.fill(due)
        step.addCallbacks(self._filled, self._fill_failed)
        step.addErrback(lambda f: log.failure("Mastodon gap fill bug", f))

    def _filled(self, statuses: list[Shaped]) -> None:
        self.step = None
        if self.closing:
            return
        buffered, self.buffer = self.buffer, []
        self.buffer_bytes = 0
        self.filling, self.live = False, True
        before = len(statuses)
        frames = self.source.pass_on(statuses)
        self.source.gap.statuses += len(frames)
        log.info("Gap filled: {n} statuses from REST ({repeats} already had), then {live} live events",
                 n=len(frames), repeats=before - len(frames), live=len(buffered))
        frames += self.source.pass_on(buffered)
        if frames:
            self.events.messages(self, frames)

    def _fill_failed(self, failure: Failure) -> None:
        self.step = None
        if failure.check(defer.CancelledError) or self.closing:
            return
        log.failure("Gap fill failed", failure)
        self._filled([])

    def _abandon_fill(self) -> None:
        log.error("Gap fill abandoned: {n} live events ({mb:.1f} MB) held while it ran; statuses of the "
                  "gap not read yet are missing", n=len(self.buffer), mb=self.buffer_bytes / 1e6)
        self.source.gap.failed += 1
        step, self.step = self.step, None
        if step is not None:
            step.cancel()
        self._filled([])

    # -- live ---------------------------------------------------------------------------------

    def inner_alive(self, link: Link) -> None:
        if self.closing:
            return
        self.fresh.add(id(link))
        if len(self.fresh) >= len(self.inner):
            self.fresh.clear()
            self.events.alive(self)

    def inner_messages(self, link: Link, frames: list[bytes]) -> None:
        if self.closing:
            return
        shaped: list[Shaped] = []
        reader = read_ws if isinstance(link, WebSocketLink) else read_shaped
        for frame in frames:
            try:
                s = reader(frame)
            except ShapeError as e:
                self.source.stats.parse_error(e.kind, frame[:120], 1)
                continue
            if s is not None:
                shaped.append(s)
            elif reader is read_ws:  # the server's error frame: a subscription it refused
                log.warn("The Mastodon streaming server says: {error}", error=server_words(frame))
        if self.filling or not self.live:
            self.buffer.extend(shaped)
            self.buffer_bytes += sum(len(s.frame) for s in shaped)
            if self.filling and self.buffer_bytes > self.source.hold_max_bytes:
                self._abandon_fill()
            return
        out = self.source.pass_on(shaped)
        if out:
            self.events.messages(self, out)

    def resubscribe(self, keys: list[StreamKey], request: StreamRequest) -> bool:
        """Subscribe and unsubscribe on the open socket; False when it is not open.
        ``request`` is the new request line (logs, and the next state report)."""
        ws = self.websocket
        if ws is None or not ws.is_open or self.closing:
            return False
        old, new = set(self.keys), set(keys)
        for key in self.keys:
            if key not in new:
                ws.send(subscribe_message(key, "unsubscribe"))
                self.source.newest.pop(key, None)  # re-added later: live from then on
        for key in keys:
            if key not in old:
                ws.send(subscribe_message(key))
        log.info("Mastodon subscriptions now: {streams}", streams=", ".join(label(k) for k in keys))
        self.keys = list(keys)
        self.request = request
        return True

    # -- the end ---------------------------------------------------------------------------------

    def inner_failed(self, link: Link, verdict: Verdict) -> None:
        self.waiting.discard(id(link))
        if self.closing:
            return
        if self.aborted is not None and isinstance(verdict, Retry):
            verdict = self.aborted
        for other in self.inner:
            if other is not link:
                other.close()
        if self.step is not None:
            self.step.cancel()
        self._report(plain_words(verdict))

    def _report(self, verdict: Verdict) -> None:
        if self.reported or self.closing:
            return
        self.reported = True
        self.closing = True  # nothing more from this link
        if self.opened:
            self.events.ended(self, verdict)
        else:
            self.events.refused(self, verdict)

    def abort(self, because: Retry) -> None:
        self.aborted = because
        if self.inner:
            for link in self.inner:
                link.abort(because)
        elif self.step is not None:
            self.step.cancel()
            self._report(because)

    def close(self) -> defer.Deferred[None]:
        self.closing = True
        self.buffer = []  # a gap not filled: the next connection fills it (positions unchanged)
        if self.step is not None:
            self.step.cancel()
        closing = [link.close() for link in self.inner]
        return defer.gatherResults(closing).addCallback(lambda _: None)


def _ws_frame(payload: bytes, is_binary: bool) -> bytes | None:
    """Mastodon sends text frames; the link reshapes them in order, in batches."""
    return payload


def _sse_decoder(key: StreamKey, stats: MastodonStats) -> Callable[[list[SseEvent]], list[bytes]]:
    def decode(events: list[SseEvent]) -> list[bytes]:
        out = []
        for e in events:
            try:
                out.append(shape_sse(e.event, e.data, key).frame)
            except ShapeError as err:
                stats.parse_error(err.kind, (e.data or b"")[:120], 1)
        return out

    return decode
