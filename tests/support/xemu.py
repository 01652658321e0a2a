"""The X API v2 emulator in a trial test, and small clients for its routes.

    emu = start_x_emulator(self, clock=clock, rate=50, bearer_token="T")
    resp = yield rules_post(emu, {"add": [{"value": "#python", "tag": "py"}]}, token="T")
    client = yield stream(self, emu, "/2/tweets/search/stream", token="T")
    yield client.wait_for(lambda: len(posts(client)) >= 5)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import attrs
import orjson
from twisted.internet import defer

from flamingo._types import JsonObject
from flamingo.emulator import Emulator
from tests.support.emulator import RawClient, request, start_emulator

__all__ = ["start_x_emulator", "Answer", "call", "rules_get", "rules_post", "stream", "lines", "posts", "FILTER",
           "RULES"]

FILTER = "/2/tweets/search/stream"
RULES = "/2/tweets/search/stream/rules"


def start_x_emulator(testcase: Any, **option_values: Any) -> Emulator:
    """A listening ``source="x"`` emulator on 127.0.0.1 (random port), stopped at cleanup."""
    option_values.setdefault("source", "x")
    return start_emulator(testcase, **option_values)


@attrs.frozen
class Answer:
    """A complete (non-streaming) response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@defer.inlineCallbacks
def _complete(emu: Emulator, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Any:
    client: RawClient = yield request(emu.port, method, target, headers=headers, body=body)
    yield client.closed
    head, _, payload = client.raw.partition(b"\r\n\r\n")
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    return Answer(int(head.split(b" ", 2)[1]), fields, payload)


def call(emu: Emulator, method: str, path: str, token: str | None = None, **query: Any) -> defer.Deferred:
    """Any other complete request (``GET /2/connections``, ``DELETE /2/connections/all``) → ``Answer``."""
    target = path + ("?" + urlencode(query) if query else "")
    return _complete(emu, method, target, _auth(token))


def rules_get(emu: Emulator, token: str | None = None, **query: Any) -> defer.Deferred:
    """``GET /2/tweets/search/stream/rules`` → ``Answer``."""
    target = RULES + ("?" + urlencode(query) if query else "")
    return _complete(emu, "GET", target, _auth(token))


def rules_post(emu: Emulator, body: JsonObject | bytes, token: str | None = None, **query: Any) -> defer.Deferred:
    """``POST /2/tweets/search/stream/rules`` with a JSON body → ``Answer``."""
    target = RULES + ("?" + urlencode(query) if query else "")
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return _complete(emu, "POST", target, {**_auth(token), "Content-Type": "application/json"}, data)


@defer.inlineCallbacks
def stream(testcase: Any, emu: Emulator, path: str = FILTER, token: str | None = None, **query: Any) -> Any:
    """Open a stream (closed at cleanup); returns the ``RawClient`` once the status line is in."""
    target = path + ("?" + urlencode(query) if query else "")
    client: RawClient = yield request(emu.port, "GET", target, headers=_auth(token), testcase=testcase)
    yield client.wait_for(lambda: client.status is not None and b"\r\n\r\n" in client.raw)
    return client


def lines(client: RawClient) -> list[bytes]:
    """Complete lines of a stream's body, keep-alives included as ``b""``."""
    body = client.body()
    return body.split(b"\r\n")[:-1]


def posts(client: RawClient) -> list[JsonObject]:
    """The decoded non-empty lines received so far."""
    return [orjson.loads(line) for line in lines(client) if line]
