"""Which values each subscription gets from one batch (pure; shared work per frame).

A subscription gets an event when its ``types`` allow it, its term filter
(tweets and Bluesky posts only) matches and, with ``rules`` (X rule tags), the post's
``matching_rules`` names one of them (a post matching several rules is one
event: it reaches each subscription once). Lines that are not JSON (type ``invalid``: a stray
``Exceeded connection limit`` or a torn ``{"not json``) are kept in the event
log and counted, but go only to a subscription whose ``types`` names
``invalid`` explicitly: every consumer of a raw queue would fail on them.

Work is shared between subscriptions: a format's payload of an event is
built once per batch however many subscriptions of that format get it (the
same bytes objects go into every queue's RPUSH), the unfiltered list of a
format once, and a tweet is parsed once for every filtered subscription.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from flamingo.dispatch.payloads import BUILDERS
from flamingo.domain.matching import Haystack, TermMatcher, prefilter_view
from flamingo.domain.subscription import Subscription
from flamingo.domain.tweet_text import tweet_haystack
from flamingo.sources.jetstream_events import POST, post_haystack
from flamingo.sources.x_messages import rule_tags

__all__ = ["Routes", "INVALID"]

INVALID = "invalid"


def _post_haystack(frame: bytes) -> Haystack | None:
    try:
        return post_haystack(orjson.loads(frame))
    except orjson.JSONDecodeError:
        return None


#: types whose text term filters match, and how to find it in the bytes (tweets; Bluesky posts)
_HAYSTACKS: dict[str, Callable[[bytes], Haystack | None]] = {"tweet": tweet_haystack, POST: _post_haystack}


class Routes:
    """One batch's frames and types; ``values_for(sub)`` builds that queue's payloads."""

    def __init__(self, frames: list[bytes], types: list[str],
                 matcher: Callable[[tuple[str, ...]], TermMatcher]) -> None:
        self.frames = frames
        self.types = types
        self._matcher = matcher
        self._has_invalid = INVALID in types
        self._views: dict[int, bytes | None] = {}  # per frame, shared by every filtered subscription
        self._hays: dict[int, Haystack | None] = {}  # None: not a matchable event
        self._tags: dict[int, frozenset[str] | None] = {}
        self._all: dict[str, list[bytes]] = {}  # format -> the values of an unfiltered subscription
        self._built: dict[str, dict[int, bytes]] = {}  # format -> frame index -> payload

    def values_for(self, sub: Subscription) -> list[bytes]:
        fmt = sub.format
        build = BUILDERS[fmt]
        frames, types = self.frames, self.types
        if sub.types is None and not sub.filter and not sub.rules:
            got = self._all.get(fmt)
            if got is None:
                if self._has_invalid:
                    got = [f if fmt == "raw" else self._payload(fmt, build, i, f, t)
                           for i, (f, t) in enumerate(zip(frames, types)) if t != INVALID]
                elif fmt == "raw":
                    got = frames
                else:
                    got = [build(f, t) for f, t in zip(frames, types)]
                    self._built[fmt] = dict(enumerate(got))
                self._all[fmt] = got
            return got
        wanted = sub.types
        matcher = self._matcher(sub.filter) if sub.filter else None
        values = []
        for i, (f, t) in enumerate(zip(frames, types)):
            if wanted is None:
                if t == INVALID:
                    continue
            elif t not in wanted:
                continue
            if matcher is not None and not self._matches(matcher, i, f, t):
                continue
            if sub.rules and not self._tagged(i, f, sub.rules):
                continue
            values.append(f if fmt == "raw" else self._payload(fmt, build, i, f, t))
        return values

    def _payload(self, fmt: str, build: Callable[[bytes, str], bytes], i: int, frame: bytes, etype: str) -> bytes:
        """Frame ``i``'s payload in ``fmt``, built once per batch."""
        built = self._built.get(fmt)
        if built is None:
            built = self._built[fmt] = {}
        v = built.get(i)
        if v is None:
            v = built[i] = build(frame, etype)
        return v

    def _tagged(self, i: int, frame: bytes, tags: tuple[str, ...]) -> bool:
        """An X post matched one of these rule tags (its ``matching_rules``)."""
        if i not in self._tags:
            self._tags[i] = rule_tags(frame)
        found = self._tags[i]
        return found is not None and not found.isdisjoint(tags)

    def _matches(self, matcher: TermMatcher, i: int, frame: bytes, etype: str) -> bool:
        build = _HAYSTACKS.get(etype)
        if build is None:
            return False
        if matcher.wants_prefilter():
            # most tweets are ruled out on their bytes, unparsed
            view = self._views.get(i, b"")
            if view == b"":
                view = self._views[i] = prefilter_view(frame)
            if not matcher.may_match(view):
                return False
        if i in self._hays:
            hay = self._hays[i]
        else:
            hay = self._hays[i] = build(frame)
        return hay is not None and matcher.matches_haystack(hay)
