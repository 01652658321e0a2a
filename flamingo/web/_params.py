"""Request parameters, from the query string, a JSON body or a form body.

Pure functions (no Twisted): the API hands them the raw pieces of a request
and gets back ``dict[str, list[str]]`` or a :class:`BadRequest` naming what is
wrong. The original Flamingo read everything from Sinatra's ``params`` and
split values on commas; we keep that, and accept JSON lists as well.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs

import attrs

__all__ = [
    "BadRequest",
    "RequestParams",
    "parse_request",
    "split_values",
    "parse_bool",
    "parse_int",
]

Params = dict[str, list[str]]


@attrs.define(eq=False)
class BadRequest(Exception):
    """Malformed input (REST: 400)."""

    message: str
    detail: Any = None

    def __str__(self) -> str:
        return self.message


@attrs.frozen
class RequestParams:
    """Every parameter of one request, merged from query and body.

    ``values`` keeps each raw value as given (strings; JSON scalars are turned
    into strings, JSON lists into several values), in order: query first.
    """

    values: Mapping[str, tuple[str, ...]]

    def names(self) -> list[str]:
        return list(self.values)

    def has(self, name: str) -> bool:
        return name in self.values

    def raw(self, name: str) -> tuple[str, ...]:
        return self.values.get(name, ())

    def one(self, name: str) -> str | None:
        """The last value given for ``name`` (as Sinatra's params did), or None."""
        vals = self.values.get(name)
        return vals[-1] if vals else None

    def split(self, name: str) -> list[str] | None:
        """Comma-split values of ``name`` (``a,b`` and ``[a, b]`` alike), or None if absent."""
        if name not in self.values:
            return None
        return split_values(self.values[name])


def split_values(raw: Iterable[str]) -> list[str]:
    """``["a,b", " c "]`` -> ``["a", "b", "c"]``; empty pieces are dropped."""
    out: list[str] = []
    for item in raw:
        for piece in item.split(","):
            piece = piece.strip()
            if piece:
                out.append(piece)
    return out


def _scalar(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if value is None:
        return ""
    raise BadRequest(f"{name}: expected a string, a number or a list of them",
                     {"field": name, "got": type(value).__name__})


def _from_json(body: bytes) -> dict[str, list[str]]:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest("body is not valid JSON", str(e)) from None
    if not isinstance(data, dict):
        raise BadRequest("a JSON body must be an object", {"got": type(data).__name__})
    out: dict[str, list[str]] = {}
    for key, value in data.items():
        if isinstance(value, list):
            out[key] = [_scalar(key, v) for v in value]
        else:
            out[key] = [_scalar(key, value)]
    return out


def _from_form(body: bytes) -> dict[str, list[str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("form body is not UTF-8") from None
    return parse_qs(text, keep_blank_values=True)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_request(query: Mapping[bytes, list[bytes]], content_type: str | None,
                  body: bytes) -> RequestParams:
    """Merge query arguments and the body (JSON or form, as Content-Type says).

    An empty body is fine with any Content-Type; a non-empty body of another
    type is refused, so a client never believes values were applied.
    """
    merged: dict[str, list[str]] = {}
    for k, vs in query.items():
        try:
            key = k.decode("utf-8")
            merged.setdefault(key, []).extend(v.decode("utf-8") for v in vs)
        except UnicodeDecodeError:
            raise BadRequest("query string is not UTF-8") from None
    if body.strip():
        media = _media_type(content_type)
        if media == "application/json" or media.endswith("+json"):
            extra = _from_json(body)
        elif media in ("application/x-www-form-urlencoded", ""):
            extra = _from_form(body)
        else:
            raise BadRequest(f"unsupported Content-Type {media!r}",
                             {"accepted": ["application/json",
                                           "application/x-www-form-urlencoded"]})
        for key, vs in extra.items():
            merged.setdefault(key, []).extend(vs)
    return RequestParams({k: tuple(v) for k, v in merged.items()})


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(name: str, value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise BadRequest(f"{name}: expected true or false", {"field": name, "got": value})


def parse_int(name: str, value: str | None) -> int | None:
    """An integer, or None for absent/empty/``null``; anything else is a 400."""
    if value is None or value.strip().lower() in ("", "null", "none"):
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise BadRequest(f"{name}: expected an integer", {"field": name, "got": value}) from None
