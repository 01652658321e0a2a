"""Bluesky Jetstream events, without I/O: their type, cursor, identity, text, and params.

A v1 ``/subscribe`` event is one JSON object, as the Go server encodes it
(field order fixed by its struct)::

    {"did":"did:plc:…","time_us":1725911162329308,"kind":"commit",
     "commit":{"rev":"…","operation":"create","collection":"app.bsky.feed.post",
               "rkey":"…","record":{…},"cid":"…"}}

``kind`` is ``commit``, ``identity`` or ``account``. The head of the object
(``did``, ``time_us``, ``kind``, and for commits ``collection`` and
``rkey``, which come before the record) is read with one regular expression,
so typing and deduplicating an event cost no JSON parse; anything else
(another field order, a hostile server) falls back to a parse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import attrs
import orjson

from flamingo.domain.matching import Haystack
from flamingo.domain.predicates import split_values
from flamingo.errors import ValidationError

__all__ = ["EventHead", "head", "event_type", "post_haystack", "check_params", "wanted",
           "MAX_COLLECTIONS", "MAX_DIDS", "POST", "PREFIX"]

PREFIX = b'{"did"'  # every v1 event starts so: messages.message_type's cue
POST = "app.bsky.feed.post"
MAX_COLLECTIONS = 100
MAX_DIDS = 10_000

_HEAD = re.compile(
    rb'\{"did":"(?P<did>[^"\\]{1,2048})","time_us":(?P<t>\d{1,19}),"kind":"(?P<kind>[a-z]{1,16})"'
    rb'(?:,"commit":\{"rev":"[^"\\]*","operation":"[a-z]{1,16}","collection":"(?P<coll>[^"\\]{1,317})"'
    rb',"rkey":"(?P<rkey>[^"\\]{0,512})")?')
_TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9.\-]{0,316}")


@attrs.frozen
class EventHead:
    """What identifies one event: who, when (the cursor), what."""

    did: str
    time_us: int
    kind: str
    collection: str | None = None
    rkey: str | None = None

    @property
    def key(self) -> tuple[str, int, str, str | None, str | None]:
        """Its identity across replays: a commit's ops share a time_us, not a record."""
        return (self.did, self.time_us, self.kind, self.collection, self.rkey)

    @property
    def type(self) -> str:
        """``messages.message_type``: a commit's collection NSID, else its kind."""
        if self.kind == "commit":
            return self.collection if self.collection and _TYPE_RE.fullmatch(self.collection) else "commit"
        return self.kind if _TYPE_RE.fullmatch(self.kind) else "unknown"


def head(raw: bytes) -> EventHead | None:
    """The head of a Jetstream event, or None when ``raw`` is not one."""
    m = _HEAD.match(raw)
    if m is not None and (m["kind"] != b"commit" or m["coll"] is not None):
        coll, rkey = m["coll"], m["rkey"]
        return EventHead(m["did"].decode("utf-8", "replace"), int(m["t"]), m["kind"].decode(),
                         coll.decode("utf-8", "replace") if coll is not None else None,
                         rkey.decode("utf-8", "replace") if rkey is not None else None)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return _head_of(obj)


def _head_of(obj: object) -> EventHead | None:
    if not isinstance(obj, dict):
        return None
    did, t, kind = obj.get("did"), obj.get("time_us"), obj.get("kind")
    if not isinstance(did, str) or type(t) is not int or not isinstance(kind, str):
        return None
    coll = rkey = None
    commit = obj.get("commit")
    if kind == "commit" and isinstance(commit, dict):
        c, r = commit.get("collection"), commit.get("rkey")
        coll = c if isinstance(c, str) else None
        rkey = r if isinstance(r, str) else None
    return EventHead(did, t, kind, coll, rkey)


def event_type(raw: bytes) -> str:
    """A Jetstream event's type for subscriptions' ``types``: ``app.bsky.feed.post``,
    ``identity``, ``account``; ``unknown`` for a ``{"did"…`` object that is no event."""
    h = head(raw)
    return h.type if h is not None else "unknown"


def post_haystack(event: object) -> Haystack | None:
    """What term filters match in a post: its text, its facets' tags, mentions (DIDs) and links."""
    if not isinstance(event, dict):
        return None
    commit = event.get("commit")
    record = commit.get("record") if isinstance(commit, dict) else None
    if not isinstance(record, dict):
        return None
    text = record.get("text")
    texts = [text.lower()] if isinstance(text, str) else []
    tags: list[str] = []
    mentions: list[str] = []
    urls: list[str] = []
    for tag in record.get("tags") or ():  # the post's own tags (outside its text)
        if isinstance(tag, str):
            tags.append(tag.lower())
    for facet in record.get("facets") or ():
        features = facet.get("features") if isinstance(facet, dict) else None
        for f in features or ():
            if not isinstance(f, dict):
                continue
            kind = f.get("$type")
            if kind == "app.bsky.richtext.facet#tag" and isinstance(f.get("tag"), str):
                tags.append(f["tag"].lower())
            elif kind == "app.bsky.richtext.facet#mention" and isinstance(f.get("did"), str):
                mentions.append(f["did"].lower())
            elif kind == "app.bsky.richtext.facet#link" and isinstance(f.get("uri"), str):
                urls.append(f["uri"].lower())
    return Haystack(texts, urls, tags, mentions)


# -- params --------------------------------------------------------------------------

_NSID = re.compile(r"(?=.{1,317}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){2,}[A-Za-z][A-Za-z0-9]{0,62}")
_PREFIX = re.compile(r"(?=.{1,317}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){2,}\*")
_DID = re.compile(r"did:plc:[a-z2-7]{24}|did:web:[A-Za-z0-9.\-]{1,253}(?:%3A[0-9]{1,5})?")


def wanted(params: Mapping[str, Sequence[str]]) -> tuple[list[str], list[str]]:
    """(wantedCollections, wantedDids), each value once, in order (commas split)."""
    return (list(dict.fromkeys(split_values(params.get("wantedCollections", ())))),
            list(dict.fromkeys(split_values(params.get("wantedDids", ())))))


def check_params(params: Mapping[str, Sequence[str]]) -> None:
    """Refuse what Jetstream would refuse (its handshake answers 400, an
    ``options_update`` closes the socket with 1008): one ValidationError, naming the param."""
    collections, dids = wanted(params)
    for c in collections:
        if not (_NSID.fullmatch(c) or _PREFIX.fullmatch(c)):
            raise ValidationError("wantedCollections", f"not a collection NSID or an NSID prefix "
                                  f"ending in .* (app.bsky.feed.post, app.bsky.*): {c!r}")
    if len(collections) > MAX_COLLECTIONS:
        raise ValidationError("wantedCollections", f"at most {MAX_COLLECTIONS} collections, got "
                              f"{len(collections)}", f"wantedCollections: at most {MAX_COLLECTIONS}")
    for d in dids:
        if not _DID.fullmatch(d):
            raise ValidationError("wantedDids", f"not a did:plc: or did:web: DID: {d!r}")
    if len(dids) > MAX_DIDS:
        raise ValidationError("wantedDids", f"at most {MAX_DIDS} DIDs, got {len(dids)}",
                              f"wantedDids: at most {MAX_DIDS}")
