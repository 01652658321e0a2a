"""A deterministic generator of realistic Streaming API v1.1 messages.

A seed makes the same stream. Statuses carry the real field set (user
object, entities, ``extended_tweet`` for long text, retweets, quotes,
places/coordinates for some), unicode and emoji, and sizes like real ones
(``realistic``: median about 3.5 KB with a tail past 12 KB; ``small``: about
300 B). Control messages (delete, scrub_geo, status_withheld,
user_withheld) are mixed in at realistic proportions.

Ids are rendered with a fixed-width sentinel prefix (see ``ID_SENTINEL``) so
a pre-rendered pool can be re-issued with ever-increasing ids by one
``bytes.replace`` per cycle instead of re-serialising every message.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import orjson

from flamingo._types import JsonObject
from flamingo.domain.matching import Predicates
from flamingo.domain.predicates import parse_boxes, split_values

__all__ = ["Corpus", "ID_SENTINEL", "ID_LOW_DIGITS", "id_prefix", "make_matching"]

#: 12 digits that stand for "this cycle's id prefix" in a rendered template.
ID_SENTINEL = b"918273645546"
#: ids are ``<12-digit cycle prefix><7-digit sequence>`` (19 digits, like snowflakes).
ID_LOW_DIGITS = 7
_ID_SCALE: int = 10**ID_LOW_DIGITS
_BASE_PREFIX = 150_000_000_000  # -> ids around 1.5e18, newer than any "old" id below
_OLD_ID_RANGE = (1_000_000_000_000_000_000, 1_400_000_000_000_000_000)
_EPOCH_MS = 1_700_000_000_000


def id_prefix(cycle: int) -> bytes:
    """The 12-digit prefix of ids in cycle ``cycle`` (strictly increasing)."""
    return b"%012d" % (_BASE_PREFIX + cycle)


def _sentinel_id(seq: int) -> int:
    return int(ID_SENTINEL) * _ID_SCALE + seq


WORDS = (
    "the a to and of in is it you that for on my this with be at just so me have "
    "love like new day good time now get today what one great people see go know "
    "think world music game happy night life best team back going really want "
    "austin texas london tokyo paris berlin nyc coffee weather rain sunny election "
    "vote news breaking update live watch video photo football soccer nba nfl "
    "python twisted redis stream data open source code release bug fix deploy "
    "café naïve résumé straße über mañana niño 東京 ラーメン 日本 привет мир "
    "año música ciudad amor gracias obrigado bom dia 안녕 사랑 سلام مرحبا"
).split()
EMOJI = ["😂", "❤️", "🔥", "👍", "🙏", "😭", "✨", "🎉", "🤔", "😍", "🚀", "🐦", "🌧️", "☕", "🇺🇸", "🇯🇵"]
HASHTAGS = ["austin", "SXSW", "python", "news", "love", "TBT", "music", "NBA", "WorldCup", "東京", "café", "OpenSource"]
DOMAINS = ["example.com", "news.example.org", "youtu.be", "instagram.com", "github.com", "nytimes.com", "bit.ly"]
SOURCES = [
    '<a href="http://twitter.com/download/iphone" rel="nofollow">Twitter for iPhone</a>',
    '<a href="http://twitter.com/download/android" rel="nofollow">Twitter for Android</a>',
    '<a href="https://mobile.twitter.com" rel="nofollow">Twitter Web App</a>',
    '<a href="https://about.twitter.com/products/tweetdeck" rel="nofollow">TweetDeck</a>',
]
LANGS = ["en"] * 12 + ["es", "es", "ja", "ja", "pt", "ar", "ko", "fr", "de", "und"]
PLACES = [
    ("Austin, TX", "Austin", "US", "United States", (-97.94, 30.10, -97.56, 30.52)),
    ("London, England", "London", "GB", "United Kingdom", (-0.51, 51.28, 0.33, 51.69)),
    ("Tokyo, Japan", "Tokyo", "JP", "Japan", (139.56, 35.53, 139.92, 35.82)),
    ("São Paulo, Brasil", "São Paulo", "BR", "Brasil", (-46.83, -23.99, -46.36, -23.36)),
    ("San Francisco, CA", "San Francisco", "US", "United States", (-122.51, 37.71, -122.36, 37.81)),
]
COUNTRIES = ["DE", "FR", "TR", "IN", "RU", "BR"]


def _created_at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%a %b %d %H:%M:%S +0000 %Y")


class Corpus:
    """Seeded message factory; ``messages()`` yields dicts in stream order."""

    def __init__(self, seed: int = 1, size: str = "realistic", n_users: int = 300):
        if size not in ("realistic", "small"):
            raise ValueError("size must be 'realistic' or 'small'")
        self.seed = seed
        self.size = size
        self.rng = random.Random(seed)
        self.users = [self._user() for _ in range(n_users)]
        self.seq = 0
        self.recent: list[tuple[int, int]] = []  # (status id, user id) for deletes
        self.ms = _EPOCH_MS + self.rng.randrange(10**9)

    # -- pieces -----------------------------------------------------------
    def _words(self, n: int) -> list[str]:
        rng = self.rng
        out = []
        for _ in range(n):
            r = rng.random()
            if r < 0.06:
                out.append(rng.choice(EMOJI))
            else:
                out.append(rng.choice(WORDS))
        return out

    def _user(self) -> JsonObject:
        rng = self.rng
        uid = rng.choice([rng.randrange(10**5, 10**9), rng.randrange(10**17, 2 * 10**18)])
        screen = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_0123456789") for _ in range(rng.randrange(4, 15)))
        if self.size == "small":
            return {"id": uid, "id_str": str(uid), "screen_name": screen}
        created = _created_at(1_200_000_000_000 + rng.randrange(500_000_000_000))

        def color() -> str:
            return "%06X" % rng.randrange(1 << 24)
        image = f"http://pbs.twimg.com/profile_images/{rng.randrange(10**18)}/{screen}_normal.jpg"
        return {
            "id": uid,
            "id_str": str(uid),
            "name": " ".join(w.capitalize() for w in self._words(rng.randrange(1, 4))),
            "screen_name": screen,
            "location": rng.choice(["Austin, TX", "London", "東京", "", "somewhere 🌍", "São Paulo"]),
            "url": rng.choice([None, f"https://{rng.choice(DOMAINS)}/{screen}"]),
            "description": " ".join(self._words(rng.randrange(5, 40))),
            "translator_type": "none",
            "protected": False,
            "verified": rng.random() < 0.03,
            "followers_count": int(rng.paretovariate(1.2) * 50),
            "friends_count": rng.randrange(0, 5000),
            "listed_count": rng.randrange(0, 200),
            "favourites_count": rng.randrange(0, 100_000),
            "statuses_count": rng.randrange(1, 200_000),
            "created_at": created,
            "utc_offset": None,
            "time_zone": None,
            "geo_enabled": rng.random() < 0.3,
            "lang": None,
            "contributors_enabled": False,
            "is_translator": False,
            "profile_background_color": color(),
            "profile_background_image_url": "http://abs.twimg.com/images/themes/theme1/bg.png",
            "profile_background_image_url_https": "https://abs.twimg.com/images/themes/theme1/bg.png",
            "profile_background_tile": False,
            "profile_link_color": color(),
            "profile_sidebar_border_color": color(),
            "profile_sidebar_fill_color": color(),
            "profile_text_color": color(),
            "profile_use_background_image": True,
            "profile_image_url": image,
            "profile_image_url_https": image.replace("http:", "https:"),
            "profile_banner_url": f"https://pbs.twimg.com/profile_banners/{uid}/{rng.randrange(10**9)}",
            "default_profile": rng.random() < 0.4,
            "default_profile_image": False,
            "following": None,
            "follow_request_sent": None,
            "notifications": None,
        }

    def _entities(self, text: str, tags: list[str], mentions: list[JsonObject], urls: list[str]) -> JsonObject:
        def span(token: str) -> list[int]:
            i = text.find(token)
            return [i, i + len(token)] if i >= 0 else [0, 0]

        ent: JsonObject = {
            "hashtags": [{"text": t, "indices": span("#" + t)} for t in tags],
            "urls": [
                {
                    "url": f"https://t.co/{abs(hash(u)) % 10**10:010d}",
                    "expanded_url": u,
                    "display_url": u.split("://", 1)[-1][:26],
                    "indices": span(u),
                }
                for u in urls
            ],
            "user_mentions": [
                {
                    "screen_name": m["screen_name"],
                    "name": m.get("name", m["screen_name"]),
                    "id": m["id"],
                    "id_str": m["id_str"],
                    "indices": span("@" + m["screen_name"]),
                }
                for m in mentions
            ],
            "symbols": [],
        }
        if self.size == "small":
            ent = {k: v for k, v in ent.items() if v}
        return ent

    def _text(self) -> tuple[str, list[str], list[JsonObject], list[str]]:
        rng = self.rng
        long = rng.random() < (0.25 if self.size == "realistic" else 0.0)
        small = self.size == "small"
        n = rng.randrange(25, 55) if long else rng.randrange(3, 18) if not small else rng.randrange(2, 7)
        words = self._words(n)
        tags = [rng.choice(HASHTAGS) for _ in range(rng.choice([0, 0, 0, 1] if small else [0, 0, 0, 1, 1, 2]))]
        mentions = [rng.choice(self.users) for _ in range(rng.choice([0, 0, 0, 0, 1] if small else [0, 0, 1, 1, 2]))]
        urls = [
            f"https://{rng.choice(DOMAINS)}/{rng.choice(WORDS)}/{rng.randrange(10**6)}"
            for _ in range(rng.choice([0, 0, 0, 0, 0, 1] if small else [0, 0, 0, 1]))
        ]
        parts = ["@" + m["screen_name"] for m in mentions] + words
        if rng.random() < 0.1:
            parts.insert(rng.randrange(len(parts) + 1), "\n")
        parts += ["#" + t for t in tags] + urls
        return " ".join(parts), tags, mentions, urls

    def _place(self) -> JsonObject:
        full, name, cc, country, (w, s, e, n) = self.rng.choice(PLACES)
        return {
            "id": "%016x" % self.rng.randrange(1 << 64),
            "url": "https://api.twitter.com/1.1/geo/id/x.json",
            "place_type": "city",
            "name": name,
            "full_name": full,
            "country_code": cc,
            "country": country,
            "bounding_box": {"type": "Polygon", "coordinates": [[[w, s], [w, n], [e, n], [e, s]]]},
            "attributes": {},
        }

    def _media(self, sid: int) -> JsonObject:
        rng = self.rng
        mid = rng.randrange(*_OLD_ID_RANGE)
        w, h = rng.choice([(1200, 675), (1080, 1080), (750, 1334)])
        url = f"http://pbs.twimg.com/media/{mid:x}.jpg"
        return {
            "id": mid,
            "id_str": str(mid),
            "indices": [0, 0],
            "media_url": url,
            "media_url_https": url.replace("http:", "https:"),
            "url": f"https://t.co/{mid % 10**10:010d}",
            "display_url": f"pic.twitter.com/{mid % 10**10:010d}",
            "expanded_url": f"https://twitter.com/i/web/status/{sid}/photo/1",
            "type": "photo",
            "sizes": {
                name: {"w": w // d, "h": h // d, "resize": "crop" if name == "thumb" else "fit"}
                for name, d in (("thumb", 8), ("small", 2), ("medium", 1), ("large", 1))
            },
        }

    def status(self, *, nested: bool = False) -> JsonObject:
        """One status; ``nested`` ones (retweeted/quoted) get an old, fixed id."""
        rng = self.rng
        user = rng.choice(self.users)
        text, tags, mentions, urls = self._text()
        if nested:
            sid = rng.randrange(*_OLD_ID_RANGE)
        else:
            sid = _sentinel_id(self.seq)
            self.seq += 1
        self.ms += rng.randrange(1, 40)
        lang = rng.choice(LANGS)
        if self.size == "small":
            tweet: JsonObject = {
                "created_at": _created_at(self.ms),
                "id": sid,
                "id_str": str(sid),
                "text": text,
                "user": user,
                "entities": self._entities(text, tags, mentions, urls),
                "lang": lang,
                "timestamp_ms": str(self.ms),
            }
            if rng.random() < 0.02:
                place = self._place()
                w, s, e, n = PLACES[0][4]
                point = [round(rng.uniform(w, e), 5), round(rng.uniform(s, n), 5)]
                tweet["coordinates"] = {"type": "Point", "coordinates": point}
                del place
        else:
            reply = mentions[0] if mentions and rng.random() < 0.5 else None
            reply_id = rng.randrange(*_OLD_ID_RANGE) if reply else None
            truncated = len(text) > 140
            tweet = {
                "created_at": _created_at(self.ms),
                "id": sid,
                "id_str": str(sid),
                "text": (text[:137] + "…") if truncated else text,
                "display_text_range": [0, min(len(text), 140)],
                "source": rng.choice(SOURCES),
                "truncated": truncated,
                "in_reply_to_status_id": reply_id,
                "in_reply_to_status_id_str": str(reply_id) if reply_id else None,
                "in_reply_to_user_id": reply["id"] if reply else None,
                "in_reply_to_user_id_str": reply["id_str"] if reply else None,
                "in_reply_to_screen_name": reply["screen_name"] if reply else None,
                "user": user,
                "geo": None,
                "coordinates": None,
                "place": None,
                "contributors": None,
                "is_quote_status": False,
                "quote_count": rng.randrange(0, 5),
                "reply_count": rng.randrange(0, 10),
                "retweet_count": rng.randrange(0, 50),
                "favorite_count": rng.randrange(0, 200),
                "entities": self._entities(text if not truncated else text[:140], tags, mentions, urls),
                "favorited": False,
                "retweeted": False,
                "filter_level": rng.choice(["low", "low", "medium", "none"]),
                "lang": lang,
            }
            if truncated:
                tweet["extended_tweet"] = {
                    "full_text": text,
                    "display_text_range": [0, len(text)],
                    "entities": self._entities(text, tags, mentions, urls),
                }
            if urls:
                tweet["possibly_sensitive"] = False
            if rng.random() < 0.2:
                tweet["extended_entities"] = {"media": [self._media(sid) for _ in range(rng.choice([1, 1, 2, 4]))]}
            if rng.random() < 0.04:
                place = self._place()
                tweet["place"] = place
                if rng.random() < 0.5:
                    ring = place["bounding_box"]["coordinates"][0]
                    (w, s), (e, n) = ring[0], ring[2]
                    lon, lat = round(rng.uniform(w, e), 6), round(rng.uniform(s, n), 6)
                    tweet["geo"] = {"type": "Point", "coordinates": [lat, lon]}
                    tweet["coordinates"] = {"type": "Point", "coordinates": [lon, lat]}
            if not nested:
                r = rng.random()
                if r < 0.30:
                    inner = self.status(nested=True)
                    if rng.random() < 0.25:
                        quoted = self.status(nested=True)
                        inner.update(is_quote_status=True, quoted_status_id=quoted["id"],
                                     quoted_status_id_str=quoted["id_str"], quoted_status=quoted)
                    tweet["retweeted_status"] = inner
                    tweet["text"] = f"RT @{inner['user']['screen_name']}: {inner['text']}"[:140]
                    tweet["retweet_count"] = 0
                elif r < 0.38:
                    inner = self.status(nested=True)
                    tweet["is_quote_status"] = True
                    tweet["quoted_status_id"] = inner["id"]
                    tweet["quoted_status_id_str"] = inner["id_str"]
                    tweet["quoted_status"] = inner
        if not nested:
            tweet["timestamp_ms"] = str(self.ms)
            self.recent.append((sid, user["id"]))
            del self.recent[:-500]
        return tweet

    def control(self) -> JsonObject | None:
        """A control message at realistic odds (None most of the time)."""
        rng = self.rng
        r = rng.random()
        if r < 0.06 and self.recent:
            sid, uid = rng.choice(self.recent)
            return {
                "delete": {
                    "status": {"id": sid, "id_str": str(sid), "user_id": uid, "user_id_str": str(uid)},
                    "timestamp_ms": str(self.ms),
                }
            }
        if r < 0.0615 and self.recent:
            sid, uid = rng.choice(self.recent)
            return {"scrub_geo": {"user_id": uid, "user_id_str": str(uid),
                                  "up_to_status_id": sid, "up_to_status_id_str": str(sid)}}
        if r < 0.0625 and self.recent:
            sid, uid = rng.choice(self.recent)
            return {"status_withheld": {"id": sid, "user_id": uid, "withheld_in_countries": rng.sample(COUNTRIES, 2)}}
        if r < 0.063:
            return {"user_withheld": {"id": rng.choice(self.users)["id"],
                                      "withheld_in_countries": [rng.choice(COUNTRIES)]}}
        return None

    def messages(self, transform: Callable[[JsonObject], JsonObject | None] | None = None) -> Iterator[JsonObject]:
        """Statuses (optionally transformed; None drops one) with control messages mixed in."""
        while True:
            ctl = self.control()
            if ctl is not None:
                yield ctl
                continue
            tweet = self.status()
            if transform is not None:
                bent = transform(tweet)
                if bent is None:
                    continue
                tweet = bent
            yield tweet


def make_matching(corpus: Corpus, params: dict[str, list[str]]) -> Callable[[JsonObject], JsonObject | None]:
    """A transform that bends generated statuses to match filter ``params``.

    Each status is made to match one predicate at random (a tracked phrase
    put in the text, a followed user as author / reply target, a point in a
    box), then checked with ``Predicates.matches``: only true matches pass.
    """
    rng = random.Random(corpus.seed * 7919 + 1)
    preds = Predicates.from_params(params)
    phrases = split_values(params.get("track", ()))
    follow = [int(v) for v in split_values(params.get("follow", ())) if v.isdigit()]
    try:
        boxes = parse_boxes(split_values(params.get("locations", ())))
    except ValueError:
        boxes = []
    languages = split_values(params.get("language", ()))
    kinds = [k for k, present in (("track", phrases), ("follow", follow), ("locations", boxes)) if present]

    def transform(tweet: JsonObject) -> JsonObject | None:
        if languages:
            tweet["lang"] = rng.choice(languages)
        if preds.filter_level != "none":
            tweet["filter_level"] = "medium"
        kind = rng.choice(kinds) if kinds else None
        if kind == "track":
            phrase = rng.choice(phrases)
            words = phrase.split()
            if len(words) == 1 and rng.random() < 0.3 and words[0].isalnum():
                tag = words[0].lstrip("#")
                tweet["text"] = tweet["text"] + " #" + tag
                tweet.setdefault("entities", {}).setdefault("hashtags", []).append({"text": tag, "indices": [0, 0]})
            else:
                tweet["text"] = " ".join(words) + " " + tweet["text"]
            ext = tweet.get("extended_tweet")
            if ext:
                ext["full_text"] = " ".join(words) + " " + ext["full_text"]
        elif kind == "follow":
            uid = rng.choice(follow)
            if rng.random() < 0.7:
                tweet["user"] = dict(tweet["user"], id=uid, id_str=str(uid))
            else:
                tweet["in_reply_to_user_id"] = uid
                tweet["in_reply_to_user_id_str"] = str(uid)
        elif kind == "locations":
            w, s, e, n = rng.choice(boxes)
            lon, lat = round(rng.uniform(w, e), 6), round(rng.uniform(s, n), 6)
            lon, lat = min(max(lon, w), e), min(max(lat, s), n)
            tweet["coordinates"] = {"type": "Point", "coordinates": [lon, lat]}
            tweet["geo"] = {"type": "Point", "coordinates": [lat, lon]}
        return tweet if preds.matches(tweet) else None

    return transform


def dumps(message: JsonObject) -> bytes:
    """Compact JSON without ``\\r`` (orjson escapes control characters)."""
    return orjson.dumps(message)
