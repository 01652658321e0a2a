"""Matching tweets and posts against terms: subscriptions' filters and v1.1's predicates.

Follows the v1.1 documentation: ``track`` phrases are OR'ed (comma) and their
words AND'ed (space), case-insensitive, against the text, hashtags, mentions
and expanded URLs; ``follow`` matches tweets by, replies to and retweets of
the ids; ``locations`` matches coordinates inside a box (or a place whose box
intersects one); the three are OR'ed, then ``language`` and ``filter_level``
narrow the result. ``TermMatcher`` is the same ``track`` rule as a
subscription's ``filter``, with a bytes prefilter that rules most events out
unparsed. Pure: what is valid is predicates.py's business.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Mapping as _AbcMapping
from typing import TypeGuard

import attrs
import orjson

from flamingo._types import JsonMapping
from flamingo.domain.predicates import FILTER_LEVELS, FOLLOW_ID, parse_boxes, split_values

__all__ = ["Predicates", "TermMatcher", "haystack", "Haystack", "prefilter_view", "PREFILTER_WINDOW"]

_WORD = re.compile(r"[#@$]?\w+", re.UNICODE)
_PLAIN = re.compile(r"\w+", re.UNICODE)


def _is_map(x: object) -> TypeGuard[JsonMapping]:
    # parsed JSON is plain dicts: the exact-type test spares the ABC check
    # (``isinstance(x, typing.Mapping)`` costs ~1.5 us per call on the hot path)
    return type(x) is dict or isinstance(x, _AbcMapping)


def _status_parts(tweet: JsonMapping) -> Iterable[JsonMapping]:
    """The tweet and the retweeted / quoted statuses it carries (their text counts too)."""
    parts = [tweet]
    for key in ("retweeted_status", "quoted_status"):
        inner = tweet.get(key)
        if inner is not None and _is_map(inner):
            parts.append(inner)
    return parts


def _text_of(status: JsonMapping) -> str:
    ext = status.get("extended_tweet")
    if ext is not None and _is_map(ext):
        full = ext.get("full_text")
        if isinstance(full, str):
            return full
    text = status.get("full_text", status.get("text"))
    return text if isinstance(text, str) else ""


def _entities_of(status: JsonMapping) -> JsonMapping:
    ext = status.get("extended_tweet")
    if ext is not None and _is_map(ext):
        ent = ext.get("entities")
        if ent is not None and _is_map(ent):
            return ent
    ent = status.get("entities")
    return ent if ent is not None and _is_map(ent) else {}


class _Haystack:
    """The lower-cased texts, urls, hashtags and mentions of a tweet and its inner statuses.

    ``tokens`` (the words a plain term must equal) is built on first use:
    ``TermMatcher`` first checks that every word of a phrase occurs in
    ``every`` at all, which rules out most tweets without tokenising them.
    """

    __slots__ = ("text", "every", "_texts", "_urls", "_tags", "_mentions", "_tokens")

    def __init__(self, texts: list[str], urls: list[str], tags: list[str], mentions: list[str]) -> None:
        self._texts, self._urls, self._tags, self._mentions = texts, urls, tags, mentions
        self.text = "\n".join(texts + urls)  # for terms with punctuation (order is irrelevant:
        # a term has no newline, so it cannot straddle two pieces)
        self.every = "\n".join(texts + urls + tags + mentions)  # every token is a substring of this
        self._tokens: frozenset[str] | None = None

    @property
    def tokens(self) -> frozenset[str]:
        if self._tokens is None:
            findall = _WORD.findall
            tokens: set[str] = set()
            for text in self._texts:
                words = findall(text)
                tokens.update(words)
                tokens.update([tok[1:] for tok in words if tok[0] in "#@$"])
            for url in self._urls:
                tokens.update(findall(url))
            for t in self._tags:
                tokens.add(t)
                tokens.add("#" + t)
            for m in self._mentions:
                tokens.add(m)
                tokens.add("@" + m)
            self._tokens = frozenset(tokens)
        return self._tokens


#: built by other sources' text extractors (jetstream_events.post_haystack)
Haystack = _Haystack


def _list(x: object) -> list[object]:
    """An entity list as upstream sends it; anything else (a number, an object) holds none."""
    return x if type(x) is list else []


def _haystack(tweet: JsonMapping) -> _Haystack:
    texts: list[str] = []
    urls: list[str] = []
    tags: list[str] = []
    mentions: list[str] = []
    for status in _status_parts(tweet):
        texts.append(_text_of(status).lower())
        entities = _entities_of(status)
        for tag in _list(entities.get("hashtags")):
            if _is_map(tag):
                t = tag.get("text")
                if isinstance(t, str):
                    tags.append(t.lower())
        for mention in _list(entities.get("user_mentions")):
            if _is_map(mention):
                m = mention.get("screen_name")
                if isinstance(m, str):
                    mentions.append(m.lower())
        for url in _list(entities.get("urls")):
            if _is_map(url):
                expanded = url.get("expanded_url") or url.get("url")
                if isinstance(expanded, str):
                    urls.append(expanded.lower())
    return _Haystack(texts, urls, tags, mentions)


def haystack(tweet: object) -> _Haystack | None:
    """What terms are matched against (None when ``tweet`` is not an object).

    Built once per tweet and shared by every ``TermMatcher`` that looks at it.
    """
    if not _is_map(tweet):
        return None
    return _haystack(tweet)


def _is_word_char(c: str) -> bool:
    """``re``'s ``\\w`` for one character of a str (sre: alphanumeric or ``_``)."""
    return c.isalnum() or c == "_"


