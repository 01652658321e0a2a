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
segment has been deleted.

Write errors (disk full, permission denied, deleted directory) never raise:
the batch is counted as not kept (``lost_events``/``lost_bytes``), the error is
logged loudly and shown in ``status()``, and the next append at least
``retry_interval`` later tries again on a fresh segment. Such events get no
position; the dispatcher still hands them to Redis from memory.
"""

from __future__ import annotations

import gzip as _gzip
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import orjson
from twisted.internet import defer, task, threads
from flamingo.logs import logger

__all__ = ["Journal", "one_line"]

log = logger("flamingo.journal")

_NAME = re.compile(r"^(event|spool)-(\d{8}-\d{6})-(\d{12,})\.log(\.gz)?$")
STATE_FILE = "journal.state"
_NL = b"\n"
_IOV_EVENTS = 500  # frames per writev (IOV_MAX is 1024 iovecs on Linux)
SYMLINK = "event.log"


def one_line(frames: list[bytes]) -> tuple[list[bytes], int]:
    """Frames with raw LF (and CR next to it) replaced by spaces, and how many needed it."""
    fixed = 0
    out = frames
    for i, f in enumerate(frames):
        if b"\n" in f:
            if out is frames:
                out = list(frames)
            out[i] = f.replace(b"\n", b" ").replace(b"\r", b" ")
            fixed += 1
    return out, fixed


@attrs.define
class Segment:
    path: Path
    first: int
    bytes: int = 0

    @property
    def gz(self) -> bool:
        return self.path.name.endswith(".gz")


class Journal:
    """Append batches, read back by position, rotate, keep or delete."""

    def __init__(self, directory: Path | str, *, kind: str = "spool", fsync: str = "everysec",
                 rotate_events: int | None = None, rotate_bytes: int | None = None,
                 rotate_age: float | None = None, gzip: bool = False, reactor: Any = None,
                 retry_interval: float = 1.0) -> None:
        if reactor is None:
            from twisted.internet import reactor as _r
            reactor = _r
        assert kind in ("spool", "event")
        assert fsync in ("always", "everysec", "no")
        self.dir = Path(directory)
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
        self.next_seq = 1
        self._fd: int | None = None
        self._cur_count = 0
        self._cur_opened = 0.0
        self._dirty = False
        self._sync_loop: task.LoopingCall | None = None
        self._reader: _Reader | None = None
        self._pending: set[defer.Deferred[Any]] = set()
        self._retry_at = 0.0
        self._last_end: int | None = None
        self._syncing: defer.Deferred[Any] | None = None
        # what could not be kept
        self.error: str | None = None
        self.error_since: float | None = None
        self.errors = 0
        self.lost_events = 0
        self.lost_bytes = 0
        self.newlines_replaced = 0

    # --- lifecycle -----------------------------------------------------------

    @classmethod
    def from_config(cls, config: Any, reactor: Any = None) -> "Journal":
        ev = config.logging.event
        if ev.dir is not None:
            return cls(ev.dir, kind="event", fsync=config.journal.fsync, rotate_events=ev.size,
                       rotate_bytes=ev.max_bytes, rotate_age=ev.max_age, gzip=ev.gzip, reactor=reactor)
        return cls(Path(config.data_dir) / "spool", kind="spool", fsync=config.journal.fsync,
                   rotate_bytes=config.journal.segment_bytes, reactor=reactor)

    def open(self) -> "Journal":
        """Recover positions from disk and open the segment to append to."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._scan()
            self._open_current()
        except OSError as e:
            self._failed("open", e)
        if self.fsync == "everysec":
            self._sync_loop = task.LoopingCall(self._sync_in_background)
            self._sync_loop.clock = self.reactor
            self._sync_loop.start(1.0, now=False)
        return self

    @defer.inlineCallbacks
    def close(self) -> Any:
        """Sync and close; waits for gzip jobs in flight."""
        if self._sync_loop is not None and self._sync_loop.running:
            self._sync_loop.stop()
        if self._syncing is not None:
            yield self._syncing
        self.sync()
        self._close_fd()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._write_state()
        if self._pending:
            yield defer.DeferredList(list(self._pending), consumeErrors=True)

    def _scan(self) -> None:
        segs = []
        for p in self.dir.iterdir():
            m = _NAME.match(p.name)
            if m and m.group(1) == self.kind:
                segs.append(Segment(p, int(m.group(3)), p.stat().st_size))
        segs.sort(key=lambda s: s.first)
        # a plain file and its .gz (gzip interrupted by a crash): keep the plain one
        dedup: dict[int, Segment] = {}
        for s in segs:
            if s.first in dedup and s.gz:
                continue
            dedup[s.first] = s
        self.segments = sorted(dedup.values(), key=lambda s: s.first)
        state_next = 1
        try:
            state_next = int(orjson.loads((self.dir / STATE_FILE).read_bytes())["next_seq"])
        except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            pass
        next_seq = state_next
        self._last_end = None
        if self.segments:
            last = self.segments[-1]
            self._last_end = last.first + self._count_lines(last)
            next_seq = max(next_seq, self._last_end)
        self.next_seq = max(1, next_seq)

    def _count_lines(self, seg: Segment) -> int:
        """Lines in a segment; a torn last line (crash mid-write) is cut off."""
        if seg.gz:
            with _gzip.open(seg.path, "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        n = 0
        last_nl = -1
        pos = 0
        with open(seg.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                c = chunk.count(b"\n")
                if c:
                    n += c
                    last_nl = pos + chunk.rindex(b"\n")
                pos += len(chunk)
        if last_nl + 1 != pos:
            log.warn("journal {path}: cutting a torn last line ({n} bytes)", path=str(seg.path),
                     n=pos - last_nl - 1)
            with open(seg.path, "r+b") as f:
                f.truncate(last_nl + 1)
            seg.bytes = last_nl + 1
        return n

    def _open_current(self) -> None:
        last = self.segments[-1] if self.segments else None
        if (last is not None and not last.gz and self._last_end == self.next_seq
                and not self._full(self.next_seq - last.first, last.bytes, None)):
            self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._cur_count = self.next_seq - last.first
            self._cur_opened = time.time()
            self._link(last.path)
            return
        self._new_segment()

    def _new_segment(self) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        path = self.dir / f"{self.kind}-{stamp}-{self.next_seq:012d}.log"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.segments and self.segments[-1].first == self.next_seq:
            self.segments.pop()  # an empty segment replaced (retry after an error)
        self.segments.append(Segment(path, self.next_seq, os.fstat(fd).st_size))
        self._fd = fd
        self._cur_count = 0
        self._cur_opened = time.time()
        self._write_state()
        self._link(path)

    def _link(self, path: Path) -> None:
        if not self.keep:
            return
        tmp = self.dir / (SYMLINK + ".tmp")
        try:
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
            os.symlink(path.name, tmp)
            os.replace(tmp, self.dir / SYMLINK)
        except OSError as e:
            log.warn("cannot update {link}: {e}", link=str(self.dir / SYMLINK), e=e)

    def _write_state(self) -> None:
        tmp = self.dir / (STATE_FILE + ".tmp")
        try:
            tmp.write_bytes(orjson.dumps({"next_seq": self.next_seq}))
            os.replace(tmp, self.dir / STATE_FILE)
        except OSError:
            pass  # positions are also recoverable from the segments

    # --- writing ----------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    def first_seq(self) -> int:
        """The oldest position still on disk (``last_seq + 1`` if none)."""
        return self.segments[0].first if self.segments else self.next_seq

    def _full(self, count: int, nbytes: int, opened: float | None) -> bool:
        if self.rotate_events is not None and count >= self.rotate_events:
            return True
        if self.rotate_bytes is not None and nbytes >= self.rotate_bytes:
            return True
        if self.rotate_age is not None and opened is not None and time.time() - opened >= self.rotate_age:
            return True
        return False

    def append(self, frames: list[bytes]) -> int | None:
        """Write ``frames`` (already one line each, see ``one_line``); the first position, or None.

        None means not kept (an error, counted); the caller delivers them from memory.
        """
        if not frames:
            return self.next_seq
        if self._fd is None:
            if time.monotonic() < self._retry_at or not self._reopen():
                self._lost(frames)
                return None
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
            log.info("journal {dir} writable again after {n} events not kept", dir=str(self.dir),
                     n=self.lost_events)
            self.error = None
            self.error_since = None
        return first

    def _write(self, frames: list[bytes]) -> int:
        """Frames and their newlines in one writev (no joined copy); the bytes written."""
        assert self._fd is not None
        seg = self.segments[-1]
        start = seg.bytes
        n = len(frames)
        try:
            total = 0
            for k in range(0, n, _IOV_EVENTS):
                chunk = frames[k:k + _IOV_EVENTS] if n > _IOV_EVENTS else frames
                iov: list[bytes] = [_NL] * (2 * len(chunk))
                iov[::2] = chunk
                want = sum(map(len, chunk)) + len(chunk)
                done = os.writev(self._fd, iov)
                if done < want:  # short write: finish it the slow way
                    rest = memoryview(b"".join(iov))[done:]
                    while rest:
                        w = os.write(self._fd, rest)
                        rest = rest[w:]
                total += want
            return total
        except OSError:
            try:  # no torn line left behind
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            raise

    def _rotate(self) -> None:
        old = self.segments[-1]
        self.sync()
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        self._new_segment()
        if self.gzip:
            self._gzip_later(old)

    def _gzip_later(self, seg: Segment) -> None:
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _gzip_file, seg.path)
        self._pending.add(d)

        def done(result: Any) -> None:
            self._pending.discard(d)
            if isinstance(result, Path):
                seg.path = result
                seg.bytes = result.stat().st_size
            else:
                log.warn("gzip of {path} failed: {e}", path=str(seg.path), e=result.getErrorMessage())
        d.addBoth(done)

    def _sync_in_background(self) -> None:
        """everysec: fdatasync in a thread (a slow disk must not stall the reactor), like Redis."""
        pool = getattr(self.reactor, "getThreadPool", None)
        if pool is None:  # a Clock in tests
            self.sync()
            return
        if self._syncing is not None or self._fd is None or not self._dirty:
            return
        try:
            fd = os.dup(self._fd)
        except OSError as e:
            self._failed("fsync", e)
            return
        self._dirty = False
        d = threads.deferToThreadPool(self.reactor, pool(), _sync_and_close, fd)
        self._syncing = d

        def done(result: Any) -> None:
            self._syncing = None
            if not isinstance(result, BaseException) and hasattr(result, "value"):
                e = result.value
                if isinstance(e, OSError):
                    self._dirty = True
                    self._failed("fsync", e)
        d.addBoth(done)

    def sync(self) -> None:
        if self._fd is not None and (self._dirty or self.fsync == "always"):
            try:
                os.fdatasync(self._fd)
                self._dirty = False
            except OSError as e:
                self._failed("fsync", e)

    def _reopen(self) -> bool:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._new_segment()
            return True
        except OSError as e:
            self._failed("reopen", e)
            return False

    def _failed(self, what: str, e: OSError) -> None:
        msg = f"{what} {self.dir}: {e.strerror or e}"
        self.errors += 1
        if self.error is None:
            self.error_since = time.time()
            log.critical("JOURNAL ERROR: cannot {msg}; events are delivered to Redis from memory "
                         "but NOT kept on disk until this is fixed (retrying)", msg=msg)
        self.error = msg
        self._retry_at = time.monotonic() + self.retry_interval
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
        """Events from position ``from_seq`` on (without their newline), up to the limits."""
        out: list[bytes] = []
        if from_seq < self.first_seq or from_seq > self.last_seq:
            return out
        idx = self._segment_index(from_seq)
        seq = from_seq
        size = 0
        while idx < len(self.segments) and len(out) < max_events and size < max_bytes and seq <= self.last_seq:
            seg = self.segments[idx]
            end = self.segments[idx + 1].first if idx + 1 < len(self.segments) else self.next_seq
            reader = self._reader_at(seg, seq)
            while seq < end and len(out) < max_events and size < max_bytes:
                want = min(end - seq, max_events - len(out))
                lines = reader.lines(want, max_bytes - size)
                if not lines:
                    break  # nothing more on disk (should not happen below last_seq)
                out.extend(lines)
                size += sum(map(len, lines)) + len(lines)
                seq += len(lines)
            reader.seq = seq
            if seq < end:
                break
            idx += 1
        return out

    def _segment_index(self, seq: int) -> int:
        lo, hi = 0, len(self.segments) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.segments[mid].first <= seq:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _reader_at(self, seg: Segment, seq: int) -> "_Reader":
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
        f: BinaryIO = _gzip.open(seg.path, "rb") if seg.gz else open(seg.path, "rb", buffering=0)  # type: ignore[assignment]
        r = _Reader(seg.path, f, seg.first)
        r.skip(seq - seg.first)
        self._reader = r
        return r

    # --- the spool's cleanup --------------------------------------------------------

    def release(self, upto_seq: int) -> int:
        """Spool only: delete closed segments every event of which is ``<= upto_seq``."""
        if self.keep:
            return 0
        removed = 0
        while len(self.segments) > 1 and self.segments[1].first - 1 <= upto_seq:
            seg = self.segments.pop(0)
            if self._reader is not None and self._reader.path == seg.path:
                self._reader.close()
                self._reader = None
            try:
                seg.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warn("cannot delete spool segment {p}: {e}", p=str(seg.path), e=e)
            removed += 1
        return removed

    def status(self) -> dict[str, Any]:
        return {"kind": "event_log" if self.keep else "spool", "dir": str(self.dir), "fsync": self.fsync,
                "first_seq": self.first_seq, "last_seq": self.last_seq,
                "segments": len(self.segments), "bytes": sum(s.bytes for s in self.segments),
                "writable": self.error is None and self._fd is not None,
                "error": self.error, "error_since": self.error_since, "errors": self.errors,
                "lost_events": self.lost_events, "lost_bytes": self.lost_bytes,
                "newlines_replaced": self.newlines_replaced}


class _Reader:
    """Sequential line reader over one segment, in big chunks (readline is slow)."""

    def __init__(self, path: Path, f: BinaryIO, seq: int) -> None:
        self.path = path
        self.f = f
        self.seq = seq
        self.pending: list[bytes] = []
        self.i = 0
        self.tail = b""

    def lines(self, n: int, max_bytes: int) -> list[bytes]:
        out: list[bytes] = []
        size = 0
        while len(out) < n and size < max_bytes:
            if self.i >= len(self.pending):
                chunk = self.f.read(1 << 20)
                if not chunk:
                    break
                parts = (self.tail + chunk).split(b"\n") if self.tail else chunk.split(b"\n")
                self.tail = parts.pop()
                self.pending, self.i = parts, 0
                continue
            take = self.pending[self.i:self.i + (n - len(out))]
            if max_bytes < (1 << 62):
                for k, line in enumerate(take):
                    size += len(line) + 1
                    if size >= max_bytes:
                        take = take[:k + 1]
                        break
            out.extend(take)
            self.i += len(take)
        return out

    def skip(self, n: int) -> None:
        """Pass over ``n`` lines, counting newlines: no line objects but the last chunk's."""
        left = len(self.pending) - self.i
        if left >= n:
            self.i += n
            return
        n -= left
        self.pending, self.i = [], 0
        while n > 0:
            chunk = self.f.read(1 << 20)
            if not chunk:
                return
            data = self.tail + chunk if self.tail else chunk
            count = data.count(b"\n")
            if count <= n:
                n -= count
                self.tail = data[data.rfind(b"\n") + 1:] if count else data
                continue
            parts = data.split(b"\n")
            self.tail = parts.pop()
            self.pending, self.i = parts, n
            return

    def close(self) -> None:
        self.f.close()


def _sync_and_close(fd: int) -> None:
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _gzip_file(path: Path) -> Path:
    """Compress a closed segment next to itself, then remove the plain file (in a thread)."""
    gz = path.with_name(path.name + ".gz")
    tmp = path.with_name(path.name + ".gz.tmp")
    with open(path, "rb") as src, _gzip.open(tmp, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, gz)
    path.unlink()
    return gz
