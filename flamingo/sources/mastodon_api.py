"""Mastodon's streaming and timeline API as pure functions: names, URLs, shapes.

Which subscriptions a stream's params make (one per tag or list id), the
messages that subscribe them, where the streaming server is (the instance
document's ``configuration.urls.streaming``), which REST timeline fills a
stream's gap, ``Link`` header paging, id order (longer is newer, then
lexical: ids are strings and must never be cast), and the queue shape:
``{"event": NAME, "stream": [...], "payload": <decoded>}``, the payload's
JSON text reused as it came (an ``orjson.Fragment``), never re-encoded.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import attrs
import orjson

__all__ = ["StreamKey", "Shaped", "subscriptions", "needs_params", "subscribe_message",
           "streaming_base", "ws_url", "http_url", "sse_path", "timeline_path", "parse_link",
           "id_key", "is_newer", "shape", "shape_status", "shape_sse", "read_shaped", "ShapeError",
           "STRING_PAYLOADS", "param_problem", "key_of", "read_ws", "newest_ids"]

StreamKey = tuple[str, ...]

#: events whose payload is a bare id string, not JSON text
STRING_PAYLOADS = frozenset({"delete", "announcement.delete"})
_PARAM_STREAMS = {"hashtag": "tag", "hashtag:local": "tag", "list": "list"}
_SSE_PATHS = {"public": "public", "public:local": "public/local", "public:remote": "public/remote",
              "hashtag": "hashtag", "hashtag:local": "hashtag/local", "list": "list", "user": "user",
              "user:notification": "user/notification", "direct": "direct"}
_LINK_RE = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]*)*)')
_REL_RE = re.compile(r';\s*rel\s*=\s*"?([^";,]*)"?', re.IGNORECASE)


class ShapeError(ValueError):
    """A frame that is not a Mastodon event (``kind`` for the parse-error counter)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


_TAG_RE = re.compile(r"#?[\w·]{1,100}")
_LIST_RE = re.compile(r"[\w-]{1,64}")


def param_problem(params: Mapping[str, Sequence[str]]) -> tuple[str, str] | None:
    """(param, message) for a value Mastodon would refuse: tags are word characters
    (an optional leading ``#``), list ids short word strings."""
    for value in params.get("tag", ()):
        if not _TAG_RE.fullmatch(value.strip()):
            return "tag", f"not a hashtag: {value!r} (letters, digits, _ and an optional leading #)"
    for value in params.get("list", ()):
        if not _LIST_RE.fullmatch(value.strip()):
            return "list", f"not a list id: {value!r}"
    return None


def needs_params(stream: str) -> bool:
    """hashtag, hashtag:local and list open only with a tag or list id."""
    return stream in _PARAM_STREAMS


def _norm(stream: str, value: str) -> str:
    return value.strip().lstrip("#").lower() if stream.startswith("hashtag") else value.strip()


def subscriptions(stream: str, params: Mapping[str, Sequence[str]]) -> list[StreamKey]:
    """One key per tag or list id (in order, each once); one key for the other streams."""
    name = _PARAM_STREAMS.get(stream)
    if name is None:
        return [(stream,)]
    keys: dict[StreamKey, None] = {}
    for value in params.get(name, ()):
        v = _norm(stream, value)
        if v:
            keys.setdefault((stream, v))
    return list(keys)


def key_of(stream: Sequence[object]) -> StreamKey:
    """A frame's ``stream`` array as a key (tags lower-cased, as subscriptions are)."""
    parts = tuple(str(s) for s in stream)
    if len(parts) == 2 and parts[0].startswith("hashtag"):
        return (parts[0], _norm(parts[0], parts[1]))
    return parts


def subscribe_message(key: StreamKey, kind: str = "subscribe") -> bytes:
    """``{"type":"subscribe","stream":"hashtag","tag":"python"}`` (``list`` for lists)."""
    msg: dict[str, str] = {"type": kind, "stream": key[0]}
    if len(key) > 1:
        msg[_PARAM_STREAMS.get(key[0], "tag")] = key[1]
    return orjson.dumps(msg)


