"""X API v2 streams as a ``Source``: NDJSON over HTTP, rules through their own API.

Streams: ``filter`` (``/2/tweets/search/stream``; what it delivers is set by
rules, reconciled by ``flamingo/sources/xrules/``, never by reconnecting), ``sample``,
``sample10`` and ``firehose`` (a partition), and the compliance streams.
The request asks for the fields and expansions of ``x:`` and, when set,
``backfill_minutes`` on every connection: what X re-sends that the journal
already holds is dropped by id (``RecentIds``, rebuilt from the journal's
tail at the first connection, so a restart, even after ``kill -9``, keeps
nothing twice).

Verdicts follow X's "handling disconnections" page: network errors back off
linearly, HTTP errors exponentially from 5 s, 429 from 60 s; an in-stream
``operational-disconnect`` reconnects at once; ``TooManyConnections`` (another
client holds the app's connection) waits as a rate limit and says so; 400,
401, 403 and 404 are fatal with X's own message. On pay-per-use (one
connection per app) a restart closes the current stream before it opens the
next, instead of the wader's overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol as TypingProtocol
from urllib.parse import urlencode

import attrs
import orjson
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from flamingo import __version__
from flamingo.config import Config, XConfig
from flamingo.logs import logger
from flamingo.sources.x_messages import post_id
from flamingo.stream.auth import BearerAuth
from flamingo.stream.backoff import cause_for_status
from flamingo.stream.endpoints import StreamRequest
from flamingo.stream.http_lines import HttpLineLink, LineStats, QuietEndpoints
from flamingo.stream.overlap import RecentIds
from flamingo.stream.source import Fatal, JournalTail, Link, LinkEvents, Params, Retry, Verdict

__all__ = ["XSource", "XLineRules", "XRequests", "XStats", "PATHS", "TOO_MANY_CONNECTIONS", "NO_RULES",
           "x_error_message"]

log = logger("flamingo.wader")

PATHS: Mapping[str, str] = {
    "filter": "/2/tweets/search/stream",
    "sample": "/2/tweets/sample/stream",
    "sample10": "/2/tweets/sample10/stream",
    "firehose": "/2/tweets/firehose/stream",
    "tweets-compliance": "/2/tweets/compliance/stream",
    "users-compliance": "/2/users/compliance/stream",
}
_POST_STREAMS = frozenset({"filter", "sample", "sample10", "firehose"})
_FIELDS = (("tweet.fields", "tweet_fields"), ("expansions", "expansions"), ("user.fields", "user_fields"),
           ("media.fields", "media_fields"), ("poll.fields", "poll_fields"), ("place.fields", "place_fields"))

#: the state message while another client holds the app's connection
TOO_MANY_CONNECTIONS = ("TooManyConnections: another client holds this app's streaming connection "
                        "(pay-per-use allows one); waiting as for a rate limit")
#: the state message while the filter stream waits for its first rule
NO_RULES = "no rules at X yet: the filter stream opens once one is active (flamingo rules add ...)"
#: statuses X answers for a request that retrying would only repeat
FATAL = frozenset({400, 401, 403, 404})
_OPERATIONAL = ("operational-disconnect", "operationaldisconnect")


class XStats(LineStats, TypingProtocol):
    def duplicates(self, n: int) -> None: ...


@attrs.frozen
class XRequests:
    """The stream request from the ``x:`` config (pure)."""

    base_url: str
    stream: str
    x: XConfig

    def query(self) -> list[tuple[str, str]]:
        q: list[tuple[str, str]] = []
        if self.stream in _POST_STREAMS:
            for name, attr in _FIELDS:
                values: tuple[str, ...] = getattr(self.x, attr)
                if values:
                    q.append((name, ",".join(values)))
        if self.x.partition is not None:
            q.append(("partition", str(self.x.partition)))
        if self.x.backfill_minutes:
            q.append(("backfill_minutes", str(self.x.backfill_minutes)))
        return q

    def request(self) -> StreamRequest:
        path = PATHS[self.stream]
        query = self.query()
        qs = urlencode(query, safe=",.")
        url = self.base_url.rstrip("/") + path + (f"?{qs}" if qs else "")
        return StreamRequest(method="GET", url=url, body=None, form=tuple(query),
                             request_line=path + (f"?{qs}" if qs else ""))


def x_error_message(body: str) -> str:
    """X's words from an error body (``title: detail``, or each error's), else the body."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(doc, dict):
        return body
    errors = doc.get("errors")
    items = errors if isinstance(errors, list) and errors else [doc]
    parts = []
    for e in items:
        if not isinstance(e, dict):
            continue
        words = [str(e[k]) for k in ("title", "detail", "message") if isinstance(e.get(k), str) and e[k]]
        issue = e.get("connection_issue")
        if isinstance(issue, str) and issue not in words:
            words.insert(0, issue)
        if words:
            parts.append(": ".join(dict.fromkeys(words)))
    return "; ".join(parts) or body


