"""The journal: segmented, append-only files of newline-delimited raw JSON.

Every event gets a sequence number (its position) when it is appended; the
Redis sink keeps the last position it delivered and reads back from here
whatever Redis has not got yet. Two flavours share this code:

* the **event log** (``logging.event.dir``): kept for batch jobs, rotated after
  ``size`` events (and optionally ``max_bytes``/``max_age``), ``event.log``
  symlinked to the current file, names ``event-YYYYmmdd-HHMMSS-<seq>.log``
  that sort by time, closed files optionally gzipped;
* the **spool** (``<data_dir>/spool``) when there is no event log: segments
  of ``journal.segment_bytes`` deleted once the sink has passed them.

One line per event: JSON strings cannot hold raw control characters, so a raw
``\\n`` or ``\\r`` inside a message can only be insignificant whitespace; such
bytes are replaced by spaces (counted as ``newlines_replaced``), which keeps
the JSON equal and the file one line per event. The same bytes go to Redis.

Positions survive restarts: the first position of each segment is in its
name, the next one is recovered by counting the last segment's lines (a torn
last line is cut off) and is also kept in ``journal.state`` for when every
segment has been deleted. ``journal.state`` lives in the state directory
(``data_dir``), not among the events, and also holds the journal's **epoch**:
a random id made when the journal is created, which the sink writes into its
checkpoint so that a checkpoint of another (wiped, re-created) journal is
recognised instead of trusted.

A range that cannot be read back (a file deleted under the daemon, a closed
segment cut short by a machine crash, a torn line inside it) raises
``JournalGap``: the reader reports it and moves on instead of stalling.

Writes can run on a writer thread (``journal_writer.ThreadWriter``): then
``next_seq`` is the writer's, readers see ``last_seq``, *published* on the
reactor once the write holding it completed (``publish``), and logs and gzip
jobs of the write path go to the reactor too (``on_reactor``).

Write errors (disk full, permission denied, deleted directory) never raise:
the batch is counted as not kept (``lost_events``/``lost_bytes``), the error is
logged loudly and shown in ``status()``, and the next append at least
``retry_interval`` later tries again on a fresh segment. Such events get no
position; the dispatcher still hands them to Redis from memory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from twisted.internet import defer, task, threads
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.python.failure import Failure

from flamingo._reactor import maybe_global_reactor
from flamingo._types import JsonObject
from flamingo.config import Config
from flamingo.dispatch.journal_read import JournalGap, SegmentReads
from flamingo.dispatch.journal_state import load_state, move_state, write_state
from flamingo.dispatch.segments import (
    DIR_MODE,
    FILE_MODE,
    SEGMENT_NAME,
    Reader,
    Segment,
    count_lines,
    gzip_in_pool,
    new_epoch,
    one_line,
    one_per_position,
    point_symlink,
    sync_and_close,
    sync_and_drop,
    unlink_quietly,
    write_lines,
)
from flamingo.logs import logger

__all__ = ["Journal", "JournalGap", "one_line"]

log = logger("flamingo.journal")

_Reader = Reader  # the name tests patch (SegmentReads.reader_class is this class)

SYMLINK = "event.log"


class Journal:
    """Append batches, read back by position, rotate, keep or delete."""

    def __init__(self, directory: Path | str, *, kind: str = "spool", fsync: str = "everysec",
                 rotate_events: int | None = None, rotate_bytes: int | None = None,
                 rotate_age: float | None = None, gzip: bool = False, reactor: IReactorTime | None = None,
                 retry_interval: float = 1.0, state_dir: Path | str | None = None) -> None:
        reactor = maybe_global_reactor(reactor)
        assert kind in ("spool", "event")
        assert fsync in ("always", "everysec", "no")
        self.dir = Path(directory)
        # journal.state (and the sink's checkpoint copy) live here, not among the events
        self.state_dir = Path(state_dir) if state_dir is not None else self.dir
        self.kind = kind
        self.keep = kind == "event"
        self.fsync = fsync
        self.rotate_events = rotate_events
        self.rotate_bytes = rotate_bytes
        self.rotate_age = rotate_age
        self.gzip = gzip and self.keep
        self.reactor = reactor
        self.retry_interval = retry_interval
        self.segments: list[Segment] = []
        self.next_seq = 1  # the writer's next position
        self._published = 1  # what readers see: next_seq once the writes before it completed
        # a writer thread publishes positions itself (publish) and runs on_reactor's calls
        # on the reactor thread; inline, both happen at once
        self.defer_publish = False
        self.on_reactor: Callable[[Callable[[], None]], None] = _now
        self.sync_hook: Callable[[], None] | None = None  # everysec: ask the writer thread to sync
        # a background fdatasync failed: handled by the thread that owns the fd
        self.sync_failed: Callable[[OSError], None] = lambda e: self._failed("fsync", e)
        # the journal's identity: made when it is created, kept in journal.state
        self.epoch = ""
        # False when journal.state was missing while segments exist (an upgrade, or
        # the state lost): positions are still right, the epoch is new
        self.epoch_recorded = False
        self.opened_last_seq = 0  # last position on disk when opened (before this run's events)
        self._fd: int | None = None
        self._cur_count = 0
        self._cur_opened = 0.0
        self._dirty = False
        self._sync_loop: task.LoopingCall | None = None
        self._reads = SegmentReads(self)
        self._pending: set[defer.Deferred[None]] = set()
        self._retry_at = 0.0
        self._last_end: int | None = None
        self._syncing: defer.Deferred[None] | None = None
        # what could not be kept
        self.error: str | None = None
        self.error_since: float | None = None
        self.errors = 0
        self.lost_events = 0
        self.lost_bytes = 0
        self.newlines_replaced = 0

    # --- lifecycle -----------------------------------------------------------

    @classmethod
    def from_config(cls, config: Config, reactor: IReactorTime | None = None) -> Journal:
        ev = config.logging.event
        state_dir = Path(config.data_dir)
        if ev.dir is not None:
            return cls(ev.dir, kind="event", fsync=config.journal.fsync, rotate_events=ev.size,
                       rotate_bytes=ev.max_bytes, rotate_age=ev.max_age, gzip=ev.gzip, reactor=reactor,
                       state_dir=state_dir)
        return cls(state_dir / "spool", kind="spool", fsync=config.journal.fsync,
                   rotate_bytes=config.journal.segment_bytes, reactor=reactor, state_dir=state_dir)

    def open(self) -> Journal:
        """Recover positions from disk and open the segment to append to."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            move_state(self.dir, self.state_dir)
            self._scan()
            self._published = self.next_seq
            self.opened_last_seq = self.last_seq
            self._open_current()
            if self.gzip:  # closed files a crash left uncompressed (their .gz.tmp was removed)
                for seg in self.segments[:-1]:
                    if not seg.gz:
                        self._gzip_later(seg)
        except OSError as e:
            self._failed("open", e)
        if not self.epoch:  # the directory could not even be scanned: still an identity
            self.epoch = new_epoch()
        self._published = self.next_seq
        if self.fsync == "everysec":
            self._sync_loop = task.LoopingCall(self._sync_in_background)
            self._sync_loop.clock = self.reactor
            self._sync_loop.start(1.0, now=False)
        return self

    def close(self) -> defer.Deferred[None]:
        """Sync and close; waits for gzip jobs in flight."""
        return defer.Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        if self._sync_loop is not None and self._sync_loop.running:
            self._sync_loop.stop()
        if self._syncing is not None:
            await self._syncing
        self.sync()
        self._close_fd()
        self._reads.drop()
        self._write_state()
        if self._pending:
            await defer.DeferredList(list(self._pending), consumeErrors=True)

    def _scan(self) -> None:
        by_first: dict[int, list[Segment]] = {}
        for p in self.dir.iterdir():
            m = SEGMENT_NAME.match(p.name)
            if m and m.group(1) == self.kind:
                by_first.setdefault(int(m.group(3)), []).append(Segment(p, int(m.group(3)), p.stat().st_size))
            elif p.name.endswith(".gz.tmp") and p.name.startswith(self.kind + "-"):
                unlink_quietly(p)  # a compression a crash interrupted
        self.segments = [one_per_position(same) for _, same in sorted(by_first.items())]
        state = load_state(self.state_dir)
        if state.epoch is not None:
            self.epoch, self.epoch_recorded = state.epoch, True
        else:
            self.epoch = new_epoch()
            # no segment and no state: a new journal; segments without state: positions
            # are known, the identity is not (an upgrade, or journal.state lost)
            self.epoch_recorded = not self.segments and not state.found
        next_seq = state.next_seq
        self._last_end = None
        if self.segments:
            last = self.segments[-1]
            self._last_end = last.first + count_lines(last)
            next_seq = max(next_seq, self._last_end)
        self.next_seq = max(1, next_seq)
        if state.epoch != self.epoch or state.next_seq != self.next_seq:
            self._write_state(durable=True)

    def _open_current(self) -> None:
        last = self.segments[-1] if self.segments else None
        if (last is not None and not last.gz and self._last_end == self.next_seq
                and not self._full(self.next_seq - last.first, last.bytes, None)):
            self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            self._cur_count = self.next_seq - last.first
            self._cur_opened = self.reactor.seconds()
            self._link(last.path)
            return
        self._new_segment()

    def _new_segment(self) -> None:
        last = self.segments[-1] if self.segments else None
        if last is not None and last.first == self.next_seq and not last.gz:
            # a retry after an error: the segment holds no event yet, so reuse its name
            # (one file per position); truncating drops a torn write left behind
            path = last.path
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            self.segments.pop()
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            path = self.dir / f"{self.kind}-{stamp}-{self.next_seq:012d}.log"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        self.segments.append(Segment(path, self.next_seq, os.fstat(fd).st_size))
        self._fd = fd
        self._cur_count = 0
        self._cur_opened = self.reactor.seconds()
        self._write_state()
        self._link(path)

    def _link(self, path: Path) -> None:
        err = point_symlink(self.dir / SYMLINK, path.name) if self.keep else None
        if err is not None:
            self.on_reactor(lambda: log.warn("cannot update {link}: {e}", link=str(self.dir / SYMLINK), e=err))

    def _write_state(self, durable: bool = False) -> None:
        write_state(self.state_dir, self.next_seq, self.epoch, durable and self.fsync != "no")

    # --- writing ----------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The last position readers may use: its write has completed."""
        return self._published - 1

    @property
    def first_seq(self) -> int:
        """The oldest position still on disk (``last_seq + 1`` if none)."""
        return self.segments[0].first if self.segments else self._published

    def publish(self, upto: int) -> None:
        """Positions before ``upto`` are written (a writer thread's completion, on the reactor)."""
        if upto > self._published:
            self._published = upto

    def _full(self, count: int, nbytes: int, opened: float | None) -> bool:
        if self.rotate_events is not None and count >= self.rotate_events:
            return True
        if self.rotate_bytes is not None and nbytes >= self.rotate_bytes:
            return True
        if self.rotate_age is not None and opened is not None and self.reactor.seconds() - opened >= self.rotate_age:
            return True
        return False

    def append(self, frames: list[bytes]) -> int | None:
        """Write ``frames`` (already one line each, see ``one_line``); the first position, or None.

        None means not kept (an error, counted); the caller delivers them from memory.
        Kept are ``min(len(frames), next_seq - first)`` (read ``next_seq`` right after).
        """
        first = self._append(frames)
        if not self.defer_publish:
            self._published = self.next_seq
        return first

    def _append(self, frames: list[bytes]) -> int | None:
        if not frames:
            return self.next_seq
        if self._fd is None:
            if self.reactor.seconds() < self._retry_at or not self._reopen():
                self._lost(frames)
                return None
        assert self._fd is not None  # open, or just reopened
        first = self.next_seq
        i = 0
        try:
            if os.fstat(self._fd).st_nlink == 0:  # deleted under us: writing would keep nothing
                raise FileNotFoundError(2, "current segment file was deleted")
            while i < len(frames):
                room = len(frames) - i
                if self.rotate_events is not None:
                    room = min(room, self.rotate_events - self._cur_count)
                piece = frames[i:i + room] if (i or room != len(frames)) else frames
                nbytes = self._write(piece)
                seg = self.segments[-1]
                seg.bytes += nbytes
                self._cur_count += len(piece)
                self.next_seq += len(piece)
                i += len(piece)
                if self._full(self._cur_count, seg.bytes, self._cur_opened):
                    self._rotate()
        except OSError as e:
            self._failed("write", e)
            self._lost(frames[i:])
            return first if i else None
        if self.fsync == "always":
            self.sync()
        else:
            self._dirty = True
        if self.error is not None:
            n = self.lost_events
            self.on_reactor(lambda: log.info("journal {dir} writable again after {n} events not kept",
                                             dir=str(self.dir), n=n))
            self.error = None
            self.error_since = None
        return first

    def _write(self, frames: list[bytes]) -> int:
        """Frames and their newlines in writev calls (no joined copy); the bytes written.
        A failed write leaves no torn line behind."""
        assert self._fd is not None
        return write_lines(self._fd, frames, self.segments[-1].bytes)

    def _rotate(self) -> None:
        old = self.segments[-1]
        assert self._fd is not None
        if self.fsync != "no":
            # a closed segment must be whole after a power cut: a short one in the
            # middle of the journal would be a gap (everysec syncs only the current one)
            sync_and_drop(self._fd, old.bytes)
            self._dirty = False
        os.close(self._fd)
        self._fd = None
        self._new_segment()
        if self.gzip:
            self.on_reactor(lambda: self._gzip_later(old))

    def _gzip_later(self, seg: Segment) -> None:
        # gzip needs a real reactor's thread pool (IReactorThreads), not only its timers
        assert IReactorThreads.providedBy(self.reactor)
        gzip_in_pool(self.reactor, seg, self._pending)

    def _sync_in_background(self) -> None:
        """everysec: fdatasync in a thread (a slow disk must not stall the reactor), like Redis."""
        if self.sync_hook is not None:  # a writer thread dups the segment, in order with its writes
            self.sync_hook()
            return
        if not IReactorThreads.providedBy(self.reactor):  # a Clock in tests
            self.sync()
            return
        if self._syncing is None:
            fd = self.dup_for_sync()
            if fd is not None:
                self.sync_fd(fd)

    def dup_for_sync(self) -> int | None:
        """The current segment, dup'd, if it has writes not yet synced (on the writing thread)."""
        if self._fd is None or not self._dirty:
            return None
        try:
            fd = os.dup(self._fd)
        except OSError as e:
            self._failed("fsync", e)
            return None
        self._dirty = False
        return fd

    def sync_fd(self, fd: int) -> None:
        """fdatasync a dup in the reactor's thread pool while writes go on (on the reactor)."""
        if self._syncing is not None:  # the last one is still running: next time
            os.close(fd)
            self._dirty = True
            return
        reactor = self.reactor
        if not IReactorThreads.providedBy(reactor):  # a Clock in tests: at once
            try:
                sync_and_close(fd)
            except OSError as e:
                self._dirty = True
                self.sync_failed(e)
            return
        d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), sync_and_close, fd)
        self._syncing = d

        def done(result: None | Failure) -> None:
            self._syncing = None
            if isinstance(result, Failure):
                e = result.value
                if isinstance(e, OSError):
                    self._dirty = True
                    self.sync_failed(e)
        d.addBoth(done)

    def sync(self) -> None:
        if self._fd is not None and (self._dirty or self.fsync == "always"):
            try:
                sync_and_drop(self._fd, self.segments[-1].bytes)
                self._dirty = False
            except OSError as e:
                self._failed("fsync", e)

    def _reopen(self) -> bool:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            self._new_segment()
            return True
        except OSError as e:
            self._failed("reopen", e)
            return False

    def _failed(self, what: str, e: OSError) -> None:
        msg = f"{what} {self.dir}: {e.strerror or e}"
        self.errors += 1
        if self.error is None:
            self.error_since = self.reactor.seconds()
            self.on_reactor(lambda: log.critical(
                "JOURNAL ERROR: cannot {msg}; events are delivered to Redis from memory "
                "but NOT kept on disk until this is fixed (retrying)", msg=msg))
        self.error = msg
        self._retry_at = self.reactor.seconds() + self.retry_interval
        self._close_fd()

    def _close_fd(self) -> None:
        """Close the current segment's descriptor, if any (errors are moot here)."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _lost(self, frames: list[bytes]) -> None:
        self.lost_events += len(frames)
        self.lost_bytes += sum(map(len, frames)) + len(frames)

    # --- reading ---------------------------------------------------------------

    def read(self, from_seq: int, max_events: int = 5000, max_bytes: int = 16 << 20) -> list[bytes]:
        """Events from position ``from_seq`` on (without their newline), up to the limits.

        Raises ``JournalGap`` when the events at ``from_seq`` cannot be read (the events
        before an unreadable range are returned first; the next read raises)."""
        return self._reads.read(from_seq, max_events, max_bytes)

    def tail(self, max_events: int, max_bytes: int = 16 << 20) -> list[bytes]:
        """The last ``max_events`` events still readable, oldest first: what a source
        resumes from after a restart (Jetstream's cursor, the ids X or Mastodon repeat).
        Unreadable ranges are skipped (``read`` reports them to the sink)."""
        return self._reads.tail(max_events, max_bytes)

    # --- the spool's cleanup --------------------------------------------------------

    def release(self, upto_seq: int) -> int:
        """Spool only: delete closed segments every event of which is ``<= upto_seq``."""
        if self.keep:
            return 0
        removed = 0
        while len(self.segments) > 1 and self.segments[1].first - 1 <= upto_seq:
            seg = self.segments.pop(0)
            self._reads.drop(seg.path)
            try:
                seg.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warn("cannot delete spool segment {p}: {e}", p=str(seg.path), e=e)
            removed += 1
        return removed

    def status(self) -> JsonObject:
        return {"kind": "event_log" if self.keep else "spool", "dir": str(self.dir), "fsync": self.fsync,
                "first_seq": self.first_seq, "last_seq": self.last_seq,
                "segments": len(self.segments), "bytes": sum(s.bytes for s in self.segments),
                "writable": self.error is None and self._fd is not None,
                "error": self.error, "error_since": self.error_since, "errors": self.errors,
                "lost_events": self.lost_events, "lost_bytes": self.lost_bytes,
                "newlines_replaced": self.newlines_replaced}


def _now(fn: Callable[[], None]) -> None:
    fn()
