"""The sink in the corners: unknown subscriptions, refused batches, gaps, a checkpoint of
another (or rolled-back) journal, fencing after a Redis restart or without CLIENT rights,
a checkpoint that is not one. Real redis-server, real files."""

from __future__ import annotations

import shutil
import socket
import stat
import tempfile
import uuid
from pathlib import Path

import orjson
from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from flamingo.config import from_mapping
from flamingo.dispatch.dispatcher import build_delivery
from flamingo.dispatch.routing import Routes
from flamingo.dispatch.stats import Stats
from flamingo.dispatch.store import Store
from flamingo.domain.subscription import Subscription
from tests.support.redis import RedisServer, shared_redis
from tests.support.waiting import wait_for
from tests.test_sink import Harness, lrange, tweet


def collect_logs(test, namespace="flamingo.sink"):
    """Log events of ``namespace`` (level, text) for the duration of the test."""
    seen = []

    def observer(event):
        if event.get("log_namespace") == namespace:
            from twisted.logger import formatEvent
            seen.append((event["log_level"].name, formatEvent(event)))
    globalLogPublisher.addObserver(observer)
    test.addCleanup(globalLogPublisher.removeObserver, observer)
    return seen


def raw_socket_command(server, *args):
    """One command on a new connection that stays open (returned with the reply line)."""
    s = socket.create_connection((server.host, server.port), timeout=5)
    parts = [b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args)]
    s.sendall(b"".join(parts))
    return s, s.recv(100)


