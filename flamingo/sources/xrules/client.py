"""X's filtered-stream rules API over treq: list (paged), add (dry run or not), delete.

Each call answers with X's own words or fails with ``RulesApiError`` naming
the cause the reconciler backs off by: ``network`` (no answer), ``http``
(5xx and other retryable statuses), ``rate_limit`` (429: the rules API
allows 100 POSTs per 15 minutes; X's reset time is kept), ``fatal`` (401,
403: the token; retried only at the periodic pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs
import orjson
import treq
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from flamingo import __version__
from flamingo.sources.x import x_error_message
from flamingo.sources.xrules.model import RemoteRule, Rule

__all__ = ["RulesApi", "TreqRulesApi", "RulesApiError", "AddResult", "RULES_PATH", "parse_add"]

RULES_PATH = "/2/tweets/search/stream/rules"
MAX_ERROR_BODY = 4096


@attrs.define(eq=False)
class RulesApiError(Exception):
    """A rules call that did not go through, and why."""

    cause: str  # network | http | rate_limit | fatal
    message: str
    reset_at: float | None = None  # epoch seconds X says the rate limit resets

    def __str__(self) -> str:
        return self.message


@attrs.frozen
class AddResult:
    """X's answer to an add: the rules created (or valid, on a dry run) and the refused ones."""

    ids: dict[str, str] = attrs.Factory(dict)  # value -> id (empty ids on a dry run)
    rejected: dict[str, str] = attrs.Factory(dict)  # value -> X's message


class RulesApi(Protocol):
    """The three rules calls the reconciler makes (``TreqRulesApi``; a fake X in tests)."""

    def list(self) -> defer.Deferred[list[RemoteRule]]: ...

    def add(self, rules: Sequence[Rule], dry_run: bool) -> defer.Deferred[AddResult]: ...

    def delete(self, ids: Sequence[str]) -> defer.Deferred[int]: ...


def parse_add(doc: object, sent: Sequence[Rule], dry_run: bool) -> AddResult:
    """X's add answer: ``data`` (created or valid rules), ``errors`` per rule.

    A ``DuplicateRule`` error means X holds that value already: its id counts as created.
    """
    ids: dict[str, str] = {}
    rejected: dict[str, str] = {}
    values = {r.value for r in sent}
    for item in _items(doc, "data"):
        if isinstance(item, dict) and item.get("value") in values:
            ids[item["value"]] = str(item.get("id") or "")
    for err in _items(doc, "errors"):
        if not isinstance(err, dict):
            continue
        value = err.get("value")
        if value not in values:
            continue
        if err.get("title") == "DuplicateRule" and err.get("id"):
            ids[value] = str(err["id"])
            continue
        details = err.get("details")
        words = x_error_message(orjson.dumps({k: v for k, v in err.items() if k != "value"}).decode())
        if isinstance(details, list) and details:
            words = f"{words}: {'; '.join(map(str, details))}"
        rejected[value] = words
    if dry_run:
        # a dry run that neither lists nor refuses a rule did not judge it: not an error
        ids = {v: "" for v in ids}
    return AddResult(ids=ids, rejected=rejected)


def _items(doc: object, key: str) -> Sequence[object]:
    """``doc[key]`` of a JSON object, or nothing (absent, null, or not a list)."""
    items = doc.get(key) if isinstance(doc, dict) else None
    return items if isinstance(items, list) else ()


def _get(doc: object, key: str) -> object:
    """``doc[key]`` if ``doc`` is a JSON object."""
    return doc.get(key) if isinstance(doc, dict) else None


def _remote(item: object) -> RemoteRule | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("value"), str):
        return None
    tag = item.get("tag")
    return RemoteRule(id=item["id"], value=item["value"], tag=tag if isinstance(tag, str) else None)


