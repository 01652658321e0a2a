"""Pacing: the Redis sink holds the stream's gate while Redis takes batches slower than they come.

The pure part (``Pace``) runs on a ``task.Clock``; the sink's part runs against
a real redis-server, paused (SIGSTOP) where Redis must stop answering.
"""

from __future__ import annotations

import orjson
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from flamingo.dispatch.sink_pace import PATIENCE, SUSPEND_SECONDS, Pace
from flamingo.domain.subscription import Subscription
from flamingo.stream.flow import JOURNAL, SINK, Flow
from tests.support.redis import RedisServer, shared_redis
from tests.support.waiting import wait_for
from tests.test_sink import Harness, lrange, tweet


class FlowHolderTests(unittest.SynchronousTestCase):
    def test_open_only_when_every_holder_let_go(self):
        flow = Flow()
        ran: list[str] = []
        flow.close(JOURNAL)
        flow.close(SINK)
        flow.when_open(lambda: ran.append("read on"))
        flow.reopen(JOURNAL)
        self.assertFalse(flow.open)
        self.assertEqual(flow.status()["held_by"], [SINK])
        self.assertEqual(ran, [])
        flow.reopen(SINK)
        self.assertTrue(flow.open)
        self.assertEqual(ran, ["read on"])
        self.assertEqual(flow.pauses, 1)  # one closed spell, however many holders

    def test_letting_go_of_what_one_does_not_hold_opens_nothing(self):
        flow = Flow()
        flow.close(SINK)
        flow.reopen(JOURNAL)
        self.assertFalse(flow.open)


