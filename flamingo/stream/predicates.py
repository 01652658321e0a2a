"""Streaming API parameters: validation and tweet matching, as the service did.

Pure functions and values only. The same rules serve three callers: the
emulator (answers 406/413/416), the REST API (maps a ``Problem`` to 422) and
the store (refuses to save what the service would refuse). Matching follows
the v1.1 documentation: ``track`` phrases are OR'ed (comma) and their words
AND'ed (space), case-insensitive, against the text, hashtags, mentions and
expanded URLs; ``follow`` matches tweets by, replies to and retweets of the
ids; ``locations`` matches coordinates inside a box (or a place whose box
intersects one); the three are OR'ed, then ``language`` and ``filter_level``
narrow the result.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Mapping as _AbcMapping
from typing import Any

import attrs
import orjson

from flamingo._types import JsonMapping

__all__ = [
    "Problem",
    "Predicates",
    "TermMatcher",
    "haystack",
    "Haystack",
    "prefilter_view",
    "validate_params",
    "split_values",
    "STREAMS",
    "MAX_TRACK",
    "MAX_FOLLOW",
    "MAX_BOXES",
    "MAX_PHRASE_BYTES",
]

STREAMS = ("filter", "sample", "firehose")
MAX_TRACK = 400
MAX_FOLLOW = 5000
MAX_BOXES = 25
MAX_PHRASE_BYTES = 60
MAX_COUNT = 150_000
FILTER_LEVELS = ("none", "low", "medium")
PREDICATE_PARAMS = ("track", "follow", "locations")
KNOWN_PARAMS = frozenset(
    PREDICATE_PARAMS
    + ("language", "filter_level", "stall_warnings", "delimited", "count")
)
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_FOLLOW_ID = re.compile(r"^[0-9]{1,19}$")


@attrs.frozen
class Problem:
    """One rule a parameter breaks; ``status`` is what the service answered."""

    field: str
    message: str
    limit: str | None = None
    status: int = 406


def split_values(values: Iterable[str]) -> list[str]:
    """Comma-separated values flattened, stripped, empties dropped (order kept)."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part:
                out.append(part)
    return out


def validate_params(
    stream: str, params: Mapping[str, Sequence[str]], *, allow_count: bool = False
) -> list[Problem]:
    """Every problem the service would report for these parameters (empty = OK).

    ``params`` maps a parameter to its values; each value may itself be a
    comma-separated list, as it is on the wire. ``allow_count`` is the role
    that may backfill with ``count`` (otherwise ``count`` gets 416).
    """
    problems: list[Problem] = []
    if stream not in STREAMS:
        return [Problem("stream", f"unknown stream {stream!r}", "one of " + "|".join(STREAMS), 404)]
    for name in params:
        if name not in KNOWN_PARAMS:
            problems.append(Problem(name, f"unknown parameter {name!r}"))
    track = split_values(params.get("track", ()))
    follow = split_values(params.get("follow", ()))
    locations = split_values(params.get("locations", ()))
    if stream == "filter":
        if not (track or follow or locations):
            problems.append(
                Problem(
                    "track",
                    "filter needs at least one of track, follow or locations",
                    "at least one predicate",
                )
            )
    else:
        for name in PREDICATE_PARAMS:
            if split_values(params.get(name, ())):
                problems.append(
                    Problem(name, f"{name} is only accepted by the filter stream", "filter only")
                )
    problems.extend(_check_track(params.get("track", ()), track))
    problems.extend(_check_follow(follow))
    problems.extend(_check_locations(locations))
    problems.extend(_check_language(params.get("language", ())))
    problems.extend(_check_choice(params, "filter_level", FILTER_LEVELS))
    problems.extend(_check_choice(params, "stall_warnings", ("true", "false")))
    problems.extend(_check_choice(params, "delimited", ("length",)))
    problems.extend(_check_count(params.get("count", ()), allow_count))
    return problems


def _check_track(raw: Sequence[str], phrases: list[str]) -> list[Problem]:
    problems = []
    if raw and not phrases:
        problems.append(Problem("track", "no phrase given", "1..60 bytes per phrase"))
    for phrase in phrases:
        size = len(phrase.encode("utf-8"))
        if size > MAX_PHRASE_BYTES:
            problems.append(
                Problem("track", f"phrase {phrase[:20]!r}... is {size} bytes", "1..60 bytes per phrase")
            )
    if len(phrases) > MAX_TRACK:
        problems.append(
            Problem("track", f"{len(phrases)} phrases", f"at most {MAX_TRACK} phrases", 413)
        )
    return problems


def _check_follow(ids: list[str]) -> list[Problem]:
    problems = []
    for value in ids:
        if not _FOLLOW_ID.match(value) or int(value) >= 2**63:
            problems.append(Problem("follow", f"{value[:30]!r} is not a user id", "numeric user ids"))
            break
    if len(ids) > MAX_FOLLOW:
        problems.append(Problem("follow", f"{len(ids)} ids", f"at most {MAX_FOLLOW} ids", 413))
    return problems


