"""What the event log made durable leaves the page cache: a cache that only grows made every
new page dearer (one writer's CPU per event doubled within 10 s on the test VM).

Page residency is read with util-linux's ``fincore``, on a real disk (tmpfs pages
are the file itself and cannot be dropped: skipped there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from flamingo.dispatch.journal import Journal
from flamingo.dispatch.segments import sync_and_close

EVENT = b'{"text":"' + b"x" * 3800 + b'"}'


def cached_bytes(path: Path) -> int:
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


class PageCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        if shutil.which("fincore") is None:
            self.skipTest("fincore (util-linux) is not installed")
        # under the working tree, on the machine's disk rather than a tmpfs /tmp
        self.dir = Path(tempfile.mkdtemp(prefix=".flamingo-cache-", dir=os.getcwd()))
        self.addCleanup(shutil.rmtree, self.dir, True)
        probe = self.dir / "probe"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"x" * (1 << 20))
            os.fdatasync(fd)  # only clean pages can be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        if cached_bytes(probe) >= 1 << 20:
            self.skipTest("this filesystem keeps its pages (tmpfs?)")

    def test_a_synced_dup_drops_the_pages_it_made_durable(self) -> None:
        path = self.dir / "seg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.addCleanup(os.close, fd)
        os.write(fd, b"x" * (8 << 20))
        self.assertGreater(cached_bytes(path), 4 << 20)  # written pages are cached
        sync_and_close(os.dup(fd))
        self.assertLess(cached_bytes(path), 1 << 20)

    def test_the_journal_drops_what_each_sync_and_rotation_made_durable(self) -> None:
        j = Journal(self.dir / "events", kind="event", rotate_events=1000, reactor=Clock()).open()
        self.addCleanup(j.close)
        for _ in range(3):  # 1,500 events: one rotation, then half a segment
            j.append([EVENT] * 500)
        first, current = (s.path for s in j.segments)
        self.assertLess(cached_bytes(first), 1 << 20)  # synced when it was closed
        self.assertGreater(cached_bytes(current), 1 << 20)
        j.sync()
        self.assertLess(cached_bytes(current), 1 << 20)
