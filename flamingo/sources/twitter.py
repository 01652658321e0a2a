"""Twitter's Streaming API v1.1 as a ``Source``: HTTP lines, params by reconnecting.

The request comes from ``V11Endpoint`` (filter is a signed POST, sample and
firehose a GET); the body is length-delimited or newline JSON, maybe gzip.
Statuses 401/403/404/406/413/416 are fatal, 420/429 rate limits; disconnect
notices 2 (duplicate stream), 6 (token revoked) and 7 (admin logout) are
fatal too: reconnecting would only repeat them. A params change is applied
by reconnecting (the wader overlaps the old and new connections).
"""

from __future__ import annotations

from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IReactorTime
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from flamingo import __version__
from flamingo.config import Config
from flamingo.logs import logger
from flamingo.stream.auth import BasicAuth, BearerAuth, OAuth1
from flamingo.stream.backoff import cause_for_status
from flamingo.stream.endpoints import Endpoint, StreamRequest, endpoint_for
from flamingo.stream.http_lines import HttpLineLink, LineStats, QuietEndpoints
from flamingo.stream.messages import parse_disconnect
from flamingo.stream.source import Fatal, Link, LinkEvents, Params, Retry, Verdict

__all__ = ["TwitterV11Source", "TwitterLineRules", "auth_for", "FATAL_DISCONNECT_CODES"]

log = logger("flamingo.wader")

#: disconnect codes that reconnecting would only repeat (2 duplicate stream,
#: 6 token revoked, 7 admin logout): fatal until params/credentials change or restart.
FATAL_DISCONNECT_CODES = frozenset({2, 6, 7})

Auth = BasicAuth | BearerAuth | OAuth1


class V11Stats(LineStats, TypingProtocol):
    def disconnect_message(self, code: int, reason: str) -> None: ...


def auth_for(config: Config) -> Auth:
    """The request authenticator the config names."""
    if config.auth == "oauth1":
        o = config.oauth
        return OAuth1(o.consumer_key or "", o.consumer_secret or "", o.token or "",
                      o.token_secret or "")
    if config.auth == "bearer":
        return BearerAuth(config.bearer_token or "")
    return BasicAuth(config.username or "", config.password or "")


class TwitterLineRules:
    """One v1.1 connection's notices: disconnect messages, statuses, ends."""

    def __init__(self, stats: V11Stats) -> None:
        self.stats = stats
        self.code: int | None = None
        self.reason = ""

    def inspect(self, frames: list[bytes]) -> None:
        for frame in frames:
            if frame.startswith(b'{"disconnect"'):
                self._disconnect(frame)

    def _disconnect(self, frame: bytes) -> None:
        parsed = parse_disconnect(frame)
        if parsed is None:
            return
        code, reason = parsed
        self.code, self.reason = code, reason
        self.stats.disconnect_message(code, reason)
        log.warn("Disconnect message from the server: code {code}: {reason}",
                 code=code, reason=reason)

    def fatal_seen(self) -> Fatal | None:
        if self.code in FATAL_DISCONNECT_CODES:
            return Fatal(f"disconnect {self.code}", f"disconnect {self.code}: {self.reason}")
        return None

    def on_end(self, clean: bool, why: str) -> Verdict:
        if self.code is not None:
            return Retry("dropped", f"disconnect {self.code}: {self.reason}")
        if clean:
            return Retry("dropped", "the server ended the stream")
        return Retry("dropped", f"connection lost: {why}")

    def on_status(self, code: int, phrase: str, body: str) -> Verdict:
        message = f"HTTP {code} {phrase}" + (f": {body}" if body else "")
        cause = cause_for_status(code)
        if cause == "fatal":
            return Fatal(f"http {code}", message)
        return Retry(cause, message)


class TwitterV11Source:
    """statuses/filter, sample, firehose over HTTP; ``reactor`` connects, ``clock`` times."""

    def __init__(self, config: Config, reactor: IReactorTime, clock: IReactorTime,
                 stats: V11Stats, endpoint: Endpoint | None = None,
                 auth: Auth | None = None, agent: IAgent | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.clock = clock
        self.stats = stats
        self.endpoint = endpoint if endpoint is not None else endpoint_for(config)
        self.auth = auth if auth is not None else auth_for(config)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent: IAgent = agent if agent is not None else Agent.usingEndpointFactory(
            reactor, QuietEndpoints(reactor), pool=self.pool)

    @property
    def stream(self) -> str:
        return self.endpoint.stream

    def request(self, params: Params) -> StreamRequest | None:
        if self.endpoint.needs_params() and not self.endpoint.has_params(params):
            return None
        return self.endpoint.request(params)

    def headers(self, request: StreamRequest) -> Headers:
        # POST: the form body is signed; GET: the query, once, through the URL
        signed = request.form if request.method == "POST" else ()
        h = Headers({
            b"User-Agent": [f"Flamingo/{__version__}".encode()],
            b"Authorization": [self.auth.header(request.method, request.url, signed)],
        })
        if self.config.wader.gzip:
            h.addRawHeader(b"Accept-Encoding", b"deflate, gzip")
        if request.content_type:
            h.addRawHeader(b"Content-Type", request.content_type)
        return h

    def open(self, request: StreamRequest, events: LinkEvents) -> HttpLineLink:
        w = self.config.wader
        return HttpLineLink(request, self.headers(request), TwitterLineRules(self.stats), events,
                            agent=self.agent, clock=self.clock, turns=self.reactor,
                            stats=self.stats, connect_timeout=w.connect_timeout,
                            max_message_bytes=w.max_message_bytes)

    def apply_params(self, link: Link, params: Params) -> bool:
        return False  # v1.1 takes predicates only with a new request

    def close_idle(self) -> None:
        self.pool.closeCachedConnections()
