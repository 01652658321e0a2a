"""Queue payloads, built by concatenating bytes (the event is never re-serialised).

``raw``: the event as received. ``envelope``: ``{"type":T,"event":E}``.
``resque``: ``{"class":"HandleFlamingoEvent","args":[T,E]}`` — what the
original's Resque workers (``examples/Rakefile``) expect. ``stream``:
``<type>\n<event>``, which the batch script splits into one stream entry's
``type`` and ``event`` fields (an event never holds a raw newline: the
dispatcher keeps each on one line). An ``invalid``
event (not JSON) is embedded as a JSON string so the payload stays JSON.
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


def envelope(event: bytes, etype: str) -> bytes:
    return b'{"type":"' + etype.encode() + b'","event":' + _embed(event, etype) + b"}"


def resque(event: bytes, etype: str) -> bytes:
    return (b'{"class":"HandleFlamingoEvent","args":["' + etype.encode() + b'",'
            + _embed(event, etype) + b"]}")


def stream(event: bytes, etype: str) -> bytes:
    return etype.encode() + b"\n" + _embed(event, etype)


BUILDERS: dict[str, Callable[[bytes, str], bytes]] = {"raw": raw, "envelope": envelope, "resque": resque,
                                                      "stream": stream}


def build(fmt: str, event: bytes, etype: str) -> bytes:
    return BUILDERS[fmt](event, etype)
