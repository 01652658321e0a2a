"""A deterministic generator of X API v2 posts and compliance events.

A seed makes the same world. Each post is built once with every field X
can return (text, entities, public metrics, context annotations, referenced
posts, media, places, polls) and its author; ``render`` then keeps what a
connection asked for (``tweet.fields``, ``expansions``, ``user.fields``, ...)
the way X does: by default only ``id``, ``text`` and
``edit_history_tweet_ids`` (about 300 bytes a line), and an ``includes``
object (users, tweets, media, places, polls) when expansions are asked (a
few KB with ``author_id`` and rich user fields).

Rules need something to match, so the text draws on common words, a dozen
hashtags, mentions of real-looking users, a few prolific named accounts
(``from:XDevelopers``, ``from:nasa``, ...), several languages and a share of
retweets, replies and quotes. Post ids carry the v1.1 corpus's sentinel
prefix so a rendered line is re-issued with any id prefix by one
``bytes.replace`` (see ``stream.py``).
"""

from __future__ import annotations

import random
from datetime import datetime, timezone

import attrs
import orjson

from flamingo._types import JsonObject
from flamingo.emulator.corpus import EMOJI, HASHTAGS, ID_LOW_DIGITS, ID_SENTINEL, LANGS, WORDS
from flamingo.emulator.x.rules import PostFacts, tokenize

__all__ = ["XCorpus", "FieldSet", "Post", "corpus_for", "NOTABLE", "TWEET_FIELDS", "EXPANSIONS",
           "USER_FIELDS", "MEDIA_FIELDS", "POLL_FIELDS", "PLACE_FIELDS", "post_id"]

#: the allowed values of each field parameter (from X's OpenAPI document)
TWEET_FIELDS = ("article", "attachments", "author_id", "card_uri", "community_id", "context_annotations",
                "conversation_id", "created_at", "display_text_range", "edit_controls", "edit_history_tweet_ids",
                "entities", "geo", "id", "in_reply_to_user_id", "lang", "matched_media_notes", "media_metadata",
                "non_public_metrics", "note_request_suggestions", "note_tweet", "organic_metrics",
                "paid_partnership", "possibly_sensitive", "promoted_metrics", "public_metrics",
                "referenced_tweets", "reply_settings", "scopes", "source", "suggested_source_links",
                "suggested_source_links_with_counts", "text", "withheld")
EXPANSIONS = ("article.cover_media", "article.media_entities", "attachments.media_keys",
              "attachments.media_source_tweet", "attachments.poll_ids", "author_id", "edit_history_tweet_ids",
              "entities.mentions.username", "geo.place_id", "in_reply_to_user_id",
              "entities.note.mentions.username", "referenced_tweets.id", "referenced_tweets.id.attachments.media_keys",
              "referenced_tweets.id.author_id")
USER_FIELDS = ("affiliation", "confirmed_email", "connection_status", "created_at", "description", "entities",
               "id", "is_identity_verified", "location", "most_recent_tweet_id", "name", "parody",
               "pinned_tweet_id", "profile_banner_url", "profile_image_url", "protected", "public_metrics",
               "receives_your_dm", "subscription", "subscription_type", "url", "username", "verified",
               "verified_followers_count", "verified_type", "withheld")
MEDIA_FIELDS = ("alt_text", "duration_ms", "height", "media_key", "non_public_metrics", "organic_metrics",
                "preview_image_url", "promoted_metrics", "public_metrics", "type", "url", "variants", "width")
POLL_FIELDS = ("duration_minutes", "end_datetime", "id", "options", "voting_status")
PLACE_FIELDS = ("contained_within", "country", "country_code", "full_name", "geo", "id", "name", "place_type")

