"""Who runs the journal's writes: the reactor itself, or a writer thread.

``os.writev`` into the page cache costs several µs per 3.8 KB event on a
virtual machine (``bench``'s page-cache limit), which is most of what a
reactor can spend per event at 60,000 events/s. ``writev`` and ``fdatasync``
release the GIL, so a writer thread runs them beside the reactor, on the
other core.

The guarantee does not change: a batch reaches the Redis sink only after the
write holding it completed (``deliver`` is called, on the reactor thread,
with the positions the journal gave it), in the order received. Positions
are given by the writer, in order, one after the other, with the journal's
own rules (rotation, one file per position, torn writes cut, disk errors
counted as not kept and delivered from memory); readers see a position once
its write completed (``Journal.publish``).

A quiet stream is written on the reactor itself: while the last second's
rate is below ``inline_below`` bytes/s and the writer has nothing queued nor
in hand, ``submit`` writes the batch at once (the writer excluded by a flag
under the same lock). Each hand-over to the thread costs a wake-up on both
sides and, on a busy machine, a wait for a core: at 10,000 events/s that
doubled the p99 latency for no gain, since one core has room to spare then.

Memory is bounded: when the bytes waiting to be written pass ``high_bytes``
the ``Flow`` gate closes (the stream's reader pauses its socket) and opens
again below half of it; past ``hard_bytes`` (a source that ignores the gate)
``submit`` itself waits for the writer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import attrs
from twisted.internet import defer

from flamingo._types import JsonObject
from flamingo.dispatch.journal import Journal
from flamingo.dispatch.stages import StageCpu
from flamingo.logs import logger
from flamingo.stream.flow import JOURNAL, Flow

__all__ = ["Written", "InlineWriter", "ThreadWriter", "JournalWriter"]

log = logger("flamingo.journal")

HIGH_BYTES = 8 << 20  # waiting to be written: the stream pauses above this
HARD_BYTES = 64 << 20  # submit() waits for the writer above this
MERGE_BYTES = 4 << 20  # batches queued meanwhile are written together, up to this
INLINE_BELOW = 48 << 20  # bytes/s: below this the reactor writes itself when the writer is idle


@attrs.define(slots=True)
class Written:
    """One submitted batch, written: positions ``first..first+kept-1``; the rest not kept."""

    first: int | None
    kept: int
    frames: list[bytes]
    types: list[str]
    nbytes: int


Deliver = Callable[[Written], None]


def _positions(first: int | None, kept: int, batches: list[tuple[list[bytes], list[str], int]]) -> list[Written]:
    """Split one append's result over the batches it merged, in order."""
    out = []
    off = 0
    for frames, types, nbytes in batches:
        n = len(frames)
        k = max(0, min(n, kept - off))
        out.append(Written(first + off if k and first is not None else None, k, frames, types, nbytes))
        off += n
    return out


class InlineWriter:
    """``journal.append`` on the caller's (reactor) thread: tests with a ``Clock``, ``journal.writer: inline``."""

    threaded = False

    def __init__(self, journal: Journal, deliver: Deliver, cpu: StageCpu) -> None:
        self.journal = journal
        self.deliver = deliver
        self.cpu = cpu
        self.pending_events = 0

    def start(self) -> None:
        pass

    def submit(self, frames: list[bytes], types: list[str], nbytes: int) -> None:
        t0 = time.thread_time()
        first = self.journal.append(frames)
        kept = 0 if first is None else min(len(frames), self.journal.next_seq - first)
        dt = time.thread_time() - t0
        self.cpu.journal += dt
        self.cpu.journal_inline += dt
        self.deliver(Written(first, kept, frames, types, nbytes))

    def flush(self) -> defer.Deferred[None]:
        return defer.succeed(None)

    def stop(self) -> defer.Deferred[None]:
        return defer.succeed(None)

    def status(self) -> JsonObject:
        return {"thread": False}


