"""Journal segment files on disk: naming, choosing, counting, reading, compressing.

The file-level half of the journal (``journal.py`` keeps positions and the
write path): a segment is one file whose name holds its first position. What a
crash, a full disk or a gzip job can leave behind is resolved here the same
way at every start (``one_per_position``), and reads survive a file being
replaced by its ``.gz`` meanwhile (``open_segment``).
"""

from __future__ import annotations

import gzip as _gzip
import os
import re
import secrets
import shutil
import zlib
from pathlib import Path
from typing import Protocol

import attrs
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads
from twisted.python.failure import Failure

from flamingo.logs import logger

__all__ = ["Segment", "SEGMENT_NAME", "FILE_MODE", "DIR_MODE", "READ_ERRORS", "Reader", "one_per_position",
           "count_lines", "open_segment", "gzip_file", "sync_and_close", "sync_and_drop", "drop_cached", "sync_dir",
           "unlink_quietly", "new_epoch", "write_lines", "one_line", "gzip_in_pool", "point_symlink"]

log = logger("flamingo.journal")

SEGMENT_NAME = re.compile(r"^(event|spool)-(\d{8}-\d{6})-(\d{12,})\.log(\.gz)?$")
FILE_MODE = 0o600  # events and state are the operator's, not every local user's
DIR_MODE = 0o700
READ_ERRORS = (OSError, EOFError, zlib.error)  # a missing file, a truncated or corrupt .gz


@attrs.define
class Segment:
    path: Path
    first: int
    bytes: int = 0

    @property
    def gz(self) -> bool:
        return self.path.name.endswith(".gz")


def one_per_position(same: list[Segment]) -> Segment:
    """One segment per position, whatever a crash or a full disk left behind.

    A plain file and its .gz: the compression finished (the .gz is written under a
    temporary name, synced, then renamed), only the unlink was lost: keep the .gz.
    Several plain files (retries on a full disk): the non-empty one wins, empty
    ones are removed; the choice never depends on directory order."""
    plain = [s for s in same if not s.gz]
    gz = [s for s in same if s.gz]
    if gz and plain:
        for s in plain:
            log.info("removing {p}: its .gz is complete (compression interrupted)", p=str(s.path))
            unlink_quietly(s.path)
        plain = []
    cands = sorted(plain or gz, key=lambda s: (s.bytes, s.path.name), reverse=True)
    for s in cands[1:]:
        if s.bytes == 0:
            unlink_quietly(s.path)
        else:
            log.warn("journal {dir}: two files start at position {n}; using {a}, ignoring {b}",
                     dir=str(s.path.parent), n=s.first, a=cands[0].path.name, b=s.path.name)
    return cands[0]


