"""What an X API v2 stream line is, and the id a repeat of it carries — pure and cheap.

X sends one JSON object per line: a post ``{"data":{"id",...},"includes":...,
"matching_rules":[...]}``; a compliance event ``{"data":{"<event>":{...}}}``
(``delete``, ``tweet_edit``, ``withheld``, ``drop``, ``undrop``, ``user_delete``...),
typed by that key; an in-stream error ``{"errors":[...]}`` (an operational
disconnect, a connection issue), typed ``error``. A post whose expansions could
not all be resolved carries ``errors`` *beside* ``data``: it is still a post.
"""

from __future__ import annotations

import re

import orjson

from flamingo._types import JsonObject

__all__ = ["x_message_type", "post_id", "rule_tags", "X_TYPES", "X_PREFIXES"]

#: how X's lines start (``messages.message_type`` hands these here; v1.1 never sends them)
X_PREFIXES = (b'{"data":', b'{"errors":')
#: the types a v2 stream produces besides compliance events (typed by their key)
X_TYPES = ("tweet", "error", "invalid", "unknown")
_TYPE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def _parse(raw: bytes) -> JsonObject | None:
    try:
        obj = _loads(raw)
    except _JSONDecodeError:
        return None
    return obj if type(obj) is dict else None


def x_message_type(raw: bytes) -> str:
    """``tweet``, ``error``, a compliance event's key, ``unknown`` or ``invalid``."""
    if raw.startswith(b'{"data":{') and raw.endswith(b"}") and b'"text":' in raw:
        # a post, unparsed: inside a JSON string a quote is escaped, so '"text":' is a key;
        # compliance events and error lines have no text key (a post torn in its middle
        # but keeping both ends is typed tweet: the bytes reach consumers as received)
        return "tweet"
    obj = _parse(raw)
    if obj is None:
        return "invalid"
    data = obj.get("data")
    if type(data) is dict:
        if "id" in data or "text" in data:
            return "tweet"
        keys = [str(k) for k in data if k != "event_at"]
        if len(keys) == 1 and _TYPE_RE.fullmatch(keys[0]):
            return keys[0]
        return "unknown"
    if "errors" in obj:
        return "error"
    return "unknown"


def post_id(raw: bytes) -> str | None:
    """The id a repeated post is known by; None for anything else: error lines and
    compliance events are never dropped as repeats."""
    if b'"data"' not in raw:
        return None
    obj = _parse(raw)
    if obj is None:
        return None
    data = obj.get("data")
    if type(data) is not dict:
        return None
    pid = data.get("id")
    if type(pid) is str and 0 < len(pid) <= 64:
        return pid
    if type(pid) is int:
        return str(pid)
    return None


def rule_tags(raw: bytes) -> frozenset[str] | None:
    """The tags of the rules a post matched (``matching_rules``); None when it has none."""
    if b'"matching_rules"' not in raw:
        return None
    obj = _parse(raw)
    if obj is None:
        return None
    rules = obj.get("matching_rules")
    if type(rules) is not list:
        return None
    return frozenset(r["tag"] for r in rules if type(r) is dict and type(r.get("tag")) is str)
