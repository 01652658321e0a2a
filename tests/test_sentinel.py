"""Redis Sentinel: the daemon finds the master, follows a failover, and re-delivers what was lost.

Real processes on loopback: one master, one replica, three sentinels
(down-after 1 s), the daemon under twistd, the emulator. The master is killed
mid-stream; Sentinel promotes the replica; the daemon reconnects to it with no
operator. Afterwards every event of the event log is in the new master's
queue; duplicates there are counted and must stay within the bound
docs/scaling.md gives (the events the daemon reports re-delivering).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial import unittest

from flamingo.config import ConfigError, from_mapping
from flamingo.dispatch.failover import ReleaseGate
from flamingo.dispatch.redis_address import MasterNotFound, ResolvingEndpoint, SentinelResolver
from flamingo.dispatch.store import Store
from flamingo.domain.subscription import Subscription
from tests.support.child_daemon import ChildDaemon
from tests.support.redis import RedisServer, free_port
from tests.support.sentinel import SentinelGroup
from tests.support.waiting import until, wait_for
from tests.test_sink import Harness, lrange, tweet

AUTH = {"username": "u", "password": "p"}


class Pure(unittest.SynchronousTestCase):
    def test_config(self):
        c = from_mapping({**AUTH, "redis": {"sentinels": ["127.0.0.1:26379", "h2"], "master_name": "m",
                                             "wait_replicas": 1}}, environ={})
        self.assertEqual(c.redis.sentinels, (("127.0.0.1", 26379), ("h2", 26379)))
        self.assertEqual(c.redis.master_name, "m")
        self.assertEqual(c.redis.wait_replicas, 1)
        with self.assertRaises(ConfigError) as cm:
            from_mapping({**AUTH, "redis": {"sentinels": ["h:1"]}}, environ={})
        self.assertEqual(cm.exception.key, "redis.master_name")
        with self.assertRaises(ConfigError) as cm:
            from_mapping({**AUTH, "redis": {"sentinels": "h:x", "master_name": "m"}}, environ={})
        self.assertEqual(cm.exception.key, "redis.sentinels[0]")

    def test_release_gate_holds_positions_a_failover_may_need(self):
        gate = ReleaseGate(60.0)
        self.assertIsNone(gate.releasable(100.0, 10))
        self.assertIsNone(gate.releasable(130.0, 20))
        self.assertEqual(gate.releasable(160.0, 30), 10)  # what was delivered 60 s ago
        self.assertEqual(gate.releasable(190.5, 40), 20)
        self.assertEqual(gate.releasable(191.0, 50, replicated=True), 50)  # WAIT confirmed it
        self.assertEqual(ReleaseGate(0).releasable(1.0, 7), 7)  # no Sentinel: at once


def redis_of(group: SentinelGroup, addr: tuple[str, int]) -> Any:
    return next(s for s in (group.master, group.replica) if s.port == addr[1])


class SentinelFailoverTests(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.group = SentinelGroup().start()
        self.addCleanup(self.group.cleanup)

    @defer.inlineCallbacks
    def test_resolver_asks_each_sentinel_in_turn_and_checks_the_role(self) -> Any:
        dead = ("127.0.0.1", free_port())
        live = [("127.0.0.1", s.port) for s in self.group.sentinels]
        r = SentinelResolver(reactor, (dead, *live), self.group.name, timeout=2)
        addr = yield r.resolve()
        self.assertEqual(addr, ("127.0.0.1", self.group.master.port))
        self.assertEqual(r.sentinels[0], live[0])  # the one that answered is asked first next time
        wrong = SentinelResolver(reactor, tuple(live), "no-such-master", timeout=2)
        with self.assertRaises(MasterNotFound) as cm:
            yield wrong.resolve()
        self.assertIn("knows no master 'no-such-master'", str(cm.exception))

    @defer.inlineCallbacks
    def test_wait_replicas(self) -> Any:
        """WAIT after each batch: once drained, the replica has every batch."""
        g = self.group
        h = Harness(self, g.master, subs=[Subscription.create("q")], wait_replicas=1)
        events = [tweet(i) for i in range(60)]
        for i in range(0, 60, 20):
            h.dispatcher.messages_received(events[i:i + 20])
        yield h.drained()
        self.assertEqual(lrange(g.replica, h.key("q")), events)  # no wait: WAIT already saw it there
        self.assertEqual(h.sink.wait_short, 0)

    @defer.inlineCallbacks
    def test_readonly_reconnects_and_resolves_again(self) -> Any:
        """A server that answers READONLY (a replica now) is left: the next connect asks again
        where the master is. Retrying on the same connection would never deliver."""
        g = self.group
        answers = [("127.0.0.1", g.replica.port)]  # first the stale answer, then the master

        def resolve() -> Any:
            return defer.succeed(answers.pop(0) if len(answers) > 1 else answers[0])
        answers.append(("127.0.0.1", g.master.port))
        h = Harness(self, g.master, subs=[Subscription.create("q")],
                    endpoint=ResolvingEndpoint(reactor, resolve, 2.0), where="test master")
        events = [tweet(i) for i in range(30)]
        h.dispatcher.messages_received(events)
        yield h.drained()
        self.assertEqual(lrange(g.master, h.key("q")), events)
        self.assertEqual(h.sink.address, f"127.0.0.1:{g.master.port}")

    @defer.inlineCallbacks
    def test_store_leaves_a_readonly_server(self) -> Any:
        """The store's first write on a replica answers READONLY: it drops the connection and the
        reconnect asks again where the master is."""
        g = self.group
        answers = [("127.0.0.1", g.replica.port), ("127.0.0.1", g.master.port)]

        def resolve() -> Any:
            return defer.succeed(answers.pop(0) if len(answers) > 1 else answers[0])
        ns = "ro" + uuid.uuid4().hex[:8]
        store = Store(namespace=ns, reactor=reactor, timeout=2.0,
                      endpoint=ResolvingEndpoint(reactor, resolve, 2.0), where="test master")
        self.addCleanup(store.stop)
        store.start()
        yield wait_for(lambda: store.available and g.master.command("GET", f"{ns}:store:epoch"),
                       what="the store on the master")
        yield store.save_subscription(Subscription.create("q"))
        self.assertEqual(g.master.command("SMEMBERS", f"{ns}:subscriptions"), [b"q"])

    @defer.inlineCallbacks
    def test_master_killed_mid_stream(self) -> Any:
        g = self.group
        daemon = ChildDaemon(self, {"sentinels": g.addresses, "master_name": g.name}, prefix="sn")
        ns, master = daemon.ns, g.master
        master.command("SADD", f"{ns}:streams:filter:track", "austin", "python")
        master.command("SADD", f"{ns}:subscriptions", "q")
        master.command("HSET", f"{ns}:subscription:q", "format", "raw", "types", "", "filter", "",
                       "max_length", "")
        g.ready()
        daemon.start()
        queue = f"{ns}:queue:q"
        yield until(lambda: (master.command("LLEN", queue) or 0) >= 200, 40)
        before = g.replica.command("GET", f"{ns}:sink:checkpoint")
        g.kill_master()
        killed_at = time.monotonic()
        new = g.replica

        def moved_on() -> bool:
            try:
                return new.command("GET", f"{ns}:sink:checkpoint") != before and \
                    b"role:master" in new.command("INFO", "replication")
            except OSError:
                return False
        yield until(moved_on, 60)
        took = time.monotonic() - killed_at
        target = len(daemon.event_log()) + 300
        yield until(lambda: len(daemon.event_log()) >= target, 40)
        yield daemon.stop()

        log, values = daemon.event_log(), list(new.command("LRANGE", queue, "0", "-1"))
        missing = set(log) - set(values)
        self.assertEqual(missing, set(), f"{len(missing)} journaled events are not on the new master")
        duplicates = len(values) - len(set(values))
        text = daemon.log()
        redelivered = sum(int(n) for n in re.findall(r"delivering these (\d+) events again", text))
        self.assertLessEqual(duplicates, redelivered)
        self.assertIn("Redis sink connected to 127.0.0.1:%d" % new.port, text)
        self.assertIn(f"Redis sentinel master {g.name} reachable again", text)  # the store followed too
        print(f"\nsentinel failover: sink writing to the new master {took:.1f} s after the kill; "
              f"{redelivered} events re-delivered from the journal; {duplicates} duplicates in the "
              f"queue; {len(log)} events journaled")


class LostTailTests(unittest.TestCase):
    """A reconnect finds an older checkpoint than the sink committed (what a promoted replica that
    missed the last batches looks like): those events are delivered again from the journal."""

    timeout = 60

    @defer.inlineCallbacks
    def test_the_missing_batches_are_delivered_again(self) -> Any:
        r = RedisServer().start()
        self.addCleanup(r.cleanup)
        h = Harness(self, r, subs=[Subscription.create("q")])
        events = [tweet(i) for i in range(100)]
        h.dispatcher.messages_received(events[:40])
        yield h.drained()
        ckey = f"{h.namespace}:sink:checkpoint"
        older = r.command("GET", ckey)
        h.dispatcher.messages_received(events[40:])
        yield h.drained()
        self.assertEqual(lrange(r, h.key("q")), events)
        # the "new master": the state after the first 40, and the sink's connection gone
        r.command("SET", ckey, older)
        r.command("LTRIM", h.key("q"), "0", "39")
        r.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        yield wait_for(lambda: h.sink.failovers == 1 and h.sink._caught_up() and h.sink.connected,
                       what="the lost batches delivered again")
        self.assertEqual(lrange(r, h.key("q")), events)  # each once, in order
        self.assertEqual(h.sink.redelivered, 60)
        self.assertEqual(h.sink.status()["redelivered"], 60)
