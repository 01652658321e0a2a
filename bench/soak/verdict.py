"""The soak's verdict: the queues against the event log, gaps against the faults.

Pure (given what was read): every event the journal kept is in every queue
that wants it exactly once, except

* events of a file the soak deleted: delivered once, or inside a reported
  gap (a missing one that no gap covers is a silent loss);
* events around a Redis restarted *empty*: what Redis held between the
  soak's last read and the wipe is lost with Redis, and the daemon may
  replay the transaction it had not yet seen acknowledged; such events may
  be missing or doubled (counted, reported, not a failure);
* events received while the disk was full: not journaled, they may reach a
  queue from memory, at most once;
* non-JSON lines, which the unfiltered raw queue may or may not get.

A reported gap must lie inside the positions of a deleted file; the
daemon's final ``/ready`` must be 200, and its RSS must have stayed under
the bound. The report names, per queue, the missing and doubled events by
position and id, and the faults that came just before them.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from itertools import groupby

import attrs

from bench.soak.eventlog import EventLog, event_id

__all__ = ["FaultRecord", "Verdict", "judge", "ranges"]

RSS_LIMIT = 200 * 1024 * 1024


@attrs.define
class FaultRecord:
    """One fault as it happened (times in seconds since the soak started)."""

    number: int
    kind: str
    description: str
    started: float
    ended: float | None = None
    head_before: int = 0  # journal head (last position) when it started
    head_after: int = 0  # ... and when it ended
    delivered_before: int | None = None  # the sink's checkpoint when it started
    deleted: tuple[int, int] | None = None  # positions of the file it deleted
    wipe_window: tuple[int, int] | None = None  # positions Redis may have lost with its data
    notes: list[str] = attrs.field(factory=list)
    problems: list[str] = attrs.field(factory=list)  # e.g. TERM did not exit 0

    def line(self) -> str:
        took = f"{self.ended - self.started:5.1f}s" if self.ended is not None else "  ...  "
        extra = "; ".join(self.notes + [f"FAIL {p}" for p in self.problems])
        return (f"#{self.number:<3} {self.started:7.1f}s +{took}  {self.description}"
                f"  [positions {self.head_before}..{self.head_after}"
                + (f", delivered up to {self.delivered_before}" if self.delivered_before is not None else "")
                + "]" + (f"  {extra}" if extra else ""))


@attrs.define
class Verdict:
    ok: bool
    problems: list[str]
    notes: list[str]
    figures: dict[str, object]

    def render(self) -> str:
        out = ["VERDICT: " + ("PASS" if self.ok else f"FAIL ({len(self.problems)} problems)")]
        out += [f"  FAIL {p}" for p in self.problems]
        out += [f"  note {n}" for n in self.notes]
        out.append("figures:")
        out += [f"  {k}: {v}" for k, v in self.figures.items()]
        return "\n".join(out)


def ranges(positions: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted positions as inclusive runs: [1,2,3,7] -> [(1,3),(7,7)]."""
    out: list[tuple[int, int]] = []
    for p in sorted(set(positions)):
        if out and p == out[-1][1] + 1:
            out[-1] = (out[-1][0], p)
        else:
            out.append((p, p))
    return out


def _runs_within(ps: list[int], order: list[int]) -> list[tuple[int, int, int]]:
    """Positions as runs of consecutive events *of this queue* (``order``: its wanted positions):
    (first, last, count). One event between two missing ones does not split a run: it is
    usually an event whose bytes occur twice in the log (a repeated ``user_withheld``), so
    which copy counts as delivered is arbitrary; the count stays exact."""
    runs: list[tuple[int, int, int]] = []
    prev = None
    for p in sorted(ps):
        i = bisect_left(order, p)
        if runs and prev is not None and i <= prev + 2:
            a, _, n = runs[-1]
            runs[-1] = (a, p, n + 1)
        else:
            runs.append((p, p, 1))
        prev = i
    return runs


def _fmt_ranges(rs: list[tuple[int, int]], limit: int = 6) -> str:
    parts = [f"{a}..{b}" if a != b else f"{a}" for a, b in rs[:limit]]
    return ", ".join(parts) + (f", ... ({len(rs) - limit} more runs)" if len(rs) > limit else "")


