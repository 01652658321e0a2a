"""A deterministic generator of realistic Bluesky Jetstream (v1) events.

A seed makes the same stream. Events have the shape and field order of
Jetstream's Go encoder (``did``, ``time_us``, ``kind``, then the kind's
object; a commit's ``rev``, ``operation``, ``collection``, ``rkey``,
``record``, ``cid``) and sizes like the network's (~300 B for a like, ~500 B
to 1 KB for posts: text with unicode, facets with byte offsets for tags,
mentions and links, langs, replies, image and link embeds). The mix follows
the network's: mostly likes, then posts, follows and reposts, some deletes,
profile updates, blocks, and identity / account events.

``time_us`` is not chosen here: the timeline stamps each event when it is
made (``Corpus.event(time_us)``).
"""

from __future__ import annotations

import random
from base64 import b32encode
from collections.abc import Callable
from datetime import datetime, timezone

import orjson

from flamingo._types import JsonObject

__all__ = ["Corpus", "COLLECTIONS", "MIXES"]

_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_TID = "234567abcdefghijklmnopqrstuvwxyz"  # atproto's sortable base32

WORDS = (
    "the a to and of in is it you that for on my this with be at just so me have love like new "
    "day good time now get today what one great people see go know think world music game happy "
    "night life best team back going really want coffee weather rain sunny news update live "
    "watch photo football art garden cat dog book reading writing science space python rust "
    "twisted redis stream data open source code release bug fix deploy protocol federation "
    "café naïve über mañana niño 東京 ラーメン 日本 привет мир año música amor gracias bom dia 안녕"
).split()
EMOJI = ["😂", "❤️", "🔥", "👍", "🙏", "😭", "✨", "🎉", "🤔", "😍", "🦋", "☕", "🌧️"]
TAGS = ["bluesky", "python", "art", "photography", "news", "music", "science", "books", "gardening",
        "caturday", "東京", "café", "OpenSource", "atproto"]
DOMAINS = ["example.com", "news.example.org", "youtu.be", "github.com", "en.wikipedia.org", "bsky.app"]
LANGS = [["en"]] * 6 + [["ja"], ["pt"], ["de"], ["es"], ["fr"], ["ko"], ["en", "es"]]

#: collection -> weight in the "network" mix (identity and account: kinds, not collections)
MIXES: dict[str, dict[str, float]] = {
    "network": {"app.bsky.feed.like": 45, "app.bsky.feed.post": 17, "app.bsky.graph.follow": 12,
                "app.bsky.feed.repost": 10, "delete": 7, "app.bsky.actor.profile": 2,
                "app.bsky.graph.block": 2, "app.bsky.graph.listitem": 1, "identity": 2, "account": 1},
    "posts": {"app.bsky.feed.post": 90, "identity": 7, "account": 3},
    # the benchmark's: ~700 B events on average (posts, likes, follows)
    "bench": {"app.bsky.feed.post": 60, "app.bsky.feed.like": 30, "app.bsky.graph.follow": 5,
              "identity": 3, "account": 2},
}
COLLECTIONS = ("app.bsky.feed.like", "app.bsky.feed.post", "app.bsky.graph.follow", "app.bsky.feed.repost",
               "app.bsky.actor.profile", "app.bsky.graph.block", "app.bsky.graph.listitem")


