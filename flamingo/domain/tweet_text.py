"""A tweet's haystack straight from its bytes: only the fields term filters read are decoded.

``matching.haystack`` needs the whole tweet as dicts: ``orjson.loads`` of a
3.8 KB tweet builds ~150 objects, two thirds of a term filter's cost. msgspec
decodes into typed structs of the dozen fields ``matching._haystack`` reads
(the text, the entities and the same of a retweeted or quoted status) and
skips the rest without building it: 4-5 µs against 13-20 (docs/performance.md).

The answers are ``matching._haystack``'s by construction, and a property test
holds the two paths equal: absent and ``null`` are told apart (``UNSET``), and
wherever the JSON has a type these structs do not expect (a string for a list,
a number for a text), msgspec refuses and the dict path decides.
"""

from __future__ import annotations

import msgspec
import orjson
from msgspec import UNSET, Struct, UnsetType

from flamingo.domain.matching import Haystack, haystack

__all__ = ["tweet_haystack"]


class _Tag(Struct):
    text: str | None | UnsetType = UNSET


class _Mention(Struct):
    screen_name: str | None | UnsetType = UNSET


class _Url(Struct):
    url: str | None | UnsetType = UNSET
    expanded_url: str | None | UnsetType = UNSET


class _Entities(Struct):
    hashtags: list[_Tag] | None | UnsetType = UNSET
    user_mentions: list[_Mention] | None | UnsetType = UNSET
    urls: list[_Url] | None | UnsetType = UNSET


class _Extended(Struct):
    full_text: str | None | UnsetType = UNSET
    entities: _Entities | None | UnsetType = UNSET


class _Status(Struct):
    """A status as far as its text goes (an inner one: its own inner statuses are not read)."""

    text: str | None | UnsetType = UNSET
    full_text: str | None | UnsetType = UNSET
    extended_tweet: _Extended | None | UnsetType = UNSET
    entities: _Entities | None | UnsetType = UNSET


class _Tweet(_Status):
    retweeted_status: _Status | None | UnsetType = UNSET
    quoted_status: _Status | None | UnsetType = UNSET


_decode = msgspec.json.Decoder(_Tweet).decode


def _text_of(s: _Status) -> str:
    ext = s.extended_tweet
    if isinstance(ext, _Extended) and isinstance(ext.full_text, str):
        return ext.full_text
    text = s.full_text if s.full_text is not UNSET else s.text  # a null full_text wins, as .get does
    return text if isinstance(text, str) else ""


def _entities_of(s: _Status) -> _Entities | None:
    ext = s.extended_tweet
    if isinstance(ext, _Extended) and isinstance(ext.entities, _Entities):
        return ext.entities
    return s.entities if isinstance(s.entities, _Entities) else None


def _from_struct(tweet: _Tweet) -> Haystack:
    texts: list[str] = []
    urls: list[str] = []
    tags: list[str] = []
    mentions: list[str] = []
    for status in (tweet, tweet.retweeted_status, tweet.quoted_status):
        if not isinstance(status, _Status):
            continue
        texts.append(_text_of(status).lower())
        ent = _entities_of(status)
        if ent is None:
            continue
        for tag in ent.hashtags or ():
            if isinstance(tag.text, str):
                tags.append(tag.text.lower())
        for m in ent.user_mentions or ():
            if isinstance(m.screen_name, str):
                mentions.append(m.screen_name.lower())
        for u in ent.urls or ():
            link = u.expanded_url if u.expanded_url is not UNSET and u.expanded_url else u.url
            if isinstance(link, str):
                urls.append(link.lower())
    return Haystack(texts, urls, tags, mentions)


def tweet_haystack(frame: bytes) -> Haystack | None:
    """What terms are matched against in this tweet (None: not a JSON object)."""
    try:
        return _from_struct(_decode(frame))
    except msgspec.DecodeError:  # and ValidationError: a type the structs do not expect
        pass  # the dict path decides, as it would have alone
    try:
        return haystack(orjson.loads(frame))
    except orjson.JSONDecodeError:
        return None