def _too_many(text: str) -> bool:
    return "TooManyConnections" in text


class XLineRules:
    """One v2 connection's in-stream errors, statuses and end."""

    def __init__(self) -> None:
        self.operational: str | None = None  # X's message of an operational disconnect
        self.too_many: str | None = None
        self.capped: str | None = None  # the app's post allowance is used up (UsageCapExceeded)
        self.other_errors = 0  # logged at the 1st, 2nd, 4th, 8th...: a hostile server cannot flood the log

    def inspect(self, frames: list[bytes]) -> None:
        for frame in frames:
            if frame.startswith(b'{"errors"'):
                self._errors(frame)

    def _errors(self, frame: bytes) -> None:
        try:
            doc = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if not isinstance(errors, list):
            return
        for e in errors:
            if not isinstance(e, dict):
                continue
            title = str(e.get("title", ""))
            message = x_error_message(orjson.dumps(e).decode())
            if title.lower() in _OPERATIONAL or e.get("disconnect_type"):
                self.operational = message
                log.warn("X disconnects this stream for operational reasons ({message}): "
                         "reconnecting at once", message=message)
            elif _too_many(str(e.get("connection_issue", ""))):
                self.too_many = message
            elif title == "UsageCapExceeded":
                self.capped = message
                log.error("X ends the stream: {message} (reconnecting is refused until the cap resets)",
                          message=message)
            else:
                self.other_errors += 1
                if self.other_errors & (self.other_errors - 1) == 0:
                    log.warn("Error line from X (#{n} on this connection): {message}",
                             n=self.other_errors, message=message[:500])

    def fatal_seen(self) -> Fatal | None:
        return None

    def on_end(self, clean: bool, why: str) -> Verdict:
        if self.too_many is not None:
            return Retry("rate_limit", f"{TOO_MANY_CONNECTIONS} ({self.too_many})")
        if self.capped is not None:
            return Retry("rate_limit", self.capped)
        if self.operational is not None:
            return Retry("dropped", f"operational disconnect: {self.operational}")
        if clean:
            return Retry("dropped", "X ended the stream")
        return Retry("dropped", f"connection lost: {why}")

    def on_status(self, code: int, phrase: str, body: str) -> Verdict:
        words = x_error_message(body) if body else ""
        message = f"HTTP {code} {phrase}" + (f": {words}" if words else "")
        if code == 429 and _too_many(body):
            return Retry("rate_limit", f"{TOO_MANY_CONNECTIONS} (HTTP 429: {words})")
        if code == 409 and "RuleConfigurationIssue" in body:
            # the filter stream opens once a rule is active: the rules service retries then at once
            return Retry("http", f"{NO_RULES} (HTTP 409: {words})")
        if code in FATAL:
            return Fatal(f"http {code}", message)
        cause = cause_for_status(code)
        return Retry("http" if cause == "fatal" else cause, message)


class _Deduped:
    """The link's events with posts already seen dropped (backfill, X's own repeats).

    ``alias``: the link the wader knows, when the transport's link sits inside it
    (a replacement that waits for its predecessor to close, ``_AfterClose``)."""

    def __init__(self, events: LinkEvents, source: XSource, alias: Link | None = None) -> None:
        self.events = events
        self.source = source
        self.alias = alias

    def responded(self, link: Link) -> None:
        self.events.responded(self.alias or link)

    def refused(self, link: Link, verdict: Verdict) -> None:
        self.events.refused(self.alias or link, verdict)

    def alive(self, link: Link) -> None:
        self.events.alive(self.alias or link)

    def ended(self, link: Link, verdict: Verdict) -> None:
        self.events.ended(self.alias or link, verdict)

    def messages(self, link: Link, frames: list[bytes]) -> None:
        frames = self.source.drop_seen(frames)
        if frames:
            self.events.messages(self.alias or link, frames)


