"""The sources Flamingo speaks, and what each offers: the one table of them.

Config validation, the store's params checks, the console, the REST API and
the CLI read stream names, default URLs, auth kinds and stream param keys
from here, so a source is described once (the fixed interface in
docs/sources.md). How a source talks to its API lives in
``flamingo/stream/<source>.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

__all__ = ["SourceSpec", "SOURCES", "SOURCE_NAMES", "spec_for", "all_streams"]


@attrs.frozen
class SourceSpec:
    """One source: its streams (the first is the default), URL, auth and params."""

    name: str
    streams: tuple[str, ...]
    default_url: str | None  # None: the user must say (a Mastodon instance)
    auths: tuple[str, ...]  # the first is the default
    #: stream params kept in Redis (``<ns>:streams:<stream>:<param>``); () = none
    params: tuple[str, ...]
    schemes: tuple[str, ...]  # of api.url
    stall_timeout: float  # seconds of silence before a reconnect, by the API's own advice

    @property
    def default_stream(self) -> str:
        return self.streams[0]


SOURCES: Mapping[str, SourceSpec] = {
    spec.name: spec
    for spec in (
        SourceSpec(
            "twitter", ("filter", "sample", "firehose"), "https://stream.twitter.com",
            ("basic", "oauth1", "bearer"),
            ("track", "follow", "locations", "language", "filter_level", "count", "stall_warnings", "delimited"),
            ("http", "https"), 90.0),
        SourceSpec(
            "x", ("filter", "sample", "sample10", "firehose", "tweets-compliance", "users-compliance"),
            "https://api.x.com", ("bearer",), (), ("http", "https"), 20.0),
        SourceSpec(
            "jetstream", ("subscribe",), "wss://jetstream2.us-east.bsky.network", ("none",),
            ("wantedCollections", "wantedDids"), ("ws", "wss"), 30.0),
        SourceSpec(
            "mastodon",
            ("public", "public:local", "public:remote", "hashtag", "hashtag:local", "list", "user",
             "user:notification", "direct"),
            None, ("bearer",), ("tag", "list"), ("http", "https"), 60.0),
    )
}

SOURCE_NAMES: tuple[str, ...] = tuple(SOURCES)


def spec_for(source: str) -> SourceSpec:
    """The spec of a source by name (KeyError for an unknown one)."""
    return SOURCES[source]


def all_streams() -> tuple[str, ...]:
    """Every stream name of every source, each once (route and name checks)."""
    seen: dict[str, None] = {}
    for spec in SOURCES.values():
        for s in spec.streams:
            seen.setdefault(s)
    return tuple(seen)


def unknown_params(source: str, params: Mapping[str, Sequence[str]]) -> list[str]:
    """Param keys this source does not have (for sources other than twitter, whose
    predicates module knows more rules)."""
    allowed = set(spec_for(source).params)
    return [k for k in params if k not in allowed]