def count_lines(seg: Segment) -> int:
    """Lines in a segment; a torn last line (crash mid-write) is cut off."""
    if seg.gz:
        n = 0
        try:
            with _gzip.open(seg.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    n += chunk.count(b"\n")
        except (EOFError, zlib.error, _gzip.BadGzipFile) as e:
            log.warn("journal {path}: damaged, {n} lines readable ({e})", path=str(seg.path), n=n, e=e)
        return n
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


class ByteReader(Protocol):
    """An open segment, plain or gzipped: what ``Reader`` needs of it."""

    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


def open_segment(seg: Segment) -> ByteReader:
    """Open for reading; a plain file replaced by its .gz meanwhile is found under its new name."""
    if not seg.gz:
        try:
            return open(seg.path, "rb", buffering=0)
        except FileNotFoundError:
            gz = seg.path.with_name(seg.path.name + ".gz")
            if not gz.exists():
                raise
            seg.path = gz
    return _gzip.open(seg.path, "rb")


class Reader:
    """Sequential line reader over one segment, in big chunks (readline is slow)."""

    def __init__(self, path: Path, f: ByteReader, seq: int) -> None:
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


_NL = b"\n"
_IOV_EVENTS = 500  # frames per writev (IOV_MAX is 1024 iovecs on Linux)


def write_lines(fd: int, frames: list[bytes], start: int) -> int:
    """Frames and their newlines in writev calls (no joined copy); the bytes written.

    ``start`` is the file's size before: a failed write is cut back to it, so no torn
    line is left behind, and the error raised."""
    n = len(frames)
    try:
        total = 0
        for k in range(0, n, _IOV_EVENTS):
            chunk = frames[k:k + _IOV_EVENTS] if n > _IOV_EVENTS else frames
            iov: list[bytes] = [_NL] * (2 * len(chunk))
            iov[::2] = chunk
            want = sum(map(len, chunk)) + len(chunk)
            done = os.writev(fd, iov)
            if done < want:  # short write: finish it the slow way
                rest = memoryview(b"".join(iov))[done:]
                while rest:
                    w = os.write(fd, rest)
                    rest = rest[w:]
            total += want
        return total
    except OSError:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass
        raise


def drop_cached(fd: int, upto: int) -> None:
    """Let the kernel drop the file's cached pages up to byte ``upto`` (written and synced).

    An append-only log is read back rarely (a sink catching up after an outage), and
    a page cache that only grows makes every new page dearer: one thread's ``writev``
    of 3.8 KB events cost 4.7 then ~10 µs per event within 10 s on this VM, and a
    flat 1.7-2.1 with the synced range dropped every second (docs/performance.md).
    Advisory: an error changes nothing."""
    if upto > 0 and hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, upto, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def sync_and_drop(fd: int, upto: int) -> None:
    """fdatasync, then drop the first ``upto`` bytes (now durable) from the page cache."""
    os.fdatasync(fd)
    drop_cached(fd, upto)


def sync_and_close(fd: int) -> None:
    """fdatasync a dup'd segment, drop what it made durable from the page cache, close it."""
    try:
        sync_and_drop(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def gzip_file(path: Path) -> Path:
    """Compress a closed segment next to itself, then remove the plain file (in a thread).

    Crash-safe: the .gz is written under a temporary name (which a scan removes),
    synced, renamed, the rename synced, and only then is the plain file removed; a
    crash in between leaves both, and the scan keeps the complete .gz."""
    gz = path.with_name(path.name + ".gz")
    tmp = path.with_name(path.name + ".gz.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with open(path, "rb") as src, open(fd, "wb") as raw, _gzip.GzipFile(
            filename="", mode="wb", compresslevel=6, fileobj=raw, mtime=0) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.close()
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, gz)
    sync_dir(path.parent)
    path.unlink()
    return gz


def gzip_in_pool(reactor: IReactorThreads, seg: Segment, pending: set[defer.Deferred[None]]) -> None:
    """``gzip_file`` of a closed segment in ``reactor``'s thread pool; ``seg`` follows the rename.
    Its Deferred stays in ``pending`` until done (the journal's close waits for it)."""
    d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), gzip_file, seg.path)

    def done(result: Path | Failure) -> None:
        pending.discard(waited)
        if isinstance(result, Path):
            seg.path = result
            try:
                seg.bytes = result.stat().st_size
            except OSError:
                pass
        else:
            log.warn("gzip of {path} failed: {e}", path=str(seg.path), e=result.getErrorMessage())
    # the same Deferred (its result None once done); it fires on a later reactor turn, so it is
    # in ``pending`` before ``done`` runs
    waited: defer.Deferred[None] = d.addBoth(done)
    pending.add(waited)


def point_symlink(link: Path, target: str) -> str | None:
    """Point ``link`` at ``target`` atomically (a temporary link renamed over it); the error, if any."""
    tmp = link.with_name(link.name + ".tmp")
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except OSError as e:
        return str(e)
    return None


def sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warn("cannot remove {p}: {e}", p=str(path), e=e)


def new_epoch() -> str:
    return secrets.token_hex(8)
