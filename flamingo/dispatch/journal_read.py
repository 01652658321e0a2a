"""Reading the journal back by position: the sink's catch-up, a source's resume.

One open ``Reader`` is kept between reads, so a sink that reads forward
through a segment never re-reads it from its start. Positions come from the
journal's segments (the first position of each is in its name).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from flamingo.dispatch.segments import READ_ERRORS, Reader, Segment, open_segment

__all__ = ["JournalGap", "SegmentReads", "Positions"]


class JournalGap(Exception):
    """Positions ``first..last`` cannot be read back (file deleted, cut short, corrupt)."""

    def __init__(self, first: int, last: int, reason: str) -> None:
        super().__init__(f"positions {first}..{last}: {reason}")
        self.first = first
        self.last = last
        self.reason = reason


class Positions(Protocol):
    """What reading needs of the journal: its segments and positions."""

    segments: list[Segment]

    @property
    def first_seq(self) -> int: ...

    @property
    def last_seq(self) -> int: ...


class SegmentReads:
    """Reads of one journal, with the reader left where the last read stopped."""

    #: the reader class (tests wrap it to count opens and reads)
    reader_class: type[Reader] = Reader

    def __init__(self, journal: Positions) -> None:
        self.journal = journal
        self._reader: Reader | None = None

    def read(self, from_seq: int, max_events: int = 5000, max_bytes: int = 16 << 20) -> list[bytes]:
        """See ``Journal.read``."""
        j = self.journal
        out: list[bytes] = []
        if from_seq < j.first_seq or from_seq > j.last_seq:
            return out
        idx = self._segment_index(from_seq)
        seq = from_seq
        size = 0
        while idx < len(j.segments) and len(out) < max_events and size < max_bytes and seq <= j.last_seq:
            seg = j.segments[idx]
            end = j.segments[idx + 1].first if idx + 1 < len(j.segments) else j.last_seq + 1
            try:
                reader = self._reader_at(seg, seq)
                while seq < end and len(out) < max_events and size < max_bytes:
                    want = min(end - seq, max_events - len(out))
                    lines = reader.lines(want, max_bytes - size)
                    if not lines:
                        break
                    out.extend(lines)
                    size += sum(map(len, lines)) + len(lines)
                    seq += len(lines)
                reader.seq = seq
                short = seq < end and len(out) < max_events and size < max_bytes
                reason = "" if not short else (
                    f"{seg.path.name} ends after {seq - seg.first} events, {end - seg.first} were written "
                    "(cut short by a machine crash?)")
            except READ_ERRORS as e:
                self._drop_reader()
                short, reason = True, f"{seg.path.name}: {getattr(e, 'strerror', None) or e}"
            if short:
                if out:
                    return out  # what could be read first; the next read reports the gap
                self._drop_reader()
                raise JournalGap(seq, end - 1, reason)
            if seq < end:
                break
            idx += 1
        return out

    def tail(self, max_events: int, max_bytes: int = 16 << 20) -> list[bytes]:
        """See ``Journal.tail``: the newest events win when ``max_bytes`` bites (the
        window is read forward in chunks and the oldest are let go)."""
        j = self.journal
        out: deque[bytes] = deque()
        seq = max(j.first_seq, j.last_seq - max_events + 1)
        size = 0
        while seq <= j.last_seq:
            try:
                lines = self.read(seq, max_events=min(5000, j.last_seq - seq + 1), max_bytes=max(1, max_bytes))
            except JournalGap as gap:
                seq = gap.last + 1
                continue
            if not lines:
                break
            out.extend(lines)
            size += sum(map(len, lines))
            seq += len(lines)
            while size > max_bytes and out:
                size -= len(out.popleft())
        return list(out)

    def drop(self, path: object = None) -> None:
        """Close the kept reader (any, or only the one on ``path``): a segment goes away."""
        if path is not None and (self._reader is None or self._reader.path != path):
            return
        self._drop_reader()

    def _drop_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _segment_index(self, seq: int) -> int:
        lo, hi = 0, len(self.journal.segments) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.journal.segments[mid].first <= seq:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _reader_at(self, seg: Segment, seq: int) -> Reader:
        r = self._reader
        if r is not None and r.seq <= seq and (r.path == seg.path or
                                               r.path.with_name(r.path.name + ".gz") == seg.path):
            # forward in the same segment (the sink took some events from memory
            # meanwhile): skip ahead instead of re-reading the segment from its start
            if r.seq < seq:
                r.skip(seq - r.seq)
                r.seq = seq
            return r
        if r is not None:
            r.close()
            self._reader = None
        f = open_segment(seg)
        r = self.reader_class(seg.path, f, seg.first)
        r.skip(seq - seg.first)
        self._reader = r
        return r

