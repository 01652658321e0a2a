"""The journal on real files: positions, rotation, reading back, restarts, disk errors."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from flamingo.dispatch.journal import Journal, one_line


def ev(i: int) -> bytes:
    return b'{"created_at":"x","id":%d,"text":"event %d"}' % (i, i)


class JournalTests(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-journal-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.clock = Clock()

    def journal(self, **kw):
        kw.setdefault("reactor", self.clock)
        j = Journal(self.dir / "j", **kw).open()
        self.addCleanup(j.close)
        return j

    def test_append_and_read_back(self):
        j = self.journal(kind="spool")
        self.assertEqual(j.append([ev(1), ev(2)]), 1)
        self.assertEqual(j.append([ev(3)]), 3)
        self.assertEqual(j.last_seq, 3)
        self.assertEqual(j.read(1), [ev(1), ev(2), ev(3)])
        self.assertEqual(j.read(2, max_events=1), [ev(2)])
        self.assertEqual(j.read(3), [ev(3)])
        self.assertEqual(j.read(4), [])
        self.assertEqual(j.read(0), [])

    def test_event_log_rotation_symlink_and_names(self):
        j = self.journal(kind="event", rotate_events=3)
        j.append([ev(i) for i in range(1, 8)])  # 7 events: 3 + 3 + 1, split inside the batch
        files = sorted(p.name for p in j.dir.iterdir() if p.name.startswith("event-"))
        self.assertEqual(len(files), 3)
        self.assertEqual([s.first for s in j.segments], [1, 4, 7])
        for name, first in zip(files, [1, 4, 7]):
            self.assertRegex(name, r"^event-\d{8}-\d{6}-%012d\.log$" % first)
        lines = [(j.dir / f).read_bytes().count(b"\n") for f in files]
        self.assertEqual(lines, [3, 3, 1])
        self.assertEqual(os.readlink(j.dir / "event.log"), files[-1])
        self.assertEqual(j.read(1, max_events=100), [ev(i) for i in range(1, 8)])
        self.assertEqual(j.read(5, max_events=2), [ev(5), ev(6)])

    def test_rotation_by_bytes(self):
        j = self.journal(kind="event", rotate_events=1000, rotate_bytes=100)
        for i in range(1, 6):
            j.append([ev(i)])
        self.assertGreater(len(j.segments), 1)
        self.assertEqual(j.read(1, max_events=10), [ev(i) for i in range(1, 6)])

    @defer.inlineCallbacks
    def test_positions_survive_restart(self):
        j = Journal(self.dir / "j", kind="event", rotate_events=4, reactor=self.clock).open()
        j.append([ev(i) for i in range(1, 7)])
        yield j.close()
        j2 = self.journal(kind="event", rotate_events=4)
        self.assertEqual(j2.last_seq, 6)
        self.assertEqual(j2.append([ev(7)]), 7)
        self.assertEqual(j2.read(1, max_events=10), [ev(i) for i in range(1, 8)])
        self.assertEqual(len(j2.segments), 2)  # continued the unfinished segment

    @defer.inlineCallbacks
    def test_torn_last_line_is_cut(self):
        j = Journal(self.dir / "j", kind="spool", reactor=self.clock).open()
        j.append([ev(1), ev(2)])
        yield j.close()
        with open(j.segments[-1].path, "ab") as f:
            f.write(b'{"created_at":"tor')  # a crash in the middle of a write
        j2 = self.journal(kind="spool")
        self.assertEqual(j2.last_seq, 2)
        j2.append([ev(3)])
        self.assertEqual(j2.read(1), [ev(1), ev(2), ev(3)])

    @defer.inlineCallbacks
    def test_spool_release_and_state_file(self):
        j = Journal(self.dir / "j", kind="spool", rotate_bytes=80, reactor=self.clock).open()
        for i in range(1, 11):
            j.append([ev(i)])
        n = len(j.segments)
        self.assertGreater(n, 3)
        j.release(4)
        self.assertTrue(all(s.first > 4 or j.segments[0] is s for s in j.segments))
        self.assertLessEqual(j.first_seq, 5)
        self.assertEqual(j.read(j.first_seq, 100)[-1], ev(10))
        j.release(10)  # everything passed: only the current segment stays
        self.assertEqual(len(j.segments), 1)
        yield j.close()
        for s in list(j.segments):
            s.path.unlink()  # even with no segment left, positions continue
        j2 = self.journal(kind="spool")
        self.assertEqual(j2.append([ev(11)]), 11)

    def test_event_log_is_kept(self):
        j = self.journal(kind="event", rotate_events=1)
        j.append([ev(1), ev(2), ev(3)])
        j.release(3)
        self.assertEqual(j.read(1), [ev(1), ev(2), ev(3)])

    @defer.inlineCallbacks
    def test_gzip_closed_files(self):
        from twisted.internet import reactor
        j = Journal(self.dir / "j", kind="event", rotate_events=2, gzip=True, reactor=reactor).open()
        j.append([ev(i) for i in range(1, 6)])
        yield j.close()
        names = sorted(p.name for p in j.dir.iterdir() if p.name.startswith("event-"))
        self.assertEqual([n.endswith(".gz") for n in names], [True, True, False])
        j2 = Journal(self.dir / "j", kind="event", rotate_events=2, gzip=True, reactor=reactor).open()
        self.addCleanup(j2.close)
        self.assertEqual(j2.last_seq, 5)
        self.assertEqual(j2.read(2, max_events=10), [ev(i) for i in range(2, 6)])

    def test_fsync_policies(self):
        for policy in ("always", "everysec", "no"):
            j = self.journal(kind="spool", fsync=policy)
            j.dir = j.dir  # same dir, sequential use
            j.append([ev(1)])
            self.clock.advance(1.0)  # everysec's loop runs
            self.assertIsNone(j.error)
            self.assertFalse(j._dirty and policy == "always")
            self.clock.advance(0)
            j.close()

    def test_one_line(self):
        frames = [b'{"a":\n1}', b'{"b":2}', b'{"c":\r\n3}']
        out, fixed = one_line(frames)
        self.assertEqual(out, [b'{"a": 1}', b'{"b":2}', b'{"c":  3}'])
        self.assertEqual(fixed, 2)
        same = [b"{}"]
        self.assertIs(one_line(same)[0], same)

    @settings(max_examples=30, deadline=None)
    @given(st.lists(st.lists(st.binary(min_size=0, max_size=30), min_size=1, max_size=6), max_size=8),
           st.integers(1, 5))
    def test_any_batches_roundtrip(self, batches, size):
        d = Path(tempfile.mkdtemp(dir=self.dir))
        j = Journal(d, kind="event", rotate_events=size, reactor=self.clock).open()
        expected = []
        for b in batches:
            b, _ = one_line(b)
            j.append(b)
            expected += b
        self.assertEqual(j.read(1, max_events=10_000), expected)
        j.close()


class JournalErrorTests(unittest.TestCase):
    """What could not be kept is said, counted and retried; nothing raises."""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-journal-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_deleted_directory(self):
        j = Journal(self.dir / "j", kind="event", reactor=Clock(), retry_interval=0).open()
        self.addCleanup(j.close)
        j.append([ev(1)])
        shutil.rmtree(j.dir)
        self.assertIsNone(j.append([ev(2)]))  # the file is gone: not kept, said so
        self.assertEqual(j.lost_events, 1)
        self.assertIn("deleted", j.status()["error"])
        self.assertFalse(j.status()["writable"])
        self.assertEqual(j.append([ev(3)]), 2)  # retried: directory and a new segment made
        self.assertIsNone(j.error)
        self.assertEqual(j.read(2), [ev(3)])
        self.assertEqual(j.status()["lost_events"], 1)

    def test_disk_full(self):
        """RLIMIT_FSIZE makes writes past a size fail with EFBIG, like a full disk."""
        j = Journal(self.dir / "j", kind="spool", reactor=Clock(), retry_interval=0).open()
        self.addCleanup(j.close)
        j.append([ev(1)])
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        try:
            self.assertIsNone(j.append([b"x" * 10_000]))
            self.assertIsNone(j.append([b"y" * 10_000, b"z"]))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old_handler)
        self.assertEqual(j.lost_events, 3)
        self.assertEqual(j.lost_bytes, 20_004)
        self.assertIn("File too large", j.status()["error"])
        self.assertEqual(j.append([ev(2)]), 2)  # space again
        self.assertEqual(j.read(1, 10), [ev(1), ev(2)])  # no torn line left in between

    def test_read_only_directory(self):
        if os.geteuid() == 0:
            raise unittest.SkipTest("root ignores directory permissions (see test_disk_full)")
        d = self.dir / "ro"
        d.mkdir()
        d.chmod(0o500)
        self.addCleanup(d.chmod, 0o700)
        j = Journal(d, kind="event", reactor=Clock(), retry_interval=0).open()
        self.addCleanup(j.close)
        self.assertIn("Permission denied", j.status()["error"])
        self.assertIsNone(j.append([ev(1)]))
        self.assertEqual(j.lost_events, 1)
