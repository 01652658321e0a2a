"""What kind of Streaming API message a raw frame is — pure and cheap.

A v1.1 message whose only top-level key is a control key is of that type
(``delete``, ``scrub_geo``, ``limit``, ``status_withheld``, ``user_withheld``,
``disconnect``, ``warning``, or any other single key, typed by its name);
everything else shaped like a tweet is ``tweet``; a Bluesky Jetstream event
(``{"did"…``) is typed by ``jetstream_events`` (its collection NSID,
``identity``, ``account``); an X API v2 line (``{"data"…`` or ``{"errors"…``)
is typed by ``x_messages.x_message_type`` (``tweet``, ``error``, a compliance
event's key); what is not a JSON object is
``invalid`` (counted, still journaled and delivered).

Mastodon events (queued as ``{"event": NAME, "stream": [...], "payload": ...}``,
built by ``mastodon_api.shape``) are typed by their event name: ``update``,
``delete``, ``status.update``, ``notification``...

Fast path: statuses from Twitter start with ``{"created_at"`` and end with
``}``; they are typed without parsing (a few hundred ns). A status that is
truncated in its middle but keeps both ends would be typed ``tweet``: framing
(length-delimited) makes that practically impossible, and consumers get the
bytes as received anyway.
"""

from __future__ import annotations

import re

import orjson

from flamingo.sources import jetstream_events
from flamingo.sources.x_messages import X_PREFIXES, x_message_type

__all__ = ["message_type", "CONTROL_TYPES", "parse_limit", "parse_disconnect", "STALL"]

CONTROL_TYPES = frozenset({"delete", "scrub_geo", "limit", "status_withheld", "user_withheld",
                           "disconnect", "warning"})
_TWEET_KEYS = ("text", "full_text", "id_str", "created_at", "extended_tweet", "retweeted_status")
_TYPE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_PREFIX = b'{"created_at"'
#: Mastodon events as queued: ``{"event":"status.update","stream":[...],"payload":...}``
_EVENT_PREFIX = b'{"event":"'
_EVENT_RE = re.compile(rb'[a-z][a-z_.]{0,63}')
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def message_type(raw: bytes) -> str:
    """``"tweet"``, a control type, another single key's name, ``"unknown"`` or ``"invalid"``."""
    if raw.startswith(_PREFIX) and raw.endswith(b"}"):
        return "tweet"
    if raw.startswith(jetstream_events.PREFIX):  # Bluesky: the collection NSID, identity, account
        return jetstream_events.event_type(raw)
    if raw.startswith(_EVENT_PREFIX):
        end = raw.find(b'"', 10)
        name = raw[10:end]
        if end > 0 and _EVENT_RE.fullmatch(name):
            return name.decode()
    if raw.startswith(X_PREFIXES):  # X API v2: posts, compliance events, error lines
        return x_message_type(raw)
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
        obj: object = _loads(raw)
    except (_JSONDecodeError, TypeError):
        return None
    limit = obj.get("limit") if isinstance(obj, dict) else None
    n = limit.get("track") if isinstance(limit, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) else None


STALL = 4  # a v1.1 disconnect code: the client read too slowly


def parse_disconnect(raw: bytes) -> tuple[int, str] | None:
    """The code and reason of a ``{"disconnect":{"code":N,"reason":..}}`` message (None if not one)."""
    try:
        body = _loads(raw)["disconnect"]
        return int(body.get("code", 0)), str(body.get("reason", ""))
    except (_JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