class Corpus:
    """Seeded events over a population of ``users`` accounts."""

    def __init__(self, seed: int = 1, users: int = 2000, mix: str = "network") -> None:
        self.rnd = random.Random(seed)
        r = self.rnd
        self.dids = ["did:plc:" + "".join(r.choice(_B32) for _ in range(24)) for _ in range(users)]
        self.handles = {d: f"{r.choice(WORDS).lower()}{r.randrange(10_000)}.bsky.social" for d in self.dids}
        weights = MIXES[mix]
        self.kinds = list(weights)
        self.weights = list(weights.values())
        self.posts: list[tuple[str, str, str]] = []  # (did, rkey, cid) of recent posts: replies, likes
        self.records: list[tuple[str, str, str]] = []  # (did, collection, rkey): deletes
        self.seq = 1_000_000
        self.makers: dict[str, Callable[[str, int], JsonObject]] = {
            "app.bsky.feed.like": self._like, "app.bsky.feed.post": self._post,
            "app.bsky.graph.follow": self._follow, "app.bsky.feed.repost": self._repost,
            "app.bsky.actor.profile": self._profile, "app.bsky.graph.block": self._block,
            "app.bsky.graph.listitem": self._listitem}

    # -- ids ---------------------------------------------------------------------------

    def _tid(self, time_us: int) -> str:
        n = (time_us << 10) | self.rnd.randrange(1024)
        return "".join(_TID[(n >> (60 - 5 * i)) & 31] for i in range(13))

    def _cid(self) -> str:
        # 52 base32 characters from 260 random bits (one call, not 52 choices)
        return "bafyrei" + b32encode(self.rnd.getrandbits(264).to_bytes(33, "big")).decode().lower()[:52]

    @staticmethod
    def _iso(time_us: int) -> str:
        dt = datetime.fromtimestamp(time_us / 1e6, timezone.utc)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"

    def _strong_ref(self) -> JsonObject:
        if self.posts and self.rnd.random() < 0.9:
            did, rkey, cid = self.rnd.choice(self.posts)
        else:
            did, rkey, cid = self.rnd.choice(self.dids), self._tid(self.rnd.randrange(1 << 50)), self._cid()
        return {"cid": cid, "uri": f"at://{did}/app.bsky.feed.post/{rkey}"}

    # -- events -------------------------------------------------------------------------

    def event(self, time_us: int) -> bytes:
        """The next event, stamped ``time_us``."""
        r = self.rnd
        kind = r.choices(self.kinds, self.weights)[0]
        did = r.choice(self.dids)
        self.seq += 1
        if kind == "identity":
            body: JsonObject = {"did": did, "time_us": time_us, "kind": "identity",
                                "identity": {"did": did, "handle": self.handles[did], "seq": self.seq,
                                             "time": self._iso(time_us)}}
        elif kind == "account":
            active = r.random() < 0.7
            account: JsonObject = {"active": active, "did": did, "seq": self.seq, "time": self._iso(time_us)}
            if not active:
                account["status"] = r.choice(["deactivated", "deleted", "takendown"])
            body = {"did": did, "time_us": time_us, "kind": "account", "account": account}
        elif kind == "delete" and self.records:
            did, collection, rkey = self.records.pop(r.randrange(len(self.records)))
            body = {"did": did, "time_us": time_us, "kind": "commit",
                    "commit": {"rev": self._tid(time_us), "operation": "delete", "collection": collection,
                               "rkey": rkey}}
        else:
            collection = kind if kind in self.makers else "app.bsky.feed.like"
            rkey = "self" if collection == "app.bsky.actor.profile" else self._tid(time_us)
            record = self.makers[collection](did, time_us)
            cid = self._cid()
            operation = "update" if collection == "app.bsky.actor.profile" and r.random() < 0.8 else "create"
            body = {"did": did, "time_us": time_us, "kind": "commit",
                    "commit": {"rev": self._tid(time_us), "operation": operation, "collection": collection,
                               "rkey": rkey, "record": record, "cid": cid}}
            if collection == "app.bsky.feed.post":
                self.posts.append((did, rkey, cid))
                if len(self.posts) > 5000:
                    del self.posts[:1000]
            if collection != "app.bsky.actor.profile":
                self.records.append((did, collection, rkey))
                if len(self.records) > 5000:
                    del self.records[:1000]
        return orjson.dumps(body)

    def _like(self, did: str, t: int) -> JsonObject:
        return {"$type": "app.bsky.feed.like", "createdAt": self._iso(t), "subject": self._strong_ref()}

    def _repost(self, did: str, t: int) -> JsonObject:
        return {"$type": "app.bsky.feed.repost", "createdAt": self._iso(t), "subject": self._strong_ref()}

    def _follow(self, did: str, t: int) -> JsonObject:
        return {"$type": "app.bsky.graph.follow", "createdAt": self._iso(t),
                "subject": self.rnd.choice(self.dids)}

    def _block(self, did: str, t: int) -> JsonObject:
        return {"$type": "app.bsky.graph.block", "createdAt": self._iso(t),
                "subject": self.rnd.choice(self.dids)}

    def _listitem(self, did: str, t: int) -> JsonObject:
        return {"$type": "app.bsky.graph.listitem", "createdAt": self._iso(t),
                "list": f"at://{did}/app.bsky.graph.list/{self._tid(t - 10**9)}",
                "subject": self.rnd.choice(self.dids)}

    def _profile(self, did: str, t: int) -> JsonObject:
        r = self.rnd
        return {"$type": "app.bsky.actor.profile", "createdAt": self._iso(t),
                "description": " ".join(r.choice(WORDS) for _ in range(r.randrange(4, 20))),
                "displayName": self.handles[did].split(".")[0].title(),
                "avatar": {"$type": "blob", "ref": {"$link": self._cid()}, "mimeType": "image/jpeg",
                           "size": r.randrange(20_000, 900_000)}}

    def _post(self, did: str, t: int) -> JsonObject:
        r = self.rnd
        parts: list[str] = []
        facets: list[JsonObject] = []
        length = 0

        def add(piece: str, feature: JsonObject | None = None) -> None:
            nonlocal length
            if parts:
                parts.append(" ")
                length += 1
            start = length
            parts.append(piece)
            length += len(piece.encode())
            if feature is not None:
                facets.append({"features": [feature], "index": {"byteEnd": length, "byteStart": start}})

        for _ in range(r.randrange(3, 30)):
            roll = r.random()
            if roll < 0.05:
                tag = r.choice(TAGS)
                add("#" + tag, {"$type": "app.bsky.richtext.facet#tag", "tag": tag})
            elif roll < 0.08:
                other = r.choice(self.dids)
                add("@" + self.handles[other], {"$type": "app.bsky.richtext.facet#mention", "did": other})
            elif roll < 0.10:
                uri = f"https://{r.choice(DOMAINS)}/{r.choice(WORDS)}{r.randrange(1000)}"
                add(uri.removeprefix("https://")[:30], {"$type": "app.bsky.richtext.facet#link", "uri": uri})
            elif roll < 0.15:
                add(r.choice(EMOJI))
            else:
                add(r.choice(WORDS))
        record: JsonObject = {"$type": "app.bsky.feed.post", "createdAt": self._iso(t)}
        roll = r.random()
        if roll < 0.25:
            record["embed"] = {"$type": "app.bsky.embed.images", "images": [
                {"alt": " ".join(r.choice(WORDS) for _ in range(r.randrange(0, 12))),
                 "aspectRatio": {"height": r.randrange(400, 2000), "width": r.randrange(400, 2000)},
                 "image": {"$type": "blob", "ref": {"$link": self._cid()}, "mimeType": "image/jpeg",
                           "size": r.randrange(50_000, 1_000_000)}} for _ in range(r.randrange(1, 3))]}
        elif roll < 0.35:
            word = r.choice(WORDS)
            record["embed"] = {"$type": "app.bsky.embed.external", "external": {
                "description": " ".join(r.choice(WORDS) for _ in range(r.randrange(5, 20))),
                "title": word.title(), "uri": f"https://{r.choice(DOMAINS)}/{word}"}}
        if facets:
            record["facets"] = facets
        record["langs"] = r.choice(LANGS)
        if self.posts and r.random() < 0.3:
            root = self._strong_ref()
            record["reply"] = {"parent": self._strong_ref() if r.random() < 0.5 else root, "root": root}
        record["text"] = "".join(parts)
        return record
