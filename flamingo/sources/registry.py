"""Which ``Source`` a daemon runs: one per ``source:`` key (catalog.py lists them).

A new source registers its builder in ``BUILDERS``; the wader asks
``build_source`` and never names a source itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from twisted.internet.interfaces import IReactorTime

from flamingo.config import Config, ConfigError
from flamingo.dispatch.stats import Stats
from flamingo.sources.jetstream import JetstreamSource, JetstreamStats
from flamingo.sources.twitter import TwitterV11Source, V11Stats
from flamingo.sources.x import XSource, XStats
from flamingo.stream.source import JournalTail, Source

__all__ = ["build_source", "BUILDERS", "SourceBuilder"]

#: (config, reactor, clock, stats, journal tail or None) -> Source
SourceBuilder = Callable[[Config, IReactorTime, IReactorTime, V11Stats, JournalTail | None], Source]


def _twitter(config: Config, reactor: IReactorTime, clock: IReactorTime, stats: V11Stats,
             journal: JournalTail | None) -> Source:
    return TwitterV11Source(config, reactor, clock, stats)


def _jetstream(config: Config, reactor: IReactorTime, clock: IReactorTime, stats: V11Stats,
               journal: JournalTail | None) -> Source:
    # the wader hands its StreamStats, which counts duplicates too
    source = JetstreamSource(config, reactor, clock, cast(JetstreamStats, stats), journal)
    if isinstance(stats, Stats):
        stats.provide("cursor", source.cursor_status)
    return source


def _mastodon(config: Config, reactor: IReactorTime, clock: IReactorTime, stats: V11Stats,
              journal: JournalTail | None) -> Source:
    from flamingo.dispatch.stats import Stats
    from flamingo.sources.mastodon import MastodonSource, MastodonStats

    if not isinstance(stats, MastodonStats):  # the wader's figures count duplicates too
        raise TypeError("the mastodon source needs stats that count duplicates")
    source = MastodonSource(config, reactor, clock, stats, journal)
    if isinstance(stats, Stats):  # /meta.json, /status.json, /metrics: the gap fill's figures
        stats.provide("gap_fill", source.status)
    return source


def _x(config: Config, reactor: IReactorTime, clock: IReactorTime, stats: V11Stats,
       journal: JournalTail | None) -> Source:
    # the wader hands its StreamStats, which counts duplicates too
    return XSource(config, reactor, clock, cast(XStats, stats), journal)


BUILDERS: dict[str, SourceBuilder] = {"twitter": _twitter, "x": _x, "jetstream": _jetstream,
                                      "mastodon": _mastodon}


def build_source(config: Config, reactor: IReactorTime, clock: IReactorTime, stats: V11Stats,
                 journal: JournalTail | None = None) -> Source:
    """The source ``config.source`` names, resuming from ``journal`` when it has a position."""
    try:
        builder = BUILDERS[config.source]
    except KeyError:
        raise ConfigError("source", f"source {config.source!r} is not available in this build") from None
    return builder(config, reactor, clock, stats, journal)
