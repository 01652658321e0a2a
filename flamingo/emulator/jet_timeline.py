"""The Jetstream emulator's retained timeline, and what one subscriber wants of it.

Every event is made once, stamped with a strictly increasing ``time_us``
(the emulator's clock in microseconds), and kept (up to ``retain`` events,
oldest forgotten first), so a ``cursor`` replays from the first event at or
after it and then goes live, as Jetstream's does; a cursor older than what is
kept starts at the oldest event (v1 clamps silently), one in the future is
live. Positions are absolute (the n-th event ever made), so they survive the
trimming of old events.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

import attrs
import zstandard

from flamingo.emulator.jet_corpus import Corpus
from flamingo.sources.jetstream import dictionary
from flamingo.sources.jetstream_events import head

__all__ = ["Timeline", "Wants"]


@attrs.frozen
class Wants:
    """A subscriber's filter, as v1 applies it: DIDs filter every event, collections
    only commits (identity and account events pass whatever the collections)."""

    collections: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    dids: frozenset[str] = frozenset()

    @classmethod
    def of(cls, collections: Sequence[str], dids: Sequence[str]) -> Wants:
        full = frozenset(c for c in collections if not c.endswith(".*"))
        prefixes = tuple(c[:-1] for c in collections if c.endswith(".*"))
        return cls(full, prefixes, frozenset(dids))

    def __call__(self, did: str, collection: str | None) -> bool:
        if self.dids and did not in self.dids:
            return False
        if collection is None or not (self.collections or self.prefixes):
            return True
        return collection in self.collections or collection.startswith(self.prefixes)


class Timeline:
    """Events made so far (at most ``retain`` kept), with their compressed form on demand."""

    def __init__(self, corpus: Corpus, now_us: Callable[[], int], retain: int = 200_000) -> None:
        self.corpus = corpus
        self.now_us = now_us
        self.retain = retain
        self.base = 0  # absolute position of self.times[0]
        self.times: list[int] = []
        self.raws: list[bytes] = []
        self.dids: list[str] = []
        self.collections: list[str | None] = []
        self._zstd: dict[int, bytes] = {}
        self._compressor = zstandard.ZstdCompressor(dict_data=zstandard.ZstdCompressionDict(dictionary()))
        self.listeners: list[Callable[[], None]] = []

    @property
    def end(self) -> int:
        """The absolute position after the newest event."""
        return self.base + len(self.times)

    def make(self, n: int) -> None:
        """Make ``n`` events now, then tell the subscribers."""
        if n <= 0:
            return
        last = self.times[-1] if self.times else 0
        for _ in range(n):
            t = max(self.now_us(), last + 1)
            last = t
            self.append(self.corpus.event(t))
        self._trim()
        for listener in list(self.listeners):
            listener()

    def append(self, raw: bytes) -> None:
        h = head(raw)
        if h is None:
            raise ValueError(f"not a Jetstream event: {raw[:80]!r}")
        self.times.append(h.time_us)
        self.raws.append(raw)
        self.dids.append(h.did)
        self.collections.append(h.collection if h.kind == "commit" else None)

    def _trim(self) -> None:
        extra = len(self.times) - self.retain
        if extra > 0:
            for seq in range(self.base, self.base + extra):
                self._zstd.pop(seq, None)
            del self.times[:extra], self.raws[:extra], self.dids[:extra], self.collections[:extra]
            self.base += extra

    def position(self, cursor: int | None) -> int:
        """Where a subscription with ``cursor`` starts (None, or a future cursor: live)."""
        if cursor is None:
            return self.end
        return self.base + bisect_left(self.times, cursor)

    def wanted(self, seq: int, wants: Wants) -> bool:
        i = seq - self.base
        return wants(self.dids[i], self.collections[i])

    def raw(self, seq: int) -> bytes:
        return self.raws[seq - self.base]

    def compressed(self, seq: int) -> bytes:
        """The event as one zstd frame with Jetstream's dictionary (made once, kept while retained)."""
        z = self._zstd.get(seq)
        if z is None:
            z = self._zstd[seq] = self._compressor.compress(self.raws[seq - self.base])
        return z

    def matching(self, wants: Wants, start: int = 0, stop: int | None = None) -> list[bytes]:
        """The retained events ``wants`` selects in [start, stop) (tests compare with these)."""
        lo = max(start, self.base) - self.base
        hi = (self.end if stop is None else min(stop, self.end)) - self.base
        return [self.raws[i] for i in range(lo, hi) if wants(self.dids[i], self.collections[i])]
