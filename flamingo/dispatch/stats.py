"""Counters, sliding-window rates, limit coverage and connection history.

Cheap on the hot path: the dispatcher calls ``events(counts, n, nbytes)`` once
per batch; rates are kept in one-second buckets (a ring of 300) and computed
only when ``snapshot()`` is asked for. Time comes from an injected clock
(``seconds()``), so tests drive it with ``twisted.internet.task.Clock``.

Coverage is the original's Stats::Connection rule: since the connection began,
received tweets / (received + skipped) * 100, where skipped is the last
``limit`` notice's cumulative count.

``by_type`` names come from upstream (a one-key message is typed by its key),
so a hostile or broken server could mint names without end: at most
``MAX_TYPE_NAMES`` distinct names are kept (the known types always are), and
events of any further name count under ``other``. The same bound keeps the
Prometheus label set small.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from flamingo._types import JsonObject

__all__ = ["Stats", "WINDOWS", "MAX_TYPE_NAMES", "OTHER_TYPE"]

WINDOWS = {"10s": 10, "1m": 60, "5m": 300}
_RING = 301
#: distinct ``by_type`` names kept, ``other`` included
MAX_TYPE_NAMES = 64
#: where events of types past the cap are counted
OTHER_TYPE = "other"
#: what ``message_type`` gives for v1.1 traffic: always counted by name
_KNOWN_TYPES = frozenset({"tweet", "delete", "scrub_geo", "limit", "status_withheld",
                          "user_withheld", "disconnect", "warning", "unknown", "invalid",
                          OTHER_TYPE})


class Clock(Protocol):
    """All Stats asks of time: ``IReactorTime.seconds`` (a ``task.Clock`` in tests)."""

    def seconds(self) -> float: ...


class _WallClock:
    @staticmethod
    def seconds() -> float:
        return time.time()


class Stats:
    """In-memory statistics of one daemon; ``snapshot()`` is JSON-ready."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or _WallClock()
        now = self.clock.seconds()
        self.started_at = now
        self.by_type: Counter[str] = Counter()
        self.total_events = 0
        self.total_bytes = 0
        self.last_event_at: float | None = None
        self._ev = [0] * _RING
        self._by = [0] * _RING
        self._sec = int(now)
        # connection
        self.connection_started_at: float | None = None
        self.request_line: str | None = None
        self._conn_tweets0 = 0
        self._conn_events0 = 0
        self.connections = 0
        self.attempts: Counter[str] = Counter()
        self.limit_count: int | None = None
        self.limit_at: float | None = None
        self.keepalives = 0
        self.last_keepalive_at: float | None = None
        self.duplicates_dropped = 0
        self.parse_errors: Counter[str] = Counter()
        self.last_parse_error: JsonObject | None = None
        self.disconnects: list[JsonObject] = []
        self.warnings: list[JsonObject] = []
        # delivery (set by the journal and the sink)
        self.queues: dict[str, dict[str, int]] = {}
        #: format stream: each group's lag/pending as last read (XINFO GROUPS), per subscription
        self.streams: dict[str, JsonObject] = {}
        self._providers: dict[str, Callable[[], Any]] = {}

    # --- hot path ---------------------------------------------------------

    def events(self, counts: dict[str, int], n: int, nbytes: int) -> None:
        """One batch: ``counts`` by type, ``n`` events, ``nbytes`` bytes."""
        now = self.clock.seconds()
        sec = int(now)
        if sec != self._sec:
            self._advance(sec)
        i = sec % _RING
        self._ev[i] += n
        self._by[i] += nbytes
        self.total_events += n
        self.total_bytes += nbytes
        by_type = self.by_type
        if by_type.keys() >= counts.keys():  # the usual case: no new name
            by_type.update(counts)
        else:
            self._count_new_types(counts)
        self.last_event_at = now

    def _count_new_types(self, counts: dict[str, int]) -> None:
        by_type = self.by_type
        for name, n in counts.items():
            if name in by_type or name in _KNOWN_TYPES or self._room_for_new_type():
                by_type[name] += n
            else:
                by_type[OTHER_TYPE] += n

    def _room_for_new_type(self) -> bool:
        # a slot stays free for "other" and for each known type not seen yet
        unseen_known = len(_KNOWN_TYPES.difference(self.by_type))
        return len(self.by_type) + unseen_known < MAX_TYPE_NAMES

    def _advance(self, sec: int) -> None:
        gap = sec - self._sec
        if gap < 0:  # clock went back: keep buckets, just move on
            self._sec = sec
            return
        for s in range(self._sec + 1, self._sec + 1 + min(gap, _RING)):
            self._ev[s % _RING] = 0
            self._by[s % _RING] = 0
        self._sec = sec

    # --- the wader's records ----------------------------------------------

    def connection_started(self, request_line: str | None = None) -> None:
        """A stream is established: coverage and limit counters start over."""
        self.connections += 1
        self.connection_started_at = self.clock.seconds()
        self.request_line = request_line
        self._conn_tweets0 = self.by_type.get("tweet", 0)
        self._conn_events0 = self.total_events
        self.limit_count = None
        self.limit_at = None

    def connection_attempt(self, cause: str) -> None:
        self.attempts[cause] += 1

    def duplicates(self, n: int) -> None:
        self.duplicates_dropped += n

    def parse_error(self, kind: str, sample: bytes | str | None = None, n: int = 1) -> None:
        """``n`` errors of ``kind`` (counted in bulk), ``sample`` one of them."""
        self.parse_errors[kind] += n
        if isinstance(sample, bytes):
            sample = sample[:200].decode("utf-8", "replace")
        self.last_parse_error = {"kind": kind, "sample": (sample or "")[:200],
                                 "at": self.clock.seconds()}

    def keepalive(self, n: int = 1) -> None:
        """``n`` keep-alives (counted in bulk: a flood of them is one call)."""
        self.keepalives += n
        self.last_keepalive_at = self.clock.seconds()

    def disconnect_message(self, code: Any, reason: str | None = None) -> None:
        self.disconnects = (self.disconnects + [{"code": code, "reason": reason,
                                                  "at": self.clock.seconds()}])[-10:]

    def warning_message(self, code: Any, message: str | None = None, percent_full: Any = None) -> None:
        self.warnings = (self.warnings + [{"code": code, "message": message,
                                           "percent_full": percent_full,
                                           "at": self.clock.seconds()}])[-10:]

    def limit_notice(self, skipped: int) -> None:
        """A ``limit`` message: ``skipped`` is cumulative since the connection began."""
        self.limit_count = skipped
        self.limit_at = self.clock.seconds()

    # --- delivery -------------------------------------------------------------

    def queue(self, name: str, length: int | None = None, trimmed: int = 0, pushed: int = 0) -> None:
        q = self.queues.setdefault(name, {"length": 0, "trimmed": 0, "pushed": 0})
        if length is not None:
            q["length"] = length
        q["trimmed"] += trimmed
        q["pushed"] += pushed

    def stream_groups(self, name: str, groups: list[JsonObject], length: int | None) -> None:
        """A stream subscription's consumer groups (``XINFO GROUPS``) and length, as just read."""
        self.streams[name] = {"groups": groups, "at": self.clock.seconds()}
        if length is not None:
            self.queues.setdefault(name, {"length": 0, "trimmed": 0, "pushed": 0})["length"] = length

    def forget_streams(self, keep: set[str]) -> None:
        for name in set(self.streams) - keep:
            del self.streams[name]

    def provide(self, name: str, fn: Callable[[], Any]) -> None:
        """Add ``fn()`` under ``name`` in every snapshot (journal, delivery status)."""
        self._providers[name] = fn

    def provided(self, name: str) -> Any:
        """What ``provide(name, ...)``'s function says now; None when nothing provides it."""
        fn = self._providers.get(name)
        return fn() if fn is not None else None

    # --- reading ----------------------------------------------------------------

    def coverage(self) -> float:
        received = self.by_type.get("tweet", 0) - self._conn_tweets0
        skipped = self.limit_count or 0
        possible = received + skipped
        return 100.0 if possible == 0 else round(received * 100.0 / possible, 3)

    def rates(self) -> dict[str, dict[str, float]]:
        now = self.clock.seconds()
        sec = int(now)
        if sec != self._sec:
            self._advance(sec)
        out: dict[str, dict[str, float]] = {}
        elapsed = max(1.0, now - self.started_at)
        for label, w in WINDOWS.items():
            # the last w full seconds plus the current partial one, over the time covered
            span = min(float(w), elapsed)
            ev = by = 0
            for s in range(sec - w, sec + 1):
                ev += self._ev[s % _RING]
                by += self._by[s % _RING]
            covered = span + (now - sec) if span >= w else span
            out[label] = {"events_per_sec": round(ev / covered, 3),
                          "bytes_per_sec": round(by / covered, 3)}
        return out

    def per_second(self, seconds: int = 300) -> list[tuple[int, int]]:
        """(second, events) for each of the last ``seconds`` whole seconds, oldest
        first (the dashboard's plot); the current, partial second is left out."""
        sec = int(self.clock.seconds())
        if sec != self._sec:
            self._advance(sec)
        n = max(0, min(seconds, _RING - 1))
        return [(s, self._ev[s % _RING]) for s in range(sec - n, sec)]

    def snapshot(self) -> JsonObject:
        now = self.clock.seconds()
        snap: JsonObject = {
            "time": now,
            "started_at": self.started_at,
            "events": {"total": self.total_events, "bytes": self.total_bytes,
                       "by_type": dict(self.by_type)},
            "rates": self.rates(),
            "last_event_at": self.last_event_at,
            "connection": {
                "started_at": self.connection_started_at, "count": self.connections,
                "attempts_by_cause": dict(self.attempts),
                "reconnects": max(0, self.connections - 1),
                "received_events": self.total_events - self._conn_events0,
                "received_tweets": self.by_type.get("tweet", 0) - self._conn_tweets0,
                "keepalives": self.keepalives, "last_keepalive_at": self.last_keepalive_at,
            },
            "limit": {"skipped": self.limit_count, "at": self.limit_at,
                      "coverage": self.coverage()},
            "duplicates": self.duplicates_dropped,
            "parse_errors": {"by_kind": dict(self.parse_errors), "last": self.last_parse_error},
            "disconnects": list(self.disconnects),
            "warnings": list(self.warnings),
            "queues": {k: dict(v) for k, v in self.queues.items()},
            "streams": {k: dict(v) for k, v in self.streams.items()},
        }
        for name, fn in self._providers.items():
            try:
                snap[name] = fn()
            except Exception as e:  # a snapshot never fails because of one part
                snap[name] = {"error": str(e)}
        return snap
