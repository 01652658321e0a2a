"""The Redis sink's events in memory, and the next batch after a checkpoint.

Events come from memory while the sink keeps up; memory is capped
(``max_memory`` bytes: the oldest journaled batches go first, the disk has
them) and the rest is read back from the journal. A range the journal cannot
read is a counted gap (``gap_events``), logged once, and the batch moves on.
Events the journal could not keep have no position: they are delivered from
memory in order with the rest, and lost (``lost_events``) if memory is full.
"""

from __future__ import annotations

from collections import deque

import attrs

from flamingo.dispatch.journal import Journal, JournalGap
from flamingo.logs import logger
from flamingo.stream.messages import message_type

__all__ = ["Item", "Backlog"]

log = logger("flamingo.sink")


@attrs.define
class Item:
    """One batch the dispatcher handed over."""

    after: int  # the last journal position before this batch
    first: int | None  # its first position; None = not journaled
    frames: list[bytes]
    types: list[str]
    nbytes: int

    @property
    def end(self) -> int:
        """The last position it covers (``after`` when not journaled)."""
        return self.after + len(self.frames) if self.first is not None else self.after


class Backlog:
    """What the sink holds in memory, and how the next batch is cut from it and the journal."""

    def __init__(self, journal: Journal, *, batch_max: int, batch_bytes: int, max_memory: int) -> None:
        self.journal = journal
        self.batch_max = batch_max
        self.batch_bytes = batch_bytes
        self.max_memory = max_memory
        self.items: deque[Item] = deque()
        self.mem = 0
        self.memory_dropped = 0  # journaled events dropped from memory (re-read from disk)
        self.lost_events = 0  # not journaled and dropped from memory: gone
        self.gap_events = 0  # positions the journal could not give back (deleted, cut short)
        self.gap_upto = 0  # gaps are counted and logged once, however often a batch is retried

    # --- input ------------------------------------------------------------------

    def deliver(self, first: int | None, kept: int, frames: list[bytes], types: list[str]) -> None:
        """A batch the dispatcher has journaled: positions ``first..first+kept-1``, the rest not kept."""
        if kept:
            assert first is not None, "journaled events have positions"
            after = first - 1
            if kept == len(frames):
                self.add(Item(after, first, frames, types, sum(map(len, frames))))
            else:
                self.add(Item(after, first, frames[:kept], types[:kept], sum(map(len, frames[:kept]))))
        if kept < len(frames):
            rest = frames[kept:]
            self.add(Item(self.journal.last_seq, None, rest, types[kept:], sum(map(len, rest))))

    def add(self, item: Item) -> None:
        self.items.append(item)
        self.mem += item.nbytes
        if self.mem > self.max_memory:
            self.shed()

    def shed(self) -> None:
        """Over the memory cap: drop the oldest journaled batches (the disk has them) down to
        3/4 of the cap, then, if still over, the oldest others.

        Only the oldest go, so after a short lag the sink reads a little from disk and the
        rest from memory (the newest are kept; the margin spares a shed per batch)."""
        target = self.max_memory * 3 // 4
        keep: deque[Item] = deque()
        mem = self.mem
        for it in self.items:
            if mem > target and it.first is not None:
                mem -= it.nbytes
                self.memory_dropped += len(it.frames)
            else:
                keep.append(it)
        while mem > self.max_memory and keep:  # only batches not on disk are left
            it = keep.popleft()
            mem -= it.nbytes
            self.lost_events += len(it.frames)
            log.error("{n} events neither on disk nor deliverable to Redis were dropped", n=len(it.frames))
        self.items, self.mem = keep, mem

    # --- state ------------------------------------------------------------------

    def has_unjournaled(self) -> bool:
        return any(it.first is None for it in self.items)

    def unjournaled(self) -> int:
        """Events held that have no journal position."""
        return sum(len(it.frames) for it in self.items if it.first is None)

    def in_memory_after(self, checkpoint: int) -> bool:
        """Every journaled event after ``checkpoint`` is held here: none has to be read back from disk."""
        for it in self.items:
            if it.first is not None:
                return it.after <= checkpoint
        return checkpoint >= self.journal.last_seq

    def origin(self) -> int:
        """The position before the first event this process received (for a first run)."""
        first_item = self.items[0] if self.items else None
        if first_item is not None:
            return first_item.after
        return self.journal.last_seq

    def committed(self, new_cp: int, consumed: list[Item]) -> None:
        """Forget what a committed batch delivered."""
        ids = {id(it) for it in consumed}
        while self.items:
            it = self.items[0]
            if (it.first is not None and it.end <= new_cp) or id(it) in ids:
                self.items.popleft()
                self.mem -= it.nbytes
            else:
                break

    # --- the next batch -----------------------------------------------------------

    def next_batch(self, checkpoint: int) -> tuple[list[bytes], list[str], int, list[Item]]:
        """The frames after ``checkpoint`` (memory, else disk), their types, the new checkpoint,
        and the unjournaled items taken."""
        frames: list[bytes] = []
        types: list[str] = []
        consumed: list[Item] = []
        pos = checkpoint
        room = self.batch_max
        size = 0
        for it in self.items:
            if room <= 0 or size >= self.batch_bytes:
                break
            if it.first is not None and it.end <= pos:
                continue  # delivered already (memory copy of a replayed batch)
            if pos < it.after:
                pos, room = self._from_disk(frames, types, pos, min(room, it.after - pos), it.after)
                if pos < it.after:
                    break  # the disk could not give more now
                if room <= 0:
                    break
            if it.first is None:
                frames.extend(it.frames)
                types.extend(it.types)
                consumed.append(it)
                room -= len(it.frames)
                size += it.nbytes
                continue
            off = pos + 1 - it.first
            take = min(room, len(it.frames) - off)
            if off == 0 and take == len(it.frames):
                frames.extend(it.frames)
                types.extend(it.types)
                size += it.nbytes
            else:
                frames.extend(it.frames[off:off + take])
                types.extend(it.types[off:off + take])
                size += sum(map(len, it.frames[off:off + take]))
            pos += take
            room -= take
        else:
            if room > 0 and pos < self.journal.last_seq:
                pos, room = self._from_disk(frames, types, pos, min(room, self.journal.last_seq - pos),
                                            self.journal.last_seq)
        return frames, types, pos, consumed

    def _from_disk(self, frames: list[bytes], types: list[str], pos: int, n: int,
                   upto: int) -> tuple[int, int]:
        """Read up to ``n`` events after ``pos`` (never past ``upto``, where memory takes over);
        an unreadable range is passed over as a gap: the new position, the room left."""
        if pos + 1 < self.journal.first_seq:
            last = min(self.journal.first_seq - 1, upto)
            self.gap(pos + 1, last, "no longer on disk (deleted or released)")
            return last, self.batch_max - len(frames)
        try:
            got = self.journal.read(pos + 1, max_events=n, max_bytes=self.batch_bytes)
        except JournalGap as gap:
            last = min(gap.last, upto)
            self.gap(gap.first, last, gap.reason)
            return last, self.batch_max - len(frames)
        frames.extend(got)
        types.extend(message_type(f) for f in got)
        return pos + len(got), self.batch_max - len(frames)

    def gap(self, first: int, last: int, reason: str) -> None:
        """Count and log a range that cannot be delivered, once however often it is met."""
        first = max(first, self.gap_upto + 1)
        if last < first:
            return
        self.gap_upto = last
        self.gap_events += last - first + 1
        log.error("GAP: journal positions {a}..{b} cannot be read ({reason}); {n} events are not "
                  "delivered, delivery goes on after them", a=first, b=last, reason=reason, n=last - first + 1)
