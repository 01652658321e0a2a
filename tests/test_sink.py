"""Journal -> RedisSink -> real redis-server: formats, filters, outages, exactly once."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import orjson
from twisted.internet import defer, reactor
from twisted.trial import unittest

from flamingo.dispatch.dispatcher import Dispatcher
from flamingo.dispatch.journal import Journal
from flamingo.dispatch.redis_sink import RedisSink
from flamingo.dispatch.stats import Stats
from flamingo.domain.subscription import Subscription
from tests.support.redis import RedisServer, shared_redis
from tests.support.waiting import wait_for


def tweet(i: int, text: str = "hello") -> bytes:
    return orjson.dumps({"created_at": "Wed Aug 27 13:08:45 +0000 2008", "id": i, "id_str": str(i),
                         "text": f"{text} {i}", "user": {"id": 7, "screen_name": "u"},
                         "entities": {"hashtags": [], "user_mentions": [], "urls": []}})


DELETE = b'{"delete":{"status":{"id":1,"id_str":"1","user_id":3,"user_id_str":"3"},"timestamp_ms":"1"}}'
LIMIT = b'{"limit":{"track":5,"timestamp_ms":"1"}}'


def lrange(server, key):
    return server.command("LRANGE", key, "0", "-1")


class Harness:
    """Journal + sink + dispatcher wired like the daemon, against one Redis."""

    def __init__(self, test, server, namespace=None, subs=(), journal_dir=None, kind="event", journal=None,
                 **sink_kw):
        self.server = server
        self.namespace = namespace or "t" + uuid.uuid4().hex[:8]
        self.dir = journal_dir or (journal.dir if journal else Path(tempfile.mkdtemp(prefix="flamingo-sink-")))
        if journal_dir is None and journal is None:
            test.addCleanup(shutil.rmtree, self.dir, True)
        self.subs = {s.name: s for s in subs}
        self.known = True  # False: the store has not loaded the subscriptions yet
        self.stats = Stats()
        self.journal = journal or Journal(self.dir, kind=kind, rotate_events=50, reactor=reactor,
                                          retry_interval=0).open()
        sink_kw.setdefault("timeout", 2.0)
        self.sink = RedisSink(self.journal, lambda: self.subs if self.known else None, namespace=self.namespace,
                              host=server.host, port=server.port, reactor=reactor, stats=self.stats,
                              reconnect_max=0.2, **sink_kw)
        self.dispatcher = Dispatcher(self.journal, self.sink, self.stats)
        self.sink.start()
        test.addCleanup(self.close)

    @defer.inlineCallbacks
    def close(self):
        yield self.sink.stop()
        yield self.journal.close()

    def key(self, name):
        return self.subs[name].queue_key(self.namespace)

    def drained(self, timeout=15.0):
        return wait_for(lambda: self.sink._caught_up() and self.sink.connected, timeout,
                        what="sink caught up")


class SinkTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_formats_byte_identical_in_order(self):
        r = shared_redis()
        h = Harness(self, r, subs=[Subscription.create("raw"), Subscription.create("env", format="envelope"),
                                   Subscription.create("jobs" + uuid.uuid4().hex[:6], format="resque"),
                                   Subscription.create("bad", format="envelope", types=["delete", "invalid"])])
        jobs = [n for n in h.subs if n.startswith("jobs")][0]
        events = [tweet(i) for i in range(500)] + [DELETE, b"Exceeded connection limit for user"]
        for i in range(0, len(events), 37):  # batches as TCP reads would cut them
            h.dispatcher.messages_received(events[i:i + 37])
        yield h.drained()
        # not JSON: kept in the event log, in no queue unless its types name "invalid"
        self.assertEqual(lrange(r, h.key("raw")), events[:-1])
        self.assertEqual(h.journal.read(1, 10_000), events)
        env = [orjson.loads(v) for v in lrange(r, h.key("env"))]
        self.assertEqual([e["type"] for e in env], ["tweet"] * 500 + ["delete"])
        self.assertEqual(env[3]["event"], orjson.loads(events[3]))
        bad = [orjson.loads(v) for v in lrange(r, h.key("bad"))]
        self.assertEqual([e["type"] for e in bad], ["delete", "invalid"])
        self.assertEqual(bad[-1]["event"], "Exceeded connection limit for user")
        # a Resque worker: {"class": ..., "args": [type, event]} from resque:queue:<name>
        jobs_raw = lrange(r, f"resque:queue:{jobs}")
        self.addCleanup(r.command, "DEL", f"resque:queue:{jobs}")
        self.addCleanup(r.command, "SREM", "resque:queues", jobs)
        self.assertEqual(len(jobs_raw), 501)
        job = orjson.loads(jobs_raw[10])
        self.assertEqual(job["class"], "HandleFlamingoEvent")
        self.assertEqual(job["args"], ["tweet", orjson.loads(events[10])])
        self.assertEqual(orjson.loads(jobs_raw[500])["args"][0], "delete")
        self.assertIn(jobs.encode(), r.command("SMEMBERS", "resque:queues"))
        self.assertEqual(r.command("GET", f"{h.namespace}:sink:checkpoint"), b"502:" + h.journal.epoch.encode())
        self.assertEqual(h.stats.queues["raw"]["pushed"], 501)
        self.assertEqual(h.sink.status()["backlog"], 0)

    @defer.inlineCallbacks
    def test_type_and_term_filters_and_max_length(self):
        r = shared_redis()
        h = Harness(self, r, subs=[Subscription.create("deletes", types=["delete"]),
                                   Subscription.create("cats", filter=["cats"]),
                                   Subscription.create("short", max_length=5)])
        events = []
        for i in range(20):
            events.append(tweet(i, "I like cats" if i % 4 == 0 else "dogs only"))
            if i % 5 == 0:
                events.append(DELETE)
        events.append(LIMIT)
        h.dispatcher.messages_received(events)
        yield h.drained()
        self.assertEqual(lrange(r, h.key("deletes")), [DELETE] * 4)
        self.assertEqual(lrange(r, h.key("cats")), [tweet(i, "I like cats") for i in range(0, 20, 4)])
        self.assertEqual(lrange(r, h.key("short")), events[-5:])
        q = h.stats.queues["short"]
        self.assertEqual((q["length"], q["trimmed"], q["pushed"]), (5, len(events) - 5, len(events)))
        self.assertEqual(h.stats.limit_count, 5)

    @defer.inlineCallbacks
    def test_a_tweet_with_odd_entities_does_not_stop_a_filtered_queue(self):
        r = shared_redis()
        h = Harness(self, r, subs=[Subscription.create("cats", filter=["cats"])])
        odd = orjson.dumps({"id": 1, "text": "cats", "entities": {"hashtags": 3, "urls": {"x": 1}}})
        h.dispatcher.messages_received([odd, tweet(2, "more cats")])
        yield h.drained()
        self.assertEqual(lrange(r, h.key("cats")), [odd, tweet(2, "more cats")])

    @defer.inlineCallbacks
    def test_new_and_deleted_subscriptions(self):
        r = shared_redis()
        h = Harness(self, r)
        h.dispatcher.messages_received([tweet(1)])
        yield h.drained()
        h.subs["late"] = Subscription.create("late")
        h.dispatcher.messages_received([tweet(2)])
        yield h.drained()
        self.assertEqual(lrange(r, h.key("late")), [tweet(2)])
        key = h.key("late")
        del h.subs["late"]
        h.dispatcher.messages_received([tweet(3)])
        yield h.drained()
        self.assertEqual(lrange(r, key), [tweet(2)])

    @defer.inlineCallbacks
    def test_redis_paused_exactly_once_memory_bounded(self):
        server = RedisServer().start()
        self.addCleanup(server.cleanup)
        h = Harness(self, server, subs=[Subscription.create("q")], timeout=0.3, max_memory=20_000)
        sent = []

        def feed(a, b):
            batch = [tweet(i) for i in range(a, b)]
            sent.extend(batch)
            h.dispatcher.messages_received(batch)
        feed(0, 100)
        yield h.drained()
        server.pause()
        self.addCleanup(lambda: server.process and server.resume())
        for k in range(10):  # ~130 KB while Redis answers nothing: more than max_memory
            feed(100 + k * 100, 200 + k * 100)
            yield wait_for(lambda: True)
        yield wait_for(lambda: h.sink.error is not None, what="sink notices the stall")
        self.assertLessEqual(h.sink._mem, 20_000)
        self.assertGreater(h.sink.memory_dropped, 0)
        self.assertGreater(h.sink.backlog(), 0)
        server.resume()
        feed(1100, 1200)
        yield h.drained(timeout=30)
        self.assertEqual(lrange(server, h.key("q")), sent)
        self.assertIsNone(h.sink.error)

    @defer.inlineCallbacks
    def test_redis_restarted_without_data_uses_local_checkpoint(self):
        server = RedisServer().start()
        self.addCleanup(server.cleanup)
        h = Harness(self, server, subs=[Subscription.create("q")], timeout=0.5)
        h.dispatcher.messages_received([tweet(i) for i in range(50)])
        yield h.drained()
        before = lrange(server, h.key("q"))
        server.stop()
        h.dispatcher.messages_received([tweet(i) for i in range(50, 120)])
        yield wait_for(lambda: not h.sink.connected, what="sink notices")
        server.start()  # same port, empty: the checkpoint comes from the local copy
        yield h.drained(timeout=30)
        self.assertEqual(before + lrange(server, h.key("q")), [tweet(i) for i in range(120)])

    @defer.inlineCallbacks
    def test_redis_down_at_start(self):
        server = RedisServer()
        self.addCleanup(server.cleanup)
        h = Harness(self, server, subs=[Subscription.create("q")], timeout=0.5)
        h.dispatcher.messages_received([tweet(i) for i in range(30)])
        self.assertEqual(h.journal.last_seq, 30)  # on disk whatever Redis does
        yield wait_for(lambda: h.sink.error, what="connection error shown")
        self.assertIn("cannot connect", h.sink.status()["error"])
        server.start()
        yield h.drained(timeout=30)
        self.assertEqual(lrange(server, h.key("q")), [tweet(i) for i in range(30)])

    @defer.inlineCallbacks
    def test_restart_resumes_from_checkpoint(self):
        """A new sink on the same journal delivers what the old one had not, once."""
        r = shared_redis()
        h = Harness(self, r, subs=[Subscription.create("q")])
        h.dispatcher.messages_received([tweet(i) for i in range(40)])
        yield h.drained()
        yield h.sink.stop()
        h.dispatcher.messages_received([tweet(i) for i in range(40, 70)])  # journaled, not delivered
        yield h.journal.close()
        h2 = Harness(self, r, namespace=h.namespace, subs=list(h.subs.values()), journal_dir=h.dir)
        yield h2.drained()
        self.assertEqual(lrange(r, h.key("q")), [tweet(i) for i in range(70)])

    @defer.inlineCallbacks
    def test_journal_broken_redis_goes_on(self):
        r = shared_redis()
        h = Harness(self, r, subs=[Subscription.create("q")])
        h.dispatcher.messages_received([tweet(i) for i in range(10)])
        shutil.rmtree(h.dir)
        h.journal.retry_interval = 3600  # stays broken for this test
        h.dispatcher.messages_received([tweet(i) for i in range(10, 25)])
        yield h.drained()
        self.assertEqual(lrange(r, h.key("q")), [tweet(i) for i in range(25)])
        st = h.journal.status()
        self.assertEqual(st["lost_events"], 15)
        self.assertIsNotNone(st["error"])
        self.assertEqual(h.stats.snapshot()["events"]["total"], 25)

    @defer.inlineCallbacks
    def test_two_namespaces_side_by_side(self):
        r = shared_redis()
        a = Harness(self, r, subs=[Subscription.create("same")])
        b = Harness(self, r, subs=[Subscription.create("same")])
        a.dispatcher.messages_received([tweet(1), tweet(2)])
        b.dispatcher.messages_received([tweet(3)])
        yield a.drained()
        yield b.drained()
        self.assertEqual(lrange(r, a.key("same")), [tweet(1), tweet(2)])
        self.assertEqual(lrange(r, b.key("same")), [tweet(3)])
        self.assertEqual(r.command("GET", f"{a.namespace}:sink:checkpoint").split(b":")[0], b"2")
        self.assertEqual(r.command("GET", f"{b.namespace}:sink:checkpoint").split(b":")[0], b"1")
