"""Delivery end to end: the emulator -> wader -> dispatcher -> event log + Redis,
the DeliveryService lifecycle from a config, and `kill -9` of a delivering process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import orjson
from twisted.internet import defer, reactor
from twisted.trial import unittest

from flamingo.config import from_mapping
from flamingo.dispatch.dispatcher import build_delivery
from flamingo.dispatch.journal import Journal
from flamingo.dispatch.stats import Stats
from flamingo.dispatch.store import Store
from flamingo.domain.subscription import Subscription
from tests.support.redis import shared_redis
from tests.support.waiting import wait_for
from tests.test_sink import Harness, lrange, tweet

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import sys, orjson
from twisted.internet import reactor, task
from flamingo.dispatch.journal import Journal
from flamingo.dispatch.redis_sink import RedisSink
from flamingo.dispatch.dispatcher import Dispatcher
from flamingo.dispatch.stats import Stats
from flamingo.domain.subscription import Subscription
d, ns, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
subs = {"q": Subscription.create("q")}
j = Journal(d, kind="spool", rotate_bytes=20000, fsync="no").open()
sink = RedisSink(j, lambda: subs, namespace=ns, port=port, reactor=reactor, batch_max=300)
disp = Dispatcher(j, sink, Stats())
sink.start()
n = [0]
def feed():
    batch = [orjson.dumps({"created_at": "x", "id": n[0] + k, "text": "t"}) for k in range(50)]
    n[0] += 50
    disp.messages_received(batch)
    print(n[0], sink.checkpoint or 0, flush=True)
task.LoopingCall(feed).start(0.0005)
reactor.run()
"""


class KillTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_kill_9_then_restart_delivers_every_journaled_event_once(self):
        r = shared_redis()
        ns = "k" + uuid.uuid4().hex[:8]
        d = Path(tempfile.mkdtemp(prefix="flamingo-kill-"))
        self.addCleanup(shutil.rmtree, d, True)
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(d), ns, str(r.port)],
                                 stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.addCleanup(lambda: child.poll() is None and child.kill())
        # mid-stream: some events delivered, more still being journaled
        for line in child.stdout:
            fed, cp = map(int, line.split())
            if cp >= 1000 and fed >= 3000:
                break
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        j = Journal(d, kind="spool")
        journaled = j.open().last_seq
        yield j.close()
        self.assertGreaterEqual(journaled, 3000)
        h = Harness(self, r, namespace=ns, subs=[Subscription.create("q")], journal_dir=d,
                    kind="spool")
        yield h.drained(timeout=30)
        ids = [orjson.loads(v)["id"] for v in lrange(r, h.key("q"))]
        self.assertEqual(ids, list(range(journaled)))  # every journaled event, once, in order
        r.command("DEL", h.key("q"))