def _has_run(text: str, word: str, not_after: str = "") -> bool:
    """``word`` (all word characters) occurs in ``text`` as a whole run of word characters,
    not right after a character of ``not_after``."""
    n = len(word)
    i = text.find(word)
    while i != -1:
        j = i + n
        if (i == 0 or not (_is_word_char(text[i - 1]) or text[i - 1] in not_after)) and \
                (j == len(text) or not _is_word_char(text[j])):
            return True
        i = text.find(word, i + 1)
    return False


def _plain_in_tokens(word: str, hay: _Haystack) -> bool:
    """``word in hay.tokens`` for a plain word (``\\w+``), without building the tokens.

    ``findall([#@$]?\\w+)`` makes each maximal run of word characters a token (a text's
    ``#x`` / ``@x`` / ``$x`` tokens are also added bare); a URL's run right after ``#``,
    ``@`` or ``$`` is only the prefixed token; hashtags and mentions are tokens as they are.
    """
    return (any(_has_run(t, word) for t in hay._texts) or any(_has_run(u, word, "#@$") for u in hay._urls)
            or word in hay._tags or word in hay._mentions)


def _word_matches(word: str, hay: _Haystack, plain: bool = False) -> bool:
    if plain:
        return _plain_in_tokens(word, hay)
    if word in hay.tokens:
        return True
    if _WORD.fullmatch(word):
        return False
    # punctuation is part of the term (e.g. "example.com", "c++"): substring match
    return word in hay.text


# --- the bytes-level prefilter ----------------------------------------------
#
# Every token a word can match (and every text a punctuated word can be a
# substring of) is a piece of a JSON string in the raw message, lower-cased;
# ``#tag`` / ``@name`` tokens are also made from the entity's bare text. So a
# word's "needle" (the word without one leading # or @) occurs in
# ``raw.lower()`` whenever the word matches — provided that
#   - the needle is ASCII (bytes.lower() folds ASCII only),
#   - the needle holds no character JSON may escape without \u (" \ / and
#     controls), so its occurrence is literal in the raw bytes,
#   - no \u escape in the raw stands for an ASCII character or for one of the
#     two non-ASCII characters whose str.lower() has ASCII in it (U+0130 İ and
#     U+212A Kelvin sign), and neither of those two occurs literally.
# When any of this does not hold the prefilter says "maybe" and the message is
# parsed; it never changes a result, it only skips parses.

_FOLDS_TO_ASCII = (b"\xc4\xb0", b"\xe2\x84\xaa")  # U+0130, U+212A in UTF-8
_UNSAFE_ESCAPE = re.compile(rb"\\u(?:00[0-7]|0130|212[aA])")
_JSON_ESCAPED = frozenset('"\\/') | frozenset(chr(i) for i in range(32)) | {"\x7f"}


