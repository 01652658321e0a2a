"""The journal's writer thread: order, the write-before-Redis invariant, errors, back-pressure.

Most tests drive ``ThreadWriter`` without a thread (``start_thread=False``):
the test runs the writer's rounds (``step``) and the reactor's hand-over
(the queued ``callFromThread`` calls) itself, so every interleaving is the
test's choice, never the scheduler's. One test runs the real thread against
the real reactor and waits for real conditions.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from flamingo.dispatch.dispatcher import Dispatcher
from flamingo.dispatch.journal import Journal
from flamingo.dispatch.journal_writer import ThreadWriter, Written, _positions
from flamingo.dispatch.stages import StageCpu
from flamingo.dispatch.stats import Stats
from flamingo.stream.flow import Flow
from tests.support.waiting import wait_for


def ev(i: int) -> bytes:
    return b'{"created_at":"x","id":%d,"text":"event %d"}' % (i, i)


class FakeThreadCalls:
    """``callFromThread`` that queues: the test decides when the reactor runs them."""

    def __init__(self) -> None:
        self.calls: list = []

    def __call__(self, fn, *args) -> None:
        self.calls.append((fn, args))

    def run(self) -> int:
        n = 0
        while self.calls:
            fn, args = self.calls.pop(0)
            fn(*args)
            n += 1
        return n


class WriterTests(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-writer-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.clock = Clock()
        self.calls = FakeThreadCalls()
        self.got: list[Written] = []

    def journal(self, **kw):
        kw.setdefault("reactor", self.clock)
        kw.setdefault("kind", "event")
        j = Journal(self.dir / "j", **kw).open()
        self.addCleanup(j.close)
        return j

    def writer(self, j, deliver=None, **kw) -> ThreadWriter:
        w = ThreadWriter(j, deliver or self.got.append, StageCpu(), self.calls, start_thread=False, **kw)
        w.start()
        return w

    def submit(self, w, frames):
        w.submit(frames, ["tweet"] * len(frames), sum(map(len, frames)))

    def test_nothing_is_handed_on_before_its_write_and_order_is_kept(self):
        j = self.journal()
        on_disk_at_delivery = []

        def deliver(w: Written) -> None:
            # the invariant: when the sink gets a batch, the file holds it
            data = b"".join(p.read_bytes() for p in sorted(j.dir.glob("event-*.log")))
            on_disk_at_delivery.append(all(f + b"\n" in data for f in w.frames))
            self.got.append(w)

        w = self.writer(j, deliver)
        self.submit(w, [ev(1), ev(2)])
        self.submit(w, [ev(3)])
        self.assertEqual(self.got, [])
        self.assertEqual(j.last_seq, 0)  # readers see nothing yet
        self.assertEqual(w.pending_events, 3)
        self.assertTrue(w.step(block=False))  # the writer writes both (merged)...
        self.assertEqual(self.got, [])  # ...but the reactor has not run the hand-over yet
        self.assertEqual(j.last_seq, 0)
        self.calls.run()
        self.assertEqual([(g.first, g.kept, g.frames) for g in self.got],
                         [(1, 2, [ev(1), ev(2)]), (3, 1, [ev(3)])])
        self.assertEqual(on_disk_at_delivery, [True, True])
        self.assertEqual(j.last_seq, 3)
        self.assertEqual(w.pending_events, 0)
        self.assertEqual(j.read(1), [ev(1), ev(2), ev(3)])

    def test_positions_published_batch_by_batch_as_handed_on(self):
        j = self.journal()
        seen = []
        w = self.writer(j, lambda b: seen.append((b.first, j.last_seq)))
        for i in range(1, 4):
            self.submit(w, [ev(i)])
        w.step(block=False)
        self.calls.run()
        # when the sink gets batch n, readers see exactly up to its last position
        self.assertEqual(seen, [(1, 1), (2, 2), (3, 3)])

    def test_merging_stops_at_merge_bytes_and_keeps_order(self):
        j = self.journal()
        w = self.writer(j, merge_bytes=len(ev(1)) * 2)
        for i in range(1, 6):
            self.submit(w, [ev(i)])
        rounds = 0
        while w.step(block=False):
            rounds += 1
        self.calls.run()
        self.assertEqual(rounds, 3)  # 2 + 2 + 1
        self.assertEqual([g.first for g in self.got], [1, 2, 3, 4, 5])
        self.assertEqual(j.read(1), [ev(i) for i in range(1, 6)])

    def test_rotation_in_the_writer_and_gzip_started_on_the_reactor(self):
        j = self.journal(rotate_events=2)
        w = self.writer(j)
        self.submit(w, [ev(i) for i in range(1, 6)])
        w.step(block=False)
        self.assertEqual(len(j.segments), 3)  # the writer rotated (the files exist)...
        self.calls.run()
        self.assertEqual([s.first for s in j.segments], [1, 3, 5])
        self.assertEqual(j.read(1, max_events=10), [ev(i) for i in range(1, 6)])

    def test_disk_error_not_kept_counted_delivered_from_memory_then_retried(self):
        j = self.journal(retry_interval=1.0)
        w = self.writer(j)
        self.submit(w, [ev(1)])
        w.step(block=False)
        self.calls.run()
        real = os.writev

        def full(fd, iov):
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(os, "writev", full)
        self.submit(w, [ev(2), ev(3)])
        w.step(block=False)
        self.calls.run()
        self.assertEqual((self.got[-1].first, self.got[-1].kept), (None, 0))
        self.assertEqual(j.lost_events, 2)
        self.assertIn("No space left", j.error)
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        self.patch(os, "writev", real)
        self.submit(w, [ev(4)])  # within retry_interval: not tried, not kept
        w.step(block=False)
        self.calls.run()
        self.assertEqual(self.got[-1].first, None)
        self.clock.advance(1.5)
        self.submit(w, [ev(5)])
        w.step(block=False)
        self.calls.run()
        self.assertEqual((self.got[-1].first, self.got[-1].kept), (2, 1))  # positions go on: 2
        self.assertIsNone(j.error)
        self.assertEqual(j.read(1), [ev(1), ev(5)])
        self.assertEqual(j.lost_events, 3)

    def test_a_merged_write_failing_half_way_splits_kept_and_not_kept(self):
        j = self.journal(rotate_events=3)
        w = self.writer(j)
        self.submit(w, [ev(1), ev(2)])
        self.submit(w, [ev(3), ev(4)])
        real = os.writev
        n = {"calls": 0}

        def second_fails(fd, iov):
            n["calls"] += 1
            if n["calls"] == 2:
                raise OSError(errno.EFBIG, "File too large")
            return real(fd, iov)

        self.patch(os, "writev", second_fails)
        w.step(block=False)
        self.calls.run()
        self.assertEqual([(g.first, g.kept) for g in self.got], [(1, 2), (3, 1)])
        self.assertEqual(j.last_seq, 3)
        self.assertEqual(j.lost_events, 1)

    def test_a_bug_in_the_write_path_does_not_stop_the_writer(self):
        j = self.journal()
        w = self.writer(j)
        real = j.append
        self.patch(j, "append", lambda frames: 1 / 0)
        self.submit(w, [ev(1)])
        w.step(block=False)
        self.calls.run()
        self.assertEqual((self.got[-1].first, self.got[-1].kept), (None, 0))
        self.assertEqual(j.lost_events, 1)
        self.patch(j, "append", real)
        self.submit(w, [ev(2)])
        w.step(block=False)
        self.calls.run()
        self.assertEqual(self.got[-1].first, 1)

    def test_split_of_one_append_over_merged_batches(self):
        b = [([ev(1), ev(2)], ["tweet"] * 2, 10), ([ev(3)], ["tweet"], 5), ([ev(4), ev(5)], ["tweet"] * 2, 10)]
        self.assertEqual([(x.first, x.kept) for x in _positions(7, 5, b)], [(7, 2), (9, 1), (10, 2)])
        self.assertEqual([(x.first, x.kept) for x in _positions(7, 3, b)], [(7, 2), (9, 1), (None, 0)])
        self.assertEqual([(x.first, x.kept) for x in _positions(7, 1, b)], [(7, 1), (None, 0), (None, 0)])
        self.assertEqual([(x.first, x.kept) for x in _positions(None, 0, b)], [(None, 0)] * 3)

    def test_everysec_sync_dups_in_the_writer_in_order_and_syncs_off_it(self):
        j = self.journal(fsync="everysec")
        synced = []
        real = os.fdatasync
        self.patch(os, "fdatasync", lambda fd: synced.append(fd) or real(fd))
        w = self.writer(j)
        self.submit(w, [ev(1)])
        self.clock.advance(1.0)  # the journal's everysec loop asks the writer
        self.assertEqual(synced, [])  # not on the reactor
        w.step(block=False)  # the writer dups the segment after the write...
        self.assertEqual(synced, [])
        self.calls.run()  # ...and the dup is synced off the writer (the reactor's pool; here at once)
        self.assertEqual(len(synced), 1)
        self.assertFalse(j._dirty)

    def test_a_failed_background_sync_is_handled_by_the_writer(self):
        j = self.journal(fsync="everysec")
        w = self.writer(j)
        self.submit(w, [ev(1)])
        self.clock.advance(1.0)

        def eio(fd):
            raise OSError(errno.EIO, "Input/output error")

        self.patch(os, "fdatasync", eio)
        w.step(block=False)
        self.calls.run()
        self.assertIsNone(j.error)  # not yet: the fd is the writer's
        self.assertTrue(w.step(block=False))  # the writer's next round takes the error
        self.calls.run()
        self.assertIn("Input/output error", j.error)
        self.assertIsNone(j._fd)  # closed by its owner; the next write reopens
        self.patch(os, "fdatasync", lambda fd: None)
        self.clock.advance(1.5)
        self.submit(w, [ev(2)])
        w.step(block=False)
        self.calls.run()
        self.assertEqual(self.got[-1].first, 2)
        self.assertIsNone(j.error)

    def test_backpressure_gate_closes_above_high_water_and_opens_below_half(self):
        j = self.journal()
        flow = Flow()
        size = len(ev(1))
        w = self.writer(j, flow=flow, high_bytes=size * 4, merge_bytes=size)
        for i in range(1, 5):
            self.submit(w, [ev(i)])
        self.assertTrue(flow.open)  # at the mark, not above
        self.submit(w, [ev(5)])
        self.assertFalse(flow.open)
        self.assertEqual(flow.pauses, 1)
        w.step(block=False)
        w.step(block=False)
        self.calls.run()
        self.assertFalse(flow.open)  # 3 batches still waiting: above half the mark
        w.step(block=False)
        self.calls.run()
        self.assertTrue(flow.open)  # 2 waiting: half the mark
        while w.step(block=False):
            pass
        self.calls.run()
        self.assertEqual([g.first for g in self.got], [1, 2, 3, 4, 5])

    def test_stop_writes_what_is_queued_and_gives_the_journal_back(self):
        j = self.journal()
        w = self.writer(j)
        self.submit(w, [ev(1)])
        self.submit(w, [ev(2)])
        d = w.stop()
        self.calls.run()
        self.assertTrue(d.called)
        self.assertEqual([g.first for g in self.got], [1, 2])
        self.assertFalse(j.defer_publish)
        self.assertIsNone(j.sync_hook)
        self.assertEqual(j.append([ev(3)]), 3)  # inline again
        self.assertEqual(j.last_seq, 3)
        self.submit(w, [ev(4)])  # a batch after stop is still written, then handed on
        self.assertEqual((self.got[-1].first, self.got[-1].kept), (4, 1))
        self.assertEqual(j.last_seq, 4)

    def test_flush_fires_once_everything_submitted_is_handed_on(self):
        j = self.journal()
        w = self.writer(j)
        self.assertTrue(w.flush().called)
        self.submit(w, [ev(1)])
        d = w.flush()
        self.assertFalse(d.called)
        w.step(block=False)
        self.assertFalse(d.called)
        self.calls.run()
        self.assertTrue(d.called)


class FakeSink:
    def __init__(self) -> None:
        self.batches: list[tuple] = []
        self.cpu_seconds = 0.0

    def deliver(self, first, kept, frames, types) -> None:
        self.batches.append((first, kept, list(frames), list(types)))

    def backlog(self) -> int:
        return 0


class DispatcherWithWriterTests(unittest.TestCase):
    def test_dispatcher_types_and_counts_at_once_and_delivers_after_the_write(self):
        tmp = Path(tempfile.mkdtemp(prefix="flamingo-writer-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        clock = Clock()
        j = Journal(tmp / "j", kind="event", reactor=clock).open()
        self.addCleanup(j.close)
        calls = FakeThreadCalls()
        sink = FakeSink()
        stats = Stats(clock=clock)
        disp = Dispatcher(j, sink, stats,  # type: ignore[arg-type]
                          writer=lambda jj, deliver, cpu: ThreadWriter(jj, deliver, cpu, calls, start_thread=False))
        disp.writer.start()
        disp.messages_received([ev(1), b'{"delete":{"status":{"id":1}}}'])
        self.assertEqual(stats.total_events, 2)  # counted as received
        self.assertEqual(sink.batches, [])  # not in Redis before the write
        self.assertEqual(disp.backlog(), 2)
        assert isinstance(disp.writer, ThreadWriter)
        disp.writer.step(block=False)
        calls.run()
        self.assertEqual(sink.batches, [(1, 2, [ev(1), b'{"delete":{"status":{"id":1}}}'], ["tweet", "delete"])])
        self.assertTrue(disp.cpu.journal_thread)


class RealThreadTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-writer-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    @defer.inlineCallbacks
    def test_real_thread_writes_in_order_and_hands_on_on_the_reactor(self):
        j = Journal(self.dir / "j", kind="event", rotate_events=250, reactor=reactor, fsync="everysec").open()
        got: list[Written] = []
        threads = set()
        import threading

        def deliver(w: Written) -> None:
            threads.add(threading.current_thread().name)
            got.append(w)

        flow = Flow()
        w = ThreadWriter(j, deliver, StageCpu(), reactor.callFromThread, flow, high_bytes=4096, inline_below=0)
        w.start()
        frames = [ev(i) for i in range(1, 2001)]
        for k in range(0, 2000, 40):
            w.submit(frames[k:k + 40], ["tweet"] * 40, sum(map(len, frames[k:k + 40])))
        yield wait_for(lambda: sum(g.kept for g in got) == 2000, what="all 2000 written and handed on")
        yield w.stop()
        yield j.close()
        self.assertEqual(threads, {threading.current_thread().name})  # the reactor's thread only
        firsts = [g.first for g in got]
        self.assertEqual(firsts, list(range(1, 2001, 40)))
        self.assertEqual([f for g in got for f in g.frames], frames)
        self.assertTrue(flow.open)
        self.assertGreaterEqual(flow.pauses, 1)  # 4 KB of high water: the gate closed
        j2 = Journal(self.dir / "j", kind="event", rotate_events=250, reactor=reactor).open()
        self.addCleanup(j2.close)
        self.assertEqual(j2.read(1, max_events=5000), frames)
        self.assertEqual([s.first for s in j2.segments], list(range(1, 2002, 250)))  # rotated when full

    @defer.inlineCallbacks
    def test_hard_cap_makes_submit_wait_for_the_writer(self):
        j = Journal(self.dir / "j", kind="event", reactor=reactor).open()
        got: list[Written] = []
        w = ThreadWriter(j, got.append, StageCpu(), reactor.callFromThread, None, high_bytes=1, hard_bytes=1,
                         inline_below=0)
        w.start()
        for i in range(1, 201):
            w.submit([ev(i)], ["tweet"], len(ev(i)))
            with w._cond:
                self.assertLessEqual(w._queued, len(ev(i)) * 2)  # never more than one batch ahead
        yield wait_for(lambda: len(got) == 200, what="all handed on")
        yield w.stop()
        yield j.close()
        self.assertGreater(w.hard_waits, 0)
        self.assertEqual([g.first for g in got], list(range(1, 201)))

    @defer.inlineCallbacks
    def test_the_rate_that_picks_the_thread_is_measured_on_the_given_clock(self):
        """Over ``inline_below`` bytes/s in the last second of the injected clock, the thread writes."""
        j = Journal(self.dir / "j", kind="event", reactor=reactor).open()
        got: list[Written] = []
        clock = Clock()
        w = ThreadWriter(j, got.append, StageCpu(), reactor.callFromThread, None,
                         inline_below=10 * len(ev(1)), seconds=clock.seconds)
        w.start()
        for i in range(1, 21):  # 20 events within one second of the clock: the rate is not known yet
            w.submit([ev(i)], ["tweet"], len(ev(i)))
        self.assertEqual(w.inline_batches, 20)
        clock.advance(1.0)  # the window closes: 20 events/s, over the threshold of 10
        w.submit([ev(21)], ["tweet"], len(ev(21)))
        self.assertEqual(w.inline_batches, 20)  # queued for the thread
        yield wait_for(lambda: len(got) == 21 and w.idle, what="written, handed on, the writer idle")
        clock.advance(1.0)  # one event in the last second: quiet again
        w.submit([ev(22)], ["tweet"], len(ev(22)))
        self.assertEqual(w.inline_batches, 21)
        yield w.stop()
        yield j.close()
        self.assertEqual([g.first for g in got], list(range(1, 23)))

    @defer.inlineCallbacks
    def test_a_quiet_stream_is_written_on_the_reactor_and_order_holds_across_modes(self):
        j = Journal(self.dir / "j", kind="event", reactor=reactor).open()
        got: list[Written] = []
        cpu = StageCpu()
        w = ThreadWriter(j, got.append, cpu, reactor.callFromThread, None)  # default inline_below
        w.start()
        w.submit([ev(1)], ["tweet"], len(ev(1)))  # the writer idle, the rate low: written here, at once
        self.assertEqual([(g.first, g.kept) for g in got], [(1, 1)])
        self.assertEqual(j.last_seq, 1)
        self.assertEqual(w.inline_batches, 1)
        self.assertGreater(cpu.journal_inline, 0.0)
        w.inline_below = 0  # a fast stream: the thread writes
        for i in range(2, 102):
            w.submit([ev(i)], ["tweet"], len(ev(i)))
        w.inline_below = 1e18  # quiet again: inline whenever the writer has nothing
        for i in range(102, 202):
            w.submit([ev(i)], ["tweet"], len(ev(i)))
        yield wait_for(lambda: len(got) == 201, what="all handed on")
        yield w.stop()
        yield j.close()
        self.assertEqual([g.first for g in got], list(range(1, 202)))  # one order, whoever wrote
        j2 = Journal(self.dir / "j", kind="event", reactor=reactor).open()
        self.addCleanup(j2.close)
        self.assertEqual(j2.read(1, max_events=500), [ev(i) for i in range(1, 202)])
