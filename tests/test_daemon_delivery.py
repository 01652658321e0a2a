"""Exactly once, for the whole daemon: ``twistd -n flamingo`` as a child process,
a real redis-server, the emulator streaming at a modest rate.

What docs/delivery.md promises, checked against the event log (the journal
kept on disk) and the Redis queue of a ``raw`` subscription (each entry is
the event's bytes, so the two compare line for line):

* ``kill -9`` mid-stream, then start again: every event in the event log is
  in the queue exactly once, in event-log order;
* Redis stopped for seconds and restarted (with persistence), and Redis
  frozen with SIGSTOP: the same, and the daemon's memory stays bounded;
* Redis restarted *without* persistence comes back empty: the daemon writes
  its params and subscriptions back by itself, and delivery resumes right
  after the sink's local checkpoint copy, neither replaying what the lost
  Redis had nor skipping anything after it;
* TERM mid-stream: exit status 0 and every event of the event log in Redis.

Waits poll real state (log lines, Redis, files) with a bound; nothing here
asserts timing.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psutil
import yaml
from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.support.child_daemon import Child, event_lines, spawn_twistd
from tests.support.emulator import start_emulator
from tests.support.redis import RedisServer, shared_redis
from tests.support.waiting import until

RSS_BOUND = 300 * 1024 * 1024


class DaemonDeliveryTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flamingo-delivery-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ns = f"d{uuid.uuid4().hex[:8]}"
        self.procs: list[Any] = []
        self.max_rss = 0

    def tearDown(self) -> None:
        for proc in self.procs:
            if proc.pid is not None:
                proc.signalProcess("KILL")

    # -- set-up ---------------------------------------------------------------
    def configure(self, redis: RedisServer, rate: float = 300) -> None:
        self.redis = redis
        self.emu = start_emulator(self, seed=11, rate=rate, size="small", keepalive=1.0,
                                  user="flamingo", password="pw")
        cfg = {
            "username": "flamingo", "password": "pw", "stream": "filter",
            "api": {"url": self.emu.url},
            "data_dir": str(self.dir / "data"),
            "logging": {"dest": str(self.dir / "flamingo.log"), "level": "INFO",
                        "event": {"dir": str(self.dir / "events"), "size": 1000}},
            "redis": {"host": redis.address, "namespace": self.ns, "timeout": 1},
            "web": {"enabled": False}, "console": {"enabled": False},
            "wader": {"min_interval": 0},
        }
        self.config = self.dir / "flamingo.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.seed_redis()

    def seed_redis(self) -> None:
        """Params and one raw subscription, as the REST API would store them."""
        r, ns = self.redis, self.ns
        r.command("SADD", f"{ns}:streams:filter:track", "austin", "python")
        r.command("SADD", f"{ns}:subscriptions", "q")
        r.command("HSET", f"{ns}:subscription:q", "format", "raw", "types", "", "filter", "",
                  "max_length", "")
        r.command("PUBLISH", f"{ns}:changes", "subscriptions:q")

    def start(self) -> tuple[Any, Child]:
        proc, child = spawn_twistd(self.config, self.dir)
        self.procs.append(proc)
        return proc, child

    # -- what happened --------------------------------------------------------
    def event_log(self) -> list[bytes]:
        return event_lines(self.dir / "events")

    def queue(self) -> list[bytes]:
        return list(self.redis.command("LRANGE", f"{self.ns}:queue:q", "0", "-1"))  # type: ignore[arg-type]

    def queue_length(self) -> int:
        try:
            return int(self.redis.command("LLEN", f"{self.ns}:queue:q"))  # type: ignore[arg-type]
        except OSError:
            return -1

    def rss(self, proc: Any) -> bool:
        """Record the daemon's resident memory; always true (for use inside ``until``)."""
        try:
            self.max_rss = max(self.max_rss, psutil.Process(proc.pid).memory_info().rss)
        except (psutil.Error, TypeError):
            pass
        return True

    def grown(self, proc: Any, n: int) -> Any:
        """Wait until the event log holds ``n`` more events than now."""
        target = len(self.event_log()) + n
        return until(lambda: self.rss(proc) and len(self.event_log()) >= target, timeout=30)

    @defer.inlineCallbacks
    def stop(self, proc: Any, child: Child) -> Any:
        proc.signalProcess("TERM")
        code = yield child.ended
        out = child.out.decode(errors="replace")
        self.assertEqual(code, 0, out[-3000:])
        self.assertNotIn("Traceback (most recent call last)", out)

    def assert_exactly_once(self) -> None:
        log, queue = self.event_log(), self.queue()
        self.assertGreater(len(log), 0)
        self.assertEqual(len(queue), len(log), "queue and event log differ in length")
        self.assertEqual(queue, log)  # every event once, in event-log order

    # -- the promises -----------------------------------------------------------
    @defer.inlineCallbacks
    def test_kill_9_then_restart_delivers_every_logged_event_once(self) -> Any:
        self.configure(shared_redis())
        proc, child = self.start()
        yield until(lambda: len(self.event_log()) >= 300 and self.queue_length() >= 100)
        proc.signalProcess("KILL")
        code = yield child.ended
        self.assertEqual(code, -signal.SIGKILL)
        before = self.event_log()
        self.assertLess(self.queue_length(), len(before) + 1)
        proc, child = self.start()
        yield self.grown(proc, 300)  # the new run streams on after the old run's events
        yield self.stop(proc, child)
        log = self.event_log()
        self.assertEqual(log[: len(before)], before)  # the event log kept what it had
        self.assert_exactly_once()

    @defer.inlineCallbacks
    def test_redis_stopped_then_restarted_and_frozen(self) -> Any:
        redis = RedisServer(args=("--appendonly", "yes", "--appendfsync", "always")).start()
        self.addCleanup(redis.cleanup)
        self.configure(redis)
        proc, child = self.start()
        yield until(lambda: self.queue_length() >= 100)
        redis.stop()  # terminated: mid-stream, for several seconds
        yield self.grown(proc, 900)
        redis.start()  # same port; its append-only file brings the data back
        yield until(lambda: self.rss(proc) and self.queue_length() >= len(self.event_log()) - 50,
                    timeout=30)
        redis.pause()  # SIGSTOP: connected but silent
        try:
            yield self.grown(proc, 900)
        finally:
            redis.resume()
        yield until(lambda: self.rss(proc) and self.queue_length() >= len(self.event_log()) - 50,
                    timeout=30)
        yield self.stop(proc, child)
        self.assert_exactly_once()
        self.assertLess(self.max_rss, RSS_BOUND)
        self.assertGreater(self.max_rss, 0)

    @defer.inlineCallbacks
    def test_redis_restarted_empty_is_reseeded_and_resumes_after_local_checkpoint(self) -> Any:
        redis = RedisServer().start()  # no persistence: a restart loses everything
        self.addCleanup(redis.cleanup)
        self.configure(redis)
        proc, child = self.start()
        yield until(lambda: self.queue_length() >= 100)
        redis.stop()
        yield self.grown(proc, 600)
        checkpoint_file = self.dir / "data" / f"sink-{self.ns}.checkpoint"
        # nothing is acknowledged while Redis is down: the local copy stands still
        local = int(checkpoint_file.read_text().split(":")[0])
        redis.start()  # empty: params, subscription, checkpoint and marker all gone
        # nobody re-creates anything: the daemon writes back what it knew
        yield until(lambda: redis.command("SISMEMBER", f"{self.ns}:subscriptions", "q") == 1)
        self.assertEqual(sorted(redis.command("SMEMBERS", f"{self.ns}:streams:filter:track")),  # type: ignore[arg-type]
                         [b"austin", b"python"])
        self.assertEqual(redis.command("HGET", f"{self.ns}:subscription:q", "format"), b"raw")
        yield self.grown(proc, 300)
        yield self.stop(proc, child)
        text = (self.dir / "flamingo.log").read_text()
        self.assertIn("Redis lost flamingo's keys (restarted without persistence?): "
                      "restored 1 params and 1 subscriptions from memory", text)
        log, queue = self.event_log(), self.queue()
        self.assertGreater(len(queue), 600)
        k = log.index(queue[0])
        # every event after the local checkpoint, once, in order, up to the end of the log
        # (events that arrived while Redis was coming back included)
        self.assertEqual(queue, log[k:])
        # positions count events from 1: the event at position p is log[p - 1], so
        # delivery resumed right after the local copy, at log[local]
        self.assertEqual(k, local)
        self.assertGreater(local, 0)

    @defer.inlineCallbacks
    def test_term_mid_stream_delivers_everything_logged(self) -> Any:
        self.configure(shared_redis(), rate=2000)
        proc, child = self.start()
        yield until(lambda: len(self.event_log()) >= 2000 and self.queue_length() > 0)
        yield self.stop(proc, child)
        self.assert_exactly_once()