class _AfterClose:
    """A replacement that connects once the stream it replaces is closed.

    Pay-per-use allows one connection per app: the wader's overlap (connect the
    new stream, then drop the old one) would be refused with TooManyConnections.
    The old stream is closed first (what it received is handed on) and reported
    ended, so the wader waits on this one as it does when an old stream ends
    during a switch; repeats are dropped by id as after any reconnect.
    """

    def __init__(self, request: StreamRequest, start: Callable[[_AfterClose], HttpLineLink],
                 before: defer.Deferred[None]) -> None:
        self.request = request
        self._start = start
        self.inner: HttpLineLink | None = None
        self.closing = False
        self._aborted: Retry | None = None
        before.addCallback(self._go)

    @property
    def request_line(self) -> str:
        return self.request.request_line

    @property
    def finished(self) -> bool:
        return self.inner.finished if self.inner is not None else self.closing

    def _go(self, _: object) -> None:
        if self.closing:
            return
        self.inner = self._start(self)
        if self._aborted is not None:
            self.inner.abort(self._aborted)

    def abort(self, because: Retry) -> None:
        if self.inner is not None:
            self.inner.abort(because)
        else:
            self._aborted = because

    def close(self) -> defer.Deferred[None]:
        self.closing = True
        return self.inner.close() if self.inner is not None else defer.succeed(None)


class XSource:
    """X API v2 streams over HTTP; ``reactor`` connects, ``clock`` times."""

    def __init__(self, config: Config, reactor: IReactorTime, clock: IReactorTime, stats: XStats,
                 journal: JournalTail | None = None, agent: IAgent | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.clock = clock
        self.stats = stats
        self.journal = journal
        self.requests = XRequests(config.api.url, config.stream, config.x)
        self.auth = BearerAuth(config.bearer_token or "")
        self.seen = RecentIds(config.wader.dedupe_window)
        #: pay-per-use: one connection per app, so a restart closes before it reconnects
        self.one_connection = config.x.tier == "pay-per-use"
        self.current: _AfterClose | HttpLineLink | None = None  # the last link opened
        self.seeded = journal is None
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent: IAgent = agent if agent is not None else Agent.usingEndpointFactory(
            reactor, QuietEndpoints(reactor), pool=self.pool)

    @property
    def stream(self) -> str:
        return self.requests.stream

    def request(self, params: Params) -> StreamRequest:
        return self.requests.request()  # rules are not params: the stream opens without any

    def headers(self) -> Headers:
        h = Headers({b"User-Agent": [f"Flamingo/{__version__}".encode()],
                     b"Authorization": [self.auth.header("GET", "", ())]})
        if self.config.wader.gzip:
            h.addRawHeader(b"Accept-Encoding", b"gzip")
        return h

    def open(self, request: StreamRequest, events: LinkEvents) -> Link:
        self._seed()
        current = self.current
        if self.one_connection and current is not None and not current.finished and not current.closing:
            # a replacement (restart): X would refuse a second connection
            log.info("X allows this app one connection: closing the current stream before its replacement")
            closed = current.close()
            events.ended(current, Retry("dropped", "closed for its replacement (one connection per app)"))
            link: _AfterClose | HttpLineLink = _AfterClose(
                request, lambda outer: self._link(request, _Deduped(events, self, outer)), closed)
        else:
            link = self._link(request, _Deduped(events, self))
        self.current = link
        return link

    def _link(self, request: StreamRequest, events: LinkEvents) -> HttpLineLink:
        w = self.config.wader
        return HttpLineLink(request, self.headers(), XLineRules(), events,
                            agent=self.agent, clock=self.clock, turns=self.reactor, stats=self.stats,
                            connect_timeout=w.connect_timeout, max_message_bytes=w.max_message_bytes)

    def apply_params(self, link: Link, params: Params) -> bool:
        return True  # X's streams take no params (filter rules go through the rules API)

    def close_idle(self) -> None:
        self.pool.closeCachedConnections()

    # -- repeats --------------------------------------------------------------------

    def _seed(self) -> None:
        """The ids of the posts the journal holds last (the journal is open by the first
        connection, not when the source is built)."""
        if self.seeded or self.journal is None:
            return
        self.seeded = True
        n = 0
        for frame in self.journal.tail(self.config.wader.dedupe_window):
            key = post_id(frame)
            if key is not None:
                self.seen.add(key)
                n += 1
        if n:
            log.info("{n} post ids from the journal's tail remembered: repeats X sends are dropped", n=n)

    def drop_seen(self, frames: list[bytes]) -> list[bytes]:
        kept: list[bytes] = []
        seen = self.seen
        for f in frames:
            key = post_id(f)
            if key is not None:
                if key in seen:
                    continue
                seen.add(key)
            kept.append(f)
        if len(kept) != len(frames):
            self.stats.duplicates(len(frames) - len(kept))
        return kept
