"""``source: x`` across a ``kill -9``: ``twistd -n flamingo`` as a child process with
``x.backfill_minutes``, the X emulator re-sending the last minute on every connection.

After the restart the window of post ids is rebuilt from the journal's tail, so
what the backfill re-sends is dropped by id (counted in ``duplicates``): the event
log holds every post the emulator sent once, and nothing twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson
import yaml
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support.child_daemon import Child, spawn_twistd
from tests.support.redis import shared_redis
from tests.support.waiting import until
from tests.support.xdaemon import TOKEN
from tests.support.xemu import start_x_emulator


class KillRestartTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-x-kill-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ns = f"k{uuid.uuid4().hex[:8]}"
        self.procs: list[Any] = []
        self.redis = shared_redis()
        self.emu = start_x_emulator(self, rate=40, bearer_token=TOKEN, record=True, keepalive=1.0)
        cfg = {
            "source": "x", "stream": "sample", "bearer_token": TOKEN, "api": {"url": self.emu.url},
            "x": {"backfill_minutes": 1},
            "data_dir": str(self.dir / "data"),
            "logging": {"dest": str(self.dir / "flamingo.log"), "level": "INFO",
                        "event": {"dir": str(self.dir / "events"), "size": 100000}},
            "redis": {"host": self.redis.address, "namespace": self.ns, "timeout": 1},
            "web": {"enabled": False}, "console": {"enabled": False},
            "wader": {"min_interval": 0},
        }
        self.config = self.dir / "flamingo.yml"
        self.config.write_text(yaml.safe_dump(cfg))

    def tearDown(self) -> None:
        for proc in self.procs:
            if proc.pid is not None:
                proc.signalProcess("KILL")

    def start(self) -> tuple[Any, Child]:
        proc, child = spawn_twistd(self.config, self.dir)
        self.procs.append(proc)
        return proc, child

    def posts(self) -> list[str]:
        files = sorted((self.dir / "events").glob("event-*"))
        data = b"".join(p.read_bytes() for p in files)
        return [orjson.loads(line)["data"]["id"] for line in data.split(b"\n") if line.startswith(b'{"data"')]

    def duplicates(self) -> int:
        raw = self.redis.command("GET", f"{self.ns}:meta:stats")
        return int(orjson.loads(raw)["duplicates"]) if raw else 0

    @defer.inlineCallbacks
    def test_kill_9_then_restart_keeps_each_post_once(self) -> Any:
        proc, child = self.start()
        yield until(lambda: len(self.posts()) >= 80, timeout=60)
        proc.signalProcess("KILL")
        code = yield child.ended
        self.assertEqual(code, -signal.SIGKILL)
        before = len(self.posts())
        proc, child = self.start()
        yield until(lambda: len(self.posts()) >= before + 80 and self.duplicates() > 0, timeout=60)
        proc.signalProcess("TERM")
        code = yield child.ended
        self.assertEqual(code, 0, child.out.decode(errors="replace")[-3000:])
        got = self.posts()
        self.assertEqual(len(got), len(set(got)), "a post journaled twice")
        sent = {orjson.loads(f)["data"]["id"] for frames in self.emu.sent_messages for f in frames
                if f.startswith(b'{"data"')}
        last = max(map(int, got))
        self.assertLessEqual({i for i in sent if int(i) <= last}, set(got))  # nothing lost
        log = (self.dir / "flamingo.log").read_text()
        self.assertIn("post ids from the journal's tail remembered", log)
        self.assertNotIn(TOKEN, log)


class XDemoTests(SynchronousTestCase):
    def test_make_run_source_x_shows_posts_with_their_rule_tags(self) -> None:
        """What `make run SOURCE=x` runs: the rules reach the emulator, posts arrive tagged."""
        d = Path(tempfile.mkdtemp(prefix="flamingo-xdemo-"))
        self.addCleanup(shutil.rmtree, d, True)
        result = subprocess.run(
            [sys.executable, "-m", "flamingo.demo", "--source", "x", "--seconds", "8", "--rate", "20",
             "--dir", str(d / "demo")],
            capture_output=True, text=True, timeout=90, env={**os.environ, "CI": "true"},
            cwd=Path(__file__).resolve().parent.parent)
        self.assertEqual(result.returncode, 0, result.stdout[-2000:] + result.stderr[-2000:])
        self.assertRegex(result.stdout, r"post    \[(love|py)")
        self.assertIn("flamingod stopped (exit status 0)", result.stdout)
        self.assertNotIn("demo-bearer-token", (d / "demo" / "flamingo.log").read_text())

    def test_describe_x_lines(self) -> None:
        from flamingo.demo import describe

        self.assertEqual(describe(b'{"data":{"id":"1","text":"hi\\nthere"},"matching_rules":[{"id":"9","tag":"py"}]}'),
                         "post    [py] hi there")
        self.assertTrue(describe(b'{"data":{"delete":{"tweet":{"id":"1"}}}}').startswith("delete"))
        self.assertTrue(describe(b'{"errors":[{"title":"operational-disconnect"}]}').startswith("error"))