class DeliveryServiceTests(unittest.TestCase):
    timeout = 60

    def config(self, tmp: Path, ns: str, **extra):
        r = shared_redis()
        data = {"username": "u", "password": "p", "stream": "sample", "data_dir": str(tmp / "data"),
                "redis": {"host": f"127.0.0.1:{r.port}", "namespace": ns, "timeout": 2.0},
                "logging": {"event": {"dir": str(tmp / "events"), "size": 300}}}
        data.update(extra)
        return from_mapping(data)

    @defer.inlineCallbacks
    def start_store(self, config):
        store = Store.from_config(config, reactor=reactor)
        self.addCleanup(store.stop)
        yield store.start()
        return store

    @defer.inlineCallbacks
    def test_service_flushes_on_stop_and_reports_status(self):
        tmp = Path(tempfile.mkdtemp(prefix="flamingo-delivery-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        ns = "d" + uuid.uuid4().hex[:8]
        config = self.config(tmp, ns)
        store = yield self.start_store(config)
        yield store.save_subscription(Subscription.create("all"))
        stats = Stats(clock=reactor)
        delivery = build_delivery(config, store, stats, reactor=reactor)
        delivery.startService()
        events = [tweet(i) for i in range(1000)]
        delivery.connection_started("GET /1.1/statuses/sample.json")
        for i in range(0, 1000, 100):
            delivery.messages_received(events[i:i + 100])
        yield delivery.dispatcher.writer.flush()  # the writer thread has written them all
        st = delivery.status()
        self.assertEqual(st["journal"]["last_seq"], 1000)
        self.assertEqual(st["journal"]["kind"], "event_log")
        yield delivery.stopService()  # flushes to Redis before returning
        r = shared_redis()
        self.assertEqual(lrange(r, f"{ns}:queue:all"), events)
        files = sorted((tmp / "events").glob("event-*.log"))
        self.assertEqual(len(files), 4)  # 300 events per file
        self.assertEqual(b"".join(f.read_bytes() for f in files), b"".join(e + b"\n" for e in events))
        self.assertTrue((tmp / "events" / "event.log").is_symlink())
        snap = stats.snapshot()
        self.assertEqual(snap["delivery"]["backlog"], 0)
        self.assertEqual(snap["journal"]["last_seq"], 1000)
        meta = yield store.read_meta()
        self.assertIn("events", meta["stats"])

    @defer.inlineCallbacks
    def test_spool_without_event_log(self):
        tmp = Path(tempfile.mkdtemp(prefix="flamingo-delivery-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        ns = "d" + uuid.uuid4().hex[:8]
        config = self.config(tmp, ns, logging={}, journal={"segment_bytes": 4096})
        store = yield self.start_store(config)
        yield store.save_subscription(Subscription.create("all"))
        delivery = build_delivery(config, store, Stats(), reactor=reactor)
        delivery.startService()
        events = [tweet(i) for i in range(300)]
        for e in events:
            delivery.messages_received([e])
        yield wait_for(lambda: delivery.sink._caught_up(), what="caught up")
        yield delivery.stopService()
        self.assertEqual(lrange(shared_redis(), f"{ns}:queue:all"), events)
        segments = list((tmp / "data" / "spool").glob("spool-*.log"))
        self.assertEqual(len(segments), 1)  # passed segments deleted


class EmulatorEndToEndTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_emulator_to_event_log_and_queues(self):
        from flamingo.stream.wader import Wader
        from tests.support.emulator import start_emulator

        emu = start_emulator(self, seed=3, rate=0, size="small", record=True)
        tmp = Path(tempfile.mkdtemp(prefix="flamingo-e2e-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        ns = "e" + uuid.uuid4().hex[:8]
        r = shared_redis()
        config = from_mapping({
            "username": "u", "password": "p", "stream": "sample", "api": {"url": emu.url},
            "data_dir": str(tmp / "data"),
            "redis": {"host": f"127.0.0.1:{r.port}", "namespace": ns, "timeout": 2.0},
            "logging": {"event": {"dir": str(tmp / "events"), "size": 500}}})
        store = Store.from_config(config, reactor=reactor)
        self.addCleanup(store.stop)
        yield store.start()
        job = "e2e" + uuid.uuid4().hex[:6]
        yield store.save_subscription(Subscription.create("raw"))
        yield store.save_subscription(Subscription.create(job, format="resque"))
        yield store.save_subscription(Subscription.create("deletes", format="envelope", types=["delete"]))
        self.addCleanup(r.command, "DEL", f"resque:queue:{job}")
        self.addCleanup(r.command, "SREM", "resque:queues", job)
        stats = Stats(clock=reactor)
        delivery = build_delivery(config, store, stats, reactor=reactor)
        delivery.startService()
        wader = Wader(config, reactor, store, delivery, stats)
        wader.startService()
        yield wait_for(lambda: stats.total_events >= 3000, timeout=30, what="3000 events")
        yield wader.stopService()
        yield delivery.stopService()
        sent = [m for conn in emu.sent_messages for m in conn]
        logged = b"".join(f.read_bytes() for f in sorted((tmp / "events").glob("event-*.log")))
        received = logged.split(b"\n")[:-1]
        self.assertEqual(len(received), stats.total_events)
        self.assertEqual(received, sent[:len(received)])  # byte-identical, in order
        self.assertEqual(lrange(r, f"{ns}:queue:raw"), received)
        jobs = [orjson.loads(v) for v in lrange(r, f"resque:queue:{job}")]
        self.assertEqual(len(jobs), len(received))
        self.assertEqual({j["class"] for j in jobs}, {"HandleFlamingoEvent"})
        self.assertEqual([j["args"][1] for j in jobs[:50]], [orjson.loads(m) for m in received[:50]])
        deletes = [orjson.loads(v) for v in lrange(r, f"{ns}:queue:deletes")]
        self.assertEqual(len(deletes), stats.by_type.get("delete", 0))
        self.assertTrue(all(d["type"] == "delete" and "delete" in d["event"] for d in deletes))


class ExampleConsumerTests(unittest.SynchronousTestCase):
    def test_python_consumer_reads_raw_and_envelope(self):
        r = shared_redis()
        ns = "x" + uuid.uuid4().hex[:8]
        r.command("RPUSH", f"{ns}:queue:q", tweet(1).replace(b'"id":7', b'"id":7,"screen_name":"bob"'))
        r.command("RPUSH", f"{ns}:queue:q", b'{"type":"delete","event":{"delete":{"status":{"id":1}}}}')
        out = subprocess.run([sys.executable, str(ROOT / "examples" / "consumer.py"), "q", "--namespace", ns,
                              "--port", str(r.port), "--count", "2"], capture_output=True, timeout=30, check=True)
        lines = out.stdout.decode().splitlines()
        self.assertEqual(lines[0], "@u: hello 1")
        self.assertTrue(lines[1].startswith("[delete] "))