#: the prefilter is paused for PREFILTER_PAUSE messages when more than
#: PREFILTER_MAX_PASS of the last PREFILTER_WINDOW passed it (parsing them costs
#: ~3x the check: above ~2/3 passing, the check costs more than it saves)
PREFILTER_WINDOW = 512
PREFILTER_MAX_PASS = 0.6
PREFILTER_PAUSE = 8192


def prefilter_view(raw: bytes) -> bytes | None:
    """``raw`` lower-cased for ``TermMatcher.may_match``, or None when bytes cannot decide."""
    if _UNSAFE_ESCAPE.search(raw) is not None:  # (a literal-prefix scan: faster than `in`)
        return None
    if not raw.isascii() and (  # one-byte scans (memchr) first, the pair only if needed
            (b"\xb0" in raw and _FOLDS_TO_ASCII[0] in raw)
            or (b"\xaa" in raw and _FOLDS_TO_ASCII[1] in raw)):
        return None
    return raw.lower()


def _needles(phrases: tuple[tuple[str, ...], ...]) -> tuple[tuple[bytes, ...], ...] | None:
    out = []
    for phrase in phrases:
        needles = []
        for word in phrase:
            needle = word[1:] if word[:1] in ("#", "@") else word
            if not needle.isascii() or not _JSON_ESCAPED.isdisjoint(needle):
                return None  # this matcher cannot be decided on bytes
            needles.append(needle.encode("ascii"))
        out.append(tuple(needles))
    return tuple(out)


class TermMatcher:
    """``track``-style terms: any phrase (comma = OR) whose words all appear (space = AND).

    Reused by the dispatcher's subscription ``filter`` so a subscription
    matches exactly what the service would have sent for the same terms.
    ``may_match(prefilter_view(raw))`` is False only for raw messages that
    cannot match, so callers skip parsing them.
    """

    def __init__(self, terms: Iterable[str]):
        self.phrases: tuple[tuple[str, ...], ...] = tuple(
            tuple(phrase.lower().split()) for phrase in split_values(terms)
        )
        self.needles = _needles(self.phrases)
        self._bare = tuple(tuple(w[1:] if w[:1] in ("#", "@") else w for w in p) for p in self.phrases)
        #: per phrase, (word, plain): a plain word (``\\w+``) is looked up without the token set
        self._words = tuple(tuple((w, _PLAIN.fullmatch(w) is not None) for w in p) for p in self.phrases)
        # the prefilter pays when it rules out most messages; terms common in the
        # stream (in user descriptions, say) pass it anyway: then it is paused
        self._checked = self._passed = self._paused = 0

    def __bool__(self) -> bool:
        return bool(self.phrases)

    def __repr__(self) -> str:
        return f"TermMatcher({[' '.join(p) for p in self.phrases]!r})"

    def wants_prefilter(self) -> bool:
        """Whether ``may_match`` is worth its cost now (a pure speed decision)."""
        if self.needles is None:
            return False
        if self._paused:
            self._paused -= 1
            return False
        return True

    def may_match(self, view: bytes | None) -> bool:
        """False when a message whose ``prefilter_view`` is ``view`` certainly does not match."""
        if view is None or self.needles is None:
            return True
        self._checked += 1
        if self._checked >= PREFILTER_WINDOW:
            if self._passed > PREFILTER_WINDOW * PREFILTER_MAX_PASS:
                self._paused = PREFILTER_PAUSE
            self._checked = self._passed = 0
        for needles in self.needles:
            for needle in needles:
                if needle not in view:
                    break
            else:
                self._passed += 1
                return True
        return False

    def matches_raw(self, raw: bytes) -> bool:
        """``matches`` of the parsed message, skipping the parse when the bytes rule it out."""
        if not self.phrases:
            return False
        if self.wants_prefilter() and not self.may_match(prefilter_view(raw)):
            return False
        try:
            tweet = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
        return self.matches(tweet)

    def matches(self, tweet: JsonMapping) -> bool:
        if not self.phrases or not _is_map(tweet):
            return False
        hay = _haystack(tweet)
        return self.matches_haystack(hay)

    def matches_haystack(self, hay: _Haystack) -> bool:
        every = hay.every
        for words, bare in zip(self._words, self._bare):
            for b in bare:  # cheap and necessary: each word (less one # or @) occurs somewhere
                if b not in every:
                    break
            else:
                for w, plain in words:
                    if not _word_matches(w, hay, plain):
                        break
                else:
                    return True
        return False


