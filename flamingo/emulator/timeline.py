"""One shared timeline for rate mode: the same world seen through each connection.

The real service had one stream of tweets; each connection got the ones
matching its predicates, so two connections open at the same time saw the
same tweet (same id, same bytes) when it matched both. With ``rate > 0`` the
emulator works the same way: position ``i`` of the timeline is one message,
due ``i / rate`` seconds after the emulator started (on its clock), and every
connection reads the positions due since it connected, keeping those that
match its own predicates (control messages go to everyone).

So that filter streams are not starved, each position is drawn from the
pre-rendered pool of one of the predicate sets open at that moment (in
turn), so it truly matches that set and perhaps others. Every position gets
a fresh id prefix, so ids increase along the timeline whatever pool it came
from. Positions nobody is waiting for are never rendered; rendered ones are
dropped once every reader has passed them (at most ``max_lag`` are kept for
a slow reader; it skips ahead past the rest, as a full server queue would).

With ``rate = 0`` (as fast as the client reads) there is no time to share:
each connection keeps its own pool sequence (``PoolSource``).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from twisted.internet.interfaces import IReactorTime

from flamingo.domain.matching import Predicates
from flamingo.emulator.corpus import ID_SENTINEL, id_prefix
from flamingo.emulator.pool import Pool, build_pool

__all__ = ["Timeline", "TimelineSource", "params_key"]

ParamsKey = tuple[tuple[str, tuple[str, ...]], ...]
_UNPARSED = object()


def params_key(params: dict[str, list[str]] | None) -> ParamsKey:
    """A hashable, order-free form of filter predicates (``()``: unfiltered)."""
    return tuple(sorted((k, tuple(v)) for k, v in (params or {}).items()))


class _Entry:
    """One timeline position: its bytes (unframed), the predicate set it was drawn for."""

    __slots__ = ("raw", "key", "_parsed")

    def __init__(self, raw: bytes, key: ParamsKey) -> None:
        self.raw = raw
        self.key = key
        self._parsed: object = _UNPARSED

    def parsed(self) -> object:
        """The message as JSON (None if it is not JSON), decoded once."""
        if self._parsed is _UNPARSED:
            try:
                self._parsed = orjson.loads(self.raw)
            except orjson.JSONDecodeError:
                self._parsed = None
        return self._parsed


class _Slot:
    """A predicate set's pool and the index of its next message."""

    __slots__ = ("pool", "index")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.index = 0