class SubscriptionsUnknownTests(unittest.TestCase):
    """Item: restart while Redis is down lost the backlog (delivered to no queue)."""

    timeout = 60

    @defer.inlineCallbacks
    def test_nothing_is_sent_before_the_store_has_loaded(self):
        r = shared_redis()
        tmp = Path(tempfile.mkdtemp(prefix="flamingo-unknown-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        ns = "u" + uuid.uuid4().hex[:8]
        config = from_mapping({"username": "u", "password": "p", "stream": "sample", "data_dir": str(tmp / "data"),
                               "redis": {"host": f"127.0.0.1:{r.port}", "namespace": ns, "timeout": 2.0},
                               "logging": {"event": {"dir": str(tmp / "events"), "size": 300}}})
        r.command("SADD", f"{ns}:subscriptions", "q")  # what Redis holds; this process has not read it
        r.command("HSET", f"{ns}:subscription:q", "format", "raw", "types", "", "filter", "", "max_length", "")
        store = Store.from_config(config, reactor=reactor)
        self.addCleanup(store.stop)
        delivery = build_delivery(config, store, Stats(), reactor=reactor)
        delivery.startService()
        events = [tweet(i) for i in range(50)]
        delivery.messages_received(events)
        sink = delivery.sink
        yield wait_for(lambda: sink.connected and (sink.status().get("waiting") or sink.transactions),
                       what="sink connected and waiting (or, wrongly, delivering)")
        self.assertIsNone(r.command("GET", f"{ns}:sink:checkpoint"))  # not even the checkpoint moved
        self.assertEqual(sink.status()["waiting"], "subscriptions unknown")
        self.assertEqual(sink.status()["backlog"], 50)
        yield store.start()  # the store loads: now the sink knows where events go
        yield wait_for(lambda: sink._caught_up(), what="delivered")
        self.assertEqual(lrange(r, f"{ns}:queue:q"), events)
        self.assertIsNone(sink.status()["waiting"])
        yield delivery.stopService()


class RefusedBatchTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_a_wrong_type_queue_stops_the_batch_for_every_queue(self):
        r = shared_redis()
        h = Harness(self, r, subs=[Subscription.create("good"), Subscription.create("bad")])
        r.command("SET", h.key("bad"), "not a list")
        events = [tweet(i) for i in range(20)]
        h.dispatcher.messages_received(events)
        yield wait_for(lambda: h.sink.error and "WRONGTYPE" in h.sink.error, what="batch refused")
        self.assertEqual(lrange(r, h.key("good")), [])  # nothing of the batch was written
        self.assertIsNone(r.command("GET", f"{h.namespace}:sink:checkpoint"))
        self.assertIn("bad", h.sink.status()["queue_errors"])
        self.assertIn(h.key("bad"), h.sink.status()["error"])
        # retried after a backoff, not in a loop
        yield wait_for(lambda: h.sink._attempt >= 3, what="backoff grows")
        self.assertGreater(h.sink._scheduled.getTime(), reactor.seconds())
        r.command("DEL", h.key("bad"))
        yield h.drained()
        self.assertEqual(lrange(r, h.key("good")), events)
        self.assertEqual(lrange(r, h.key("bad")), events)
        self.assertIsNone(h.sink.error)
        self.assertEqual(h.sink.status()["queue_errors"], {})

    @defer.inlineCallbacks
    def test_a_checkpoint_that_is_not_one_is_an_error_with_backoff(self):
        r = shared_redis()
        ns = "b" + uuid.uuid4().hex[:8]
        r.command("SET", f"{ns}:sink:checkpoint", "garbage")
        h = Harness(self, r, namespace=ns, subs=[Subscription.create("q")])
        h.dispatcher.messages_received([tweet(i) for i in range(5)])
        yield wait_for(lambda: h.sink._attempt >= 4, what="reconnects back off")
        self.assertIn(f"{ns}:sink:checkpoint holds b'garbage'", h.sink.status()["error"])
        self.assertFalse(h.sink.connected)
        r.command("SET", f"{ns}:sink:checkpoint", "0")  # the operator's fix
        yield h.drained()
        self.assertEqual(lrange(r, h.key("q")), [tweet(i) for i in range(5)])


class GapTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_a_deleted_file_is_a_counted_gap_and_delivery_moves_on(self):
        r = shared_redis()
        logs = collect_logs(self)
        h = Harness(self, r, subs=[Subscription.create("q")])
        yield h.sink.stop()  # a backlog on disk only
        events = [tweet(i) for i in range(1, 201)]  # positions 1..200, 50 per file
        h.dispatcher.messages_received(events)
        h.journal.segments[1].path.unlink()  # retention deleted positions 51..100 meanwhile
        h2 = Harness(self, r, namespace=h.namespace, subs=list(h.subs.values()), journal=h.journal)
        yield h2.drained()
        self.assertEqual(lrange(r, h.key("q")), events[:50] + events[100:])
        st = h2.sink.status()
        self.assertEqual(st["gap_events"], 50)
        self.assertIsNone(st["error"])
        gaps = [text for level, text in logs if "GAP" in text]
        self.assertEqual(len(gaps), 1)
        self.assertIn("51..100", gaps[0])
        self.assertEqual([level for level, text in logs if "GAP" in text], ["error"])

    @defer.inlineCallbacks
    def test_a_closed_file_cut_short_is_a_gap(self):
        r = shared_redis()
        h = Harness(self, r, subs=[Subscription.create("q")])
        yield h.sink.stop()
        events = [tweet(i) for i in range(1, 151)]
        h.dispatcher.messages_received(events)
        yield h.journal.close()
        seg = sorted(h.dir.glob("event-*.log"))[1]
        data = seg.read_bytes()
        seg.write_bytes(data[:data.index(b"\n") + 1] + b'{"torn')  # one line, then a torn one
        h2 = Harness(self, r, namespace=h.namespace, subs=list(h.subs.values()), journal_dir=h.dir)
        yield h2.drained()
        self.assertEqual(lrange(r, h.key("q")), events[:51] + events[100:])
        self.assertEqual(h2.sink.status()["gap_events"], 49)


class CheckpointIdentityTests(unittest.TestCase):
    """A checkpoint ahead of the journal must not make new events be skipped."""

    timeout = 60

    @defer.inlineCallbacks
    def test_journal_rolled_back_by_a_machine_crash(self):
        r = shared_redis()
        logs = collect_logs(self)
        h = Harness(self, r, subs=[Subscription.create("q")])
        first = [tweet(i) for i in range(80)]
        h.dispatcher.messages_received(first)
        yield h.drained()  # Redis: checkpoint 80
        yield h.sink.stop()
        yield h.journal.close()
        # the power cut: the current file kept 5 of its 30 events (and a state to match)
        seg = sorted(h.dir.glob("event-*.log"))[1]
        seg.write_bytes(b"".join(e + b"\n" for e in first[50:55]))
        (h.dir / "journal.state").write_bytes(orjson.dumps({"next_seq": 56, "epoch": h.journal.epoch}))
        (h.dir / f"sink-{h.namespace}.checkpoint").unlink()
        h2 = Harness(self, r, namespace=h.namespace, subs=list(h.subs.values()), journal_dir=h.dir)
        self.assertEqual(h2.journal.last_seq, 55)
        new = [tweet(i, "after") for i in range(50)]
        h2.dispatcher.messages_received(new)  # positions 56..105, before the sink connects
        yield h2.drained()
        self.assertEqual(lrange(r, h.key("q")), first + new)
        self.assertTrue(any(level == "error" and "ROLLED BACK" in text for level, text in logs))

    @defer.inlineCallbacks
    def test_journal_wiped_and_recreated(self):
        r = shared_redis()
        h = Harness(self, r, subs=[Subscription.create("q")])
        first = [tweet(i) for i in range(100)]
        h.dispatcher.messages_received(first)
        yield h.drained()
        yield h.sink.stop()
        yield h.journal.close()
        shutil.rmtree(h.dir)  # a new disk: positions start at 1 again
        h2 = Harness(self, r, namespace=h.namespace, subs=list(h.subs.values()), journal_dir=h.dir)
        new = [tweet(i, "after") for i in range(30)]
        h2.dispatcher.messages_received(new)
        yield h2.drained()
        self.assertEqual(lrange(r, h.key("q")), first + new)
        epoch = r.command("GET", f"{h.namespace}:sink:checkpoint").split(b":")[1]
        self.assertEqual(epoch, h2.journal.epoch.encode())

    @defer.inlineCallbacks
    def test_an_old_plain_integer_checkpoint_is_still_read(self):
        r = shared_redis()
        h = Harness(self, r, subs=[Subscription.create("q")])
        first = [tweet(i) for i in range(40)]
        h.dispatcher.messages_received(first)
        yield h.drained()
        yield h.sink.stop()
        r.command("SET", f"{h.namespace}:sink:checkpoint", "40")  # as an earlier version wrote it
        more = [tweet(i) for i in range(40, 50)]
        h.dispatcher.messages_received(more)
        yield h.journal.close()
        h2 = Harness(self, r, namespace=h.namespace, subs=list(h.subs.values()), journal_dir=h.dir)
        yield h2.drained()
        self.assertEqual(lrange(r, h.key("q")), first + more)


class FencingTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_no_fencing_across_a_redis_restart(self):
        """After a restart the old client id may be someone else's: it must not be killed."""
        server = RedisServer().start()
        self.addCleanup(server.cleanup)
        for _ in range(40):  # push the client ids up, so the sink's is one a newcomer can get
            server.command("PING")
        h = Harness(self, server, subs=[Subscription.create("q")], timeout=0.5)
        h.dispatcher.messages_received([tweet(1)])
        yield h.drained()
        old_id = h.sink._client_id
        self.assertIsNotNone(old_id)
        server.stop()
        server.start()  # blocking: the sink cannot reconnect before the newcomer below
        victim = None
        for _ in range(old_id + 5):
            s, reply = raw_socket_command(server, "CLIENT", "ID")
            if int(reply[1:].split(b"\r\n")[0]) == old_id:
                victim = s
                break
            s.close()
        self.assertIsNotNone(victim, "no connection got the sink's old id")
        self.addCleanup(victim.close)
        h.dispatcher.messages_received([tweet(2)])
        yield h.drained(timeout=30)
        victim.sendall(b"PING\r\n")
        self.assertEqual(victim.recv(7), b"+PONG\r\n")  # still alive
        self.assertEqual(lrange(server, h.key("q")), [tweet(2)])  # restarted empty (no persistence)

    @defer.inlineCallbacks
    def test_a_user_without_client_rights_still_delivers(self):
        server = RedisServer(args=("--user", "default", "on", "nopass", "~*", "&*", "+@all", "-client")).start()
        self.addCleanup(server.cleanup)
        self.assertIn("NOPERM", str(self._client_id_error(server)))
        logs = collect_logs(self)
        h = Harness(self, server, subs=[Subscription.create("q")], timeout=0.5)
        h.dispatcher.messages_received([tweet(i) for i in range(10)])
        yield h.drained()
        self.assertFalse(h.sink.status()["fencing"])
        server.stop()  # persistence off: the queue starts again empty; the local copy decides
        server.start()
        h.dispatcher.messages_received([tweet(i) for i in range(10, 20)])
        yield h.drained(timeout=30)  # every reconnect works
        self.assertEqual(lrange(server, h.key("q")), [tweet(i) for i in range(10, 20)])
        warns = [text for level, text in logs if level == "warn" and "CLIENT" in text]
        self.assertEqual(len(warns), 1)

    @staticmethod
    def _client_id_error(server):
        try:
            return server.command("CLIENT", "ID")
        except RuntimeError as e:
            return e


class StatusTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_progress_at_moves_with_commits(self):
        r = shared_redis()
        h = Harness(self, r, subs=[Subscription.create("q")])
        yield wait_for(lambda: h.sink.connected)
        before = h.sink.status()["progress_at"]
        self.assertIsNotNone(before)
        h.dispatcher.messages_received([tweet(1)])
        yield h.drained()
        st = h.sink.status()
        self.assertGreaterEqual(st["progress_at"], before)
        for key in ("error", "connected", "backlog", "checkpoint", "gap_events"):
            self.assertIn(key, st)


class ErrorClearedOnReconnectTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_a_connection_error_clears_when_connected_again_with_nothing_to_send(self):
        """Found by the soak: the error stayed beside ``connected: true`` until the next commit."""
        server = RedisServer().start()
        self.addCleanup(server.cleanup)
        h = Harness(self, server, subs=[Subscription.create("q")], timeout=0.5)
        h.dispatcher.messages_received([tweet(1)])
        yield h.drained()
        server.stop()
        yield wait_for(lambda: h.sink.status()["error"] is not None, what="the sink sees Redis gone")
        server.start()
        yield wait_for(lambda: h.sink.connected, timeout=30, what="reconnected")
        st = h.sink.status()
        self.assertEqual((st["error"], st["error_since"], st["backlog"]), (None, None, 0))


class StateFilesTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_state_in_data_dir_migrated_from_the_event_dir(self):
        r = shared_redis()
        tmp = Path(tempfile.mkdtemp(prefix="flamingo-statefiles-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        ns = "s" + uuid.uuid4().hex[:8]
        events_dir, data = tmp / "events", tmp / "data"
        events_dir.mkdir()
        # an install of an earlier version: state among the events, checkpoint 7 delivered
        (events_dir / "event-20260101-000000-000000000001.log").write_bytes(
            b"".join(tweet(i) + b"\n" for i in range(10)))
        (events_dir / "journal.state").write_bytes(b'{"next_seq": 11}')
        (events_dir / f"sink-{ns}.checkpoint").write_bytes(b"%020d\n" % 7)
        config = from_mapping({"username": "u", "password": "p", "stream": "sample", "data_dir": str(data),
                               "redis": {"host": f"127.0.0.1:{r.port}", "namespace": ns, "timeout": 2.0},
                               "logging": {"event": {"dir": str(events_dir), "size": 300}}})
        r.command("SADD", f"{ns}:subscriptions", "q")
        r.command("HSET", f"{ns}:subscription:q", "format", "raw", "types", "", "filter", "", "max_length", "")
        store = Store.from_config(config, reactor=reactor)
        self.addCleanup(store.stop)
        yield store.start()
        delivery = build_delivery(config, store, Stats(), reactor=reactor)
        delivery.startService()
        yield wait_for(lambda: delivery.sink._caught_up(), what="delivered")
        yield delivery.stopService()
        # Redis had no checkpoint: resumed from the migrated local copy (7)
        self.assertEqual(lrange(r, f"{ns}:queue:q"), [tweet(i) for i in range(7, 10)])
        names = {p.name for p in events_dir.iterdir()}
        self.assertEqual({n for n in names if not n.startswith("event-")}, {"event.log"})
        for name in ("journal.state", f"sink-{ns}.checkpoint"):
            self.assertEqual(stat.S_IMODE((data / name).stat().st_mode), 0o600, name)
        self.assertEqual(stat.S_IMODE(data.stat().st_mode) & 0o077, 0)


class RoutingTests(unittest.SynchronousTestCase):
    def test_invalid_lines_only_where_named(self):
        frames = [tweet(1), b'{"not json', b'{"delete":{"status":{"id":1}}}']
        types = ["tweet", "invalid", "delete"]
        routes = Routes(frames, types, lambda terms: None)
        self.assertEqual(routes.values_for(Subscription.create("raw")), [frames[0], frames[2]])
        self.assertEqual(len(routes.values_for(Subscription.create("env", format="envelope"))), 2)
        self.assertEqual(routes.values_for(Subscription.create("d", types=["delete"])), [frames[2]])
        named = routes.values_for(Subscription.create("i", format="envelope", types=["invalid"]))
        self.assertEqual([orjson.loads(v)["event"] for v in named], ['{"not json'])
        self.assertEqual(Routes(frames[:1], types[:1], lambda t: None).values_for(Subscription.create("r")),
                         frames[:1])