def streaming_base(instance: object, api_url: str) -> str:
    """The streaming server from ``/api/v2/instance`` (``configuration.urls.streaming``;
    v1's ``urls.streaming_api``), else the instance itself."""
    if isinstance(instance, dict):
        conf = instance.get("configuration")
        urls = conf.get("urls") if isinstance(conf, dict) else None
        if isinstance(urls, dict) and isinstance(urls.get("streaming"), str) and urls["streaming"]:
            return str(urls["streaming"])
        urls = instance.get("urls")
        if isinstance(urls, dict) and isinstance(urls.get("streaming_api"), str) and urls["streaming_api"]:
            return str(urls["streaming_api"])
    return api_url


def _with_scheme(base: str, secure: str, plain: str, path: str, query: str = "") -> str:
    parts = urlsplit(base)
    scheme = secure if parts.scheme in ("https", "wss") else plain
    prefix = parts.path.rstrip("/")
    return urlunsplit((scheme, parts.netloc, prefix + path, query, ""))


def ws_url(base: str) -> str:
    """``wss://streaming.example/api/v1/streaming`` (ws for http/ws bases)."""
    return _with_scheme(base, "wss", "ws", "/api/v1/streaming")


def http_url(base: str, path: str, query: Mapping[str, str] | None = None) -> str:
    """An HTTP(S) URL on the streaming server (health, SSE) or the instance (REST)."""
    return _with_scheme(base, "https", "http", path, urlencode(query or {}))


def sse_path(key: StreamKey) -> tuple[str, dict[str, str]]:
    """The SSE path and query of one subscription."""
    path = "/api/v1/streaming/" + _SSE_PATHS[key[0]]
    if len(key) > 1:
        return path, {_PARAM_STREAMS.get(key[0], "tag"): key[1]}
    return path, {}


def timeline_path(key: StreamKey) -> tuple[str, dict[str, str]] | None:
    """The REST timeline holding a stream's statuses, or None (notifications,
    conversations: no status timeline fills those)."""
    stream = key[0]
    if stream == "public":
        return "/api/v1/timelines/public", {}
    if stream == "public:local":
        return "/api/v1/timelines/public", {"local": "true"}
    if stream == "public:remote":
        return "/api/v1/timelines/public", {"remote": "true"}
    if stream in ("hashtag", "hashtag:local") and len(key) > 1:
        query = {"local": "true"} if stream == "hashtag:local" else {}
        return "/api/v1/timelines/tag/" + quote(key[1], safe=""), query
    if stream == "list" and len(key) > 1:
        return "/api/v1/timelines/list/" + quote(key[1], safe=""), {}
    if stream == "user":
        return "/api/v1/timelines/home", {}
    return None


def parse_link(header: str | None) -> dict[str, str]:
    """``Link: <url>; rel="next", <url>; rel="prev"`` -> {"next": url, "prev": url} (RFC 8288)."""
    out: dict[str, str] = {}
    for url, params in _LINK_RE.findall(header or ""):
        for rel in _REL_RE.findall(params):
            for name in rel.split():
                out.setdefault(name.lower(), url)
    return out


def id_key(status_id: str) -> tuple[int, str]:
    """Sort key of a Mastodon id: longer is newer, then lexical (never cast to int)."""
    return (len(status_id), status_id)


def is_newer(a: str, b: str | None) -> bool:
    return b is None or id_key(a) > id_key(b)


@attrs.frozen
class Shaped:
    """One event in the queue's shape, and what the source tracks of it."""

    frame: bytes  # {"event":..., "stream": [...], "payload": ...}
    event: str
    key: StreamKey
    status_id: str | None  # update / status.update: the status; delete: the deleted id
    dedupe: Hashable | None  # None: never a repeat (delete, filters_changed)


