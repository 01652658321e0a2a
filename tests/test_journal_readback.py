"""Reading the journal back out of order, as a catching-up sink does: skips are counted, not parsed."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial import unittest

from flamingo.dispatch import journal as journal_mod
from flamingo.dispatch.journal import Journal


def ev(i: int) -> bytes:
    return b'{"created_at":"x","id":%d,"text":"%s"}' % (i, b"y" * (i % 97))


class ReadBackTests(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-readback-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def journal(self, n: int, **kw):
        j = Journal(self.dir / "j", reactor=Clock(), **kw).open()
        self.addCleanup(j.close)
        for start in range(1, n + 1, 100):
            j.append([ev(i) for i in range(start, min(n, start + 99) + 1)])
        return j

    def test_forward_jumps_reuse_the_reader(self):
        j = self.journal(3000)
        opened = []
        real = journal_mod._Reader.__init__

        def spy(self, *a, **kw):
            opened.append(a[0])
            real(self, *a, **kw)

        self.patch(journal_mod._Reader, "__init__", spy)
        self.assertEqual(j.read(1, max_events=10), [ev(i) for i in range(1, 11)])
        self.assertEqual(j.read(500, max_events=3), [ev(500), ev(501), ev(502)])  # skip ahead
        self.assertEqual(j.read(2999, max_events=5), [ev(2999), ev(3000)])
        self.assertEqual(len(opened), 1)
        self.assertEqual(j.read(2, max_events=1), [ev(2)])  # backwards: reopened
        self.assertEqual(len(opened), 2)

    def test_skip_does_not_build_lines_it_passes_over(self):
        j = Journal(self.dir / "big", reactor=Clock()).open()
        self.addCleanup(j.close)
        big = [b'{"id":%d,"text":"%s"}' % (i, b"z" * 1000) for i in range(1, 3001)]  # ~3 MB: 3 chunks
        j.append(big)
        reader = j._reads._reader_at(j.segments[0], 1)
        calls = []
        real = journal_mod._Reader.lines
        self.patch(journal_mod._Reader, "lines", lambda self, *a: calls.append(a) or real(self, *a))
        reader.skip(2500)
        self.assertEqual(calls, [])  # counted newlines; no list of the skipped lines
        self.assertLess(len(reader.pending), 1100)  # only the chunk holding line 2501
        self.assertEqual(reader.lines(2, 1 << 30), big[2500:2502])
        reader.skip(497)
        self.assertEqual(reader.lines(5, 1 << 30), [big[2999]])

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.tuples(st.integers(1, 1300), st.integers(1, 50)), min_size=1, max_size=12),
           st.sampled_from([None, 64 * 1024]))
    def test_any_read_sequence_returns_the_right_events(self, reads, segment_bytes):
        d = Path(tempfile.mkdtemp(prefix="flamingo-readback-", dir=self.dir))
        kw = {"rotate_bytes": segment_bytes} if segment_bytes else {}
        j = Journal(d, reactor=Clock(), **kw).open()
        try:
            for start in range(1, 1201, 100):
                j.append([ev(i) for i in range(start, start + 100)])
            for first, n in reads:
                want = [ev(i) for i in range(first, min(1200, first + n - 1) + 1)] if first <= 1200 else []
                self.assertEqual(j.read(first, max_events=n), want)
        finally:
            j.close()


class _CountingFile:
    def __init__(self, f, sizes):
        self.f, self.sizes = f, sizes

    def read(self, n):
        data = self.f.read(n)
        self.sizes.append(len(data))
        return data

    def close(self):
        self.f.close()
