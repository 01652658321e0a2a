"""Which request opens a stream: URL, method, body, per API version.

``endpoint_for(config)`` picks an ``Endpoint``; ``endpoint.request(params)``
turns the stream's params (``{"track": ["austin", "#etsy"]}``) into a
``StreamRequest`` the wader sends. ``request_line`` is what logs and status
show: path and predicates, never credentials nor protocol switches, as the
original printed it (``/1.1/statuses/filter.json?track=%23etsy,austin``).

X API v2 (a later issue) adds another ``Endpoint`` class with the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol
from urllib.parse import quote, urlencode

import attrs

from flamingo.config import Config

__all__ = ["StreamRequest", "Endpoint", "V11Endpoint", "endpoint_for", "FILTER_PARAMS"]

#: the filter stream's parameters, in the order they are sent
FILTER_PARAMS = ("track", "follow", "locations", "language", "filter_level")
_PREDICATES = ("track", "follow", "locations")


@attrs.frozen
class StreamRequest:
    method: str  # "GET" | "POST"
    url: str  # full URL, with the query string for GET
    body: bytes | None  # form-encoded for POST
    form: tuple[tuple[str, str], ...]  # every parameter sent (for OAuth signing)
    request_line: str  # for logs and status: no secrets

    @property
    def content_type(self) -> bytes | None:
        return b"application/x-www-form-urlencoded" if self.body is not None else None


class Endpoint(Protocol):
    @property
    def stream(self) -> str: ...

    def request(self, params: Mapping[str, Sequence[str]]) -> StreamRequest: ...

    def needs_params(self) -> bool: ...

    def has_params(self, params: Mapping[str, Sequence[str]]) -> bool: ...


def _line_value(values: Sequence[str]) -> str:
    return quote(",".join(values), safe=",")


@attrs.frozen
class V11Endpoint:
    """Twitter Streaming API v1.1: statuses/filter (POST), sample and firehose (GET)."""

    base_url: str
    stream: str = "filter"
    delimited: bool = True
    stall_warnings: bool = True

    PATHS = {"filter": "/1.1/statuses/filter.json", "sample": "/1.1/statuses/sample.json",
             "firehose": "/1.1/statuses/firehose.json"}

    @property
    def path(self) -> str:
        return self.PATHS[self.stream]

    def needs_params(self) -> bool:
        return self.stream == "filter"

    def has_params(self, params: Mapping[str, Sequence[str]]) -> bool:
        return any(params.get(p) for p in _PREDICATES)

    def request(self, params: Mapping[str, Sequence[str]]) -> StreamRequest:
        predicates: list[tuple[str, str]] = []
        if self.stream == "filter":
            for name in FILTER_PARAMS:
                values = params.get(name)
                if values:
                    predicates.append((name, ",".join(values)))
        elif params.get("language"):  # sample accepts language too
            predicates.append(("language", ",".join(params["language"])))
        switches: list[tuple[str, str]] = []
        if self.delimited:
            switches.append(("delimited", "length"))
        if self.stall_warnings:
            switches.append(("stall_warnings", "true"))
        form = tuple(predicates + switches)
        shown = "&".join(f"{k}={_line_value(v.split(','))}" for k, v in predicates)
        request_line = self.path + (f"?{shown}" if shown else "")
        url = self.base_url.rstrip("/") + self.path
        if self.stream == "filter":
            return StreamRequest("POST", url, urlencode(form).encode("ascii"), form, request_line)
        query = urlencode(form)
        return StreamRequest("GET", url + (f"?{query}" if query else ""), None, form,
                             request_line)


def endpoint_for(config: Config) -> Endpoint:
    """The v1.1 endpoint the config asks for (``stream``)."""
    if config.source != "twitter":
        raise ValueError(f"source {config.source!r} has no v1.1 endpoint")
    return V11Endpoint(base_url=config.api.url, stream=config.stream,
                       delimited=config.wader.delimited,
                       stall_warnings=config.wader.stall_warnings)