class Timeline:
    """The emulator's shared sequence of messages (see the module docstring)."""

    def __init__(self, *, seed: int, size: str, rate: float, clock: IReactorTime,
                 next_cycle: Callable[[], int], pool_size: int | None = None,
                 max_lag: int = 200_000) -> None:
        self.seed, self.size, self.rate = seed, size, rate
        self.clock = clock
        self.next_cycle = next_cycle
        self.pool_size = pool_size
        self.max_lag = max_lag
        self.started = clock.seconds()
        self.base = 0  # position of entries[0]
        self.entries: list[_Entry] = []
        self.readers: list[TimelineSource] = []
        self._pools: dict[ParamsKey, _Slot] = {}
        self._keys: list[ParamsKey] | None = None  # the open predicate sets, sorted

    def head(self) -> int:
        """Positions due so far (the next one to be due)."""
        return int((self.clock.seconds() - self.started) * self.rate + 1e-6)

    def reader(self, params: dict[str, list[str]] | None, delimited: bool) -> TimelineSource:
        """A source for one connection, starting at the current head."""
        key = params_key(params)
        self._slot(key)  # render its pool now, not on the clock of the streams
        source = TimelineSource(self, key, params, delimited)
        self.readers.append(source)
        self._keys = None
        return source

    def _slot(self, key: ParamsKey) -> _Slot:
        slot = self._pools.get(key)
        if slot is None:
            pool = build_pool(self.seed, self.size, False, self.pool_size,
                              {k: list(v) for k, v in key} or None)
            slot = self._pools[key] = _Slot(pool)
        return slot

    def entry(self, pos: int) -> _Entry:
        """The message at ``pos`` (rendered on first use; ``pos >= base``)."""
        self.render_to(pos + 1)
        return self.entries[pos - self.base]

    def render_to(self, stop: int) -> None:
        """Make sure every position below ``stop`` (from ``base`` on) is rendered."""
        if not self.entries and stop > self.base:
            low = min((r.cursor for r in self.readers), default=stop - 1)
            if low > self.base:
                self.base = min(low, stop - 1)  # nobody needs the positions in between
        pos = self.base + len(self.entries)
        if pos >= stop:
            return
        keys = self._keys
        if keys is None:
            keys = self._keys = sorted({r.key for r in self.readers}) or [()]
        slots = [self._slot(k) for k in keys]
        append, next_cycle = self.entries.append, self.next_cycle
        for p in range(pos, stop):
            k = p % len(keys)
            slot = slots[k]
            pool = slot.pool
            i = slot.index
            slot.index = i + 1 if i + 1 < len(pool.ends) else 0
            start = pool.ends[i - 1] if i else 0
            raw = pool.template[start : pool.ends[i] - 2]  # without its CRLF
            append(_Entry(raw.replace(ID_SENTINEL, id_prefix(next_cycle())), keys[k]))

    def trim(self) -> None:
        """Forget positions every reader has passed (and past ``max_lag``)."""
        head = self.head()
        low = min((r.cursor for r in self.readers), default=head)
        low = max(low, head - self.max_lag)
        drop = low - self.base
        if drop > 0:
            del self.entries[:drop]
            self.base = low

    def _remove(self, reader: TimelineSource) -> None:
        if reader in self.readers:
            self.readers.remove(reader)
            self._keys = None
        self.trim()
        if not self.readers:
            self._pools.clear()


class TimelineSource:
    """One connection's view of the timeline (a ``Source`` for ``StreamSession``)."""

    def __init__(self, timeline: Timeline, key: ParamsKey, params: dict[str, list[str]] | None,
                 delimited: bool) -> None:
        self.timeline = timeline
        self.key = key
        self.predicates = Predicates.from_params(params) if params else None
        self.delimited = delimited
        self.cursor = timeline.head()

    def lag(self) -> int:
        """Positions due that this connection has not read yet."""
        return max(0, self.timeline.head() - max(self.cursor, self.timeline.base))

    def skip(self) -> None:
        """Drop everything due (a stalled connection loses what it missed)."""
        self.cursor = max(self.cursor, self.timeline.head())
        self.timeline.trim()

    def _wanted(self, entry: _Entry) -> bool:
        if self.predicates is None or entry.key == self.key:
            return True  # unfiltered, or drawn for exactly these predicates
        message = entry.parsed()
        if isinstance(message, dict) and "user" in message:
            return self.predicates.matches(message)
        return True  # control messages go to every connection

    def take(self, max_messages: int, max_bytes: int) -> tuple[bytes, int]:
        tl = self.timeline
        head = tl.head()
        pos = max(self.cursor, tl.base)
        out: list[bytes] = []
        size = 0
        while pos < head and not out:
            stop = min(head, pos + max(1, min(max_messages, 4096)))
            tl.render_to(stop)
            preds, mine = self.predicates, self.key
            for entry in tl.entries[pos - tl.base : stop - tl.base]:
                pos += 1
                if preds is None or entry.key is mine or self._wanted(entry):
                    out.append(entry.raw)
                    size += len(entry.raw)
                    if len(out) >= max_messages or size >= max_bytes:
                        break
        self.cursor = pos
        tl.trim()
        if not out:
            return b"", 0
        if self.delimited:
            return b"".join([b"%d\r\n%s\r\n" % (len(m) + 2, m) for m in out]), len(out)
        return b"\r\n".join(out) + b"\r\n", len(out)

    def close(self) -> None:
        self.timeline._remove(self)
