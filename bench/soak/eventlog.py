"""What the journal kept: every event-log file (plain and .gz), read back by position.

The event log is the record of what Flamingo received and kept; the soak
compares the queues against it. Events are compared by a 64-bit digest of
their bytes (the bytes a raw queue holds, and the ``event`` inside an
envelope or a Resque job), which is as good as the tweet id and also covers
deletes and control messages. Positions come from the file names (first
position) and the line order, as the journal itself counts them.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import attrs
import orjson

__all__ = ["SEGMENT_NAME", "Segment", "QueueRule", "EventLog", "digest", "unwrap", "event_id",
           "segment_files", "read_event_log", "count_lines"]

SEGMENT_NAME = re.compile(r"^event-(\d{8}-\d{6})-(\d{12,})\.log(\.gz)?$")


def digest(event: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(event, digest_size=8).digest(), "big")


def unwrap(fmt: str, value: bytes) -> bytes:
    """The event bytes inside a queue value (payloads are built by concatenation)."""
    if fmt == "raw":
        return value
    if fmt == "envelope":  # {"type":"T","event":E}
        start = value.index(b',"event":') + len(b',"event":')
        return value[start:-1]
    if fmt == "resque":  # {"class":"HandleFlamingoEvent","args":["T",E]}
        start = value.index(b'",', value.index(b'"args":["') + 9) + 2
        return value[start:-2]
    raise ValueError(f"unknown format {fmt!r}")


def event_id(event: bytes) -> str:
    """A readable name for a report line: the tweet id, ``delete:<id>``, or the first bytes."""
    try:
        obj = orjson.loads(event)
    except orjson.JSONDecodeError:
        return repr(event[:40])
    if isinstance(obj, dict):
        if "id" in obj:
            return str(obj["id"])
        if len(obj) == 1:
            (k, v), = obj.items()
            inner = v.get("status", v) if isinstance(v, dict) else {}
            return f"{k}:{inner.get('id', '?')}" if isinstance(inner, dict) else k
    return repr(event[:40])


@attrs.frozen
class Segment:
    path: Path
    first: int
    count: int
    deleted: bool = False  # a copy the soak took before deleting the file

    @property
    def last(self) -> int:
        return self.first + self.count - 1


@attrs.frozen
class QueueRule:
    """One subscription's queue and which journal events it should hold."""

    name: str
    key: str
    format: str
    wants: Callable[[bytes, str], bool]  # (event bytes, message type)
    #: not-JSON events: the unfiltered raw queue may or may not get them
    invalid_optional: bool = False


@attrs.define
class EventLog:
    """Digests by position, and per queue the digests it should hold."""

    segments: list[Segment]
    positions: array  # type: ignore[type-arg]
    keys: array  # type: ignore[type-arg]
    wanted: dict[str, array]  # queue name -> indexes into positions/keys  # type: ignore[type-arg]
    optional: dict[str, array]  # type: ignore[type-arg]
    reused: list[tuple[int, int]]  # position ranges held by two non-empty files
    holes: list[tuple[int, int]]  # position ranges no file holds

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def last_position(self) -> int:
        return max((s.last for s in self.segments if s.count), default=0)

    def line_at(self, position: int) -> bytes | None:
        for seg in self.segments:
            if seg.first <= position <= seg.last:
                for i, line in enumerate(_lines(seg.path)):
                    if i == position - seg.first:
                        return line
        return None


def _lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:  # type: ignore[operator]
        tail = b""
        for chunk in iter(lambda: f.read(1 << 20), b""):
            parts = (tail + chunk).split(b"\n")
            tail = parts.pop()
            yield from parts
        # a torn last line is not an event the journal kept (it cuts it at open)


def count_lines(path: Path) -> int:
    return sum(1 for _ in _lines(path))


def segment_files(directory: Path) -> list[tuple[int, Path]]:
    """(first position, path) of the event-log files in ``directory``; a plain file wins over its .gz."""
    found: dict[str, tuple[int, Path]] = {}
    if not directory.is_dir():
        return []
    for p in directory.iterdir():
        m = SEGMENT_NAME.match(p.name)
        if m:
            stem = p.name[:-3] if p.name.endswith(".gz") else p.name
            if stem in found and p.name.endswith(".gz"):
                continue
            found[stem] = (int(m.group(2)), p)
    return sorted(found.values())


def read_event_log(directory: Path, deleted: Iterable[Path], rules: Iterable[QueueRule],
                   message_type: Callable[[bytes], str]) -> EventLog:
    """Every event in ``directory`` and in the copies of deleted files, with what each queue wants."""
    rules = list(rules)
    files = [(first, p, False) for first, p in segment_files(directory)]
    for p in deleted:
        m = SEGMENT_NAME.match(p.name)
        if m:
            files.append((int(m.group(2)), p, True))
    files.sort(key=lambda f: (f[0], f[2], f[1].name))
    positions, keys = array("q"), array("Q")
    wanted = {r.name: array("q") for r in rules}
    optional = {r.name: array("q") for r in rules}
    segments: list[Segment] = []
    for first, path, was_deleted in files:
        n = 0
        for line in _lines(path):
            idx = len(keys)
            positions.append(first + n)
            keys.append(digest(line))
            etype = message_type(line)
            for r in rules:
                if r.invalid_optional and etype == "invalid":
                    optional[r.name].append(idx)
                elif r.wants(line, etype):
                    wanted[r.name].append(idx)
            n += 1
        segments.append(Segment(path, first, n, was_deleted))
    reused, holes = _overlaps_and_holes(segments)
    return EventLog(segments, positions, keys, wanted, optional, reused, holes)


def _overlaps_and_holes(segments: list[Segment]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    reused: list[tuple[int, int]] = []
    holes: list[tuple[int, int]] = []
    covered_to = 0  # last position held so far
    for seg in sorted((s for s in segments if s.count), key=lambda s: s.first):
        if seg.first <= covered_to:
            reused.append((seg.first, min(covered_to, seg.last)))
        elif seg.first > covered_to + 1 and covered_to:
            holes.append((covered_to + 1, seg.first - 1))
        covered_to = max(covered_to, seg.last)
    return reused, holes