def _dedupe(event: str, key: StreamKey, payload: object) -> tuple[Hashable | None, str | None]:
    if not isinstance(payload, dict):
        return None, None
    pid = payload.get("id")
    if not isinstance(pid, str):
        return None, None
    if event == "update":
        return ("update", key, pid), pid
    if event == "status.update":
        return ("status.update", key, pid, str(payload.get("edited_at"))), pid
    if event == "conversation":
        last = payload.get("last_status")
        return ("conversation", key, pid, str(last.get("id") if isinstance(last, dict) else None)), None
    if event == "notification":
        return ("notification", key, pid), None
    return None, None


def shape(event: str, key: StreamKey, payload_text: str | bytes | None) -> Shaped:
    """Build the queue event from a frame's parts (``payload_text`` as it came)."""
    if payload_text is None or payload_text in ("undefined", b"undefined"):
        return Shaped(orjson.dumps({"event": event, "stream": list(key)}), event, key, None, None)
    if event in STRING_PAYLOADS:
        text = payload_text.decode("utf-8", "replace") if isinstance(payload_text, bytes) else payload_text
        return Shaped(orjson.dumps({"event": event, "stream": list(key), "payload": text}), event, key,
                      text if event == "delete" else None, None)
    try:
        payload = orjson.loads(payload_text)
    except orjson.JSONDecodeError:
        raise ShapeError("mastodon payload") from None
    dedupe, status_id = _dedupe(event, key, payload)
    raw = payload_text.encode() if isinstance(payload_text, str) else payload_text
    frame = orjson.dumps({"event": event, "stream": list(key), "payload": orjson.Fragment(raw)})
    return Shaped(frame, event, key, status_id, dedupe)


def shape_status(key: StreamKey, status: bytes, status_id: str) -> Shaped:
    """A status fetched from a timeline, as the ``update`` it would have streamed as."""
    frame = orjson.dumps({"event": "update", "stream": list(key), "payload": orjson.Fragment(status)})
    return Shaped(frame, "update", key, status_id, ("update", key, status_id))


def shape_sse(event: str, data: bytes | None, key: StreamKey) -> Shaped:
    """An SSE event of one subscription (SSE events carry no stream: the connection's)."""
    return shape(event, key, data)


def read_ws(frame: bytes) -> Shaped | None:
    """A WebSocket frame ``{"stream":[...],"event":...,"payload":"..."}``; None for the
    server's error frames (``{"error": ..., "status": ...}``)."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise ShapeError("mastodon frame json") from None
    if not isinstance(obj, dict):
        raise ShapeError("mastodon frame")
    if "error" in obj and "event" not in obj:
        return None
    event, stream, payload = obj.get("event"), obj.get("stream"), obj.get("payload")
    if not isinstance(event, str) or not isinstance(stream, list):
        raise ShapeError("mastodon frame")
    if payload is not None and not isinstance(payload, str):  # already decoded by a proxy
        payload = orjson.dumps(payload)
    return shape(event, key_of(stream), payload)


def read_shaped(frame: bytes) -> Shaped | None:
    """An event in the queue's shape (from the journal) read back; None if it is not one."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str) or not isinstance(obj.get("stream"), list):
        return None
    event = str(obj["event"])
    key = key_of(obj["stream"])
    payload = obj.get("payload")
    if event in STRING_PAYLOADS:
        return Shaped(frame, event, key, str(payload) if event == "delete" else None, None)
    dedupe, status_id = _dedupe(event, key, payload)
    return Shaped(frame, event, key, status_id, dedupe)


def newest_ids(events: Iterable[Shaped]) -> dict[StreamKey, str]:
    """The newest status id of ``update`` events per stream (the gap fill's since_id)."""
    newest: dict[StreamKey, str] = {}
    for e in events:
        if e.event == "update" and e.status_id is not None and is_newer(e.status_id, newest.get(e.key)):
            newest[e.key] = e.status_id
    return newest