def _user_id(obj: object) -> int | None:
    if _is_map(obj):
        user = obj.get("user")
        uid = user.get("id") if _is_map(user) else None
        if isinstance(uid, int):
            return uid
    return None


def _inside(lon: float, lat: float, box: tuple[float, float, float, float]) -> bool:
    w, s, e, n = box
    return w <= lon <= e and s <= lat <= n


def _intersects(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _place_box(tweet: JsonMapping) -> tuple[float, float, float, float] | None:
    place = tweet.get("place")
    if not _is_map(place):
        return None
    bbox = place.get("bounding_box")
    if not _is_map(bbox):
        return None
    try:
        ring = bbox["coordinates"][0]
        lons = [float(p[0]) for p in ring]
        lats = [float(p[1]) for p in ring]
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    return (min(lons), min(lats), max(lons), max(lats))


@attrs.frozen
class Predicates:
    """Parsed, validated-elsewhere predicates of one stream connection."""

    track: TermMatcher | None = None
    follow: frozenset[int] = frozenset()
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    languages: frozenset[str] = frozenset()
    filter_level: str = "none"

    @classmethod
    def from_params(cls, params: Mapping[str, Sequence[str]]) -> Predicates:
        """Build from (already validated) parameters; invalid parts are ignored."""
        track = TermMatcher(params.get("track", ()))
        follow = frozenset(
            int(v) for v in split_values(params.get("follow", ())) if FOLLOW_ID.match(v)
        )
        try:
            boxes = tuple(parse_boxes(split_values(params.get("locations", ()))))
        except ValueError:
            boxes = ()
        languages = frozenset(v.lower() for v in split_values(params.get("language", ())))
        level = (list(params.get("filter_level", ())) or ["none"])[0]
        return cls(track or None, follow, boxes, languages, level if level in FILTER_LEVELS else "none")

    @property
    def has_predicates(self) -> bool:
        return bool(self.track or self.follow or self.boxes)

    def matches(self, tweet: JsonMapping) -> bool:
        """Would the service have delivered this status on this connection?"""
        if not _is_map(tweet) or "user" not in tweet:
            return False
        if self.languages and str(tweet.get("lang", "")).lower() not in self.languages:
            return False
        if self.filter_level != "none":
            level = tweet.get("filter_level", "none")
            rank = FILTER_LEVELS.index(level) if level in FILTER_LEVELS else 0
            if rank < FILTER_LEVELS.index(self.filter_level):
                return False
        if not self.has_predicates:
            return True
        return self.matches_track(tweet) or self.matches_follow(tweet) or self.matches_location(tweet)

    def matches_track(self, tweet: JsonMapping) -> bool:
        return self.track is not None and bool(self.track) and self.track.matches(tweet)

    def matches_follow(self, tweet: JsonMapping) -> bool:
        if not self.follow:
            return False
        candidates = {_user_id(tweet), tweet.get("in_reply_to_user_id"), _user_id(tweet.get("retweeted_status"))}
        return any(c in self.follow for c in candidates if isinstance(c, int))

    def matches_location(self, tweet: JsonMapping) -> bool:
        if not self.boxes:
            return False
        coords = tweet.get("coordinates")
        if _is_map(coords):
            try:
                lon, lat = float(coords["coordinates"][0]), float(coords["coordinates"][1])
            except (TypeError, KeyError, IndexError, ValueError):
                pass
            else:
                return any(_inside(lon, lat, box) for box in self.boxes)
        place = _place_box(tweet)
        return place is not None and any(_intersects(place, box) for box in self.boxes)