def parse_boxes(values: list[str]) -> list[tuple[float, float, float, float]]:
    """Groups of four floats; ValueError when not numeric or not a multiple of 4."""
    numbers = [float(v) for v in values]
    if len(numbers) % 4:
        raise ValueError("locations must be groups of 4 numbers")
    return [tuple(numbers[i : i + 4]) for i in range(0, len(numbers), 4)]


def _check_locations(values: list[str]) -> list[Problem]:
    if not values:
        return []
    rule = "SW lon,lat,NE lon,lat per box; sides 0.1..360 degrees"
    try:
        boxes = parse_boxes(values)
    except ValueError as e:
        return [Problem("locations", str(e) if "groups" in str(e) else "not a number", rule)]
    problems = []
    for i, (w, s, e, n) in enumerate(boxes):
        if not all(math.isfinite(x) for x in (w, s, e, n)):
            problems.append(Problem("locations", f"box {i + 1}: not a finite number", rule))
        elif not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
            problems.append(Problem("locations", f"box {i + 1}: coordinates out of range", rule))
        elif not (w < e and s < n):
            problems.append(Problem("locations", f"box {i + 1}: south-west corner must come first", rule))
        elif not (0.1 <= e - w <= 360 and 0.1 <= n - s <= 360):
            problems.append(Problem("locations", f"box {i + 1}: each side must span 0.1..360 degrees", rule))
        if problems:
            break
    if len(boxes) > MAX_BOXES:
        problems.append(
            Problem("locations", f"{len(boxes)} boxes", f"at most {MAX_BOXES} boxes", 413)
        )
    return problems


def _check_language(raw: Sequence[str]) -> list[Problem]:
    values = split_values(raw)
    if raw and not values:
        return [Problem("language", "no language given", "BCP 47 codes")]
    for value in values:
        if not _LANGUAGE.match(value):
            return [Problem("language", f"{value[:20]!r} is not a BCP 47 code", "BCP 47 codes")]
    return []


def _check_choice(params: Mapping[str, Sequence[str]], name: str, choices: Sequence[str]) -> list[Problem]:
    if name not in params:
        return []
    values = list(params[name])
    if len(values) != 1 or values[0] not in choices:
        return [Problem(name, f"{','.join(values)[:30]!r} is not allowed", "one of " + "|".join(choices))]
    return []


def _check_count(raw: Sequence[str], allow: bool) -> list[Problem]:
    if not raw:
        return []
    if not allow:
        return [Problem("count", "count is not allowed for this role", "backfill roles only", 416)]
    values = list(raw)
    if len(values) != 1 or not re.fullmatch(r"-?[0-9]{1,6}", values[0]) or abs(int(values[0])) > MAX_COUNT:
        return [Problem("count", f"{','.join(values)[:20]!r} is not allowed", f"-{MAX_COUNT}..{MAX_COUNT}")]
    return []


# ---------------------------------------------------------------------------
# matching

_WORD = re.compile(r"[#@$]?\w+", re.UNICODE)


def _is_map(x: Any) -> bool:
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


def _haystack(tweet: JsonMapping) -> _Haystack:
    texts: list[str] = []
    urls: list[str] = []
    tags: list[str] = []
    mentions: list[str] = []
    for status in _status_parts(tweet):
        texts.append(_text_of(status).lower())
        entities = _entities_of(status)
        for tag in entities.get("hashtags") or ():
            if _is_map(tag):
                t = tag.get("text")
                if isinstance(t, str):
                    tags.append(t.lower())
        for mention in entities.get("user_mentions") or ():
            if _is_map(mention):
                m = mention.get("screen_name")
                if isinstance(m, str):
                    mentions.append(m.lower())
        for url in entities.get("urls") or ():
            if _is_map(url):
                expanded = url.get("expanded_url") or url.get("url")
                if isinstance(expanded, str):
                    urls.append(expanded.lower())
    return _Haystack(texts, urls, tags, mentions)


def haystack(tweet: Any) -> _Haystack | None:
    """What terms are matched against (None when ``tweet`` is not an object).

    Built once per tweet and shared by every ``TermMatcher`` that looks at it.
    """
    if not _is_map(tweet):
        return None
    return _haystack(tweet)


def _word_matches(word: str, hay: _Haystack) -> bool:
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
        for phrase, bare in zip(self.phrases, self._bare):
            for b in bare:  # cheap and necessary: each word (less one # or @) occurs somewhere
                if b not in every:
                    break
            else:
                for w in phrase:
                    if not _word_matches(w, hay):
                        break
                else:
                    return True
        return False


def _user_id(obj: Any) -> int | None:
    if _is_map(obj):
        user = obj.get("user")
        if _is_map(user) and isinstance(user.get("id"), int):
            return user["id"]
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
            int(v) for v in split_values(params.get("follow", ())) if _FOLLOW_ID.match(v)
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
        return bool(self.track) and self.track.matches(tweet)

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