def _inside(p: int, rs: Iterable[tuple[int, int]]) -> bool:
    return any(a <= p <= b for a, b in rs)


def _count(sorted_keys: list[int], key: int) -> int:
    return bisect_right(sorted_keys, key) - bisect_left(sorted_keys, key)


def _counts(sorted_keys: list[int]) -> Iterator[tuple[int, int]]:
    for k, g in groupby(sorted_keys):
        yield k, sum(1 for _ in g)


def _diff(expected: list[int], actual: list[int]) -> Iterator[tuple[int, int, int]]:
    """(key, expected count, actual count) for every key where the two sorted lists differ."""
    e_it, a_it = _counts(expected), _counts(actual)
    e, a = next(e_it, None), next(a_it, None)
    while e is not None or a is not None:
        if a is None or (e is not None and e[0] < a[0]):
            yield e[0], e[1], 0  # type: ignore[index]
            e = next(e_it, None)
        elif e is None or a[0] < e[0]:
            yield a[0], 0, a[1]
            a = next(a_it, None)
        else:
            if e[1] != a[1]:
                yield e[0], e[1], a[1]
            e, a = next(e_it, None), next(a_it, None)


def _unique(event: bytes) -> bool:
    """Statuses and deletes carry a unique id; other control messages' bytes may repeat."""
    return event.startswith(b'{"created_at"') or event.startswith(b'{"delete"')


def _preceding(position: int, faults: list[FaultRecord], limit: int = 4) -> str:
    """The faults during which the event at ``position`` was received or still undelivered."""
    during = [f for f in faults
              if (f.delivered_before if f.delivered_before is not None else f.head_before)
              < position <= max(f.head_after, f.head_before) + 1]
    if not during:
        return "no fault while it was in flight"
    shown = ", ".join(f"#{f.number} {f.kind}" for f in during[:limit])
    return "in flight during " + shown + (f" and {len(during) - limit} more" if len(during) > limit else "")


