"""Request parameters, from the query string, a JSON body or a form body.

Pure functions (no Twisted): the API hands them the raw pieces of a request
and gets back ``dict[str, list[str]]`` or a :class:`BadRequest` naming what is
wrong. The original Flamingo read everything from Sinatra's ``params`` and
split values on commas; we keep that, and accept JSON lists as well.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs

import attrs

from flamingo.domain.predicates import split_values

__all__ = [
    "BadRequest",
    "RequestParams",
    "parse_request",
    "split_values",
    "parse_bool",
    "check_known",
    "parse_int",
]

Params = dict[str, list[str]]


@attrs.define(eq=False)
class BadRequest(Exception):
    """Malformed input (REST: 400)."""

    message: str
    detail: object = None

    def __str__(self) -> str:
        return self.message


@attrs.frozen
class RequestParams:
    """Every parameter of one request, merged from query and body.

    ``values`` keeps each raw value as given (strings; JSON scalars are turned
    into strings, JSON lists into several values), in order: query first.
    """

    values: Mapping[str, tuple[str, ...]]
    lists: frozenset[str] = frozenset()  # given as JSON arrays

    def names(self) -> list[str]:
        return list(self.values)

    def has(self, name: str) -> bool:
        return name in self.values

    def raw(self, name: str) -> tuple[str, ...]:
        return self.values.get(name, ())

    def one(self, name: str) -> str | None:
        """The value of a single-valued parameter, or None; two different values are a 400."""
        vals = self.values.get(name)
        if name in self.lists:
            raise BadRequest(f"{_safe(name)}: expected one value, got a list",
                             {"field": _safe(name)})
        if not vals:
            return None
        if len(set(vals)) > 1:
            raise BadRequest(f"{_safe(name)}: given more than once with different values",
                             {"field": _safe(name)})
        return vals[0]

    def split(self, name: str) -> list[str] | None:
        """Comma-split values of ``name`` (``a,b`` and ``[a, b]`` alike), or None if absent."""
        if name not in self.values:
            return None
        return split_values(self.values[name])



def _scalar(name: str, value: object, in_list: bool = False) -> str:
    """A JSON value as the string a query string would have carried.

    Strings and numbers only (``null`` alone means "unset"); booleans, nulls
    inside lists and nested structures are refused rather than guessed at.
    """
    if isinstance(value, bool):
        raise BadRequest(f"{_safe(name)}: expected a string or a number, got a boolean",
                         {"field": _safe(name)})
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"{_safe(name)}: not valid Unicode (lone surrogate)",
                             {"field": _safe(name)}) from None
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if value is None and not in_list:
        return ""
    raise BadRequest(f"{_safe(name)}: expected a string, a number or a list of them",
                     {"field": _safe(name), "got": type(value).__name__})


def _safe(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def _from_json(body: bytes) -> tuple[dict[str, list[str]], set[str]]:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest("body is not valid JSON", str(e)) from None
    if not isinstance(data, dict):
        raise BadRequest("a JSON body must be an object", {"got": type(data).__name__})
    out: dict[str, list[str]] = {}
    lists: set[str] = set()
    for key, value in data.items():
        _scalar("key", key)
        if isinstance(value, list):
            out[key] = [_scalar(key, v, in_list=True) for v in value]
            lists.add(key)
        else:
            out[key] = [_scalar(key, value)]
    return out, lists


def _parse_qs(raw: bytes | str, what: str) -> dict[str, list[str]]:
    """``a=1&b=x,y`` -> ``{"a": ["1"], "b": ["x,y"]}``; bad UTF-8 (raw or %-encoded) is a 400."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        parsed = parse_qs(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeError:
        raise BadRequest(f"{what} is not UTF-8") from None
    for k, vs in parsed.items():  # %ED%A0%80 decodes strictly only if valid
        for piece in (k, *vs):
            _scalar("key", piece)
    return parsed


def _from_form(body: bytes) -> dict[str, list[str]]:
    return _parse_qs(body, "form body")


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_request(query: bytes | str, content_type: str | None,
                  body: bytes) -> RequestParams:
    """Merge query arguments and the body (JSON or form, as Content-Type says).

    An empty body is fine with any Content-Type; a non-empty body of another
    type is refused, so a client never believes values were applied.
    """
    merged: dict[str, list[str]] = {}
    for k, vs in _parse_qs(query, "query string").items():
        merged.setdefault(k, []).extend(vs)
    lists: set[str] = set()
    if body.strip():
        media = _media_type(content_type)
        if media == "application/json" or media.endswith("+json"):
            extra, lists = _from_json(body)
        elif media in ("application/x-www-form-urlencoded", ""):
            extra = _from_form(body)
        else:
            raise BadRequest(f"unsupported Content-Type {media!r}",
                             {"accepted": ["application/json",
                                           "application/x-www-form-urlencoded"]})
        for key, vs in extra.items():
            merged.setdefault(key, []).extend(vs)
    return RequestParams({k: tuple(v) for k, v in merged.items()}, frozenset(lists))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def check_known(given: RequestParams, allowed: Iterable[str]) -> None:
    """Refuse parameters a route does not take (a typo must not pass silently)."""
    unknown = sorted(set(given.names()) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown parameter {_safe(unknown[0])!r}",
                         {"allowed": sorted(allowed)})


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