#: prolific accounts, so ``from:`` rules match
NOTABLE = ("XDevelopers", "nasa", "BBCBreaking", "ThePSF", "austin_weather")
_NOTABLE_SHARE = 0.15
MAX_TEXT = 280
_EPOCH_MS = 1_767_225_600_000  # 2026-01-01
_OLD_ID = 1_400_000_000_000_000_000
_PLACES = [
    ("01a9a39529b27f36", "Manhattan, NY", "Manhattan", "US", "United States", "city", [-74.03, 40.68, -73.90, 40.88]),
    ("c3f37afa9efcf94b", "Austin, TX", "Austin", "US", "United States", "city", [-97.94, 30.10, -97.56, 30.52]),
    ("457b4814b4240d87", "London, England", "London", "GB", "United Kingdom", "city", [-0.51, 51.28, 0.33, 51.69]),
    ("1ff1c1b4bde3e8b1", "Tokyo, Japan", "Tokyo", "JP", "Japan", "city", [139.56, 35.53, 139.92, 35.82]),
]
_DOMAINS = ("Sports", "Entity Service", "Brand", "Person", "Interests and Hobbies", "News Story")
_ENTITIES = ("Technology", "Python", "Weather", "Football", "Music", "Space", "Coffee", "Elections")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def post_id(seq: int) -> str:
    """A post id in template form: the sentinel prefix, then ``seq``."""
    return ID_SENTINEL.decode() + "%0*d" % (ID_LOW_DIGITS, seq)


@attrs.frozen
class FieldSet:
    """What one connection asked for (``tweet.fields`` and friends), order-free."""

    tweet_fields: frozenset[str] = frozenset()
    expansions: frozenset[str] = frozenset()
    user_fields: frozenset[str] = frozenset()
    media_fields: frozenset[str] = frozenset()
    poll_fields: frozenset[str] = frozenset()
    place_fields: frozenset[str] = frozenset()


@attrs.frozen
class Post:
    """One post with every field, its author, what it includes and its facts for matching."""

    data: JsonObject
    author: JsonObject
    mentioned: tuple[JsonObject, ...]
    replied_to_user: JsonObject | None
    referenced: JsonObject | None  # the retweeted/quoted/replied-to post
    media: tuple[JsonObject, ...]
    place: JsonObject | None
    poll: JsonObject | None
    facts: PostFacts


def _pick(obj: JsonObject, wanted: frozenset[str], default: tuple[str, ...], order: tuple[str, ...]) -> JsonObject:
    keep = set(default) | wanted
    return {k: obj[k] for k in order if k in keep and k in obj}