def judge(log: EventLog, formats: dict[str, str], queues: dict[str, array],  # type: ignore[type-arg]
          gaps: list[tuple[int, int]], faults: list[FaultRecord], *, disk_full: bool,
          ready: tuple[bool, str], max_rss: int, figures: dict[str, object]) -> Verdict:
    """Compare; ``queues`` holds each queue's event digests as the consumer read them."""
    problems: list[str] = []
    notes: list[str] = []
    deleted = [f.deleted for f in faults if f.deleted]
    wiped = [f.wipe_window for f in faults if f.wipe_window]
    positions, keys = log.positions, log.keys
    by_key: dict[int, list[int]] = {}

    def where(key: int) -> list[int]:
        if not by_key:
            for i, k in enumerate(keys):
                by_key.setdefault(k, []).append(i)
        return by_key.get(key, [])

    for f in faults:
        problems += [f"#{f.number} {f.kind}: {p}" for p in f.problems]
    for a, b in log.reused:
        problems.append(f"event log: positions {a}..{b} are held by two files (positions reused)")
    if log.holes:
        notes.append(f"event log: no file holds positions {_fmt_ranges(log.holes)}")
    for a, b in gaps:
        if not any(da <= a and b <= db for da, db in deleted):
            problems.append(f"reported gap {a}..{b} is not the range of a file the soak deleted "
                            f"(deleted: {_fmt_ranges(deleted) or 'none'})")

    for name, fmt in formats.items():
        want_idx = log.wanted.get(name, array("q"))
        required: list[int] = []
        tolerated: dict[int, tuple[int, int, str]] = {}  # key -> (min, max, why)
        for i in want_idx:
            p = positions[i]
            if _inside(p, deleted):
                tolerated[keys[i]] = (0, 1, "deleted")
            elif _inside(p, wiped):
                tolerated[keys[i]] = (0, 2, "wipe")
            else:
                required.append(keys[i])
        for i in log.optional.get(name, array("q")):
            tolerated[keys[i]] = (0, 1, "invalid")
        required.sort()
        actual = sorted(queues.get(name, array("Q")))
        missing: list[int] = []  # positions
        doubled: list[int] = []
        unknown_once = unknown_more = 0
        wipe_missing = wipe_doubled = 0
        silent: list[int] = []
        gap_delivered: list[int] = []
        for key, e, a in _diff(required, actual):
            if key in tolerated:
                hi = tolerated[key][1]
                got = a - e
                if got > hi and disk_full and not _unique(log.line_at(positions[where(key)[0]]) or b""):
                    unknown_once += got - hi  # repeated bytes: the extra copies came while the disk was full
                elif got > hi:
                    doubled.extend(positions[i] for i in where(key))
                continue  # within bounds; deleted and wiped ones are checked below
            if e == 0:
                if a == 1 and disk_full:
                    unknown_once += 1
                else:
                    unknown_more += 1
                continue
            pos = [positions[i] for i in where(key)] or [0]
            if a > e and disk_full and not _unique(log.line_at(pos[0]) or b""):
                # e.g. a user_withheld whose bytes repeat in the stream: the extra ones are
                # copies received while the disk was full (which cannot be told apart)
                unknown_once += a - e
                continue
            if a < e:  # the same bytes at several positions: the last ones count as missing
                missing.extend(pos[-(e - a):])
            else:
                doubled.extend(pos[-1:] * (a - e))
        # a deleted file's events: delivered, or inside a reported gap; a wipe's: counted
        for i in want_idx:
            p = positions[i]
            if _inside(p, deleted):
                delivered = _count(actual, keys[i]) > 0
                if not delivered and not _inside(p, gaps):
                    silent.append(p)
                elif delivered and _inside(p, gaps) and _unique(log.line_at(p) or b""):
                    gap_delivered.append(p)  # (repeated control messages are delivered elsewhere)
            elif wiped and _inside(p, wiped):
                n = _count(actual, keys[i])
                wipe_missing += n == 0
                wipe_doubled += n == 2
        label = f"queue {name!r} ({fmt})"
        order = sorted(positions[i] for i in want_idx)
        for what, ps in (("missing", missing), ("delivered twice or more", doubled),
                         ("missing from a deleted file, not reported as a gap", silent)):
            if ps:
                runs = _runs_within(ps, order)
                shown = "; ".join(f"{a}..{b} ({n} events, first id {event_id(log.line_at(a) or b'?')}, "
                                  f"{_preceding(a, faults)})" if a != b else
                                  f"{a} (id {event_id(log.line_at(a) or b'?')}, {_preceding(a, faults)})"
                                  for a, b, n in runs[:4])
                more = f"; ... {len(runs) - 4} more runs" if len(runs) > 4 else ""
                problems.append(f"{label}: {len(ps)} events {what}, at positions {shown}{more}")
        if unknown_more:
            problems.append(f"{label}: {unknown_more} values that are no event of the event log "
                            + ("(or were pushed twice)" if disk_full else "(and no disk-full fault ran)"))
        if unknown_once:
            notes.append(f"{label}: {unknown_once} events not in the event log arrived once "
                         "(received while the disk was full, delivered from memory)")
        if wipe_missing or wipe_doubled:
            notes.append(f"{label}: around a Redis wipe {wipe_missing} events were lost with Redis "
                         f"and {wipe_doubled} replayed (tolerated)")
        if gap_delivered:
            notes.append(f"{label}: {len(gap_delivered)} events reported as a gap were delivered anyway "
                         f"(positions {_fmt_ranges(ranges(gap_delivered))})")
        figures[f"queue {name}"] = f"{len(actual)} values, {len(required)} required"

    ok_ready, why = ready
    if not ok_ready:
        problems.append(f"the daemon is not ready at the end: {why}")
    if max_rss >= RSS_LIMIT:
        problems.append(f"daemon RSS reached {max_rss / 2**20:.0f} MB (limit {RSS_LIMIT / 2**20:.0f} MB)")
    figures["max RSS"] = f"{max_rss / 2**20:.1f} MB"
    figures["reported gaps"] = _fmt_ranges(gaps) or "none"
    figures["deleted files"] = _fmt_ranges(deleted) or "none"
    return Verdict(not problems, problems, notes, figures)
