"""Mastodon's REST side, through treq: discovery, health, and filling a gap.

``MastodonRest.discover`` reads ``/api/v2/instance`` for the streaming
server; ``health`` asks it ``/api/v1/streaming/health`` (``OK``). ``fill``
pages back through one timeline from the newest status down to ``since_id``
(``Link: rel="next"``, ``since_id`` kept on every page, as Mastodon's next
links drop it), at most ``gap_max`` statuses, and stops early while the
account's REST budget (``X-RateLimit-Remaining``, 300 per 5 minutes) is down
to its reserve: the live stream must not starve other clients of the same
account. Every failure is a verdict (``RestError``) in the server's words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import orjson
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from flamingo.sources.mastodon_api import (
    StreamKey,
    http_url,
    id_key,
    is_newer,
    parse_link,
    streaming_base,
    timeline_path,
)
from flamingo.stream.backoff import cause_for_status
from flamingo.stream.source import Fatal, Retry, Verdict

__all__ = ["MastodonRest", "RestError", "RateBudget", "GapResult", "server_words", "plain_words",
           "failure_verdict", "PAGE_LIMIT"]

PAGE_LIMIT = 40  # Mastodon's maximum page
T = TypeVar("T")

MAX_BODY = 4 << 20


class RestError(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict


def server_words(body: bytes | str) -> str:
    """Mastodon's ``{"error": "..."}`` message, else the body's first 200 characters."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text.strip()[:200]
    if isinstance(obj, dict) and isinstance(obj.get("error"), str):
        return str(obj["error"])
    return text.strip()[:200]


def plain_words(verdict: Verdict) -> Verdict:
    """A refused handshake's JSON body (``{"error": ...}``) as the server's plain words."""
    head, sep, body = verdict.message.partition(": ")
    if sep and body.startswith("{"):
        message = f"{head}: {server_words(body)}"
        return Fatal(verdict.cause, message) if isinstance(verdict, Fatal) else Retry(verdict.cause, message)
    return verdict


def status_verdict(code: int, phrase: str, body: bytes) -> Verdict:
    words = server_words(body)
    message = f"HTTP {code} {phrase}".rstrip() + (f": {words}" if words else "")
    cause = cause_for_status(code)
    return Fatal(f"http {code}", message) if cause == "fatal" else Retry(cause, message)