class TreqRulesApi:
    """The rules endpoints of ``base_url`` with the app's bearer token; ``clock`` times the calls."""

    def __init__(self, http: treq.client.HTTPClient, base_url: str, token: str, clock: IReactorTime,
                 timeout: float = 10.0, page_size: int = 1000) -> None:
        self.http = http
        self.url = base_url.rstrip("/") + RULES_PATH
        self._token = token
        self.clock = clock
        self.timeout = timeout
        self.page_size = page_size
        self.calls: list[str] = []  # what was sent ("GET", "POST add dry_run", ...), for status and tests

    def _headers(self) -> Headers:
        return Headers({b"Authorization": [f"Bearer {self._token}".encode()],
                        b"User-Agent": [f"Flamingo/{__version__}".encode()]})

    async def _call(self, method: str, params: dict[str, str], body: object | None) -> object:
        headers = self._headers()
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers.addRawHeader(b"Content-Type", b"application/json")
        d = self.http.request(method, self.url, params=params, headers=headers, data=data)
        d.addTimeout(self.timeout, self.clock)
        try:
            response: IResponse = await d
            content = await _bounded(treq.content(response), self.timeout, self.clock)
        except (defer.TimeoutError, defer.CancelledError):
            raise RulesApiError("network", f"X's rules API gave no answer within {self.timeout:g}s") from None
        except Exception as e:  # connection refused, reset, DNS: the network
            raise RulesApiError("network", f"X's rules API unreachable: {e}") from None
        if response.code == 200 or response.code == 201:
            try:
                doc: object = orjson.loads(content)
                return doc
            except orjson.JSONDecodeError:
                raise RulesApiError("http", f"X's rules API answered {response.code} with no JSON") from None
        text = x_error_message(content[:MAX_ERROR_BODY].decode("utf-8", "replace").strip())
        message = f"HTTP {response.code}" + (f": {text}" if text else "")
        if response.code == 429:
            reset = response.headers.getRawHeaders(b"x-rate-limit-reset", [b""])[0]
            raise RulesApiError("rate_limit", message, float(reset) if reset.isdigit() else None)
        if response.code in (401, 403):
            raise RulesApiError("fatal", message)
        raise RulesApiError("http", message)

    async def _pages(self) -> list[RemoteRule]:
        rules: list[RemoteRule] = []
        params = {"max_results": str(self.page_size)}
        while True:
            self.calls.append("GET")
            doc = await self._call("GET", params, None)
            for item in _items(doc, "data"):
                r = _remote(item)
                if r is not None:
                    rules.append(r)
            token = _get(_get(doc, "meta"), "next_token")
            if not isinstance(token, str) or not token:
                return rules
            params = {"max_results": str(self.page_size), "pagination_token": token}

    def list(self) -> defer.Deferred[list[RemoteRule]]:
        return defer.Deferred.fromCoroutine(self._pages())

    def add(self, rules: Sequence[Rule], dry_run: bool) -> defer.Deferred[AddResult]:
        return defer.Deferred.fromCoroutine(self._add(rules, dry_run))

    async def _add(self, rules: Sequence[Rule], dry_run: bool) -> AddResult:
        self.calls.append("POST add dry_run" if dry_run else "POST add")
        body = {"add": [{"value": r.value, **({"tag": r.tag} if r.tag else {})} for r in rules]}
        doc = await self._call("POST", {"dry_run": "true"} if dry_run else {}, body)
        return parse_add(doc, rules, dry_run)

    def delete(self, ids: Sequence[str]) -> defer.Deferred[int]:
        return defer.Deferred.fromCoroutine(self._delete(ids))

    async def _delete(self, ids: Sequence[str]) -> int:
        self.calls.append("POST delete")
        doc = await self._call("POST", {}, {"delete": {"ids": list(ids)}})
        deleted = _get(_get(_get(doc, "meta"), "summary"), "deleted")
        return deleted if isinstance(deleted, int) else len(ids)


def _bounded(d: defer.Deferred[bytes], timeout: float, clock: IReactorTime) -> defer.Deferred[bytes]:
    d.addTimeout(timeout, clock)
    return d
