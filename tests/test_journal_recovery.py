"""The journal after crashes, full disks and meddling: gaps reported, one file per position,
crash-safe compression, state files in the state directory, the journal's identity."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path

import orjson
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from flamingo.dispatch import journal as journal_mod
from flamingo.dispatch import segments as segments_mod
from flamingo.dispatch.journal import Journal, JournalGap


def ev(i: int) -> bytes:
    return b'{"created_at":"x","id":%d,"text":"event %d"}' % (i, i)


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-recovery-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.events = self.dir / "events"
        self.state = self.dir / "data"

    def journal(self, **kw):
        kw.setdefault("reactor", Clock())
        kw.setdefault("kind", "event")
        kw.setdefault("state_dir", self.state)
        j = Journal(self.events, **kw).open()
        self.addCleanup(j.close)
        return j

    def files(self):
        return sorted(p.name for p in self.events.iterdir() if p.name.startswith("event-"))


class GapTests(Base):
    """An unreadable range raises JournalGap(first, last, reason); the rest reads on."""

    def test_deleted_segment_is_a_gap(self):
        j = self.journal(rotate_events=3)
        j.append([ev(i) for i in range(1, 10)])
        j.segments[1].path.unlink()  # retention by `find -delete` while running
        self.assertEqual(j.read(1, 100), [ev(1), ev(2), ev(3)])
        with self.assertRaises(JournalGap) as cm:
            j.read(4, 100)
        self.assertEqual((cm.exception.first, cm.exception.last), (4, 6))
        self.assertIn("No such file", cm.exception.reason)
        self.assertEqual(j.read(7, 100), [ev(7), ev(8), ev(9)])

    def test_short_middle_segment_is_a_gap(self):
        """A closed segment cut short by a power cut (not synced): the missing tail is a gap."""
        j = self.journal(rotate_events=3)
        j.append([ev(i) for i in range(1, 10)])
        path = j.segments[1].path
        with open(path, "r+b") as f:
            f.truncate(len(ev(4)) + 1)  # only its first line survived
        self.assertEqual(j.read(4, 100), [ev(4)])
        with self.assertRaises(JournalGap) as cm:
            j.read(5, 100)
        self.assertEqual((cm.exception.first, cm.exception.last), (5, 6))
        self.assertIn("cut short", cm.exception.reason)
        self.assertEqual(j.read(7, 100), [ev(7), ev(8), ev(9)])

    def test_torn_line_in_a_closed_segment_is_a_gap(self):
        j = self.journal(rotate_events=3)
        j.append([ev(i) for i in range(1, 10)])
        path = j.segments[0].path
        data = path.read_bytes()
        path.write_bytes(data[:len(data) - 5])  # the third line lost its end
        self.assertEqual(j.read(1, 100), [ev(1), ev(2)])
        with self.assertRaises(JournalGap) as cm:
            j.read(3, 100)
        self.assertEqual((cm.exception.first, cm.exception.last), (3, 3))
        self.assertEqual(j.read(4, 2), [ev(4), ev(5)])

    def test_rotation_syncs_the_closing_segment(self):
        """everysec syncs the current file once a second; a closed one must be synced when
        closed, or a power cut leaves it short in the middle of the journal."""
        synced: list[str] = []
        real = os.fdatasync

        def spy(fd):
            synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
            return real(fd)
        self.patch(os, "fdatasync", spy)
        for policy, expect in (("everysec", 2), ("always", 2), ("no", 0)):
            shutil.rmtree(self.events, True)
            shutil.rmtree(self.state, True)
            synced.clear()
            j = self.journal(rotate_events=3, fsync=policy)
            j.append([ev(i) for i in range(1, 8)])  # one batch: 3 + 3 + 1, two segments closed
            closed = {s.path.name for s in j.segments[:2]}
            self.assertEqual(len(closed & set(synced)), expect, policy)
            j.close()


class OneSegmentPerPositionTests(Base):
    def test_disk_full_retries_reuse_one_file(self):
        real_gmtime, ticks = time.gmtime, iter(range(1_800_000_000, 1_900_000_000))
        self.patch(journal_mod.time, "gmtime", lambda *a: real_gmtime(next(ticks)))  # a second per file
        j = self.journal(retry_interval=0)
        j.append([ev(1)])
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        try:
            for _ in range(4):  # each retry used to make another empty file for position 2
                self.assertIsNone(j.append([b"x" * 10_000]))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old_handler)
        self.assertEqual(j.append([ev(2)]), 2)
        self.assertLessEqual(len(self.files()), 2)
        j.close()
        j2 = self.journal(retry_interval=0)
        self.assertEqual(j2.read(1, 10), [ev(1), ev(2)])
        self.assertEqual(j2.last_seq, 2)

    def test_scan_prefers_the_non_empty_file_and_removes_empty_ones(self):
        self.events.mkdir()
        (self.events / "event-20260101-000000-000000000001.log").write_bytes(ev(1) + b"\n" + ev(2) + b"\n")
        (self.events / "event-20251231-235959-000000000003.log").write_bytes(b"")
        (self.events / "event-20260101-000001-000000000003.log").write_bytes(ev(3) + b"\n")
        (self.events / "event-20260101-000002-000000000003.log").write_bytes(b"")
        j = self.journal()
        self.assertEqual([s.first for s in j.segments], [1, 3])
        self.assertEqual(j.last_seq, 3)
        self.assertEqual(j.read(1, 10), [ev(1), ev(2), ev(3)])
        self.assertEqual(self.files(), ["event-20260101-000000-000000000001.log",
                                        "event-20260101-000001-000000000003.log"])


class GzipTests(Base):
    def test_interrupted_compression_is_finished_at_scan(self):
        j = self.journal(rotate_events=2)
        j.append([ev(i) for i in range(1, 6)])
        j.close()
        first = j.segments[0].path
        shutil.copy(first, first.with_name(first.name + ".gz.tmp"))  # a crash mid-compression
        segments_mod.gzip_file(j.segments[1].path)
        segments_mod.gzip_file(first)
        first.write_bytes(ev(1) + b"\n" + ev(2) + b"\n")  # ... and one between rename and unlink
        j2 = self.journal(rotate_events=2)
        self.assertEqual(j2.read(1, 10), [ev(i) for i in range(1, 6)])
        self.assertEqual([n.endswith(".gz") for n in self.files()], [True, True, False])
        self.assertFalse(any(p.name.endswith(".tmp") for p in self.events.iterdir()))

    def test_read_finds_a_segment_replaced_by_its_gz(self):
        j = self.journal(rotate_events=2)
        j.append([ev(i) for i in range(1, 6)])
        segments_mod.gzip_file(j.segments[1].path)  # done in a thread; the journal not told yet
        self.assertEqual(j.read(3, 10), [ev(3), ev(4), ev(5)])

    @defer.inlineCallbacks
    def test_gzip_on_the_reactor_keeps_mode_and_content(self):
        from twisted.internet import reactor
        j = Journal(self.events, kind="event", rotate_events=2, gzip=True, reactor=reactor,
                    state_dir=self.state).open()
        j.append([ev(i) for i in range(1, 6)])
        yield j.close()
        gz = [self.events / n for n in self.files() if n.endswith(".gz")]
        self.assertEqual(len(gz), 2)
        for p in gz:
            self.assertEqual(stat.S_IMODE(p.stat().st_mode), 0o600)
        # a crash mid-compression: the plain file stays, and is compressed at the next start
        first = gz[0].with_name(gz[0].name[:-3])
        first.write_bytes(ev(1) + b"\n" + ev(2) + b"\n")
        gz[0].rename(first.with_name(first.name + ".gz.tmp"))
        j2 = Journal(self.events, kind="event", rotate_events=2, gzip=True, reactor=reactor,
                     state_dir=self.state).open()
        yield j2.close()
        self.assertEqual(self.files()[0], first.name + ".gz")
        self.assertFalse(first.exists())


class StateDirTests(Base):
    def test_state_lives_in_the_state_dir_and_files_are_private(self):
        j = self.journal(rotate_events=2)
        j.append([ev(1), ev(2), ev(3)])
        names = {p.name for p in self.events.iterdir()}
        self.assertEqual({n for n in names if not n.startswith("event-")}, {"event.log"})
        self.assertTrue((self.state / "journal.state").exists())
        self.assertEqual(stat.S_IMODE(self.state.stat().st_mode), 0o700)
        self.assertEqual(stat.S_IMODE((self.state / "journal.state").stat().st_mode), 0o600)
        for n in self.files():
            self.assertEqual(stat.S_IMODE((self.events / n).stat().st_mode), 0o600)

    def test_an_old_install_is_migrated(self):
        self.events.mkdir()
        (self.events / "journal.state").write_bytes(b'{"next_seq": 41}')  # every file deleted
        j = self.journal()
        self.assertEqual(j.append([ev(41)]), 41)
        self.assertFalse((self.events / "journal.state").exists())
        state = orjson.loads((self.state / "journal.state").read_bytes())
        self.assertEqual(state["epoch"], j.epoch)
        self.assertFalse(j.epoch_recorded)  # an old journal: its identity starts now


class EpochTests(Base):
    @defer.inlineCallbacks
    def test_epoch_is_kept_and_a_wiped_journal_gets_a_new_one(self):
        j = Journal(self.events, kind="event", reactor=Clock(), state_dir=self.state).open()
        self.assertTrue(j.epoch_recorded)
        self.assertEqual(j.opened_last_seq, 0)
        j.append([ev(1), ev(2)])
        yield j.close()
        j2 = Journal(self.events, kind="event", reactor=Clock(), state_dir=self.state).open()
        self.assertEqual((j2.epoch, j2.opened_last_seq), (j.epoch, 2))
        yield j2.close()
        shutil.rmtree(self.events)
        shutil.rmtree(self.state)
        j3 = self.journal()
        self.assertNotEqual(j3.epoch, j.epoch)
        self.assertTrue(j3.epoch_recorded)

    @defer.inlineCallbacks
    def test_segments_without_state_keep_positions_not_identity(self):
        j = Journal(self.events, kind="event", reactor=Clock(), state_dir=self.state).open()
        j.append([ev(1), ev(2)])
        yield j.close()
        (self.state / "journal.state").unlink()
        j2 = self.journal()
        self.assertEqual(j2.last_seq, 2)
        self.assertFalse(j2.epoch_recorded)
