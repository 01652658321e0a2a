"""Exactly once from Jetstream, for the whole daemon: ``twistd -n flamingo`` as a child
process with ``source: jetstream``, a real redis-server, the Jetstream emulator
making events at a steady rate over loopback WebSocket (zstd-compressed).

``kill -9`` mid-stream, events keep being made while the daemon is down, then
it starts again: every event the emulator made for the filter, from the
first connection's start to the end, is in the queue exactly once, in order
(missing 0, duplicates 0). Waits poll real state with a bound.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson
import treq
import yaml
from twisted.internet import defer
from twisted.trial.unittest import TestCase

from flamingo.emulator.jet_timeline import Wants
from tests.support.child_daemon import Child, spawn_twistd
from tests.support.jetstream import start_jetstream
from tests.support.redis import free_port, shared_redis
from tests.support.waiting import until

WANTED = ["app.bsky.feed.post", "app.bsky.graph.*"]


class JetstreamDaemonTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-jet-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ns = f"j{uuid.uuid4().hex[:8]}"
        self.procs: list[Any] = []
        self.redis = shared_redis()
        self.emu = start_jetstream(self, seed=21, rate=150)
        self.port = free_port()
        cfg = {
            "source": "jetstream", "stream": "subscribe",
            "api": {"url": self.emu.url},
            "jetstream": {"compress": True, "rewind": 2},
            "data_dir": str(self.dir / "data"),
            "logging": {"dest": str(self.dir / "flamingo.log"), "level": "INFO"},
            "redis": {"host": self.redis.address, "namespace": self.ns, "timeout": 1},
            "web": {"host": f"127.0.0.1:{self.port}"}, "console": {"enabled": False},
            "wader": {"min_interval": 0},
        }
        self.config = self.dir / "flamingo.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        r, ns = self.redis, self.ns
        r.command("SADD", f"{ns}:streams:subscribe:wantedCollections", *WANTED)
        r.command("SADD", f"{ns}:subscriptions", "q")
        r.command("HSET", f"{ns}:subscription:q", "format", "raw", "types", "", "filter", "", "max_length", "")

    def tearDown(self) -> None:
        for proc in self.procs:
            if proc.pid is not None:
                proc.signalProcess("KILL")

    def start(self) -> tuple[Any, Child]:
        proc, child = spawn_twistd(self.config, self.dir)
        self.procs.append(proc)
        return proc, child

    def queue(self) -> list[bytes]:
        return list(self.redis.command("LRANGE", f"{self.ns}:queue:q", "0", "-1"))  # type: ignore[arg-type]

    def queue_length(self) -> int:
        return int(self.redis.command("LLEN", f"{self.ns}:queue:q"))  # type: ignore[arg-type]

    @defer.inlineCallbacks
    def test_kill_9_mid_stream_then_restart_every_event_exactly_once(self) -> Any:
        proc, child = self.start()
        yield until(lambda: self.queue_length() >= 150, timeout=60)
        status = yield treq.get(f"http://127.0.0.1:{self.port}/status.json", persistent=False)
        body = yield status.json()
        self.assertEqual(body["source"], "jetstream")
        self.assertIsInstance(body["cursor"]["time_us"], int)
        self.assertLess(abs(body["cursor"]["lag_seconds"]), 60)
        proc.signalProcess("KILL")
        code = yield child.ended
        self.assertEqual(code, -signal.SIGKILL)
        down_at = self.emu.timeline.end
        yield until(lambda: self.emu.timeline.end >= down_at + 300)  # made while the daemon is down
        proc, child = self.start()
        yield until(lambda: len(self.emu.connections) >= 2 and self.queue_length() >= 400, timeout=60)
        self.assertIsNotNone(self.emu.connections[-1].cursor)  # resumed from the journal
        self.emu.pause()  # no more events: the queue can catch up with the end
        wants = Wants.of(WANTED, [])
        start = self.emu.connections[0].start
        expected = self.emu.timeline.matching(wants, start)
        yield until(lambda: self.queue_length() >= len(expected), timeout=60)
        proc.signalProcess("TERM")
        code = yield child.ended
        out = child.out.decode(errors="replace")
        self.assertEqual(code, 0, out[-3000:])
        self.assertNotIn("Traceback (most recent call last)", out)
        queue = self.queue()
        got = {orjson.loads(e)["time_us"] for e in queue}
        want = {orjson.loads(e)["time_us"] for e in expected}
        self.assertEqual(len(want - got), 0, "missing")
        self.assertEqual(len(queue), len(expected), "duplicates or extras")
        self.assertEqual(queue, expected)
        self.assertIn("Jetstream: resuming after time_us", (self.dir / "flamingo.log").read_text())

    @defer.inlineCallbacks
    def test_kill_9_again_during_the_replay_then_restart_exactly_once(self) -> Any:
        """The second kill lands while the restarted daemon is still replaying the window."""
        proc, child = self.start()
        yield until(lambda: self.queue_length() >= 100, timeout=60)
        proc.signalProcess("KILL")
        yield child.ended
        down_at = self.emu.timeline.end
        yield until(lambda: self.emu.timeline.end >= down_at + 600)
        before = self.queue_length()
        proc, child = self.start()
        yield until(lambda: self.queue_length() >= before + 20, timeout=60)  # replaying now
        proc.signalProcess("KILL")
        code = yield child.ended
        self.assertEqual(code, -signal.SIGKILL)
        proc, child = self.start()
        yield until(lambda: len(self.emu.connections) >= 3 and self.queue_length() >= before + 300, timeout=60)
        self.emu.pause()
        expected = self.emu.timeline.matching(Wants.of(WANTED, []), self.emu.connections[0].start)
        yield until(lambda: self.queue_length() >= len(expected), timeout=60)
        proc.signalProcess("TERM")
        code = yield child.ended
        self.assertEqual(code, 0, child.out.decode(errors="replace")[-3000:])
        queue = self.queue()
        self.assertEqual(len(queue), len(expected), "missing, duplicates or extras")
        self.assertEqual(queue, expected)