@attrs.define
class RateBudget:
    """What the server last said of the account's REST budget."""

    limit: int | None = None
    remaining: int | None = None
    reset: str | None = None

    def read(self, headers: Headers) -> None:
        def one(name: bytes) -> str | None:
            values = headers.getRawHeaders(name)
            return values[0].decode("latin-1") if values else None

        limit, remaining = one(b"x-ratelimit-limit"), one(b"x-ratelimit-remaining")
        if limit is not None and limit.isdigit():
            self.limit = int(limit)
        if remaining is not None and remaining.isdigit():
            self.remaining = int(remaining)
        self.reset = one(b"x-ratelimit-reset") or self.reset

    def low(self) -> bool:
        """Down to the reserve (5 % of the limit, at least 1) kept for everything else."""
        if self.remaining is None:
            return False
        reserve = max(1, (self.limit or 300) // 20)
        return self.remaining <= reserve

    def to_dict(self) -> dict[str, object]:
        return {"limit": self.limit, "remaining": self.remaining, "reset": self.reset}


@attrs.frozen
class GapResult:
    key: StreamKey
    since_id: str
    statuses: list[tuple[str, bytes]]  # (id, status JSON), oldest first
    pages: int
    complete: bool
    reason: str  # closed | gap_max | rate limit | <the error>


def with_query(url: str, extra: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


class MastodonRest:
    """REST calls with the user's token; one ``RateBudget`` for all of them."""

    def __init__(self, http: HTTPClient, token: str, clock: IReactorTime, timeout: float,
                 user_agent: str) -> None:
        self.http = http
        self.token = token
        self.clock = clock
        self.timeout = timeout
        self.user_agent = user_agent
        self.budget = RateBudget()

    def _headers(self, auth: bool) -> Headers:
        h = Headers({b"User-Agent": [self.user_agent.encode()], b"Accept": [b"application/json"]})
        if auth and self.token:
            h.setRawHeaders(b"Authorization", [f"Bearer {self.token}".encode()])
        return h

    def get(self, url: str, auth: bool = True, follow: bool = False) -> defer.Deferred[tuple[IResponse, bytes]]:
        """(response, body); a network failure or timeout is a RestError(Retry network).
        Redirects are followed only where asked (discovery: an instance that moved),
        never with the token."""
        return defer.Deferred.fromCoroutine(self._get(url, auth, follow))

    async def _get(self, url: str, auth: bool, follow: bool) -> tuple[IResponse, bytes]:
        timed_out: list[bool] = []
        try:
            response = await self._bounded(
                self.http.get(url, headers=self._headers(auth), allow_redirects=follow), timed_out)
            body = await self._bounded(response.content(), timed_out)
        except Exception as e:
            where = urlsplit(url).netloc
            if timed_out:
                raise RestError(Retry("network", f"no answer from {where} within {self.timeout}s")) from None
            if _cancelled(e):
                raise defer.CancelledError() from None  # the caller gave up: not the network's fault
            raise RestError(Retry("network", f"{where}: {e}")) from None  # refused, DNS, TLS, reset
        self.budget.read(response.headers)
        return response, body[:MAX_BODY]

    def _bounded(self, d: defer.Deferred[T], timed_out: list[bool]) -> defer.Deferred[T]:
        """``d``, cancelled after ``timeout`` seconds on the clock (noted in ``timed_out``)."""
        def expire() -> None:
            timed_out.append(True)
            d.cancel()

        timer = self.clock.callLater(self.timeout, expire)

        def settled(result: T | Failure) -> T | Failure:
            if timer.active():
                timer.cancel()
            return result

        return d.addBoth(settled)

    def discover(self, api_url: str) -> defer.Deferred[str]:
        """The streaming server's base URL, from the instance document: ``/api/v2/instance``
        (Mastodon 4.0+), else ``/api/v1/instance`` (older servers and other implementations)."""
        return defer.Deferred.fromCoroutine(self._discover(api_url))

    async def _discover(self, api_url: str) -> str:
        response, body = await self.get(http_url(api_url, "/api/v2/instance"), auth=False, follow=True)
        path = "/api/v2/instance"
        if response.code in (404, 410):
            path = "/api/v1/instance"
            response, body = await self.get(http_url(api_url, path), auth=False, follow=True)
        if response.code != 200:
            raise RestError(status_verdict(response.code, response.phrase.decode("latin-1"), body))
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise RestError(Retry("http", f"{path} is not JSON")) from None
        return streaming_base(doc, api_url)

    def health(self, base: str) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._health(base))

    async def _health(self, base: str) -> None:
        response, body = await self.get(http_url(base, "/api/v1/streaming/health"), auth=False)
        if response.code != 200 or body.strip() != b"OK":
            words = server_words(body)
            raise RestError(Retry("http", f"streaming health check: HTTP {response.code}"
                                          + (f": {words}" if words else "")))

    def fill(self, api_url: str, key: StreamKey, since_id: str, gap_max: int) -> defer.Deferred[GapResult]:
        """The statuses of ``key``'s timeline newer than ``since_id``, oldest first."""
        return defer.Deferred.fromCoroutine(self._fill(api_url, key, since_id, gap_max))

    async def _fill(self, api_url: str, key: StreamKey, since_id: str, gap_max: int) -> GapResult:
        where = timeline_path(key)
        if where is None:
            return GapResult(key, since_id, [], 0, False, "no timeline for this stream")
        path, query = where
        url = http_url(api_url, path, {**query, "since_id": since_id, "limit": str(PAGE_LIMIT)})
        got: dict[str, bytes] = {}
        pages = 0
        reason, complete = "closed", True
        while True:
            if self.budget.low():
                reason, complete = "rate limit", False
                break
            response, body = await self.get(url)
            pages += 1
            if response.code == 429:
                reason, complete = "rate limit", False
                break
            if response.code != 200:
                raise RestError(status_verdict(response.code, response.phrase.decode("latin-1"), body))
            try:
                page = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise RestError(Retry("http", f"{path}: not JSON")) from None
            if not isinstance(page, list) or not page:
                break
            older_seen = False
            for status in page:
                sid = status.get("id") if isinstance(status, dict) else None
                if not isinstance(sid, str):
                    continue
                if not is_newer(sid, since_id):
                    older_seen = True
                    continue
                got.setdefault(sid, orjson.dumps(status))
            if len(got) >= gap_max:
                reason, complete = "gap_max", False
                break
            nxt = parse_link(response.headers.getRawHeaders(b"link", [b""])[0].decode("latin-1")).get("next")
            if older_seen or not nxt:
                break
            url = with_query(nxt, {"since_id": since_id})
        ordered = sorted(got.items(), key=lambda kv: id_key(kv[0]))
        if len(ordered) > gap_max:
            ordered = ordered[len(ordered) - gap_max:]  # the newest: nearest to the live stream
        return GapResult(key, since_id, ordered, pages, complete, reason)


def _cancelled(e: BaseException) -> bool:
    """A request given up by its caller (treq wraps the CancelledError)."""
    if isinstance(e, (defer.CancelledError, ConnectingCancelledError)):
        return True
    if isinstance(e, (ResponseNeverReceived, ResponseFailed)):
        return any(r.check(defer.CancelledError) for r in e.reasons)
    return False


def failure_verdict(failure: Failure) -> Verdict:
    """A RestError's verdict; anything else is the network's."""
    if isinstance(failure.value, RestError):
        return failure.value.verdict
    return Retry("network", failure.getErrorMessage() or "request failed")