class Sink:
    """What the sink tells its ``Pace``: a test sets these and calls ``update``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.mem = 0
        self.taking = True
        self.last_commit: float | None = 0.0
        self.from_memory = True
        self.flow = Flow(now=clock.seconds)
        self.pace = Pace(self.flow, clock, high=1000, low=500, recheck=self.update)

    def update(self) -> None:
        self.pace.update(self.mem, taking=self.taking, last_commit=self.last_commit, from_memory=self.from_memory)

    def commit(self, mem: int) -> None:
        self.mem = mem
        self.last_commit = self.clock.seconds()
        self.update()


class PaceTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.s = Sink(self.clock)

    def test_holds_from_high_to_low(self):
        s = self.s
        s.mem = 999
        s.update()
        self.assertTrue(s.flow.open)
        s.mem = 1000
        s.update()
        self.assertFalse(s.flow.open)
        self.assertEqual(s.flow.status()["held_by"], [SINK])
        self.clock.advance(0.25)
        s.commit(700)  # above low: still held
        self.assertFalse(s.flow.open)
        self.clock.advance(0.25)
        s.commit(500)
        self.assertTrue(s.flow.open)
        self.assertEqual(s.pace.holds, 1)
        self.assertEqual(s.pace.status()["held_seconds"], 0.5)

    def test_never_holds_while_redis_is_not_taking_batches(self):
        s = self.s
        s.taking = False  # disconnected, or a batch refused
        s.mem = 5000
        s.update()
        self.assertTrue(s.flow.open)

    def test_lets_go_when_redis_stops_answering(self):
        s = self.s
        s.mem = 2000
        s.update()
        self.assertFalse(s.flow.open)
        self.clock.advance(PATIENCE / 2)
        s.commit(2000)  # a commit: Redis takes batches, keep holding
        self.clock.advance(PATIENCE / 2)  # the check after the first patience: the commit was recent
        self.assertFalse(s.flow.open)
        self.clock.advance(PATIENCE)  # no commit for longer than the patience: let the stream run
        self.assertTrue(s.flow.open)
        s.update()  # more events come: not held again until a batch commits
        self.assertTrue(s.flow.open)
        s.commit(2000)
        self.assertFalse(s.flow.open)

    def test_never_holds_for_a_backlog_on_disk(self):
        s = self.s
        s.from_memory = False  # after an outage: catching up could take minutes
        s.mem = 5000
        s.update()
        self.assertTrue(s.flow.open)

    def test_never_holds_before_a_batch_committed_or_when_disabled(self):
        s = self.s
        s.last_commit = None
        s.mem = 5000
        s.update()
        self.assertTrue(s.flow.open)
        s.last_commit = 0.0
        s.pace.enabled = False
        s.update()
        self.assertTrue(s.flow.open)

    def test_a_source_falling_behind_suspends_pacing(self):
        s = self.s
        s.mem = 5000
        s.update()
        self.assertFalse(s.flow.open)
        s.pace.suspend("the stream warns FALLING_BEHIND")
        self.assertTrue(s.flow.open)
        self.clock.advance(SUSPEND_SECONDS - 1)
        s.commit(5000)
        self.assertTrue(s.flow.open)
        s.pace.suspend("again")  # a second warning while suspended: the period starts over
        self.clock.advance(SUSPEND_SECONDS - 1)
        s.commit(5000)
        self.assertTrue(s.flow.open)
        self.assertEqual(s.pace.suspensions, 1)
        self.clock.advance(1)
        s.commit(5000)
        self.assertFalse(s.flow.open)


class SinkPacingTests(unittest.TestCase):
    """The sink against a real Redis: it paces while Redis takes batches, never while Redis is away."""

    timeout = 60

    def paced(self, server, **kw):
        h = Harness(self, server, subs=[Subscription.create("q")], **kw)
        flow = Flow(now=reactor.seconds)
        h.sink.pace_with(flow)
        return h, flow

    @defer.inlineCallbacks
    def test_holds_while_redis_takes_the_backlog_then_lets_go(self):
        r = shared_redis()
        h, flow = self.paced(r, max_memory=20_000)
        h.dispatcher.messages_received([tweet(0)])
        yield h.drained()  # a batch committed: Redis takes batches
        sent = [tweet(i) for i in range(1, 71)]  # ~13 KB: over half of max_memory, under all of it
        h.dispatcher.messages_received(sent)
        self.assertFalse(flow.open)
        self.assertEqual(flow.status()["held_by"], [SINK])
        yield h.drained()
        self.assertTrue(flow.open)
        self.assertEqual(h.sink.memory_dropped, 0)  # nothing read back from disk
        self.assertEqual(lrange(r, h.key("q")), [tweet(0), *sent])
        self.assertEqual(h.sink.status()["pace"]["holds"], 1)

    @defer.inlineCallbacks
    def test_redis_stopped_answering_the_stream_runs_into_the_journal(self):
        server = RedisServer().start()
        self.addCleanup(server.cleanup)
        h, flow = self.paced(server, max_memory=20_000, timeout=10.0)
        h.sink.pace.patience = 0.2
        h.dispatcher.messages_received([tweet(0)])
        yield h.drained()
        server.pause()
        self.addCleanup(lambda: server.process and server.resume())
        sent = [tweet(i) for i in range(1, 71)]
        h.dispatcher.messages_received(sent)
        self.assertFalse(flow.open)
        yield wait_for(lambda: flow.open, what="the sink lets the stream go")
        self.assertIsNone(h.sink.error)  # before the sink's own timeout: Redis only answers slowly
        more = [tweet(i) for i in range(71, 90)]
        h.dispatcher.messages_received(more)  # no commit since: not held again
        self.assertTrue(flow.open)
        server.resume()
        yield h.drained(timeout=30)
        self.assertEqual(lrange(server, h.key("q")), [tweet(0), *sent, *more])

    @defer.inlineCallbacks
    def test_lets_go_once_part_of_the_backlog_is_on_disk_only(self):
        server = RedisServer().start()
        self.addCleanup(server.cleanup)
        h, flow = self.paced(server, max_memory=20_000, timeout=10.0)
        h.sink.pace.patience = 30.0
        h.dispatcher.messages_received([tweet(0)])
        yield h.drained()
        server.pause()  # Redis slow: the sink's memory fills while a batch is in flight
        self.addCleanup(lambda: server.process and server.resume())
        sent = [tweet(i) for i in range(1, 71)]
        h.dispatcher.messages_received(sent)
        self.assertFalse(flow.open)
        more = [tweet(i) for i in range(71, 200)]  # past max_memory: the oldest go, the journal has them
        for k in range(0, len(more), 10):  # small batches: memory keeps the newest, over half of the cap
            h.dispatcher.messages_received(more[k:k + 10])
        self.assertGreater(h.sink.memory_dropped, 0)
        self.assertGreaterEqual(h.sink._mem, h.sink.pace.high)
        self.assertTrue(flow.open)  # catching up from disk could take long: the stream is not held
        server.resume()
        yield h.drained(timeout=30)
        self.assertEqual(lrange(server, h.key("q")), [tweet(0), *sent, *more])


class DispatcherSuspendsTests(unittest.TestCase):
    timeout = 30

    def _harness(self):
        h = Harness(self, shared_redis(), subs=[Subscription.create("q")])
        h.sink.pace_with(Flow())
        return h

    def test_falling_behind_warning(self):
        h = self._harness()
        warning = orjson.dumps({"warning": {"code": "FALLING_BEHIND", "message": "slow", "percent_full": 60}})
        h.dispatcher.messages_received([tweet(1), warning])
        self.assertEqual(h.sink.pace.suspensions, 1)
        self.assertGreater(h.sink.status()["pace"]["suspended_for"], 0)

    def test_stall_disconnect_but_not_other_disconnects(self):
        h = self._harness()
        normal = orjson.dumps({"disconnect": {"code": 12, "stream_name": "s", "reason": "shed load"}})
        h.dispatcher.messages_received([normal])
        self.assertEqual(h.sink.pace.suspensions, 0)
        stall = orjson.dumps({"disconnect": {"code": 4, "stream_name": "s", "reason": "stall"}})
        h.dispatcher.messages_received([stall])
        self.assertEqual(h.sink.pace.suspensions, 1)
