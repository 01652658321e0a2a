"""Store against a real redis-server: the copy, writes, change notifications, outages."""

from __future__ import annotations

import uuid

from twisted.internet import defer
from twisted.trial import unittest

from flamingo.dispatch.store import Store
from flamingo.domain.subscription import Subscription
from flamingo.errors import NotFound, StoreUnavailable, ValidationError
from tests.support.redis import RedisServer, shared_redis
from tests.support.waiting import wait_for


def ns() -> str:
    return "t" + uuid.uuid4().hex[:8]


class StoreTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def make(self, namespace=None, server=None):
        server = server or shared_redis()
        store = Store(namespace=namespace or ns(), host=server.host, port=server.port, timeout=2.0,
                      health_interval=0.2)
        self.addCleanup(store.stop)
        yield store.start()
        return store

    @defer.inlineCallbacks
    def test_params_roundtrip_and_keys(self):
        store = yield self.make()
        changes = []
        store.on_change(lambda kind, name: changes.append((kind, name)))
        result = yield store.set_params("filter", {"track": ["foo", "bar"], "follow": ["12"]})
        self.assertEqual(result, {"follow": ["12"], "track": ["bar", "foo"]})
        self.assertEqual(store.params("filter"), result)
        self.assertIn(("params", "filter"), changes)
        r = shared_redis()
        self.assertEqual(sorted(r.command("SMEMBERS", f"{store.namespace}:streams:filter:track")),
                         [b"bar", b"foo"])
        yield store.add_values("filter", "track", ["baz"])
        self.assertEqual(store.params("filter")["track"], ["bar", "baz", "foo"])
        yield store.remove_values("filter", "track", ["foo"])
        self.assertEqual(store.params("filter")["track"], ["bar", "baz"])
        yield store.set_param("filter", "track", ["only"])
        self.assertEqual(store.params("filter")["track"], ["only"])
        yield store.delete_param("filter", "follow")
        self.assertEqual(store.params("filter"), {"track": ["only"]})
        self.assertEqual(store.stream_names(), ["filter"])
        yield self.assertFailure(store.delete_param("filter", "follow"), NotFound)

    @defer.inlineCallbacks
    def test_locations_keep_each_box_in_order(self):
        """Params are Redis sets: loose numbers would be sorted into a box that is out of range."""
        store = yield self.make()
        sf, ny = "-122.75,36.8,-121.75,37.8", "-74,40,-73,41"
        result = yield store.set_params("filter", {"locations": sf.split(",") + ny.split(",")})
        self.assertEqual(result, {"locations": sorted([sf, ny])})
        yield store.set_param("filter", "locations", sf)
        self.assertEqual(store.params("filter")["locations"], [sf])
        yield store.add_values("filter", "locations", [ny])
        yield store.remove_values("filter", "locations", sf.split(","))
        self.assertEqual(store.params("filter")["locations"], [ny])
        yield self.assertFailure(store.set_param("filter", "locations", ["1", "2", "3"]), ValidationError)

    @defer.inlineCallbacks
    def test_validation_errors_name_the_field(self):
        store = yield self.make()
        e = yield self.assertFailure(store.set_params("filter", {"Bad Param": ["x"]}), ValidationError)
        self.assertEqual(e.field, "param")
        e = yield self.assertFailure(store.set_params("filter", {"track": [""]}), ValidationError)
        self.assertEqual(e.field, "track")
        yield self.assertFailure(store.set_params("filter", {"track": "x" * 61}), ValidationError)

    @defer.inlineCallbacks
    def test_subscriptions_roundtrip(self):
        store = yield self.make()
        sub = Subscription.create("q1", format="envelope", types=["tweet"], filter=["cats"], max_length=10)
        yield store.save_subscription(sub)
        self.assertEqual(store.subscriptions(), {"q1": sub})
        r = shared_redis()
        self.assertEqual(r.command("SMEMBERS", f"{store.namespace}:subscriptions"), [b"q1"])
        r.command("RPUSH", f"{store.namespace}:queue:q1", "x")
        # a second store of the same namespace sees it, from Redis
        other = yield self.make(namespace=store.namespace)
        self.assertEqual(other.subscriptions(), {"q1": sub})
        yield store.delete_subscription("q1")
        self.assertEqual(store.subscriptions(), {})
        self.assertEqual(r.command("EXISTS", f"{store.namespace}:queue:q1"), 1)  # left to drain
        yield wait_for(lambda: other.subscriptions() == {}, what="other store sees the delete")
        yield self.assertFailure(store.delete_subscription("q1"), NotFound)
        yield store.save_subscription(Subscription.create("q2"))
        r.command("RPUSH", f"{store.namespace}:queue:q2", "x")
        yield store.delete_subscription("q2", drop_queue=True)
        self.assertEqual(r.command("EXISTS", f"{store.namespace}:queue:q2"), 0)

    @defer.inlineCallbacks
    def test_change_by_another_client(self):
        """Another process writes the keys directly and publishes: the copy follows."""
        store = yield self.make()
        changes = []
        store.on_change(lambda kind, name: changes.append((kind, name)))
        r = shared_redis()
        r.command("SADD", f"{store.namespace}:streams:filter:track", "zebra")
        r.command("SADD", f"{store.namespace}:subscriptions", "ext")
        r.command("HSET", f"{store.namespace}:subscription:ext", "format", "resque", "types", "tweet,delete")
        r.command("PUBLISH", f"{store.namespace}:changes", "anything")
        yield wait_for(lambda: ("subscriptions", "ext") in changes and ("params", "filter") in changes,
                       what="change callbacks")
        self.assertEqual(store.params("filter"), {"track": ["zebra"]})
        self.assertEqual(store.subscriptions()["ext"],
                         Subscription("ext", format="resque", types=("delete", "tweet")))

    @defer.inlineCallbacks
    def test_two_namespaces_do_not_touch(self):
        a = yield self.make()
        b = yield self.make()
        yield a.set_params("filter", {"track": ["a"]})
        yield a.save_subscription(Subscription.create("same"))
        yield b.save_subscription(Subscription.create("same", format="envelope"))
        yield wait_for(lambda: True)
        self.assertEqual(b.params("filter"), {})
        self.assertEqual(a.subscriptions()["same"].format, "raw")
        self.assertEqual(b.subscriptions()["same"].format, "envelope")

    @defer.inlineCallbacks
    def test_meta_written_and_read(self):
        store = yield self.make()
        yield store.write_meta({"events": {"tweet": 3}})
        meta = yield store.read_meta()
        self.assertEqual(meta["stats"], {"events": {"tweet": 3}})
        self.assertEqual(meta["process"]["running"], True)
        self.assertIn("pid", meta["process"])

    @defer.inlineCallbacks
    def test_redis_down_at_start_then_up(self):
        from twisted.logger import globalLogPublisher
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def lines(level):
            return [e for e in events if e.get("log_namespace") == "flamingo.dispatch.store"
                    and e["log_level"].name == level]
        server = RedisServer()  # not started yet: nothing listens on its port
        self.addCleanup(server.cleanup)
        store = yield self.make(server=server)
        yield wait_for(lambda: lines("warn"), what="the start-up warning")
        self.assertFalse(store.available)
        self.assertEqual(store.subscriptions(), {})
        yield self.assertFailure(store.save_subscription(Subscription.create("x")), StoreUnavailable)
        server.start()
        server.command("SADD", f"{store.namespace}:subscriptions", "x")
        yield wait_for(lambda: store.available and "x" in store.subscriptions(), timeout=20,
                       what="store reconnects and loads")
        from twisted.logger import formatEvent
        warns = [formatEvent(e) for e in lines("warn")]
        self.assertEqual(len(warns), 1, warns)  # one line, however long it stays down
        self.assertIn(server.address, warns[0])
        self.assertIn("retrying", warns[0])
        infos = [formatEvent(e) for e in lines("info")]
        self.assertEqual(infos, [f"Redis {server.address} reachable again"])

    @defer.inlineCallbacks
    def test_redis_hung_is_said_in_words(self):
        """A Redis that stops answering: the log line and errors say so (not '(1.0, 'Deferred')')."""
        server = RedisServer().start()
        self.addCleanup(server.cleanup)
        store = yield self.make(server=server)
        server.pause()
        self.addCleanup(server.resume)
        yield wait_for(lambda: not store.available, what="store notices the hang")
        self.assertIn("no answer within", store.last_error)
        e = yield self.assertFailure(store.save_subscription(Subscription.create("x")), StoreUnavailable)
        self.assertNotIn("Deferred", str(e))

    @defer.inlineCallbacks
    def test_redis_lost_keeps_last_state(self):
        server = RedisServer().start()
        self.addCleanup(server.cleanup)
        store = yield self.make(server=server)
        yield store.save_subscription(Subscription.create("keep"))
        server.stop()
        yield wait_for(lambda: not store.available, what="store notices the outage")
        self.assertIn("keep", store.subscriptions())
        yield self.assertFailure(store.set_params("filter", {"track": ["x"]}), StoreUnavailable)
        server.start()  # same port, empty data (persistence is off)
        yield wait_for(lambda: store.available, timeout=20, what="store reconnects")

    @defer.inlineCallbacks
    def test_redis_restarted_empty_is_restored_from_memory(self):
        """No persistence: the copy is written back, never replaced by the empty state."""
        server = RedisServer().start()
        self.addCleanup(server.cleanup)
        store = yield self.make(server=server)
        key = f"{store.namespace}:store:epoch"
        self.assertIsNotNone(server.command("GET", key))  # written at first start
        yield store.set_params("filter", {"track": ["a", "b"], "follow": ["12"]})
        yield store.save_subscription(Subscription.create("keep", format="envelope", max_length=5))
        seen = []  # every state a reader could observe from now on
        store.on_change(lambda kind, name: seen.append((store.params("filter"), store.subscriptions())))
        server.stop()
        yield wait_for(lambda: not store.available, what="store notices the outage")
        server.start()  # same port, empty data (persistence is off)
        yield wait_for(lambda: store.restores == 1 and store.available, timeout=20, what="re-seeded")
        yield wait_for(lambda: server.command("GET", key) is not None, what="marker back")
        self.assertEqual(sorted(server.command("SMEMBERS", f"{store.namespace}:streams:filter:track")),
                         [b"a", b"b"])
        self.assertEqual(server.command("SMEMBERS", f"{store.namespace}:subscriptions"), [b"keep"])
        self.assertEqual(server.command("HGET", f"{store.namespace}:subscription:keep", "max_length"), b"5")
        self.assertEqual(store.params("filter"), {"follow": ["12"], "track": ["a", "b"]})
        self.assertEqual(store.subscriptions()["keep"].format, "envelope")
        self.assertEqual(seen, [])  # nothing changed for readers, not even for a moment
        status = store.status()
        self.assertEqual(status["restores"], 1)
        self.assertEqual((status["last_restore"]["params"], status["last_restore"]["subscriptions"]), (2, 1))

    @defer.inlineCallbacks
    def test_restore_is_logged_and_announced(self):
        from twisted.logger import globalLogPublisher
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        store = yield self.make()
        other = yield self.make(namespace=store.namespace)  # a second reader of the same keys
        yield store.save_subscription(Subscription.create("s1"))
        yield wait_for(lambda: "s1" in other.subscriptions(), what="other sees s1")
        r = shared_redis()
        # an operator's FLUSHALL, for this namespace only (one command: atomic, as FLUSHALL is)
        r.command("DEL", *r.command("KEYS", f"{store.namespace}:*"))
        r.command("PUBLISH", f"{store.namespace}:changes", "anything")
        yield wait_for(lambda: store.restores + other.restores == 1, what="one re-seed")
        yield wait_for(lambda: r.command("SISMEMBER", f"{store.namespace}:subscriptions", "s1") == 1,
                       what="s1 back")
        # the store that did not re-seed may have read the empty keys first: it converges on
        # the notice the restore publishes (asynchronous, so waited for, not asserted at once)
        yield wait_for(lambda: "s1" in store.subscriptions() and "s1" in other.subscriptions(),
                       what="both stores hold s1 again")
        lines = [e for e in events if "Redis lost flamingo's keys" in str(e.get("log_format", ""))]
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["log_level"].name, "warn")
        self.assertEqual((lines[0]["n"], lines[0]["m"]), (0, 1))

    @defer.inlineCallbacks
    def test_marker_present_means_redis_is_the_truth(self):
        """A deletion by another client stays deleted (the marker is still there)."""
        store = yield self.make()
        yield store.save_subscription(Subscription.create("gone"))
        yield store.set_params("filter", {"track": ["x"]})
        r = shared_redis()
        r.command("DEL", f"{store.namespace}:streams:filter:track")
        r.command("SREM", f"{store.namespace}:subscriptions", "gone")
        r.command("PUBLISH", f"{store.namespace}:changes", "params:filter:track")
        r.command("PUBLISH", f"{store.namespace}:changes", "subscriptions:gone")
        yield wait_for(lambda: "gone" not in store.subscriptions() and not store.params("filter"),
                       what="deletion seen")
        self.assertEqual(store.restores, 0)
        self.assertEqual(r.command("SMEMBERS", f"{store.namespace}:subscriptions"), [])

    @defer.inlineCallbacks
    def test_first_start_on_empty_redis_restores_nothing(self):
        store = yield self.make()
        self.assertEqual(store.restores, 0)
        self.assertIsNotNone(store.epoch)
        r = shared_redis()
        self.assertEqual(r.command("GET", f"{store.namespace}:store:epoch").decode(), store.epoch)
        # emptied while the copy is empty: nothing to restore, a new marker is written
        r.command("DEL", f"{store.namespace}:store:epoch")
        r.command("PUBLISH", f"{store.namespace}:changes", "x")
        yield wait_for(lambda: r.command("GET", f"{store.namespace}:store:epoch") is not None, what="marker")
        self.assertEqual(store.restores, 0)
