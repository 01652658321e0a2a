"""The store's local copy, skipped keys, targeted reloads and queue ownership, on a real redis-server."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from flamingo.dispatch.store import Store
from flamingo.dispatch.store_copy import LocalCopy, copy_path, decode, encode, read_copy
from flamingo.domain.subscription import Subscription
from flamingo.errors import ValidationError
from tests.support.redis import RedisServer, shared_redis
from tests.support.waiting import wait_for


def ns() -> str:
    return "t" + uuid.uuid4().hex[:8]


class _Base(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.data_dir = Path(self.mktemp())
        self.data_dir.mkdir(mode=0o700)

    def warnings(self, text=""):
        return [formatEvent(e) for e in self.events if e.get("log_namespace") == "flamingo.dispatch.store"
                and e["log_level"].name == "warn" and text in formatEvent(e)]

    def store(self, server, namespace, data_dir=None):
        s = Store(namespace=namespace, host=server.host, port=server.port, timeout=2.0,
                  health_interval=0.2, data_dir=data_dir)
        self.addCleanup(s.stop)
        return s

    @defer.inlineCallbacks
    def started(self, server, namespace, data_dir=None):
        s = self.store(server, namespace, data_dir)
        yield s.start()
        return s

    def private_redis(self, persistent=False):
        server = RedisServer(args=("--appendonly", "yes") if persistent else ()).start()
        self.addCleanup(server.cleanup)
        return server


class LocalCopyTests(_Base):
    """A restart while Redis is down knows the subscriptions."""

    @defer.inlineCallbacks
    def test_copy_is_written_private_on_every_change(self):
        space = ns()
        store = yield self.started(shared_redis(), space, self.data_dir)
        path = copy_path(self.data_dir, space)
        sub = Subscription.create("jobs", format="envelope", max_length=5)
        yield store.save_subscription(sub)
        yield store.set_params("filter", {"track": ["cats"]})
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        copy = read_copy(path)
        self.assertEqual(copy.subscriptions, {"jobs": sub})
        self.assertEqual(copy.params, {"filter": {"track": ["cats"]}})
        self.assertEqual(copy.epoch, store.epoch)
        yield store.delete_subscription("jobs")
        self.assertEqual(read_copy(path).subscriptions, {})
        self.assertEqual(sorted(os.listdir(self.data_dir)), [path.name])  # no temporary file left

    @defer.inlineCallbacks
    def test_restart_while_redis_is_down_knows_subscriptions_and_params(self):
        server = self.private_redis(persistent=True)
        space = ns()
        first = yield self.started(server, space, self.data_dir)
        sub = Subscription.create("jobs")
        yield first.save_subscription(sub)
        yield first.set_params("filter", {"track": ["cats"]})
        yield first.stop()
        server.stop()
        second = self.store(server, space, self.data_dir)
        self.assertIsNone(second.known_subscriptions())  # not before it has tried Redis
        changes = []
        second.on_change(lambda kind, name: changes.append((kind, name)))
        yield second.start()
        self.assertFalse(second.available)
        self.assertEqual(second.known_subscriptions(), {"jobs": sub})
        self.assertEqual(second.params("filter"), {"track": ["cats"]})  # the wader has its params
        self.assertIn(("params", "filter"), changes)
        self.assertEqual(second.status()["source"], "local copy")
        self.assertEqual(len(self.warnings("local copy")), 1)
        server.start()  # back with its data: Redis is the truth again
        yield wait_for(lambda: second.available and second.status()["source"] == "redis", timeout=20,
                       what="reload from Redis")
        self.assertEqual(second.known_subscriptions(), {"jobs": sub})
        self.assertEqual(second.restores, 0)

    @defer.inlineCallbacks
    def test_redis_answering_wins_over_the_copy(self):
        server = self.private_redis()
        space = ns()
        first = yield self.started(server, space, self.data_dir)
        yield first.save_subscription(Subscription.create("old"))
        yield first.stop()
        # changed by another client while the daemon was stopped
        server.command("SREM", f"{space}:subscriptions", "old")
        server.command("SADD", f"{space}:subscriptions", "new")
        server.command("HSET", f"{space}:subscription:new", "format", "raw")
        second = yield self.started(server, space, self.data_dir)
        self.assertEqual(list(second.known_subscriptions()), ["new"])
        self.assertEqual(list(read_copy(copy_path(self.data_dir, space)).subscriptions), ["new"])

    @defer.inlineCallbacks
    def test_redis_back_empty_after_a_restart_is_reseeded_from_the_copy(self):
        server = self.private_redis()  # no persistence: a restart empties it
        space = ns()
        first = yield self.started(server, space, self.data_dir)
        yield first.save_subscription(Subscription.create("jobs", max_length=7))
        yield first.set_params("filter", {"track": ["a", "b"]})
        yield first.stop()
        server.stop()
        server.start()
        second = yield self.started(server, space, self.data_dir)
        self.assertEqual(second.restores, 1)
        self.assertEqual(server.command("SMEMBERS", f"{space}:subscriptions"), [b"jobs"])
        self.assertEqual(server.command("HGET", f"{space}:subscription:jobs", "max_length"), b"7")
        self.assertEqual(sorted(server.command("SMEMBERS", f"{space}:streams:filter:track")), [b"a", b"b"])
        self.assertEqual(list(second.known_subscriptions()), ["jobs"])
        self.assertEqual(len(self.warnings("from the local copy")), 1)

    @defer.inlineCallbacks
    def test_unreadable_copy_is_ignored_with_a_warning(self):
        space = ns()
        copy_path(self.data_dir, space).write_text("{not json")
        store = yield self.started(shared_redis(), space, self.data_dir)
        self.assertEqual(store.known_subscriptions(), {})
        self.assertEqual(len(self.warnings("unreadable")), 1)

    def test_encoding_roundtrip(self):
        copy = LocalCopy(params={"filter": {"track": ["b", "a"]}},
                         subscriptions={"q": Subscription.create("q", types=["tweet"])}, epoch="e1")
        again = decode(encode(copy))
        self.assertEqual(again.subscriptions, copy.subscriptions)
        self.assertEqual(again.params, {"filter": {"track": ["a", "b"]}})
        self.assertEqual(again.epoch, "e1")
        self.assertRaises(ValueError, decode, b'{"format": 2}')


class BadKeyTests(_Base):
    """A key of the wrong type is skipped with one WARN; the rest loads."""

    @defer.inlineCallbacks
    def test_wrong_type_keys_are_skipped_once(self):
        r = shared_redis()
        space = ns()
        r.command("SADD", f"{space}:streams:filter:track", "cats")
        r.command("SET", f"{space}:streams:filter:follow", "not a set")
        r.command("SADD", f"{space}:subscriptions", "good", "str", "bad")
        r.command("HSET", f"{space}:subscription:good", "format", "raw")
        r.command("SET", f"{space}:subscription:str", "not a hash")
        r.command("HSET", f"{space}:subscription:bad", "format", "nonsense")
        store = yield self.started(r, space)
        self.assertEqual(store.params("filter"), {"track": ["cats"]})
        self.assertEqual(list(store.subscriptions()), ["good"])
        r.command("PUBLISH", f"{space}:changes", "reload everything")
        r.command("PUBLISH", f"{space}:changes", "subscriptions:str")
        r.command("SADD", f"{space}:subscriptions", "later")
        r.command("PUBLISH", f"{space}:changes", "subscriptions:later")
        yield wait_for(lambda: "later" in store.subscriptions(), what="a later subscription")
        warned = self.warnings("skipped")
        self.assertEqual(len(warned), 3, warned)  # one per key, not one per load
        self.assertTrue(any(f"{space}:streams:filter:follow" in w for w in warned))


class ChangeNoticeTests(_Base):
    """A change notice names what changed: only that is read again, no SCAN."""

    def scans(self, server):
        info = server.command("INFO", "commandstats").decode()
        line = next((ln for ln in info.splitlines() if ln.startswith("cmdstat_scan:")), "")
        return int(line.split("calls=")[1].split(",")[0]) if line else 0

    @defer.inlineCallbacks
    def test_named_changes_do_not_scan(self):
        server = self.private_redis()
        space = ns()
        store = yield self.started(server, space)
        writer = yield self.started(server, space)
        yield writer.set_params("filter", {"track": ["a"]})
        yield writer.save_subscription(Subscription.create("jobs"))
        yield wait_for(lambda: store.params("filter") and "jobs" in store.subscriptions(), what="seen")
        server.command("CONFIG", "RESETSTAT")
        yield writer.add_values("filter", "track", ["b"])
        yield writer.delete_subscription("jobs")
        yield wait_for(lambda: store.params("filter") == {"track": ["a", "b"]}
                       and "jobs" not in store.subscriptions(), what="targeted reloads")
        self.assertEqual(self.scans(server), 0)
        # an older daemon's notice names the stream: one stream is scanned, and it still works
        server.command("SADD", f"{space}:streams:filter:follow", "12")
        server.command("PUBLISH", f"{space}:changes", "params:filter")
        yield wait_for(lambda: store.params("filter").get("follow") == ["12"], what="old-format notice")
        # anything else reads everything
        server.command("SADD", f"{space}:streams:sample:language", "en")
        server.command("PUBLISH", f"{space}:changes", "anything")
        yield wait_for(lambda: store.params("sample") == {"language": ["en"]}, what="full reload")

    @defer.inlineCallbacks
    def test_targeted_reload_notices_an_emptied_redis(self):
        server = self.private_redis()
        space = ns()
        store = yield self.started(server, space)
        yield store.save_subscription(Subscription.create("keep"))
        server.command("FLUSHALL")
        server.command("PUBLISH", f"{space}:changes", "subscriptions:other")
        yield wait_for(lambda: store.restores == 1, what="re-seed")
        self.assertEqual(server.command("SMEMBERS", f"{space}:subscriptions"), [b"keep"])


class QueueOwnershipTests(_Base):
    """A subscription never takes over (and trims) a list Flamingo did not create."""

    @defer.inlineCallbacks
    def test_foreign_queue_is_refused(self):
        r = shared_redis()
        space = ns()
        store = yield self.started(r, space)
        r.command("RPUSH", f"{space}:queue:theirs", "job")
        e = yield self.assertFailure(store.save_subscription(Subscription.create("theirs")), ValidationError)
        self.assertEqual(e.field, "name")
        self.assertIn(f"{space}:queue:theirs", str(e))
        self.assertNotIn("theirs", store.subscriptions())
        self.assertEqual(r.command("SISMEMBER", f"{space}:subscriptions", "theirs"), 0)
        r.command("SET", f"{space}:queue:str", "x")  # not even a list
        yield self.assertFailure(store.save_subscription(Subscription.create("str")), ValidationError)

    @defer.inlineCallbacks
    def test_own_queue_stays_own(self):
        r = shared_redis()
        space = ns()
        store = yield self.started(r, space)
        yield store.save_subscription(Subscription.create("mine"))
        self.assertEqual(r.command("SISMEMBER", f"{space}:queues", f"{space}:queue:mine"), 1)
        r.command("RPUSH", f"{space}:queue:mine", "event")  # the sink delivered
        yield store.save_subscription(Subscription.create("mine", max_length=10))
        other = yield self.started(r, space)  # another daemon: ownership is in Redis
        yield other.save_subscription(Subscription.create("mine", max_length=3))
        yield store.delete_subscription("mine")  # queue left to drain: still Flamingo's
        yield store.save_subscription(Subscription.create("mine"))
        yield store.delete_subscription("mine", drop_queue=True)
        self.assertEqual(r.command("SISMEMBER", f"{space}:queues", f"{space}:queue:mine"), 0)

    @defer.inlineCallbacks
    def test_resque_appends_to_an_existing_queue_but_never_trims_it(self):
        r = shared_redis()
        space = ns()
        name = f"{space}-jobs"
        store = yield self.started(r, space)
        r.command("RPUSH", f"resque:queue:{name}", "{}")
        e = yield self.assertFailure(
            store.save_subscription(Subscription.create(name, format="resque", max_length=5)), ValidationError)
        self.assertEqual(e.field, "max_length")
        yield store.save_subscription(Subscription.create(name, format="resque"))
        self.assertEqual(r.command("SISMEMBER", f"{space}:queues", f"resque:queue:{name}"), 0)
        yield self.assertFailure(
            store.save_subscription(Subscription.create(name, format="resque", max_length=5)), ValidationError)
        fresh = f"{space}-fresh"
        yield store.save_subscription(Subscription.create(fresh, format="resque", max_length=5))
        self.assertEqual(r.command("SISMEMBER", f"{space}:queues", f"resque:queue:{fresh}"), 1)
        r.command("DEL", f"resque:queue:{name}", f"resque:queue:{fresh}")

    @defer.inlineCallbacks
    def test_ownership_survives_redis_coming_back_empty(self):
        server = self.private_redis()  # no persistence
        space = ns()
        store = yield self.started(server, space)
        yield store.save_subscription(Subscription.create("keep"))
        server.stop()
        yield wait_for(lambda: not store.available, what="outage seen")
        server.start()
        yield wait_for(lambda: store.restores == 1, timeout=20, what="re-seeded")
        server.command("RPUSH", f"{space}:queue:keep", "event")  # the sink delivers again
        yield store.save_subscription(Subscription.create("keep", max_length=5))
        self.assertEqual(store.subscriptions()["keep"].max_length, 5)

    @defer.inlineCallbacks
    def test_when_known_fires_from_redis_or_the_copy(self):
        server = self.private_redis()
        space = ns()
        first = yield self.started(server, space, self.data_dir)
        yield first.save_subscription(Subscription.create("jobs"))
        known = yield first.when_known()
        self.assertEqual(list(known), ["jobs"])
        yield first.stop()
        server.stop()
        second = self.store(server, space, self.data_dir)
        d = second.when_known()
        self.assertNoResult(d)
        yield second.start()
        self.assertEqual(list(self.successResultOf(d)), ["jobs"])

    @defer.inlineCallbacks
    def test_existing_subscriptions_queues_are_adopted_at_load(self):
        """An install from before <ns>:queues keeps working."""
        r = shared_redis()
        space = ns()
        r.command("SADD", f"{space}:subscriptions", "old")
        r.command("HSET", f"{space}:subscription:old", "format", "raw")
        r.command("RPUSH", f"{space}:queue:old", "event")
        store = yield self.started(r, space)
        self.assertEqual(r.command("SISMEMBER", f"{space}:queues", f"{space}:queue:old"), 1)
        yield store.save_subscription(Subscription.create("old", max_length=100))
        self.assertEqual(store.subscriptions()["old"].max_length, 100)


class ChangeTargetTests(unittest.SynchronousTestCase):
    """The notice format, without Redis."""

    def test_notices(self):
        from flamingo.domain.store_rules import change_targets
        self.assertEqual(change_targets("params:filter:track"), [("params", "filter", "track")])
        self.assertEqual(change_targets("params:filter"), [("params", "filter", None)])
        self.assertEqual(change_targets("subscriptions:a:b"), [("subscription", "a:b", None)])
        for other in ("anything", "params:", "params:bad stream", "params:filter:9bad", "params:filter:b-ad",
                      "subscriptions:", ""):
            self.assertIsNone(change_targets(other), other)

    def test_any_message_is_a_target_list_or_everything(self):
        from hypothesis import given
        from hypothesis import strategies as st

        from flamingo.domain.store_rules import STREAM_RE, change_targets

        @given(st.text())
        def check(message):
            targets = change_targets(message)
            if targets is not None:
                [(kind, name, _)] = targets
                self.assertIn(kind, ("params", "subscription"))
                if kind == "params":
                    self.assertTrue(STREAM_RE.fullmatch(name))
        check()


class ForeignQueueOverRestTests(unittest.TestCase):
    """Cross-site: POST /subscriptions.json must not take over another app's list."""

    timeout = 30

    @defer.inlineCallbacks
    def test_rest_answers_422(self):
        from tests.support.http import Server
        from tests.support.parts import make_app, make_config, make_store
        store = yield make_store(self)
        server = Server(self, make_app(make_config(), store))
        r = shared_redis()
        name = f"{store.namespace}-jobs"
        r.command("RPUSH", f"resque:queue:{name}", '{"class": "Other"}')
        self.addCleanup(r.command, "DEL", f"resque:queue:{name}")
        response, body, parsed = yield server.request(
            "POST", f"/subscriptions.json?name={name}&format=resque&max_length=1")
        self.assertEqual(response.code, 422, body)
        self.assertIn("max_length", body.decode())
        self.assertEqual(r.command("LLEN", f"resque:queue:{name}"), 1)
        self.assertNotIn(name, store.subscriptions())
