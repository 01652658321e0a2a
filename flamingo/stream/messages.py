"""What kind of Streaming API message a raw frame is — pure and cheap.

A v1.1 message whose only top-level key is a control key is of that type
(``delete``, ``scrub_geo``, ``limit``, ``status_withheld``, ``user_withheld``,
``disconnect``, ``warning``, or any other single key, typed by its name);
everything else shaped like a tweet is ``tweet``; what is not a JSON object is
``invalid`` (counted, still journaled and delivered).

Fast path: statuses from Twitter start with ``{"created_at"`` and end with
``}``; they are typed without parsing (a few hundred ns). A status that is
truncated in its middle but keeps both ends would be typed ``tweet``: framing
(length-delimited) makes that practically impossible, and consumers get the
bytes as received anyway.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["message_type", "CONTROL_TYPES", "parse_limit", "typer_for"]

CONTROL_TYPES = frozenset({"delete", "scrub_geo", "limit", "status_withheld", "user_withheld",
                           "disconnect", "warning"})
_TWEET_KEYS = ("text", "full_text", "id_str", "created_at", "extended_tweet", "retweeted_status")
_TYPE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_PREFIX = b'{"created_at"'
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def message_type(raw: bytes) -> str:
    """``"tweet"``, a control type, another single key's name, ``"unknown"`` or ``"invalid"``."""
    if raw.startswith(_PREFIX) and raw.endswith(b"}"):
        return "tweet"
    try:
        obj = _loads(raw)
    except _JSONDecodeError:
        return "invalid"
    if type(obj) is not dict:
        return "invalid"
    if len(obj) == 1:
        key = next(iter(obj))
        return key if _TYPE_RE.fullmatch(key) else "unknown"
    for k in _TWEET_KEYS:
        if k in obj:
            return "tweet"
    if "id" in obj and "user" in obj:
        return "tweet"
    return "unknown"


def parse_limit(raw: bytes) -> int | None:
    """The cumulative undelivered count of a ``{"limit":{"track":N}}`` notice (None if absent)."""
    try:
        obj: Any = _loads(raw)
        n = obj["limit"]["track"]
    except (_JSONDecodeError, KeyError, TypeError):
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def typer_for(source: str) -> Callable[[bytes], str]:
    """How a source's messages are typed (v1.1's ``message_type`` unless the source has its own)."""
    if source == "x":
        from flamingo.stream.x_messages import x_message_type
        return x_message_type
    return message_type
