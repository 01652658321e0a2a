"""Queue payloads, built by concatenating bytes (the event is never re-serialised).

``raw``: the event as received. ``envelope``: ``{"type":T,"event":E}``.
``resque``: ``{"class":"HandleFlamingoEvent","args":[T,E]}`` — what the
original's Resque workers (``examples/Rakefile``) expect. ``stream``:
``<type>\n<event>``, which the batch script splits into one stream entry's
``type`` and ``event`` fields (an event never holds a raw newline: the
dispatcher keeps each on one line). An ``invalid``
event (not JSON) is embedded as a JSON string so the payload stays JSON.

Each payload is one ``join`` (one copy of the event, not one per ``+``), and
the head for a type is made once (a bounded cache: type names come from
upstream).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

__all__ = ["build", "BUILDERS"]


def _embed(event: bytes, etype: str) -> bytes:
    if etype == "invalid":
        return orjson.dumps(event.decode("utf-8", "replace"))
    return event


def raw(event: bytes, etype: str) -> bytes:
    return event


_HEADS_MAX = 256
_ENVELOPE_HEADS: dict[str, bytes] = {}
_RESQUE_HEADS: dict[str, bytes] = {}


def _head(cache: dict[str, bytes], before: bytes, etype: str, after: bytes) -> bytes:
    head = cache.get(etype)
    if head is None:
        head = before + etype.encode() + after
        if len(cache) < _HEADS_MAX:
            cache[etype] = head
    return head


def envelope(event: bytes, etype: str) -> bytes:
    head = _ENVELOPE_HEADS.get(etype) or _head(_ENVELOPE_HEADS, b'{"type":"', etype, b'","event":')
    return b"".join((head, _embed(event, etype), b"}"))


def resque(event: bytes, etype: str) -> bytes:
    head = _RESQUE_HEADS.get(etype) or _head(_RESQUE_HEADS, b'{"class":"HandleFlamingoEvent","args":["',
                                             etype, b'",')
    return b"".join((head, _embed(event, etype), b"]}"))


def stream(event: bytes, etype: str) -> bytes:
    return etype.encode() + b"\n" + _embed(event, etype)


BUILDERS: dict[str, Callable[[bytes, str], bytes]] = {"raw": raw, "envelope": envelope, "resque": resque,
                                                      "stream": stream}


def build(fmt: str, event: bytes, etype: str) -> bytes:
    return BUILDERS[fmt](event, etype)