class ThreadWriter:
    """A writer thread runs the journal's writes in order; results come back to the reactor.

    ``call_from_thread`` is the reactor's ``callFromThread``. Tests may pass
    ``start_thread=False`` and run the writer's rounds themselves (``step``),
    with a ``call_from_thread`` that queues: every interleaving is then theirs.
    """

    threaded = True

    def __init__(self, journal: Journal, deliver: Deliver, cpu: StageCpu,
                 call_from_thread: Callable[[Callable[[], None]], object], flow: Flow | None = None, *,
                 high_bytes: int = HIGH_BYTES, hard_bytes: int = HARD_BYTES, merge_bytes: int = MERGE_BYTES,
                 inline_below: float = INLINE_BELOW, start_thread: bool = True,
                 seconds: Callable[[], float] = time.monotonic) -> None:
        self.journal = journal
        self.deliver = deliver
        self.cpu = cpu
        self.call_from_thread = call_from_thread
        self.flow = flow
        self.high_bytes = high_bytes
        self.low_bytes = high_bytes // 2
        self.hard_bytes = max(hard_bytes, high_bytes)
        self.merge_bytes = merge_bytes
        self.inline_below = inline_below
        self.start_thread = start_thread
        self.seconds = seconds  # the reactor's clock (IReactorTime.seconds) for the rate window
        self.inline_batches = 0  # written on the reactor (a quiet stream, the writer idle)
        self._win_start = seconds()
        self._win_bytes = 0
        self._rate = 0.0  # bytes/s submitted over the last full second
        # shared with the writer thread, under _cond
        self._cond = threading.Condition()
        self._jobs: deque[tuple[list[bytes], list[str], int]] = deque()
        self._queued = 0  # bytes submitted, not yet written
        self._sync_asked = False
        self._busy = False  # someone (the writer, or the reactor inline) is using the journal
        self._sync_error: OSError | None = None  # a background fdatasync failed: the writer handles it
        self._stopping = False
        # results for the reactor, under _out_lock
        self._out_lock = threading.Lock()
        self._out: deque[Written | Callable[[], None]] = deque()
        self._wake_pending = False
        # the reactor's side
        self._thread: threading.Thread | None = None
        self.pending_bytes = 0  # submitted, not yet handed on
        self.pending_events = 0
        self.submitted = 0
        self.done = 0
        self.hard_waits = 0  # submits that had to wait for the writer (the gate did not hold)
        self._flush_waiters: list[defer.Deferred[None]] = []
        self._stop_waiters: list[defer.Deferred[None]] = []
        self._stopped = False

    # --- the reactor's side ------------------------------------------------------

    def start(self) -> None:
        j = self.journal
        j.defer_publish = True
        j.on_reactor = self._post_call
        if j.fsync == "everysec":
            j.sync_hook = self.request_sync
            j.sync_failed = self._sync_failed
        if self.start_thread:
            self._thread = threading.Thread(target=self._run, name="flamingo-journal", daemon=True)
            self._thread.start()

    @property
    def idle(self) -> bool:
        """Nothing queued and nobody writing: a quiet stream's next batch may be written here."""
        with self._cond:
            return not self._jobs and not self._busy

    def submit(self, frames: list[bytes], types: list[str], nbytes: int) -> None:
        """Queue a batch for writing; ``deliver`` gets it (with its positions) once written."""
        now = self.seconds()
        if now - self._win_start >= 1.0:
            self._rate = self._win_bytes / (now - self._win_start)
            self._win_start, self._win_bytes = now, 0
        self._win_bytes += nbytes
        if self._stopped:  # the thread is gone (a batch after stop): the reactor writes, as inline
            first = self.journal.append(frames)
            kept = 0 if first is None else min(len(frames), self.journal.next_seq - first)
            self.deliver(Written(first, kept, frames, types, nbytes))
            return
        with self._cond:
            inline = (self._rate < self.inline_below and not self._jobs and not self._busy
                      and not self._stopping and self._thread is not None)
            if inline:
                self._busy = True
        if inline:
            self._write_here(frames, types, nbytes)
            return
        with self._cond:
            self._jobs.append((frames, types, nbytes))
            self._queued += nbytes
            self._cond.notify()
            if self._queued > self.hard_bytes and self._thread is not None and self._thread.is_alive():
                self.hard_waits += 1
                while self._queued > self.high_bytes and self._thread.is_alive():
                    self._cond.wait(1.0)
        self.submitted += 1
        self.pending_bytes += nbytes
        self.pending_events += len(frames)
        if self.flow is not None and self.pending_bytes > self.high_bytes:
            self.flow.close(JOURNAL)

    def _write_here(self, frames: list[bytes], types: list[str], nbytes: int) -> None:
        """The reactor writes the batch itself (the writer is idle and excluded meanwhile)."""
        t0 = time.thread_time()
        try:
            results = self._write([(frames, types, nbytes)])
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()  # a writer waiting to sync may go on
        dt = time.thread_time() - t0
        self.cpu.journal += dt
        self.cpu.journal_inline += dt
        self.inline_batches += 1
        self.submitted += 1
        self.pending_bytes += nbytes
        self.pending_events += len(frames)
        with self._out_lock:
            self._out.extend(results)
        self._drain()  # what the writer finished before, then this batch: in order

    def _sync_failed(self, e: OSError) -> None:
        with self._cond:
            self._sync_error = e
            self._cond.notify()

    def request_sync(self) -> None:
        """everysec: the writer dups the segment after what is queued now; the dup is synced
        in the reactor's thread pool (writes go on meanwhile: a slow fdatasync would
        otherwise hold up every batch behind it)."""
        if self._thread is None and self.start_thread or self._stopped:
            self.journal.sync()  # not running (any more): the reactor syncs, as inline
            return
        with self._cond:
            self._sync_asked = True
            self._cond.notify()

    def flush(self) -> defer.Deferred[None]:
        """Fires when every batch submitted so far has been handed on."""
        d: defer.Deferred[None] = defer.Deferred()
        if self.done >= self.submitted:
            d.callback(None)
        else:
            self._flush_waiters.append(d)
        return d

    def stop(self) -> defer.Deferred[None]:
        """Write and hand on what is queued, then end the thread; the journal is the reactor's again."""
        d: defer.Deferred[None] = defer.Deferred()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is None or not self._thread.is_alive():
            while self.step(block=False):
                pass
            self._exited()
            d.callback(None)
        else:
            self._stop_waiters.append(d)
        return d

    def _drain(self) -> None:
        """On the reactor: hand on what the writer finished, in order."""
        with self._out_lock:
            items = list(self._out)
            self._out.clear()
            self._wake_pending = False
        for it in items:
            try:
                if isinstance(it, Written):
                    if it.kept and it.first is not None:  # kept events have positions
                        self.journal.publish(it.first + it.kept)
                    self.pending_bytes -= it.nbytes
                    self.pending_events -= len(it.frames)
                    self.done += 1
                    self.deliver(it)
                else:
                    it()
            except Exception:
                log.failure("handing on a written batch failed")
        if self.flow is not None and self.flow.held_by(JOURNAL) and self.pending_bytes <= self.low_bytes:
            self.flow.reopen(JOURNAL)
        if self.done >= self.submitted and self._flush_waiters:
            waiters, self._flush_waiters = self._flush_waiters, []
            for d in waiters:
                d.callback(None)

    def _exited(self) -> None:
        self._drain()
        self._stopped = True
        j = self.journal
        j.defer_publish = False
        j.on_reactor = lambda fn: fn()
        j.sync_hook = None
        j.sync_failed = lambda e: j._failed("fsync", e)
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            d.callback(None)

    # --- the writer's side ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while self.step():
                pass
        finally:
            self.call_from_thread(self._exited)

    def step(self, block: bool = True) -> bool:
        """One round: write what is queued (merged up to ``merge_bytes``), sync if asked,
        post the results. False once stopping with nothing left (or, not blocking, idle)."""
        with self._cond:
            while self._busy or (not self._jobs and not self._sync_asked and not self._stopping
                                 and self._sync_error is None):
                if not block:
                    return False
                self._cond.wait()
            batch: list[tuple[list[bytes], list[str], int]] = []
            size = 0
            while self._jobs and (not batch or size + self._jobs[0][2] <= self.merge_bytes):
                job = self._jobs.popleft()
                batch.append(job)
                size += job[2]
            sync, self._sync_asked = self._sync_asked, False
            failed, self._sync_error = self._sync_error, None
            if not batch and not sync and failed is None:
                return False  # stopping, nothing left
            self._busy = True
        t0 = time.thread_time()
        j = self.journal
        if failed is not None:
            j._failed("fsync", failed)  # the fd is this thread's: closed here, reopened on the next write
        if batch:
            self._post(self._write(batch))
        if sync:
            fd = j.dup_for_sync()
            if fd is not None:
                self._post_call(lambda: j.sync_fd(fd))
        self.cpu.journal += time.thread_time() - t0
        with self._cond:
            self._queued -= size
            self._busy = False
            self._cond.notify_all()
        return True

    def _write(self, batch: list[tuple[list[bytes], list[str], int]]) -> list[Written]:
        frames = batch[0][0] if len(batch) == 1 else [f for b in batch for f in b[0]]
        j = self.journal
        try:
            first = j.append(frames)
            kept = 0 if first is None else min(len(frames), j.next_seq - first)
        except Exception as e:  # a bug must not stop the writer: delivered from memory, counted
            j._lost(frames)
            first, kept = None, 0
            err = repr(e)
            self._post_call(lambda: log.error("journal writer: {e}; {n} events not kept", e=err, n=len(frames)))
        return _positions(first, kept, batch)

    def _post(self, results: list[Written]) -> None:
        with self._out_lock:
            self._out.extend(results)
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self.call_from_thread(self._drain)

    def _post_call(self, fn: Callable[[], None]) -> None:
        """``Journal.on_reactor``: run ``fn`` on the reactor, in order with the results."""
        with self._out_lock:
            self._out.append(fn)
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self.call_from_thread(self._drain)

    def status(self) -> JsonObject:
        return {"thread": True, "pending_events": self.pending_events, "pending_bytes": self.pending_bytes,
                "hard_waits": self.hard_waits, "inline_batches": self.inline_batches,
                "bytes_per_s": round(self._rate),
                "flow": self.flow.status() if self.flow is not None else None}


JournalWriter = InlineWriter | ThreadWriter
