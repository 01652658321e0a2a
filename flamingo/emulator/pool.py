"""Pre-rendered message pools and the sources a stream reads from.

Speed comes from never serialising on the hot path: a pool is the framed
bytes of N messages in one buffer plus the offsets where each message ends.
A ``PoolSource`` hands out slices of whole messages, re-issuing the pool
with a new id prefix per cycle (one ``bytes.replace``), so ids keep
increasing. A ``ReplaySource`` frames lines of a JSONL file on the fly.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs
import orjson

from flamingo._types import JsonObject
from flamingo.emulator.corpus import ID_SENTINEL, Corpus, dumps, id_prefix, make_matching

if TYPE_CHECKING:
    from flamingo.domain.matching import Predicates

__all__ = ["frame", "Pool", "build_pool", "PoolSource", "ReplaySource", "SharedSource", "Source", "split_frames"]

CRLF = b"\r\n"


def frame(message: bytes, delimited: bool) -> bytes:
    """One message framed the Streaming API way (count includes the trailing CRLF)."""
    if delimited:
        return b"%d\r\n%s\r\n" % (len(message) + 2, message)
    return message + CRLF


def split_frames(data: bytes, delimited: bool) -> list[bytes]:
    """Inverse of ``frame`` over whole frames (used for ``record=True``)."""
    if not delimited:
        return data.split(CRLF)[:-1]
    out: list[bytes] = []
    i = 0
    while i < len(data):
        j = data.index(CRLF, i)
        n = int(data[i:j])
        out.append(data[j + 2 : j + n])
        i = j + 2 + n
    return out


@attrs.frozen
class Pool:
    """Framed messages in one buffer; ``ends[i]`` is where message i ends."""

    template: bytes
    ends: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ends)


_CACHE: dict[tuple[int, str, bool, int, tuple[tuple[str, tuple[str, ...]], ...]], Pool] = {}
_CACHE_MAX = 32


def build_pool(
    seed: int,
    size: str,
    delimited: bool,
    n: int | None = None,
    params: dict[str, list[str]] | None = None,
) -> Pool:
    """The pool of ``n`` messages for a seed/size (filtered by ``params`` if given); cached."""
    if n is None:
        n = 1500 if size == "realistic" else 6000
        if params:
            n //= 5
    key = (seed, size, delimited, n, tuple(sorted((k, tuple(v)) for k, v in (params or {}).items())))
    pool = _CACHE.get(key)
    if pool is not None:
        return pool
    corpus = Corpus(seed, size)
    transform = make_matching(corpus, params) if params else None
    messages: Iterable[JsonObject] = itertools.islice(corpus.messages(transform), n)
    parts: list[bytes] = []
    ends: list[int] = []
    pos = 0
    for message in messages:
        framed = frame(dumps(message), delimited)
        parts.append(framed)
        pos += len(framed)
        ends.append(pos)
    pool = Pool(b"".join(parts), tuple(ends))
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = pool
    return pool


class Source(Protocol):
    def take(self, max_messages: int, max_bytes: int) -> tuple[bytes, int]:
        """Framed bytes of up to ``max_messages`` whole messages (at least one if any)."""


@runtime_checkable
class SharedSource(Source, Protocol):
    """A source on a shared timeline (rate mode): it says what is due."""

    def lag(self) -> int:
        """Positions due and not yet taken."""

    def skip(self) -> None:
        """Drop what is due (a stalled client misses it)."""


class PoolSource:
    """Endless: cycles through a pool, each cycle with fresh, higher ids."""

    def __init__(self, pool: Pool, next_cycle: Callable[[], int]):
        self.pool = pool
        self.next_cycle = next_cycle
        self.index = 0
        self.data = b""
        self._new_cycle()

    def _new_cycle(self) -> None:
        self.data = self.pool.template.replace(ID_SENTINEL, id_prefix(self.next_cycle()))
        self.index = 0

    def take(self, max_messages: int, max_bytes: int) -> tuple[bytes, int]:
        if max_messages <= 0:
            return b"", 0
        ends = self.pool.ends
        if self.index >= len(ends):
            self._new_cycle()
        start = ends[self.index - 1] if self.index else 0
        stop = min(self.index + max_messages, len(ends))
        by_bytes = bisect.bisect_right(ends, start + max_bytes, self.index, stop)
        stop = max(self.index + 1, by_bytes)
        chunk = self.data[start : ends[stop - 1]]
        count = stop - self.index
        self.index = stop
        return chunk, count


class ReplaySource:
    """Lines of a JSONL file, framed as they are read; ends at end of file."""

    def __init__(self, path: str, delimited: bool, read_size: int = 1 << 20,
                 predicates: Predicates | None = None):
        self.predicates = predicates  # filter streams: statuses must match; other lines pass
        self.file = open(path, "rb")
        self.delimited = delimited
        self.read_size = read_size
        self.pending: list[bytes] = []
        self.tail = b""
        self.eof = False

    def _fill(self) -> None:
        while not self.pending and not self.eof:
            data = self.file.read(self.read_size)
            if not data:
                self.eof = True
                lines = [self.tail]
                self.file.close()
            else:
                lines = (self.tail + data).split(b"\n")
                self.tail = lines.pop()
            self.pending = [ln.rstrip(b"\r") for ln in lines if ln.strip()][::-1]

    def take(self, max_messages: int, max_bytes: int) -> tuple[bytes, int]:
        out: list[bytes] = []
        size = 0
        while len(out) < max_messages and (not out or size < max_bytes):
            if not self.pending:
                self._fill()
                if not self.pending:
                    break
            line = self.pending.pop()
            if self.predicates is not None and not self._wanted(line):
                continue
            framed = frame(line, self.delimited)
            out.append(framed)
            size += len(framed)
        return b"".join(out), len(out)

    def _wanted(self, line: bytes) -> bool:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            return True
        if isinstance(message, dict) and "user" in message and self.predicates is not None:
            return self.predicates.matches(message)
        return True

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