class XCorpus:
    """Seeded posts (``posts``) and compliance events (``tweet_events``, ``user_events``)."""

    def __init__(self, seed: int = 1, n_posts: int = 2000, n_users: int = 300, n_events: int = 400):
        self.seed = seed
        self.rng = random.Random(seed)
        self.users = [self._user(i) for i in range(n_users)]
        self.by_name = {u["username"].lower(): u for u in self.users}
        self.posts = [self._post(i) for i in range(n_posts)]
        self.tweet_events = [self._tweet_event(i) for i in range(n_events)]
        self.user_events = [self._user_event(i) for i in range(n_events)]
        self._rendered: dict[FieldSet, list[bytes]] = {}
        self._compliance: dict[str, list[bytes]] = {}

    # -- users -------------------------------------------------------------
    def _user(self, i: int) -> JsonObject:
        rng = self.rng
        uid = str(rng.choice([rng.randrange(10**6, 10**9), rng.randrange(10**17, 2 * 10**18)]))
        if i < len(NOTABLE):
            name = NOTABLE[i]
        else:
            name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_0123456789") for _ in range(rng.randrange(4, 15)))
        followers = int(rng.paretovariate(1.2) * 50)
        desc = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 18)))
        return {
            "id": uid,
            "name": " ".join(w.capitalize() for w in rng.sample(WORDS, rng.randrange(1, 3))),
            "username": name,
            "created_at": _iso(1_200_000_000_000 + rng.randrange(500_000_000_000)),
            "description": desc,
            "entities": {"description": {"hashtags": [{"start": 0, "end": 1, "tag": rng.choice(HASHTAGS)}]}},
            "location": rng.choice(["Austin, TX", "London", "東京", "", "somewhere 🌍", "São Paulo"]),
            "most_recent_tweet_id": str(_OLD_ID + rng.randrange(10**17)),
            "pinned_tweet_id": str(_OLD_ID + rng.randrange(10**17)),
            "profile_banner_url": f"https://pbs.twimg.com/profile_banners/{uid}/{rng.randrange(10**9)}",
            "profile_image_url": f"https://pbs.twimg.com/profile_images/{rng.randrange(10**18)}/{name}_normal.jpg",
            "protected": False,
            "public_metrics": {"followers_count": followers, "following_count": rng.randrange(2000),
                               "tweet_count": rng.randrange(50000), "listed_count": rng.randrange(200),
                               "like_count": rng.randrange(90000), "media_count": rng.randrange(900)},
            "url": rng.choice(["", f"https://t.co/{rng.randrange(10**10):x}"]),
            "verified": rng.random() < 0.05,
            "verified_type": rng.choice(["none", "none", "none", "blue", "business"]),
            "parody": False,
            "subscription_type": "None",
        }

    def _author(self) -> JsonObject:
        rng = self.rng
        if rng.random() < _NOTABLE_SHARE:
            return self.users[rng.randrange(len(NOTABLE))]
        return rng.choice(self.users)

    # -- posts ---------------------------------------------------------------
    def _text(self) -> tuple[str, list[str], list[JsonObject], list[str]]:
        rng = self.rng
        words = [rng.choice(EMOJI) if rng.random() < 0.05 else rng.choice(WORDS)
                 for _ in range(rng.randrange(10, 44))]
        tags = rng.sample(HASHTAGS, rng.choice((0, 0, 1, 1, 2, 3)))
        mentioned = [self.rng.choice(self.users) for _ in range(rng.choice((0, 0, 0, 1, 2)))]
        urls = [f"https://t.co/{rng.randrange(16**10):010x}"] if rng.random() < 0.2 else []
        for tag in tags:
            words.insert(rng.randrange(len(words) + 1), "#" + tag)
        for user in mentioned:
            words.insert(rng.randrange(len(words) + 1), "@" + user["username"])
        words.extend(urls)
        return " ".join(words), tags, mentioned, urls

    @staticmethod
    def _entities(text: str, tags: list[str], mentioned: list[JsonObject], urls: list[str]) -> JsonObject:
        def span(token: str) -> tuple[int, int]:
            start = text.find(token)
            return start, start + len(token)

        ents: JsonObject = {}
        if tags:
            ents["hashtags"] = [dict(zip(("start", "end"), span("#" + t)), tag=t) for t in tags]
        if mentioned:
            ents["mentions"] = [dict(zip(("start", "end"), span("@" + u["username"])), username=u["username"],
                                     id=u["id"]) for u in mentioned]
        if urls:
            ents["urls"] = [dict(zip(("start", "end"), span(u)), url=u, expanded_url=f"https://example.com/{i}",
                                 display_url=f"example.com/{i}") for i, u in enumerate(urls)]
        return ents

    def _post(self, seq: int) -> Post:
        rng = self.rng
        author = self._author()
        text, tags, mentioned, urls = self._text()
        pid = post_id(seq)
        ms = _EPOCH_MS + seq * 137
        kind = rng.random()
        referenced: JsonObject | None = None
        replied_to_user: JsonObject | None = None
        refs: list[JsonObject] = []
        if kind < 0.12:  # a retweet: "RT @orig: ..."
            orig = self._author()
            ref_id = str(_OLD_ID + rng.randrange(10**17))
            referenced = {"id": ref_id, "text": text, "edit_history_tweet_ids": [ref_id], "author_id": orig["id"],
                          "created_at": _iso(ms - rng.randrange(10**8)), "lang": "en"}
            text = f"RT @{orig['username']}: {text}"[:280]
            mentioned = [orig, *mentioned]
            refs = [{"type": "retweeted", "id": ref_id}]
        elif kind < 0.20:  # a reply
            replied_to_user = self._author()
            ref_id = str(_OLD_ID + rng.randrange(10**17))
            referenced = {"id": ref_id, "text": " ".join(rng.sample(WORDS, 8)), "edit_history_tweet_ids": [ref_id],
                          "author_id": replied_to_user["id"], "created_at": _iso(ms - 60_000), "lang": "en"}
            text = f"@{replied_to_user['username']} {text}"
            mentioned = [replied_to_user, *mentioned]
            refs = [{"type": "replied_to", "id": ref_id}]
        elif kind < 0.26:  # a quote
            ref_id = str(_OLD_ID + rng.randrange(10**17))
            referenced = {"id": ref_id, "text": " ".join(rng.sample(WORDS, 10)), "edit_history_tweet_ids": [ref_id],
                          "author_id": self._author()["id"], "created_at": _iso(ms - 3_600_000), "lang": "en"}
            refs = [{"type": "quoted", "id": ref_id}]
        lang = rng.choice(LANGS)
        data: JsonObject = {
            "id": pid,
            "text": text,
            "edit_history_tweet_ids": [pid],
            "author_id": author["id"],
            "created_at": _iso(ms),
            "conversation_id": refs[0]["id"] if refs and refs[0]["type"] == "replied_to" else pid,
            "lang": lang,
            "possibly_sensitive": rng.random() < 0.02,
            "reply_settings": "everyone",
            "edit_controls": {"edits_remaining": 5, "is_edit_eligible": not refs,
                              "editable_until": _iso(ms + 3_600_000)},
            "public_metrics": {"retweet_count": int(rng.paretovariate(1.5)) - 1, "reply_count": rng.randrange(20),
                               "like_count": int(rng.paretovariate(1.1)) - 1, "quote_count": rng.randrange(5),
                               "bookmark_count": rng.randrange(10), "impression_count": rng.randrange(100000)},
            "display_text_range": [0, len(text)],
        }
        ents = self._entities(text, tags, mentioned, urls)
        if len(text) > MAX_TEXT:  # a long post: text cut at 280, the whole in note_tweet
            data["note_tweet"] = {"text": text, "entities": ents}
            data["text"] = text[: MAX_TEXT - 1].rstrip() + "…"
            data["display_text_range"] = [0, len(data["text"])]
            ents = {k: [e for e in v if e["end"] <= MAX_TEXT - 1] for k, v in ents.items()}
            ents = {k: v for k, v in ents.items() if v}
        if ents:
            data["entities"] = ents
        if refs:
            data["referenced_tweets"] = refs
        if replied_to_user is not None:
            data["in_reply_to_user_id"] = replied_to_user["id"]
        if rng.random() < 0.25:
            data["context_annotations"] = [
                {"domain": {"id": str(rng.randrange(10, 200)), "name": d,
                            "description": " ".join(rng.sample(WORDS, 6))},
                 "entity": {"id": str(_OLD_ID + rng.randrange(10**17)), "name": rng.choice(_ENTITIES)}}
                for d in rng.sample(_DOMAINS, rng.randrange(1, 4))]
        media: list[JsonObject] = []
        if rng.random() < 0.15:
            for _ in range(rng.randrange(1, 3)):
                key = f"3_{_OLD_ID + rng.randrange(10**17)}"
                kind_m = rng.choice(("photo", "photo", "video", "animated_gif"))
                m: JsonObject = {"media_key": key, "type": kind_m, "width": rng.choice((1200, 1080, 640)),
                                 "height": rng.choice((675, 1350, 480)),
                                 "url": f"https://pbs.twimg.com/media/{key}.jpg",
                                 "alt_text": " ".join(rng.sample(WORDS, 5))}
                if kind_m != "photo":
                    m["preview_image_url"] = f"https://pbs.twimg.com/ext_tw_video_thumb/{key}.jpg"
                    m["duration_ms"] = rng.randrange(1000, 140000)
                    m["public_metrics"] = {"view_count": rng.randrange(10**6)}
                    m["variants"] = [{"bit_rate": b, "content_type": "video/mp4",
                                      "url": f"https://video.twimg.com/{key}/{b}.mp4"} for b in (256000, 832000)]
                media.append(m)
            data["attachments"] = {"media_keys": [m["media_key"] for m in media]}
        poll: JsonObject | None = None
        if not media and rng.random() < 0.02:
            poll = {"id": str(_OLD_ID + rng.randrange(10**17)), "voting_status": "open", "duration_minutes": 1440,
                    "end_datetime": _iso(ms + 86_400_000),
                    "options": [{"position": i + 1, "label": w, "votes": rng.randrange(100)}
                                for i, w in enumerate(rng.sample(WORDS, 3))]}
            data["attachments"] = {"poll_ids": [poll["id"]]}
        place: JsonObject | None = None
        if rng.random() < 0.05:
            pid_, full, name, cc, country, ptype, bbox = rng.choice(_PLACES)
            place = {"id": pid_, "full_name": full, "name": name, "country_code": cc, "country": country,
                     "place_type": ptype, "geo": {"type": "Feature", "bbox": bbox, "properties": {}}}
            data["geo"] = {"place_id": pid_}
        facts = PostFacts(
            tokens=tokenize(text),
            hashtags=frozenset(t.lower() for t in tags),
            mentions=frozenset(u["username"].lower() for u in mentioned),
            author=author["username"].lower(),
            author_id=author["id"],
            lang=lang,
            is_retweet=bool(refs) and refs[0]["type"] == "retweeted",
            is_reply=bool(refs) and refs[0]["type"] == "replied_to",
            is_quote=bool(refs) and refs[0]["type"] == "quoted",
        )
        return Post(data, author, tuple(mentioned), replied_to_user, referenced, tuple(media), place, poll, facts)

    # -- compliance --------------------------------------------------------------
    def _tweet_event(self, seq: int) -> JsonObject:
        rng = self.rng
        kind = rng.choices(("delete", "tweet_edit", "withheld", "drop", "undrop"), (60, 15, 10, 10, 5))[0]
        at = _iso(_EPOCH_MS + seq * 911)
        target = {"id": post_id(seq), "author_id": rng.choice(self.users)["id"]}
        if kind == "tweet_edit":
            first = str(_OLD_ID + rng.randrange(10**17))
            return {"data": {"tweet_edit": {"tweet": {"id": target["id"]}, "event_at": at, "initial_tweet_id": first,
                                            "edit_tweet_ids": [first, target["id"]]}}}
        body: JsonObject = {"tweet": target, "event_at": at}
        if kind == "withheld":
            body["withheld_in_countries"] = rng.sample(["DE", "FR", "TR", "IN", "RU", "BR"], rng.randrange(1, 3))
        return {"data": {kind: body}}

    def _user_event(self, seq: int) -> JsonObject:
        rng = self.rng
        kind = rng.choices(("user_delete", "user_undelete", "user_suspend", "user_unsuspend", "user_protect",
                            "user_unprotect", "user_withheld", "user_profile_modification", "scrub_geo"),
                           (30, 5, 15, 5, 10, 5, 10, 15, 5))[0]
        at = _iso(_EPOCH_MS + seq * 911)
        body: JsonObject = {"user": {"id": rng.choice(self.users)["id"]}, "event_at": at}
        if kind == "user_withheld":
            body["withheld_in_countries"] = rng.sample(["DE", "FR", "TR", "IN", "RU", "BR"], rng.randrange(1, 3))
        elif kind == "user_profile_modification":
            body["profile_field"] = rng.choice(("name", "description", "location", "url"))
            body["new_value"] = " ".join(rng.sample(WORDS, 3))
        elif kind == "scrub_geo":
            body["up_to_tweet_id"] = post_id(seq)
        return {"data": {kind: body}}

    # -- rendering ---------------------------------------------------------------
    def render(self, post: Post, fields: FieldSet) -> JsonObject:
        """The line X sends for this post and these fields (without ``matching_rules``)."""
        want = set(fields.tweet_fields)
        exp = fields.expansions
        if "author_id" in exp or "referenced_tweets.id.author_id" in exp:
            want.add("author_id")
        if "referenced_tweets.id" in exp or "referenced_tweets.id.author_id" in exp:
            want.add("referenced_tweets")
        if "attachments.media_keys" in exp or "attachments.poll_ids" in exp:
            want.add("attachments")
        if "geo.place_id" in exp:
            want.add("geo")
        if "in_reply_to_user_id" in exp:
            want.add("in_reply_to_user_id")
        if "entities.mentions.username" in exp:
            want.add("entities")
        data = _pick(post.data, frozenset(want), ("id", "text", "edit_history_tweet_ids"), TWEET_FIELDS)
        line: JsonObject = {"data": data}
        includes: JsonObject = {}
        users: list[JsonObject] = []

        def add_user(user: JsonObject | None) -> None:
            if user is not None and all(u["id"] != user["id"] for u in users):
                users.append(_pick(user, fields.user_fields, ("id", "name", "username"), USER_FIELDS))

        if "author_id" in exp:
            add_user(post.author)
        if "entities.mentions.username" in exp:
            for user in post.mentioned:
                add_user(user)
        if "in_reply_to_user_id" in exp:
            add_user(post.replied_to_user)
        if post.referenced is not None and ("referenced_tweets.id" in exp or "referenced_tweets.id.author_id" in exp):
            includes["tweets"] = [_pick(post.referenced, fields.tweet_fields, ("id", "text", "edit_history_tweet_ids"),
                                        TWEET_FIELDS)]
            if "referenced_tweets.id.author_id" in exp:
                ref_author = next((u for u in self.users if u["id"] == post.referenced["author_id"]), None)
                add_user(ref_author)
        if users:
            includes["users"] = users
        if post.media and "attachments.media_keys" in exp:
            includes["media"] = [_pick(m, fields.media_fields, ("media_key", "type"), MEDIA_FIELDS) for m in post.media]
        if post.poll is not None and "attachments.poll_ids" in exp:
            includes["polls"] = [_pick(post.poll, fields.poll_fields, ("id", "options"), POLL_FIELDS)]
        if post.place is not None and "geo.place_id" in exp:
            includes["places"] = [_pick(post.place, fields.place_fields, ("full_name", "id"), PLACE_FIELDS)]
        if includes:
            line["includes"] = includes
        return line

    def compliance_lines(self, content: str) -> list[bytes]:
        """The compliance events (``tweet_events`` or ``user_events``) rendered like ``rendered``."""
        cached = self._compliance.get(content)
        if cached is None:
            events = self.tweet_events if content == "tweet_events" else self.user_events
            cached = self._compliance[content] = [orjson.dumps(e)[:-1] for e in events]
        return cached

    def rendered(self, fields: FieldSet) -> list[bytes]:
        """Every post's line for these fields, without its closing brace (see ``stream.py``)."""
        cached = self._rendered.get(fields)
        if cached is not None:
            return cached
        out = [orjson.dumps(self.render(p, fields))[:-1] for p in self.posts]
        if len(self._rendered) >= 16:
            self._rendered.pop(next(iter(self._rendered)))
        self._rendered[fields] = out
        return out


_CORPORA: dict[int, XCorpus] = {}


def corpus_for(seed: int) -> XCorpus:
    """The (cached) corpus of a seed: built once per process, about a second."""
    corpus = _CORPORA.get(seed)
    if corpus is None:
        if len(_CORPORA) >= 4:
            _CORPORA.pop(next(iter(_CORPORA)))
        corpus = _CORPORA[seed] = XCorpus(seed)
    return corpus
